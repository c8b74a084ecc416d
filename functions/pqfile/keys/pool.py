"""The key pool service (docs/KEYS.md, "Pool"): selection, custody and the lifecycle.

:class:`KeyPool` implements ``ports.KeyStore`` for the ingest and retrieve use cases and
the key side of ``ports.RotationKeyStore`` for the rotate-keys workflow. It is built from
the key storage (``ports.KeyStorage``: PostgreSQL in production, dictionaries in the
functional tests), the KMS ports (seed wrapping, key attestation) and a
:class:`~pqfile.keys.policy.PoolPolicy`; the same code runs in the Lambda functions, the
``pqfile keys`` CLI and the tests.

The pool checks early (which key, whether it is due, whether its attestation verifies);
the database is the authority on every write (sql/migrations/0010): each one is a
SECURITY DEFINER function that refuses what the connected role may not do and appends the
audit row itself. So the ``actor`` passed here is only a claim: a function role is
recorded as itself, a person as the database user with the claim as ``claimed_by``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from pqfile.crypto import kem
from pqfile.errors import CustodyError, KeyNotFoundError, NoActiveKeyError
from pqfile.keys.attestation import AttestationError, AttestationVerifier, attestation_message
from pqfile.keys.cache import UnwrappedKeyCache
from pqfile.keys.custody import KeyCustody
from pqfile.keys.model import (
    IllegalTransitionError,
    KeyRecord,
    KeyStatus,
    NewKey,
    Purpose,
    RequestKind,
    SelectedKey,
)
from pqfile.keys.policy import PoolPolicy, usage_spread
from pqfile.keys.rotation_runs import RotationRun, RotationRuns
from pqfile.ports import RotationStatus

if TYPE_CHECKING:
    from pqfile.ports import KeyAttestor, KeyStorage, SeedProtector

log = logging.getLogger(__name__)

#: Parsed public keys kept per process (public keys never change: trigger-enforced).
PUBLIC_KEY_CACHE_SIZE = 4096
#: Keys whose attestation failed, remembered per process (and skipped by every selection).
REJECTED_KEYS_MAX = 1024
#: Selections tried before giving up when keys keep failing their attestation.
MAX_SELECTION_ROUNDS = 8


def _suite_name(suite: kem.Suite | str) -> str:
    return suite.value if isinstance(suite, kem.Suite) else kem.Suite.from_name(suite).value


class UnconfiguredAttestor:
    """Stands in for KMS where no attestation key is configured: attesting or verifying a
    key fails closed (no key is created, none is used to encrypt)."""

    def generate(self, message: bytes) -> bytes:
        raise CustodyError("no key-attestation key configured (PQFILE_ATTESTATION_KEY_ID)")

    def verify(self, message: bytes, mac: bytes) -> bool:
        raise CustodyError("no key-attestation key configured (PQFILE_ATTESTATION_KEY_ID)")


class KeyPool:
    """The key pool: selection, custody (KMS-wrapped seeds), attestation, the lifecycle."""

    def __init__(
        self,
        storage: KeyStorage,
        protector: SeedProtector,
        *,
        attestor: KeyAttestor | None = None,
        policy: PoolPolicy | None = None,
        cache: UnwrappedKeyCache[kem.SecretKey] | None = None,
        actor: str | None = None,
    ) -> None:
        self.storage = storage
        self.policy = policy or PoolPolicy()
        self.custody = KeyCustody(protector, cache)
        self.cache = self.custody.cache
        self.attestor: KeyAttestor = attestor if attestor is not None else UnconfiguredAttestor()
        self.verifier = AttestationVerifier(self.attestor.verify)
        self._actor = actor
        self._runs = RotationRuns(storage, self._check_attestation, actor=actor)
        self._public_keys: dict[str, kem.PublicKey] = {}
        self._rejected: set[str] = set()

    # -- attestation --

    def attest(self, suite: str, key_id: str, public_key: bytes) -> bytes:
        """The attestation of a new key (only the maintain function's KMS key can make it)."""
        return self.attestor.generate(attestation_message(suite, key_id, public_key))

    def _check_attestation(self, key_id: str, suite: str, raw: bytes, mac: bytes | None) -> bool:
        """Whether the key's attestation verifies; a key failing it is remembered, logged
        loudly (key id only) and never used to encrypt."""
        if key_id in self._rejected:
            return False
        try:
            self.verifier.check(suite, key_id, raw, mac)
        except AttestationError:
            # (KMS failures and a missing attestation key raise other errors: fail closed
            # without condemning the key.)
            if len(self._rejected) >= REJECTED_KEYS_MAX:
                self._rejected.clear()
            self._rejected.add(key_id)
            log.error(
                "KEY ATTESTATION FAILED: key %s is skipped and never used to encrypt "
                "(a row not made by the maintain function?)",
                key_id,
                extra={"key_id": key_id, "suite": suite, "alert": "key_attestation_failed"},
            )
            return False
        return True

    # -- selection (ingest) --

    def select_key_record(self, suite: kem.Suite | str, plaintext_size: int = 0) -> SelectedKey:
        """Take the least-used active key of ``suite`` whose attestation verifies, and count
        one use of it. Keys failing their attestation are skipped (and excluded from then on)."""
        name = _suite_name(suite)
        for _ in range(MAX_SELECTION_ROUNDS):
            selected = self._take(name, plaintext_size)
            if self._check_attestation(
                selected.key_id, selected.suite, selected.public_key, selected.attestation
            ):
                return selected
        raise NoActiveKeyError(f"no {name} key with a valid attestation in the pool")

    def _take(self, name: str, plaintext_size: int) -> SelectedKey:
        keys = self.storage.keys
        max_documents, max_bytes = self.policy.max_documents, self.policy.max_bytes
        exclude = sorted(self._rejected)
        for attempt in range(3):
            # Every eligible key may be locked at once when the pool is smaller than the
            # number of callers: the last attempt waits for a lock instead of skipping.
            selected = keys.take_least_used(
                name,
                nbytes=max(0, int(plaintext_size)),
                max_documents=max_documents,
                max_bytes=max_bytes,
                wait=attempt >= 2,
                exclude=exclude,
            )
            if selected is not None:
                return selected
            # Nothing taken: no eligible key, or every eligible key was locked right now.
            if not keys.count_selectable(
                name, max_documents=max_documents, max_bytes=max_bytes, exclude=exclude
            ):
                break
        raise NoActiveKeyError(f"no active {name} key in the pool (run `pqfile keys refill`)")

    def select_encryption_key(
        self, suite: kem.Suite | str, plaintext_size: int = 0
    ) -> kem.PublicKey:
        selected = self.select_key_record(suite, plaintext_size)
        return self._public(selected.key_id, selected.suite, selected.public_key)

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
        """The public key of any known key (no status or attestation check: not for
        encrypting; see :meth:`encryption_key`)."""
        record = self.get_key(key_id)
        return self._public(record.key_id, record.suite, record.public_key)

    def attested_public_key(self, key_id: str, purpose: Purpose = Purpose.ENCRYPT) -> kem.PublicKey:
        """The public key of ``key_id`` to encrypt to: its status (read now) must allow
        ``purpose`` (KeyNotUsableError) and its attestation must verify (CustodyError)."""
        record = self.get_key(key_id)
        record.require(purpose)
        if not self._check_attestation(
            record.key_id, record.suite, record.public_key, record.attestation
        ):
            raise CustodyError(f"key {key_id} has no valid attestation: not used to encrypt")
        return self._public(record.key_id, record.suite, record.public_key)

    def encryption_key(self, key_id: str) -> kem.PublicKey:
        """``attested_public_key(key_id, Purpose.ENCRYPT)``: active and attested."""
        return self.attested_public_key(key_id, Purpose.ENCRYPT)

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

    # -- lifecycle: maintain (pqfile_maintain) --

    def create_keys(
        self,
        suite: kem.Suite | str,
        count: int,
        *,
        actor: str | None = None,
        request_id: str | None = None,
    ) -> list[KeyRecord]:
        """Generate ``count`` keys, wrap their seeds with KMS, attest and store them, audited."""
        name = _suite_name(suite)
        prepared = self._prepare(name, count)
        with self.storage.transaction() as tx:
            return self._store_in(tx, prepared, actor or self._actor, request_id)

    def _prepare(self, suite: str, count: int) -> list[tuple[NewKey, bytes]]:
        """``count`` new keys, wrapped and attested: every KMS call, outside any transaction
        (a transaction idle for 15 s is ended by the database: sql/migrations/0010)."""
        new_keys = [self.custody.generate(kem.Suite.from_name(suite)) for _ in range(count)]
        return [(k, self.attest(k.suite, k.key_id, k.public_key)) for k in new_keys]

    def _store_in(
        self,
        tx: KeyStorage,
        prepared: list[tuple[NewKey, bytes]],
        actor: str | None,
        request_id: str | None,
    ) -> list[KeyRecord]:
        # Database writes only: each key_create() appends an audit row and holds the chain
        # head's row lock until this transaction commits, so it must be short.
        return [
            tx.keys.create_key(
                key,
                attestation=mac,
                max_age=self.policy.max_age,
                actor=actor,
                request_id=request_id,
            )
            for key, mac in prepared
        ]

    def refill(
        self, suite: kem.Suite | str, *, actor: str | None = None, request_id: str | None = None
    ) -> list[KeyRecord]:
        """Top the pool up to the policy's target when it is below its floor.

        The keys are generated, wrapped and attested before the transaction (KMS calls take
        time, and neither the refill lock nor the audit chain head should wait on them); in
        the transaction, under the per-suite lock, the count is taken again and only what
        is still missing is stored (a key prepared but not needed is simply dropped: its
        seed never reaches the database)."""
        name = _suite_name(suite)
        missing = self.policy.keys_to_create(self.storage.keys.count_active(name))
        if missing == 0:
            return []
        prepared = self._prepare(name, missing)
        with self.storage.transaction() as tx:
            # One refiller per suite at a time; others wait, then see the refilled pool.
            tx.keys.lock_pool(name)
            still = self.policy.keys_to_create(tx.keys.count_active(name))
            return self._store_in(tx, prepared[:still], actor or self._actor, request_id)

    def queue_due_for_rotation(
        self, *, actor: str | None = None, request_id: str | None = None
    ) -> list[tuple[str, str]]:
        """Queue every active key past its age or usage caps, or without an attestation
        (created before migration 0010); returns (key id, reason)."""
        now = self.storage.keys.now()
        due = self.policy.due_for_rotation(self.list_keys(status=KeyStatus.ACTIVE), now)
        queued: list[tuple[str, str]] = []
        for key, reason in due:
            if self.storage.keys.queue_rotation(
                key.key_id,
                reason.value,
                max_documents=self.policy.max_documents,
                max_bytes=self.policy.max_bytes,
                actor=actor or self._actor,
                request_id=request_id,
            ):
                queued.append((key.key_id, reason.value))
        return queued

    # -- lifecycle: operators (pqfile_operator) --

    def revoke(
        self, key_id: str, reason: str, *, actor: str | None = None, request_id: str | None = None
    ) -> KeyRecord:
        """Revoke a key at once (terminal: its documents are refused from now on)."""
        if not reason.strip():
            raise ValueError("a revocation needs a reason")
        status = self.get_key(key_id).status
        if status in (KeyStatus.REVOKED, KeyStatus.SHREDDED):
            raise IllegalTransitionError(f"key {key_id} is already {status.value}")
        self.storage.keys.revoke(key_id, reason, actor=actor or self._actor, request_id=request_id)
        self.custody.forget(key_id)
        return self.get_key(key_id)

    def expire(
        self, key_id: str, *, actor: str | None = None, request_id: str | None = None
    ) -> KeyRecord:
        """Expire a key at once: it decrypts, it never encrypts again."""
        status = self.get_key(key_id).status
        if status in (KeyStatus.EXPIRED, KeyStatus.REVOKED, KeyStatus.SHREDDED):
            raise IllegalTransitionError(f"key {key_id} is already {status.value}")
        self.storage.keys.expire(key_id, actor=actor or self._actor, request_id=request_id)
        return self.get_key(key_id)

    def request(
        self,
        key_id: str,
        kind: RequestKind | str,
        reason: str,
        *,
        actor: str | None = None,
        request_id: str | None = None,
    ) -> int:
        """Record a pending request (revoke, shred, compromise): the key stops encrypting at
        once, the rotate-keys workflow moves its documents and completes a revocation."""
        kind = RequestKind(kind)
        if not reason.strip():
            raise ValueError("a request needs a reason")
        status = self.get_key(key_id).status
        if status is KeyStatus.SHREDDED or (
            status is KeyStatus.REVOKED and kind is not RequestKind.SHRED
        ):  # a revoked key may still be shredded (sql/migrations/0013)
            raise IllegalTransitionError(f"key {key_id} is already {status.value}")
        return self.storage.keys.request(
            key_id, kind.value, reason, actor=actor or self._actor, request_id=request_id
        )

    def complete_requests(
        self, key_id: str, *, actor: str | None = None, request_id: str | None = None
    ) -> list[int]:
        """Complete the pending revocations of ``key_id`` once no document uses it."""
        done: list[int] = []
        for pending in self.storage.keys.pending_requests(key_id):
            if pending.kind != RequestKind.REVOKE.value:
                continue  # shredding and compromise handling are completed elsewhere
            if self.storage.keys.complete_request(
                pending.request_id, actor=actor or self._actor, request_id=request_id
            ):
                done.append(pending.request_id)
        if done:
            self.custody.forget(key_id)
        return done

    # -- rotation runs (pqfile_rewrap; the rules are in keys/rotation_runs.py) --

    def rotations(self, status: str | None = None) -> list[RotationRun]:
        return self._runs.runs(status)

    def begin_rotation(
        self, rotation_id: int, *, actor: str | None = None, request_id: str | None = None
    ) -> RotationRun:
        return self._runs.begin(rotation_id, actor=actor, request_id=request_id)

    def documents_on_key(self, key_id: str, limit: int = 100) -> list[str]:
        return self._runs.documents_on_key(key_id, limit)

    def documents_to_rewrap(
        self, key_id: str, *, after: str | None, limit: int
    ) -> list[tuple[str, bool]]:
        return self._runs.documents_to_rewrap(key_id, after=after, limit=limit)

    def rewrap_targets(self, rotation_id: int, count: int) -> list[str]:
        return self._runs.targets(self._runs.get(rotation_id), count)

    def rotation_target_suite(self, rotation_id: int) -> str:
        return self._runs.target_suite(self._runs.get(rotation_id))

    def record_rewrap(
        self,
        rotation_id: int,
        document_id: str,
        *,
        encrypted_version_id: str | None,
        encrypted_size: int,
        new_key_id: str | None = None,
        actor: str | None = None,
        request_id: str | None = None,
    ) -> bool:
        return self._runs.record_rewrap(
            rotation_id,
            document_id,
            new_key_id=new_key_id,
            encrypted_version_id=encrypted_version_id,
            encrypted_size=encrypted_size,
            actor=actor,
            request_id=request_id,
        )

    def record_reencrypt(
        self,
        rotation_id: int,
        document_id: str,
        *,
        new_key_id: str,
        encrypted_version_id: str | None,
        encrypted_size: int,
        from_kdf: str,
        to_kdf: str,
        actor: str | None = None,
        request_id: str | None = None,
    ) -> bool:
        return self._runs.record_reencrypt(
            rotation_id,
            document_id,
            new_key_id=new_key_id,
            encrypted_version_id=encrypted_version_id,
            encrypted_size=encrypted_size,
            from_kdf=from_kdf,
            to_kdf=to_kdf,
            actor=actor,
            request_id=request_id,
        )

    def key_compromised(self, key_id: str) -> bool:
        return any(r.kind == RequestKind.COMPROMISE.value
                   for r in self.storage.keys.pending_requests(key_id))  # fmt: skip

    def finish_rotation(
        self, rotation_id: int, *, actor: str | None = None, request_id: str | None = None
    ) -> RotationRun:
        return self._runs.finish(rotation_id, actor=actor, request_id=request_id)

    # -- reporting --

    def status_summary(self, kept_suites: Collection[str] | None = None) -> dict[str, Any]:
        """Counts per suite and status, oldest active key age, usage spread of active keys.
        ``kept_suites``: the suites the deployment keeps at its target (None: every suite);
        only those can be "below floor", the others are marked ``kept: false``."""
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
            kept = kept_suites is None or suite in kept_suites
            entry["kept"] = kept
            entry["below_floor"] = kept and entry["counts"]["active"] < self.policy.floor_active
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
