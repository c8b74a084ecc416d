"""The key pool's storage on PostgreSQL (ports.KeyStorage), and the KeyPool wired to it.

``PostgresKeyStorage(db)`` groups the key, rotation and audit repositories; its
``transaction()`` yields the same repositories bound to one database transaction.
``PostgresKeyStore(db, protector, ...)`` is :class:`pqfile.keys.pool.KeyPool` over it:
every rule is the domain's, this module only wires.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pqfile.adapters.postgres.audit import AuditRepository
from pqfile.adapters.postgres.connection import Database, Runner, Session
from pqfile.adapters.postgres.keys import PostgresKeyRepository
from pqfile.adapters.postgres.rotations import PostgresRotationRepository
from pqfile.crypto import kem
from pqfile.keys.cache import UnwrappedKeyCache
from pqfile.keys.policy import PoolPolicy
from pqfile.keys.pool import KeyPool
from pqfile.ports import KeyAttestor, SeedProtector


class _Repositories:
    def __init__(self, runner: Runner) -> None:
        self.keys = PostgresKeyRepository(runner)
        self.rotations = PostgresRotationRepository(runner)
        self.audit = AuditRepository(runner)


class _TransactionStorage(_Repositories):
    """The repositories bound to one open transaction."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_TransactionStorage]:
        yield self  # already in one: PostgreSQL has no nested transactions


class PostgresKeyStorage(_Repositories):
    """ports.KeyStorage: each call commits on its own, or together in ``transaction()``."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._db = db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_TransactionStorage]:
        with self._db.transaction() as session:
            yield _TransactionStorage(session)


class PostgresKeyStore(KeyPool):
    """The key pool on one Database: ``KeyPool(PostgresKeyStorage(db), protector, ...)``."""

    def __init__(
        self,
        db: Database,
        protector: SeedProtector,
        *,
        attestor: KeyAttestor | None = None,
        policy: PoolPolicy | None = None,
        cache: UnwrappedKeyCache[kem.SecretKey] | None = None,
        actor: str | None = None,
    ) -> None:
        super().__init__(
            PostgresKeyStorage(db),
            protector,
            attestor=attestor,
            policy=policy,
            cache=cache,
            actor=actor,
        )
