"""The key pool as the use cases see it, and the KMS-backed custody ports."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pqfile.crypto.kem import PublicKey, SecretKey, Suite
    from pqfile.keys.model import KeyRecord, Purpose


class SeedProtector(Protocol):
    """Wraps/unwraps secret key seeds (AWS KMS in production)."""

    def wrap(self, seed: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        """Return (wrapped_seed, kms_key_arn). The context must be given again to unwrap."""
        ...

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """Return the seed; raise pqfile.errors.CustodyError on any refusal."""
        ...


class KeyAttestor(Protocol):
    """MACs over a key's identity (keys/attestation.py; AWS KMS HMAC in production): only
    the key-maintenance function may generate them, the functions that encrypt verify them."""

    def generate(self, message: bytes) -> bytes:
        """The MAC of ``message``; raise CustodyError or TransientError."""
        ...

    def verify(self, message: bytes, mac: bytes) -> bool:
        """Whether ``mac`` is the MAC of ``message`` (a wrong MAC is False, not an error)."""
        ...


class KeyStore(Protocol):
    """The key pool as the ingest and retrieve functions use it."""

    def select_encryption_key(self, suite: Suite, plaintext_size: int = 0) -> PublicKey:
        """An active, attested key of `suite`, least used first (keys whose attestation does
        not verify are skipped); raise NoActiveKeyError if none."""
        ...

    def encryption_key(self, key_id: str) -> PublicKey:
        """The public key of ``key_id`` to encrypt to: raise KeyNotUsableError unless it is
        active, CustodyError unless its attestation verifies, KeyNotFoundError."""
        ...

    def get_key(self, key_id: str) -> KeyRecord:
        """A key's row (public data); raise KeyNotFoundError."""
        ...

    def refill(
        self, suite: Suite, *, actor: str | None = None, request_id: str | None = None
    ) -> Sequence[object]:
        """Top the pool up when below its floor (wraps new seeds with KMS)."""
        ...

    def public_key(self, key_id: str) -> PublicKey:
        """The public key of any known key; raise KeyNotFoundError."""
        ...

    def load_decryption_key(self, key_id: str) -> SecretKey:
        """Unwrap a key's seed.

        Raise KeyNotFoundError, KeyNotUsableError (revoked) or CustodyError.
        """
        ...


class KeyView(Protocol):
    @property
    def key_id(self) -> str: ...

    @property
    def suite(self) -> str: ...


class RotationRunView(Protocol):
    """One rotation run (a row of ``key_rotations``); ``status`` is a RotationStatus value."""

    @property
    def rotation_id(self) -> int: ...

    @property
    def old_key_id(self) -> str: ...

    @property
    def new_key_id(self) -> str | None: ...

    @property
    def status(self) -> str: ...

    @property
    def to_suite(self) -> str | None: ...

    @property
    def allow_downgrade(self) -> bool: ...

    @property
    def documents_total(self) -> int: ...

    @property
    def documents_rewrapped(self) -> int: ...


class RotationKeyStore(Protocol):
    """The key pool as the rotate-keys workflow uses it (pqfile_maintain and pqfile_rewrap).
    Every lifecycle change it makes is audited by the database in the same transaction."""

    def get_key(self, key_id: str) -> KeyView: ...

    def refill(
        self, suite: str, *, actor: str | None = None, request_id: str | None = None
    ) -> Sequence[object]: ...

    def queue_due_for_rotation(
        self, *, actor: str | None = None, request_id: str | None = None
    ) -> list[tuple[str, str]]: ...

    def rotations(self, status: str | None = None) -> Sequence[RotationRunView]: ...

    def begin_rotation(
        self, rotation_id: int, *, actor: str | None = None, request_id: str | None = None
    ) -> RotationRunView:
        """Start a queued run (choose the new key); a started run is returned unchanged."""
        ...

    def documents_on_key(self, key_id: str, limit: int = 100) -> list[str]: ...

    def documents_to_rewrap(
        self, key_id: str, *, after: str | None, limit: int
    ) -> list[tuple[str, bool]]:
        """(document id, package stored) on ``key_id`` after the cursor ``after``."""
        ...

    def rewrap_targets(self, rotation_id: int, count: int) -> list[str]:
        """A target key per document of a batch of the run, spread over the pool of its
        target suite, least used first (as ingest picks keys)."""
        ...

    def rotation_target_suite(self, rotation_id: int) -> str:
        """The suite the run moves documents to; raise when the move is refused (a
        downgrade the run does not allow, or another hash family)."""
        ...

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
        """Point the document at ``new_key_id`` (default: the run's new key), audited;
        False if it was already moved."""
        ...

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
        """Point a re-encrypted document at ``new_key_id`` (``document.reencrypt``
        audited); False if it was already moved."""
        ...

    def key_compromised(self, key_id: str) -> bool:
        """Whether an operator recorded a pending compromise of ``key_id``: its documents
        are re-encrypted, never rewrapped."""
        ...

    def finish_rotation(
        self, rotation_id: int, *, actor: str | None = None, request_id: str | None = None
    ) -> RotationRunView: ...

    def load_secret_key(self, key_id: str, purpose: Purpose = ...) -> SecretKey:
        """Unwrap a key's seed for ``purpose`` (default Purpose.DECRYPT)."""
        ...

    def attested_public_key(self, key_id: str, purpose: Purpose = ...) -> PublicKey:
        """The public key of ``key_id`` once its attestation verified and its status allows
        ``purpose`` (default Purpose.ENCRYPT): the key a rewrap may encrypt to."""
        ...

    def complete_requests(
        self, key_id: str, *, actor: str | None = None, request_id: str | None = None
    ) -> list[int]:
        """Complete the operators' pending revocations of ``key_id`` once no document uses
        it (the workflow never starts one); return the ids completed."""
        ...

    def status_summary(self, kept_suites: Collection[str] | None = None) -> Mapping[str, Any]:
        """Counts per suite and status: ``{"suites": {suite: {"counts": {status: n}}}}``."""
        ...
