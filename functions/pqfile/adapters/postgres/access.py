"""``access_rules`` (sql/migrations/0011): who may read what, deny by default.

The retrieve role asks ``access_check()`` and sees nothing else of the rules
(:class:`PostgresAccessPolicy`, ports.AccessPolicy); people (``pqfile_operator``) change
them only through ``access_grant()`` / ``access_revoke()``, each an audit row in the same
transaction, and read them with a SELECT (:class:`PostgresAccessRules`).

Readers' recipient keys (``recipient_keys``, sql/migrations/0020): the retrieve role asks
``recipient_for()`` (:class:`PostgresRecipientDirectory`); operators register, revoke and
list them (:class:`PostgresRecipientKeys`), the key checked in Python before it is sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pqfile.adapters.postgres.connection import Database, Runner
from pqfile.crypto.kem import PublicKey, public_key_from_bytes
from pqfile.errors import KeyFormatError
from pqfile.keys.audit_chain import MAX_REQUEST_ID_CHARS, bounded_text
from pqfile.ports import AccessOperation, AccessRule, RecipientKey
from pqfile.usecases.recipients import exact_principal

_RULE_COLUMNS = "rule_id, principal, tenant, document_id, operation, created_by, created_at"


def _rule(r: Sequence[Any]) -> AccessRule:
    return AccessRule(
        rule_id=int(r[0]),
        principal=r[1],
        tenant=r[2],
        document_id=r[3],
        operation=r[4],
        created_by=r[5],
        created_at=r[6],
    )


class PostgresAccessPolicy:
    """ports.AccessPolicy for the retrieve function (EXECUTE on access_check only)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def allows(self, principal: str, document_id: str, operation: AccessOperation) -> bool:
        rows = self._db.run(
            "SELECT access_check(:p, :d, :o)",
            p=principal[:1000],
            d=document_id[:128],
            o=AccessOperation(operation).value,
        )
        return rows[0][0] is True


