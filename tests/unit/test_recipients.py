"""The checks a recipient key passes before it reaches the database (pqfile.usecases.
recipients; docs/KEYS.md, "Recipient keys"): one exact principal ARN, a PEM public key of a
supported suite, at most 4 KiB, refused with one line that never echoes the input."""

from __future__ import annotations

import hashlib

import pytest

from pqfile.crypto.kem import Suite, generate
from pqfile.crypto.keyfiles import public_key_to_pem, secret_key_to_pem
from pqfile.errors import KeyFormatError
from pqfile.usecases.recipients import (
    MAX_RECIPIENT_PEM,
    RecipientPrincipalError,
    exact_principal,
    fingerprint,
    recipient_key_from_pem,
)

ARN = "arn:aws:iam::123456789012:user/alice"


@pytest.mark.parametrize("suite", list(Suite))
def test_every_suite_reads_back_with_its_fingerprint(suite: Suite) -> None:
    key = generate(suite).public_key()
    pem = public_key_to_pem(key)
    assert len(pem) <= MAX_RECIPIENT_PEM
    for form in (pem, pem.decode()):
        assert recipient_key_from_pem(form) == key
    assert fingerprint(key) == hashlib.sha256(key.raw).hexdigest()


@pytest.mark.parametrize(
    "principal",
    [ARN, "arn:aws:iam::123456789012:role/reader", "arn:aws:sts::123456789012:assumed-role/r/s",
     "arn:aws-us-gov:iam::123456789012:root"],
)  # fmt: skip
def test_exact_principals_pass(principal: str) -> None:
    assert exact_principal(principal) == principal


@pytest.mark.parametrize(
    ("principal", "message"),
    [("arn:aws:iam::123456789012:user/*", "not a pattern"),
     ("arn:aws:iam::123456789012:role/team-*", "not a pattern"),
     ("alice", "principal ARN"), ("arn:aws:iam::12345:user/a", "principal ARN"),
     (ARN + "\n", "principal ARN"), ("arn:aws:s3:::bucket", "principal ARN"),
     (ARN + "x" * 1000, "principal ARN")],
)  # fmt: skip
def test_patterns_and_malformed_principals_are_refused(principal: str, message: str) -> None:
    with pytest.raises(RecipientPrincipalError, match=message) as info:
        exact_principal(principal)
    assert principal not in str(info.value)


def test_bad_key_text_is_one_line_and_never_echoed() -> None:
    good = public_key_to_pem(generate().public_key())
    cases = [
        b"A" * (MAX_RECIPIENT_PEM + 1),
        secret_key_to_pem(generate()),
        good.replace(b"A", b"B", 40),
        good[:200],
        b"-----BEGIN PUBLIC KEY-----\n\x1b[31mred\n-----END PUBLIC KEY-----\n",
        b"",
    ]
    for data in cases:
        with pytest.raises(KeyFormatError) as info:
            recipient_key_from_pem(data)
        message = str(info.value)
        assert "\n" not in message and "\x1b" not in message and len(message) < 200
