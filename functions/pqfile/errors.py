"""The project's own exceptions. Adapters translate ClientError / pg8000 errors into these.

Decryption failures are deliberately one opaque type (DecryptionError) that says nothing
about *why* authentication failed (docs/FORMAT.md, "Error model").
"""

from __future__ import annotations


class PQFileError(Exception):
    """Base class for every error PQFile raises on purpose."""


# --- package / format errors (docs/FORMAT.md "Error model") ---------------------------


class NotAPackageError(PQFileError):
    """The input does not start with the PQF magic bytes."""


class UnsupportedVersionError(PQFileError):
    """The package has a version byte this build does not understand."""


class UnsupportedSuiteError(PQFileError):
    """The package (or key) names a KEM suite this build does not support."""


class MalformedPackageError(PQFileError):
    """The header is structurally invalid (truncated, bad lengths, limits exceeded)."""


class LimitExceededError(MalformedPackageError):
    """A field exceeds a documented limit (header size, context, segment size/count)."""


class WrongKeyError(PQFileError):
    """The package was encrypted to a different key id than the one supplied."""

    def __init__(
        self,
        expected_key_id: str,
        supplied_key_id: str,
        *,
        expected_suite: str | None = None,
        supplied_suite: str | None = None,
    ) -> None:
        expected, supplied = expected_key_id, supplied_key_id
        if expected_suite is not None and supplied_suite is not None:  # the ids may be equal
            expected = f"{expected_key_id} ({expected_suite})"
            supplied = f"{supplied_key_id} ({supplied_suite})"
        super().__init__(f"this package is for key id {expected}, not {supplied}")
        self.expected_key_id = expected_key_id
        self.supplied_key_id = supplied_key_id


class DecryptionError(PQFileError):
    """Authentication failed. Opaque on purpose: no detail about which check failed."""

    def __init__(self, message: str = "decryption failed: package is not authentic") -> None:
        super().__init__(message)


class RewrapRefusedError(PQFileError):
    """A rewrap (or re-encryption) that FORMAT.md §8 forbids; nothing was written."""


class DowngradeError(RewrapRefusedError):
    """The new recipient's suite ranks below the package's (mlkem768 < xwing < mlkem1024).

    Refused unless the caller explicitly allows a downgrade (``allow_downgrade=True``,
    ``pqfile rewrap --allow-downgrade``).
    """

    def __init__(self, from_suite: str, to_suite: str, message: str | None = None) -> None:
        super().__init__(
            message
            or f"refusing to downgrade a package from suite {from_suite} to {to_suite} "
            "(allow it explicitly to proceed)"
        )
        self.from_suite = from_suite
        self.to_suite = to_suite


class ReencryptionRequiredError(RewrapRefusedError):
    """A rewrap cannot reach the target: the body's hash family must change (a SHA-256
    package into the CNSA 2.0 suite), which only a re-encryption under a fresh data key does."""


class KeyFormatError(PQFileError):
    """A public or secret key is malformed (wrong length, modulus check, bad PEM/OID)."""


# --- key pool / custody / audit --------------------------------------------------------


class KeyNotFoundError(PQFileError):
    """No key with this id exists."""


class KeyNotUsableError(PQFileError):
    """The key exists but its status forbids this use (e.g. revoked, or expired for encrypt)."""


class NoActiveKeyError(PQFileError):
    """The pool has no active key for the requested suite."""


class CustodyError(PQFileError):
    """KMS refused to wrap/unwrap a seed (wrong context, disabled key, access denied)."""


class AuditChainBrokenError(PQFileError):
    """The hash chain of the audit log does not verify."""


class AuditProofError(PQFileError):
    """A Merkle inclusion or consistency proof of the audit tree does not verify."""


class AuditDigestError(PQFileError):
    """A signed tree head (digest) is malformed, or its signature does not verify."""


# --- pipeline --------------------------------------------------------------------------


class InvalidEventError(PQFileError):
    """A malformed or foreign event (wrong bucket/prefix, missing fields)."""


class DocumentTooLargeError(InvalidEventError):
    """An upload larger than the pipeline encrypts (the configured maximum document size, or
    the largest package S3 stores in one object): refused at fetch, before any work."""


class OutsideTenantError(InvalidEventError):
    """An upload outside a tenant folder (``uploads/<tenant>/...``): no tenant owns it."""


class DocumentNotFoundError(PQFileError):
    """No such document (or the uploaded object no longer exists)."""


class DeliveryRefusedError(PQFileError):
    """Retrieve will not deliver the way asked (docs/OPERATIONS.md, "Retrieval"): no recipient
    key for a sealed delivery, or plaintext delivery switched off. ``reason`` is the audit's
    ``details.reason``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TransientError(PQFileError):
    """A retryable failure (throttling, connection dropped). Step Functions retries these."""


class StorageError(PQFileError):
    """Object storage refused a request for a non-transient reason (access denied, no bucket)."""