class PostgresRecipientDirectory:
    """ports.RecipientDirectory for the retrieve function (EXECUTE on recipient_for only,
    sql/migrations/0020)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def recipient_for(self, principal: str, document_id: str) -> RecipientKey | None:
        rows = self._db.run(
            "SELECT recipient_id, suite, public_key, fingerprint, allow_weaker "
            "FROM recipient_for(:p, :d)",
            p=principal[:1000],
            d=document_id[:128],
        )
        if not rows:
            return None
        r = rows[0]
        return RecipientKey(
            recipient_id=int(r[0]),
            suite=r[1],
            public_key=bytes(r[2]),
            fingerprint=r[3],
            allow_weaker=r[4] is True,
        )


class PostgresAccessRules:
    """The operator's view: list, grant, revoke (``pqfile access``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def list(self) -> list[AccessRule]:
        rows = self._db.run(
            f"SELECT {_RULE_COLUMNS} FROM access_rules "  # noqa: S608 (a constant)
            "ORDER BY coalesce(tenant, ''), coalesce(document_id, ''), principal, operation"
        )
        return [_rule(r) for r in rows]

    def grant(
        self,
        principal: str,
        *,
        tenant: str | None,
        document_id: str | None,
        operation: AccessOperation,
        actor: str | None,
        request_id: str | None = None,
    ) -> int:
        return self._change(
            "access_grant", principal, tenant, document_id, operation, actor, request_id
        )

    def revoke(
        self,
        principal: str,
        *,
        tenant: str | None,
        document_id: str | None,
        operation: AccessOperation,
        actor: str | None,
        request_id: str | None = None,
    ) -> int:
        return self._change(
            "access_revoke", principal, tenant, document_id, operation, actor, request_id
        )

    def _change(
        self,
        function: str,
        principal: str,
        tenant: str | None,
        document_id: str | None,
        operation: AccessOperation,
        actor: str | None,
        request_id: str | None,
    ) -> int:
        """One call of access_grant / access_revoke (the SECURITY DEFINER functions of 0011)."""
        rows = self._db.run(
            f"SELECT {function}(:p, :t, :d, :o, :a, :r)",
            p=principal,
            t=tenant,
            d=document_id,
            o=AccessOperation(operation).value,
            a=None if actor is None else actor[:256],
            r=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return int(rows[0][0])


_RECIPIENT_COLUMNS = (
    "recipient_id, principal, suite, fingerprint, allow_weaker, created_by, created_at, "
    "revoked_at, revoked_by"
)


@dataclass(frozen=True)
class RecipientEntry:
    """One row of ``recipient_keys`` as operators see it (never more than the public key's
    fingerprint)."""

    recipient_id: int
    principal: str
    suite: str
    fingerprint: str
    allow_weaker: bool
    created_by: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    revoked_by: str | None


@dataclass(frozen=True)
class RecipientChange:
    """What ``register`` did: the principal's active key now, whether it is new, and the
    key it replaced (revoked in the same transaction), if any."""

    recipient_id: int
    principal: str
    suite: str
    fingerprint: str
    allow_weaker: bool
    created: bool
    replaced: int | None


def recipient_entry_dict(e: RecipientEntry) -> dict[str, Any]:
    """One key as ``pqfile access recipient list --json`` prints it."""
    return {"recipient_id": e.recipient_id, "principal": e.principal, "suite": e.suite,
            "fingerprint": e.fingerprint, "allow_weaker": e.allow_weaker,
            "created_by": e.created_by, "created_at": e.created_at.isoformat(),
            "revoked_at": None if e.revoked_at is None else e.revoked_at.isoformat(),
            "revoked_by": e.revoked_by}  # fmt: skip


def recipient_change_dict(c: RecipientChange) -> dict[str, Any]:
    """A registration as ``pqfile access recipient add --json`` prints it."""
    return {"recipient_id": c.recipient_id, "principal": c.principal, "suite": c.suite,
            "fingerprint": c.fingerprint, "allow_weaker": c.allow_weaker,
            "created": c.created, "replaced": c.replaced}  # fmt: skip


def _entry(r: Sequence[Any]) -> RecipientEntry:
    return RecipientEntry(
        recipient_id=int(r[0]), principal=r[1], suite=r[2], fingerprint=r[3],
        allow_weaker=r[4] is True, created_by=r[5], created_at=r[6], revoked_at=r[7],
        revoked_by=r[8],
    )  # fmt: skip


# The key just registered, in the registering transaction: now() is the transaction's
# start, so a new row (and the row it retired) carry it; an idempotent call does not.
_REGISTERED_SQL = (
    "SELECT k.recipient_id, k.suite, k.fingerprint, k.allow_weaker, k.created_at = now(), "
    "(SELECT max(o.recipient_id) FROM recipient_keys o WHERE o.principal = k.principal "
    " AND o.revoked_at = now() AND o.recipient_id <> k.recipient_id) "
    "FROM recipient_keys k WHERE k.recipient_id = :id"
)


class PostgresRecipientKeys:
    """The operator's view of recipient keys (``pqfile access recipient``, the admin
    function's ``access.recipient_*``): register, revoke, list. ``pqfile_operator`` or
    ``pqfile_admin_function`` (whose rows name the bound principal, 0018/0020)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def register(
        self,
        principal: str,
        key: PublicKey,
        *,
        allow_weaker: bool,
        actor: str | None,
        request_id: str | None = None,
    ) -> RecipientChange:
        """Register ``key`` as the principal's one active key (retiring its previous one);
        idempotent for the same key and ``allow_weaker``. Audited ``access.recipient_add``."""
        with self._db.transaction() as tx:
            return register_recipient(tx, principal, key, allow_weaker=allow_weaker,
                                      actor=actor, request_id=request_id)  # fmt: skip

    def grant_with_key(
        self,
        principal: str,
        key: PublicKey,
        *,
        tenant: str | None,
        document_id: str | None,
        allow_weaker: bool,
        actor: str | None,
        request_id: str | None = None,
    ) -> tuple[int, RecipientChange]:
        """A retrieve rule and the principal's recipient key in one transaction (``pqfile
        access grant --recipient``): both or neither. (rule id, the registration)."""
        exact_principal(principal)
        key = _checked(key)
        with self._db.transaction() as tx:
            rows = tx.run(
                "SELECT access_grant(:p, :t, :d, 'retrieve', :a, :r)",
                p=principal, t=tenant, d=document_id,
                a=None if actor is None else actor[:256],
                r=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
            )  # fmt: skip
            change = register_recipient(tx, principal, key, allow_weaker=allow_weaker,
                                        actor=actor, request_id=request_id)  # fmt: skip
        return int(rows[0][0]), change

    def revoke(self, principal: str, *, actor: str | None, request_id: str | None = None) -> int:
        """Retire the principal's active key (its id); DatabaseError PQ005 when it has none.
        Audited ``access.recipient_revoke``."""
        rows = self._db.run(
            "SELECT recipient_revoke(:p, :a, :r)",
            p=principal[:1000],
            a=None if actor is None else actor[:256],
            r=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return int(rows[0][0])

    def list(self, *, include_revoked: bool = False) -> list[RecipientEntry]:
        """The active keys (and, with ``include_revoked``, the retired ones too)."""
        where = "" if include_revoked else "WHERE revoked_at IS NULL "
        rows = self._db.run(
            f"SELECT {_RECIPIENT_COLUMNS} FROM recipient_keys {where}"  # noqa: S608 (constants)
            "ORDER BY principal, recipient_id"
        )
        return [_entry(r) for r in rows]


def _checked(key: PublicKey) -> PublicKey:
    """The key through crypto.kem's checks again (length, modulus, low order): a PublicKey
    built directly is not trusted."""
    if not isinstance(key, PublicKey) or not isinstance(key.raw, bytes):
        raise KeyFormatError("a recipient key must be a public key")
    return public_key_from_bytes(key.suite, key.raw)


def register_recipient(
    runner: Runner,
    principal: str,
    key: PublicKey,
    *,
    allow_weaker: bool,
    actor: str | None,
    request_id: str | None,
) -> RecipientChange:
    """``recipient_register`` and a read of its result; ``runner`` must be a transaction
    (the read tells a new key from an idempotent call by the transaction's now())."""
    exact_principal(principal)
    key = _checked(key)
    rows = runner.run(
        "SELECT recipient_register(:p, :s, :k, :w, :a, :r)",
        p=principal, s=key.suite.value, k=key.raw, w=bool(allow_weaker),
        a=None if actor is None else actor[:256],
        r=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
    )  # fmt: skip
    [row] = runner.run(_REGISTERED_SQL, id=int(rows[0][0]))
    return RecipientChange(
        recipient_id=int(row[0]), principal=principal, suite=row[1], fingerprint=row[2],
        allow_weaker=row[3] is True, created=row[4] is True,
        replaced=None if row[5] is None else int(row[5]),
    )  # fmt: skip
