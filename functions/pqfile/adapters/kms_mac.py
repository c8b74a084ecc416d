"""Key attestations with an AWS KMS HMAC key (ports.KeyAttestor; keys/attestation.py).

``GenerateMac`` (HMAC_SHA_256) is allowed only to the key-maintenance function; the
functions that select or use keys to encrypt may only ``VerifyMac``. KMS answers a wrong MAC
with ``KMSInvalidMacException``, which is a verdict (False), not an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from pqfile.errors import CustodyError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

ALGORITHM: Final = "HMAC_SHA_256"
_TRANSIENT = {
    "ThrottlingException",
    "KMSInternalException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "ServiceUnavailable",
}


class KmsKeyAttestor:
    """MACs over key identities with one KMS HMAC key."""

    def __init__(self, client: KMSClient, key_id: str) -> None:
        if not key_id:
            raise CustodyError("no key-attestation KMS key configured (PQFILE_ATTESTATION_KEY_ID)")
        self._client = client
        self._key_id = key_id

    def __repr__(self) -> str:
        return f"KmsKeyAttestor(key_id={self._key_id!r})"

    def generate(self, message: bytes) -> bytes:
        try:
            response = self._client.generate_mac(
                KeyId=self._key_id, Message=message, MacAlgorithm=ALGORITHM
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "attest") from None
        return bytes(response["Mac"])

    def verify(self, message: bytes, mac: bytes) -> bool:
        try:
            response = self._client.verify_mac(
                KeyId=self._key_id, Message=message, MacAlgorithm=ALGORITHM, Mac=mac
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "KMSInvalidMacException":
                return False
            raise _translate(exc, "verify the attestation of") from None
        except BotoCoreError as exc:
            raise _translate(exc, "verify the attestation of") from None
        return bool(response.get("MacValid"))


def _translate(exc: Exception, action: str) -> Exception:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        if code in _TRANSIENT:
            return TransientError(f"KMS {action} a key: {code}")
        return CustodyError(f"KMS refused to {action} a key ({code})")
    return TransientError(f"KMS {action} a key: {type(exc).__name__}")
