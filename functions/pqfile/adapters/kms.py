"""AWS KMS custody of key seeds (ports.SeedProtector).

A seed is wrapped with KMS ``Encrypt`` under an encryption context naming the key id and
suite (``keys.custody.seed_context``) and unwrapped with ``Decrypt`` and the same
context: KMS authenticates the context, so a wrapped seed moved to another row does not
unwrap. Neither seeds nor KMS responses are logged or put into exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from pqfile.config import KmsSettings
from pqfile.errors import CustodyError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

_TRANSIENT_CODES = {
    "ThrottlingException",
    "KMSInternalException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
}


class KmsSeedProtector:
    """Wrap/unwrap seeds with one KMS key. Takes any boto3 KMS client (AWS or an emulator)."""

    def __init__(self, client: KMSClient, key_id: str) -> None:
        if not key_id:
            raise CustodyError("no KMS key configured (PQFILE_KMS_KEY_ID)")
        self._client = client
        self._key_id = key_id

    def __repr__(self) -> str:
        return f"KmsSeedProtector(key_id={self._key_id!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KmsSeedProtector:
        from pqfile.adapters.aws import kms_client

        return cls(kms_client(), KmsSettings.from_env(env).key_id or "")

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, seed: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        try:
            response = self._client.encrypt(
                KeyId=self._key_id, Plaintext=bytes(seed), EncryptionContext=dict(context)
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "wrap") from None
        return bytes(response["CiphertextBlob"]), str(response["KeyId"])

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        try:
            response = self._client.decrypt(
                CiphertextBlob=bytes(wrapped),
                EncryptionContext=dict(context),
                KeyId=self._key_id,
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "unwrap") from None
        return bytes(response["Plaintext"])


class UnconfiguredSeedProtector:
    """Stands in for KMS in functions that have no key configured (fetch, store, audit)."""

    def wrap(self, seed: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        raise CustodyError("this function has no KMS key configured (PQFILE_KMS_KEY_ID)")

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        raise CustodyError("this function has no KMS key configured (PQFILE_KMS_KEY_ID)")


def _translate(exc: Exception, action: str) -> Exception:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        if code in _TRANSIENT_CODES:
            return TransientError(f"KMS {action}: {code}")
        return CustodyError(f"KMS refused to {action} the key seed ({code})")
    return TransientError(f"KMS {action}: {type(exc).__name__}")
