"""The key pool service (docs/KEYS.md, "Pool"): selection, custody and the lifecycle.

:class:`KeyPool` implements ``ports.KeyStore`` for the ingest and retrieve use cases and
the key side of ``usecases.rotation.RotationKeyStore`` for the rotate-keys workflow. It is
built from the key storage (``ports.KeyStorage``: PostgreSQL in production, dictionaries in
the functional tests), the KMS port and a :class:`~pqfile.keys.policy.PoolPolicy`; the
same code runs in the Lambda functions, the ``pqfile keys`` CLI and the tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pqfile.crypto import kem
from pqfile.errors import CustodyError, KeyNotFoundError, NoActiveKeyError
from pqfile.keys.cache import UnwrappedKeyCache
from pqfile.keys.custody import KeyCustody
from pqfile.keys.model import IllegalTransitionError, KeyRecord, KeyStatus, Purpose, SelectedKey
from pqfile.keys.policy import PoolPolicy, usage_spread
from pqfile.keys.rotation_runs import RotationRun, RotationRuns
from pqfile.ports import RotationStatus

if TYPE_CHECKING:
    from pqfile.ports import KeyStorage, SeedProtector

#: Parsed public keys kept per process (public keys never change: trigger-enforced).
PUBLIC_KEY_CACHE_SIZE = 4096


def _suite_name(suite: kem.Suite | str) -> str:
    return suite.value if isinstance(suite, kem.Suite) else kem.Suite.from_name(suite).value


class KeyPool:
    """The key pool: selection, custody (KMS-wrapped seeds) and the lifecycle, audited."""

    def __init__(
        self,
        storage: KeyStorage,
        protector: SeedProtector,
        *,
        policy: PoolPolicy | None = None,
        cache: UnwrappedKeyCache[kem.SecretKey] | None = None,
        actor: str = "pqfile",
    ) -> None:
        self.storage = storage
        self.policy = policy or PoolPolicy()
        self.custody = KeyCustody(protector, cache)
        self.cache = self.custody.cache
        self._actor = actor
        self._runs = RotationRuns(storage, actor=actor)
        self._public_keys: dict[str, kem.PublicKey] = {}

    # -- selection (ingest) --

    def select_key_record(self, suite: kem.Suite | str, plaintext_size: int = 0) -> SelectedKey:
        """Take the least-used active key of ``suite`` and count one use of it."""
        name = _suite_name(suite)
        keys = self.storage.keys
        caps = {"max_documents": self.policy.max_documents, "max_bytes": self.policy.max_bytes}
        for attempt in range(3):
            # Every eligible key may be locked at once when the pool is smaller than the
            # number of callers: the last attempt waits for a lock instead of skipping.
            selected = keys.take_least_used(
                name, nbytes=max(0, int(plaintext_size)), wait=attempt >= 2, **caps
            )
            if selected is not None:
                return selected
            # Nothing taken: no eligible key, or every eligible key was locked right now.
            if not keys.count_selectable(name, **caps):
                break
        raise NoActiveKeyError(f"no active {name} key in the pool (run `pqfile keys refill`)")

    def select_encryption_key(
        self, suite: kem.Suite | str, plaintext_size: int = 0
    ) -> kem.PublicKey:
        selected = self.select_key_record(suite, plaintext_size)
        cached = self._public_keys.get(selected.key_id)
        return cached if cached is not None else self.public_key(selected.key_id)

    def _public(self, key_id: str, suite: str, raw: bytes) -> kem.PublicKey:
        # Public keys never change (trigger-enforced): check and parse each one once.
        cached = self._public_keys.get(key_id)
        if cached is None:
            cached = kem.public_key_from_bytes(kem.Suite.from_name(suite), raw)
            if cached.key_id != key_id:
                raise CustodyError(f"public key does not match key id {key_id}")
            if len(self._public_keys) >= PUBLIC_KEY_CACHE_SIZE:
                self._public_keys.clear()
            self._public_keys[key_id] = cached
        return cached

    # -- lookups --

    def get_key(self, key_id: str) -> KeyRecord:
        record = self.storage.keys.get_key(key_id)
        if record is None:
            raise KeyNotFoundError(f"no key {key_id}")
        return record

    def public_key(self, key_id: str) -> kem.PublicKey:
        record = self.get_key(key_id)
        return self._public(record.key_id, record.suite, record.public_key)

    def list_keys(
        self, suite: str | None = None, status: KeyStatus | None = None
    ) -> list[KeyRecord]:
        return self.storage.keys.list_keys(suite, status)

    # -- custody --

    def load_secret_key(self, key_id: str, purpose: Purpose = Purpose.DECRYPT) -> kem.SecretKey:
        """Unwrap a key's seed for ``purpose``. The status is read from the database on every
        call, so a revoked key is refused even while its secret sits in the cache."""
        return self.custody.unseal(key_id, self.storage.keys.sealed_seed(key_id), purpose)

    def load_decryption_key(self, key_id: str) -> kem.SecretKey:
        return self.load_secret_key(key_id, Purpose.DECRYPT)

    # -- lifecycle (pqfile_rotate) --

    def create_keys(
        self,
        suite: kem.Suite | str,
        count: int,
        *,
        actor: str | None = None,
        request_id: str | None = None,
    ) -> list[KeyRecord]:
        """Generate ``count`` keys, wrap their seeds with KMS and insert them, audited."""
        name = _suite_name(suite)
        with self.storage.transaction() as tx:
            return self._create_in(tx, name, count, actor or self._actor, request_id)

    def _create_in(
        self, tx: KeyStorage, suite: str, count: int, actor: str, request_id: str | None
    ) -> list[KeyRecord]:
        # KMS calls first, audit rows last: audit_append() holds the chain head's row lock
        # until this transaction commits, and every other audit writer waits on it.
        new_keys = [self.custody.generate(kem.Suite.from_name(suite)) for _ in range(count)]
        created = [tx.keys.insert_key(key, max_age=self.policy.max_age) for key in new_keys]
        for record in created:
            tx.audit.append(
                operation="key.create",
                outcome="success",
                actor=actor,
                key_id=record.key_id,
                request_id=request_id,
                details={"suite": suite, "kms_key_arn": record.kms_key_arn},
            )
        return created

    def refill(
        self, suite: kem.Suite | str, *, actor: str | None = None, request_id: str | None = None
    ) -> list[KeyRecord]:
        """Top the pool up to the policy's target when it is below its floor."""
        name = _suite_name(suite)
        with self.storage.transaction() as tx:
            # One refiller per suite at a time; others wait, then see the refilled pool.
            tx.keys.lock_pool(name)
            missing = self.policy.keys_to_create(tx.keys.count_active(name))
            if missing == 0:
                return []
            return self._create_in(tx, name, missing, actor or self._actor, request_id)

    def queue_due_for_rotation(
        self, *, actor: str | None = None, request_id: str | None = None
    ) -> list[tuple[str, str]]:
        """Queue every active key past its age or usage caps; returns (key id, reason)."""
        actor = actor or self._actor
        now = self.storage.keys.now()
        due = self.policy.due_for_rotation(self.list_keys(status=KeyStatus.ACTIVE), now)
        queued: list[tuple[str, str]] = []
        for key, reason in due:
            with self.storage.transaction() as tx:
                if not tx.keys.set_status_if(
                    key.key_id, current=(KeyStatus.ACTIVE,), status=KeyStatus.ROTATION_QUEUED
                ):
                    continue  # changed meanwhile
                tx.rotations.open_run(key.key_id, reason.value)
                tx.audit.append(
                    operation="key.rotation_queued",
                    outcome="success",
                    actor=actor,
                    key_id=key.key_id,
                    request_id=request_id,
                    details={
                        "reason": reason.value,
                        "usage_count": key.usage_count,
                        "bytes_encrypted": key.bytes_encrypted,
                    },
                )
            queued.append((key.key_id, reason.value))
        return queued

    def _change_status(
        self,
        key_id: str,
        new: KeyStatus,
        *,
        actor: str,
        operation: str,
        reason: str | None,
        request_id: str | None,
    ) -> KeyRecord:
        with self.storage.transaction() as tx:
            old = tx.keys.lock_status(key_id)
            if old is None:
                raise KeyNotFoundError(f"no key {key_id}")
            if old is new:
                raise IllegalTransitionError(f"key {key_id} is already {new.value}")
            updated = tx.keys.set_status(key_id, new, reason=reason)
            details: dict[str, object] = {"from": old.value, "to": new.value}
            if reason is not None:
                details["reason"] = reason
            tx.audit.append(
                operation=operation,
                outcome="success",
                actor=actor,
                key_id=key_id,
                request_id=request_id,
                details=details,
            )
        if new is KeyStatus.REVOKED:
            self.custody.forget(key_id)
        return updated

    def revoke(
        self, key_id: str, reason: str, *, actor: str | None = None, request_id: str | None = None
    ) -> KeyRecord:
        if not reason.strip():
            raise ValueError("a revocation needs a reason")
        return self._change_status(
            key_id,
            KeyStatus.REVOKED,
            actor=actor or self._actor,
            operation="key.revoke",
            reason=reason,
            request_id=request_id,
        )

    def expire(
        self, key_id: str, *, actor: str | None = None, request_id: str | None = None
    ) -> KeyRecord:
        return self._change_status(
            key_id,
            KeyStatus.EXPIRED,
            actor=actor or self._actor,
            operation="key.expire",
            reason=None,
            request_id=request_id,
        )

    # -- rotation runs (pqfile_rotate; the rules are in keys/rotation_runs.py) --

    def rotations(self, status: str | None = None) -> list[RotationRun]:
        return self._runs.runs(status)

    def begin_rotation(
        self, rotation_id: int, *, actor: str | None = None, request_id: str | None = None
    ) -> RotationRun:
        return self._runs.begin(rotation_id, actor=actor, request_id=request_id)

    def documents_on_key(self, key_id: str, limit: int = 100) -> list[str]:
        return self._runs.documents_on_key(key_id, limit)

    def record_rewrap(
        self,
        rotation_id: int,
        document_id: str,
        *,
        encrypted_version_id: str | None,
        encrypted_size: int,
        actor: str | None = None,
        request_id: str | None = None,
    ) -> bool:
        return self._runs.record_rewrap(
            rotation_id,
            document_id,
            encrypted_version_id=encrypted_version_id,
            encrypted_size=encrypted_size,
            actor=actor,
            request_id=request_id,
        )

    def finish_rotation(
        self, rotation_id: int, *, actor: str | None = None, request_id: str | None = None
    ) -> RotationRun:
        return self._runs.finish(rotation_id, actor=actor, request_id=request_id)

    # -- reporting --

    def status_summary(self) -> dict[str, Any]:
        """Counts per suite and status, oldest active key age, usage spread of active keys."""
        rows = self.storage.keys.status_counts()
        usage_rows = self.storage.keys.active_usage()

        def empty() -> dict[str, Any]:
            return {"counts": {st.value: 0 for st in KeyStatus}, "oldest_active_age_seconds": None}

        suites: dict[str, dict[str, Any]] = {s.value: empty() for s in kem.Suite}
        for suite, status, count, oldest in rows:
            entry = suites.setdefault(suite, empty())
            entry["counts"][status] = int(count)
            if status == KeyStatus.ACTIVE.value:
                entry["oldest_active_age_seconds"] = round(float(oldest), 1)
        for suite, entry in suites.items():
            spread = usage_spread(int(u) for s_, u in usage_rows if s_ == suite)
            entry["usage"] = {
                "active_keys": spread.keys,
                "min": spread.min_usage,
                "max": spread.max_usage,
                "total": spread.total_usage,
                "max_over_min": round(spread.ratio, 3) if spread.ratio is not None else None,
            }
            entry["below_floor"] = entry["counts"]["active"] < self.policy.floor_active
        return {
            "rotations": _run_counts(self.storage.rotations.run_counts()),
            "policy": {
                "target_active": self.policy.target_active,
                "floor_active": self.policy.floor_active,
                "max_age_days": self.policy.max_age.total_seconds() / 86400,
                "max_documents": self.policy.max_documents,
                "max_bytes": self.policy.max_bytes,
            },
            "suites": suites,
        }


def _run_counts(counts: Mapping[str, int] | None) -> dict[str, int] | None:
    """Runs per status, every status listed; None when the role may not read runs (ingest)."""
    if counts is None:
        return None
    return {**{s.value: 0 for s in RotationStatus}, **{k: int(v) for k, v in counts.items()}}
