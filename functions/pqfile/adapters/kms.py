"""AWS KMS custody of key seeds (ports.SeedProtector), and the audit digests' signing key
(ports.DigestSigner, at the end).

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
from pqfile.errors import AuditDigestError, CustodyError, TransientError

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


class KmsDigestSigner:
    """ports.DigestSigner: KMS ``Sign`` with an asymmetric key, MessageType RAW (the digest is
    at most 4,096 bytes). ``key_id`` is the key's ARN (named inside every digest) and
    ``algorithm`` its signing algorithm: ECDSA_SHA_384 (ECC_NIST_P384) or ML_DSA_SHAKE_256
    (ML_DSA_65). The function's role may call kms:Sign on this key and nothing else."""

    def __init__(self, client: KMSClient, key_arn: str, algorithm: str) -> None:
        if not key_arn:
            raise AuditDigestError("no digest signing key configured (PQFILE_DIGEST_KEY_ARN)")
        self._client = client
        self._key_arn = key_arn
        self._algorithm = algorithm

    def __repr__(self) -> str:
        return f"KmsDigestSigner(key_arn={self._key_arn!r}, algorithm={self._algorithm!r})"

    @property
    def key_id(self) -> str:
        return self._key_arn

    @property
    def algorithm(self) -> str:
        return self._algorithm

    def sign(self, message: bytes) -> bytes:
        try:
            response = self._client.sign(
                KeyId=self._key_arn,
                Message=bytes(message),
                MessageType="RAW",
                SigningAlgorithm=self._algorithm,  # type: ignore[arg-type]
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            if code in _TRANSIENT_CODES:
                raise TransientError(f"KMS sign: {code}") from None
            raise AuditDigestError(f"KMS refused to sign the audit digest ({code})") from None
        except BotoCoreError as exc:
            raise TransientError(f"KMS sign: {type(exc).__name__}") from None
        return bytes(response["Signature"])


def _translate(exc: Exception, action: str) -> Exception:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        if code in _TRANSIENT_CODES:
            return TransientError(f"KMS {action}: {code}")
        return CustodyError(f"KMS refused to {action} the key seed ({code})")
    return TransientError(f"KMS {action}: {type(exc).__name__}")
