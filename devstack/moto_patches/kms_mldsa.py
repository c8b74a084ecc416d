"""KMS: ML-DSA signing keys (`ML_DSA_44`, `ML_DSA_65`, `ML_DSA_87`), as AWS KMS offers them.

moto 5.2.5 knows RSA, ECC and SM2 signing keys only: CreateKey refuses an `ML_DSA_*` key
spec. This patch lets CreateKey (KeyUsage `SIGN_VERIFY`) make one, backed by pyca/
cryptography's `mldsa` keys; DescribeKey and GetPublicKey report the spec and the signing
algorithm `ML_DSA_SHAKE_256`; GetPublicKey answers the SubjectPublicKeyInfo DER; Sign and
Verify take MessageType `RAW` (the message is signed as is, with an empty context, at most
4,096 bytes as KMS allows). `DIGEST` is refused as KMS does for ML-DSA, and `EXTERNAL_MU`
(which KMS accepts) is refused here with a message saying the emulator lacks it. The
digest-signing function's emulator tests use it so that CI exercises the post-quantum path
end to end.

Upstream-worthy: yes. A plain gap in moto's KMS (AWS added ML-DSA keys in 2025).
"""

from __future__ import annotations

from typing import Any

from devstack.moto_patches._internals import Runtime, checking, parameters

#: The ML-DSA key specs KMS offers, and pyca's private key class for each.
ML_DSA_KEY_SPECS = ("ML_DSA_44", "ML_DSA_65", "ML_DSA_87")
ML_DSA_SIGNING_ALGORITHM = "ML_DSA_SHAKE_256"
#: KMS's limit for a RAW message to Sign or Verify.
MAX_RAW_MESSAGE = 4096


def check() -> None:
    with checking(__name__) as expect:
        from moto.kms import models as kms_models
        from moto.kms.responses import KmsResponse
        from moto.kms.utils import AbstractPrivateKey, KeySpec

        expect(
            parameters(kms_models.KmsBackend.create_key)
            == [
                "self",
                "policy",
                "key_usage",
                "key_spec",
                "description",
                "tags",
                "multi_region",
                "origin",
            ],
            "moto.kms KmsBackend.create_key's parameters changed",
        )
        expect(
            isinstance(kms_models.Key.__dict__.get("signing_algorithms"), property),
            "moto.kms Key.signing_algorithms is no longer a property",
        )
        expect(
            parameters(KmsResponse.sign) == ["self"] and parameters(KmsResponse.verify) == ["self"],
            "moto.kms KmsResponse.sign / verify changed",
        )
        expect(
            parameters(AbstractPrivateKey.sign) == ["self", "message", "signing_algorithm"]
            and parameters(AbstractPrivateKey.verify)
            == ["self", "message", "signature", "signing_algorithm"],
            "moto.kms AbstractPrivateKey.sign / verify changed",
        )
        expect(
            not any(spec.value.startswith("ML_DSA") for spec in KeySpec),
            "moto.kms now knows ML-DSA key specs: drop devstack.moto_patches.kms_mldsa",
        )


