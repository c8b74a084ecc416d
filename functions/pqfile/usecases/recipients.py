"""Readers' recipient keys (issue 18; docs/KEYS.md, "Recipient keys"): the checks both
paths make before a key reaches the database, the CLI's direct path and the admin
function's ``access.recipient_add``. The database checks the same again
(sql/migrations/0020, ``recipient_register``).

A recipient key belongs to one exact principal ARN (never a pattern: a key is one reader's),
and is a PEM SubjectPublicKeyInfo of a suite the format supports (FORMAT.md §12), checked by
crypto.keyfiles / crypto.kem: the OID, the exact length, the FIPS 203 modulus check and,
for X-Wing, a non-low-order X25519 half.
"""

from __future__ import annotations

import hashlib
import re

from pqfile.crypto.kem import PublicKey
from pqfile.crypto.keyfiles import public_key_from_pem
from pqfile.errors import KeyFormatError, PQFileError

#: The PEM text of a public key, as the admin function accepts it (an ML-KEM-1024 key, the
#: largest, is about 2.2 KB of PEM).
MAX_RECIPIENT_PEM = 4096
MAX_PRINCIPAL = 1000
#: 0020's CHECK on ``recipient_keys.principal``: an IAM/STS ARN, no ``*``.
_EXACT_ARN = re.compile(r"arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[A-Za-z0-9+=,.@_/:-]+")


class RecipientPrincipalError(PQFileError):
    """A recipient key was to be registered for a pattern or a malformed principal."""


def exact_principal(principal: str) -> str:
    """The principal, when it is one exact IAM/STS ARN; RecipientPrincipalError otherwise."""
    if "*" in principal:
        raise RecipientPrincipalError(
            "a recipient key belongs to one exact principal ARN, not a pattern (no *)"
        )
    if len(principal) > MAX_PRINCIPAL or not _EXACT_ARN.fullmatch(principal):
        raise RecipientPrincipalError(
            "a recipient key needs a principal ARN (arn:aws:iam::ACCOUNT:user/NAME, ...:role/NAME)"
        )
    return principal


def recipient_key_from_pem(pem: str | bytes) -> PublicKey:
    """A PEM public key (at most MAX_RECIPIENT_PEM bytes), fully checked; KeyFormatError
    (one line, never echoing the input) otherwise."""
    data = pem.encode("utf-8", "replace") if isinstance(pem, str) else bytes(pem)
    if len(data) > MAX_RECIPIENT_PEM:
        raise KeyFormatError(f"a recipient public key is at most {MAX_RECIPIENT_PEM} bytes of PEM")
    return public_key_from_pem(data)


def fingerprint(key: PublicKey) -> str:
    """The recipient key id the database and the audit record: SHA-256 of the raw key, hex
    (0020's ``fingerprint`` column)."""
    return hashlib.sha256(key.raw).hexdigest()
