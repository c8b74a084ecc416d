"""KMS adapter error translation (botocore Stubber): throttling is transient, refusals are
custody errors, and neither message carries the seed."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from pqfile.adapters.kms import KmsSeedProtector
from pqfile.errors import CustodyError, TransientError

SEED = bytes(range(32))


def _protector() -> tuple[KmsSeedProtector, Stubber]:
    client = boto3.client(
        "kms",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return KmsSeedProtector(client, "alias/pqfile-seeds"), Stubber(client)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("ThrottlingException", TransientError),
        ("KMSInternalException", TransientError),
        ("AccessDeniedException", CustodyError),
        ("DisabledException", CustodyError),
        ("InvalidCiphertextException", CustodyError),
    ],
)
def test_errors_are_translated(code: str, error: type[Exception]) -> None:
    protector, stub = _protector()
    context = {"pqfile:key-id": "ab" * 16}
    with stub:
        stub.add_client_error("encrypt", service_error_code=code)
        with pytest.raises(error) as wrap_info:
            protector.wrap(SEED, context)
        stub.add_client_error("decrypt", service_error_code=code)
        with pytest.raises(error) as unwrap_info:
            protector.unwrap(b"wrapped", context)
    for info in (wrap_info, unwrap_info):
        assert code in str(info.value)
        assert SEED.hex() not in str(info.value) and repr(SEED) not in str(info.value)


def test_wrap_and_unwrap_send_the_context_and_key() -> None:
    protector, stub = _protector()
    context = {"pqfile:key-id": "ab" * 16, "pqfile:suite": "xwing"}
    with stub:
        stub.add_response(
            "encrypt",
            {"CiphertextBlob": b"blob", "KeyId": "arn:aws:kms:us-east-1:1:key/k"},
            {"KeyId": "alias/pqfile-seeds", "Plaintext": SEED, "EncryptionContext": context},
        )
        stub.add_response(
            "decrypt",
            {"Plaintext": SEED, "KeyId": "arn:aws:kms:us-east-1:1:key/k"},
            {
                "CiphertextBlob": b"blob",
                "EncryptionContext": context,
                "KeyId": "alias/pqfile-seeds",
            },
        )
        assert protector.wrap(SEED, context) == (b"blob", "arn:aws:kms:us-east-1:1:key/k")
        assert protector.unwrap(b"blob", context) == SEED
        stub.assert_no_pending_responses()
    with pytest.raises(CustodyError):
        KmsSeedProtector(protector._client, "")