def _private_key(spec: str) -> Any:
    """A moto private-key object (sign/verify/public_key) over a fresh pyca ML-DSA key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import mldsa
    from moto.kms.utils import AbstractPrivateKey

    generators = {
        "ML_DSA_44": mldsa.MLDSA44PrivateKey.generate,
        "ML_DSA_65": mldsa.MLDSA65PrivateKey.generate,
        "ML_DSA_87": mldsa.MLDSA87PrivateKey.generate,
    }

    class MlDsaPrivateKey(AbstractPrivateKey):
        def __init__(self) -> None:
            self.key_spec = spec
            self.private_key = generators[spec]()

        def sign(self, message: bytes, signing_algorithm: str) -> bytes:
            return bytes(self.private_key.sign(message))

        def verify(self, message: bytes, signature: bytes, signing_algorithm: str) -> bool:
            try:
                self.private_key.public_key().verify(signature, message)
            except (InvalidSignature, ValueError):
                return False
            return True

        def public_key(self) -> bytes:
            return bytes(
                self.private_key.public_key().public_bytes(
                    encoding=serialization.Encoding.DER,
                    format=serialization.PublicFormat.SubjectPublicKeyInfo,
                )
            )

    return MlDsaPrivateKey()


def apply(runtime: Runtime) -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.kms import models as kms_models
    from moto.kms.exceptions import ValidationException
    from moto.kms.responses import KmsResponse

    original_create = kms_models.KmsBackend.create_key
    original_algorithms = kms_models.Key.__dict__["signing_algorithms"]
    original_sign = KmsResponse.sign
    original_verify = KmsResponse.verify

    def create_key(
        self: Any,
        policy: str | None,
        key_usage: str,
        key_spec: str,
        description: str,
        tags: Any,
        multi_region: bool = False,
        origin: str = "AWS_KMS",
    ) -> Any:
        if key_spec not in ML_DSA_KEY_SPECS:
            return original_create(
                self, policy, key_usage, key_spec, description, tags, multi_region, origin
            )
        if key_usage != "SIGN_VERIFY":
            raise ValidationException(
                f"KeyUsage {key_usage or 'ENCRYPT_DECRYPT'} is not compatible with "
                f"KeySpec {key_spec}: ML-DSA keys are SIGN_VERIFY only"
            )
        # moto validates the spec against its own list: create an ECC key, then give it an
        # ML-DSA spec and key pair (the discarded P-384 key costs a millisecond).
        key = original_create(
            self, policy, key_usage, "ECC_NIST_P384", description, tags, multi_region, origin
        )
        key.key_spec = key_spec
        key.private_key = _private_key(key_spec)
        return key

    def signing_algorithms(self: Any) -> Any:
        if self.key_spec in ML_DSA_KEY_SPECS and self.key_usage == "SIGN_VERIFY":
            return [ML_DSA_SIGNING_ALGORITHM]
        return original_algorithms.fget(self)

    def ml_dsa_key(response: Any) -> Any:
        """The ML-DSA key the request names, or None (moto's own code answers the rest)."""
        key_id = response._get_param("KeyId")
        if not key_id:
            return None
        try:
            key = response.kms_backend.describe_key(key_id)
        except (KeyError, AttributeError, JsonRESTError):  # unknown: moto answers NotFound
            return None
        return key if key.key_spec in ML_DSA_KEY_SPECS else None

    def checked(response: Any) -> None:
        message_type = response._get_param("MessageType") or "RAW"
        message = response._get_param("Message") or b""
        if message_type == "EXTERNAL_MU":
            raise ValidationException(
                "MessageType EXTERNAL_MU is not supported by the emulator's ML-DSA keys "
                "(devstack.moto_patches.kms_mldsa): use RAW"
            )
        if message_type != "RAW":
            raise ValidationException(
                f"MessageType {message_type} is not supported for ML-DSA keys (use RAW)"
            )
        if len(message) > MAX_RAW_MESSAGE:
            raise ValidationException(
                "1 validation error detected: Value at 'Message' failed to satisfy "
                f"constraint: Member must have length less than or equal to {MAX_RAW_MESSAGE}"
            )

    def sign(self: Any) -> str:
        if ml_dsa_key(self) is not None:
            checked(self)
        result: str = original_sign(self)
        return result

    def verify(self: Any) -> str:
        if ml_dsa_key(self) is not None:
            checked(self)
        result: str = original_verify(self)
        return result

    kms_models.KmsBackend.create_key = create_key  # type: ignore[method-assign]
    kms_models.Key.signing_algorithms = property(signing_algorithms)  # type: ignore[assignment,method-assign]
    KmsResponse.sign = sign  # type: ignore[method-assign]
    KmsResponse.verify = verify  # type: ignore[method-assign]
