"""The emulator's ML-DSA KMS keys (devstack/moto_patches/kms_mldsa.py), through boto3."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from devstack.emulator import Emulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

_PUBLIC_TYPES = {
    "ML_DSA_44": mldsa.MLDSA44PublicKey,
    "ML_DSA_65": mldsa.MLDSA65PublicKey,
    "ML_DSA_87": mldsa.MLDSA87PublicKey,
}


def _signing_key(emulator: Emulator, spec: str) -> str:
    created = emulator.client("kms").create_key(KeyUsage="SIGN_VERIFY", KeySpec=spec)
    return str(created["KeyMetadata"]["KeyId"])


@pytest.mark.parametrize("spec", sorted(_PUBLIC_TYPES))
def test_an_ml_dsa_signature_verifies_with_pyca_against_the_public_key(
    aws_emulator: Emulator, spec: str
) -> None:
    kms = aws_emulator.client("kms")
    key_id = _signing_key(aws_emulator, spec)
    described = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert described["KeySpec"] == spec
    assert described["SigningAlgorithms"] == ["ML_DSA_SHAKE_256"]

    public = kms.get_public_key(KeyId=key_id)
    assert public["SigningAlgorithms"] == ["ML_DSA_SHAKE_256"]
    public_key = load_der_public_key(public["PublicKey"])  # SubjectPublicKeyInfo DER
    assert isinstance(public_key, _PUBLIC_TYPES[spec])

    message = bytes(range(256)) * 16  # 4,096 bytes, not UTF-8: KMS's RAW maximum
    signed = kms.sign(
        KeyId=key_id, Message=message, MessageType="RAW", SigningAlgorithm="ML_DSA_SHAKE_256"
    )
    public_key.verify(signed["Signature"], message)  # message as is, empty context
    with pytest.raises(InvalidSignature):
        public_key.verify(signed["Signature"], message[:-1] + b"\x00")

    verified = kms.verify(
        KeyId=key_id,
        Message=message,
        MessageType="RAW",
        Signature=signed["Signature"],
        SigningAlgorithm="ML_DSA_SHAKE_256",
    )
    assert verified["SignatureValid"] is True


def test_kms_verify_refuses_a_signature_over_another_message(aws_emulator: Emulator) -> None:
    kms = aws_emulator.client("kms")
    key_id = _signing_key(aws_emulator, "ML_DSA_65")
    signature = kms.sign(
        KeyId=key_id, Message=b"tree head", MessageType="RAW", SigningAlgorithm="ML_DSA_SHAKE_256"
    )["Signature"]
    answer = kms.verify(
        KeyId=key_id,
        Message=b"tree heaD",
        MessageType="RAW",
        Signature=signature,
        SigningAlgorithm="ML_DSA_SHAKE_256",
    )
    assert answer["SignatureValid"] is False


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"Message": b"x" * 4097, "MessageType": "RAW"}, "less than or equal to 4096"),
        ({"Message": b"x" * 48, "MessageType": "DIGEST"}, "DIGEST is not supported"),
        ({"Message": b"x" * 64, "MessageType": "EXTERNAL_MU"}, "EXTERNAL_MU"),
        (
            {"Message": b"x", "MessageType": "RAW", "SigningAlgorithm": "ECDSA_SHA_384"},
            "SigningAlgorithm",
        ),
    ],
    ids=["raw-over-4096", "digest", "external-mu", "ecdsa-algorithm"],
)
def test_sign_refuses_what_kms_refuses_for_ml_dsa(
    aws_emulator: Emulator, arguments: dict[str, object], expected: str
) -> None:
    key_id = _signing_key(aws_emulator, "ML_DSA_65")
    request = {"SigningAlgorithm": "ML_DSA_SHAKE_256", **arguments}
    with pytest.raises(ClientError) as refused:
        aws_emulator.client("kms").sign(KeyId=key_id, **request)  # type: ignore[arg-type]
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert expected in refused.value.response["Error"]["Message"]


def test_an_ml_dsa_key_is_for_signing_only(aws_emulator: Emulator) -> None:
    with pytest.raises(ClientError) as refused:
        aws_emulator.client("kms").create_key(KeyUsage="ENCRYPT_DECRYPT", KeySpec="ML_DSA_65")
    assert "SIGN_VERIFY" in refused.value.response["Error"]["Message"]


def test_ecc_signing_keys_are_unchanged(aws_emulator: Emulator) -> None:
    kms = aws_emulator.client("kms")
    key_id = _signing_key(aws_emulator, "ECC_NIST_P384")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["SigningAlgorithms"] == ["ECDSA_SHA_384"]
    signed = kms.sign(
        KeyId=key_id, Message=b"head", MessageType="RAW", SigningAlgorithm="ECDSA_SHA_384"
    )
    assert signed["SigningAlgorithm"] == "ECDSA_SHA_384"


def test_sign_with_an_unknown_key_is_still_not_found(aws_emulator: Emulator) -> None:
    with pytest.raises(ClientError) as refused:
        aws_emulator.client("kms").sign(
            KeyId="alias/no-such-key",
            Message=b"x",
            MessageType="RAW",
            SigningAlgorithm="ML_DSA_SHAKE_256",
        )
    assert refused.value.response["Error"]["Code"] == "NotFoundException"
