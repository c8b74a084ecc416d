"""Sealed delivery: the document reaches the reader still encrypted, to the reader's own key
(docs/OPERATIONS.md, "Retrieval", sealed delivery; issue 18).

The function reads only the stored package's header (one ranged GET of at most
``MAX_HEADER_SIZE``), verifies it with the document's key and re-wraps the data key to the
reader's registered public key (docs/FORMAT.md §8: a new stanza and MAC). The body is never
read nor decrypted and nothing is written to S3: the answer carries the new header and a
presigned GET of the stored package's exact version, with the offset where its body starts.
``new header || body`` is a package only the reader's secret key opens.

What the function still sees is the data key, in memory, for the rewrap
(docs/THREAT-MODEL.md, "Sealed delivery").

The retrieve use case (usecases/retrieve.py) calls :func:`deliver_sealed` after the same
proof, access rule and attempt row as any retrieve, with the key
``RecipientDirectory.recipient_for`` returned for this principal and document.
"""

from __future__ import annotations

import base64
from typing import Any

from pqfile.config import RetrieveSettings
from pqfile.crypto.kem import SecretKey, Suite, public_key_from_bytes
from pqfile.crypto.keyschedule import Kdf
from pqfile.crypto.ranged import plaintext_size_of_body
from pqfile.crypto.reencrypt import check_rewrap, rewrap_header
from pqfile.errors import (
    DecryptionError,
    DeliveryRefusedError,
    DowngradeError,
    InvalidEventError,
    ReencryptionRequiredError,
)
from pqfile.format.header import MAX_HEADER_SIZE, Header, document_id_bytes, parse_header
from pqfile.ports import DocumentRecord, RecipientDirectory, RecipientKey
from pqfile.usecases.common import Pipeline
from pqfile.usecases.ingest_steps import CONTENT_TYPE_CONTEXT

__all__ = [
    "DELIVERIES",
    "check_delivery",
    "choose_recipient",
    "deliver_sealed",
    "refusal_reason",
    "sealed_audit_details",
]

#: The values of the request field ``delivery``.
DELIVERIES = ("sealed", "inline", "url")
NO_RECIPIENT_KEY = (
    "no recipient key is registered for you; register one: "
    "pqfile access recipient add --principal ARN PUB.pem"
)
PLAINTEXT_DISABLED = (
    "plaintext delivery is disabled in this deployment; retrieve sealed to your recipient "
    "key (pqfile access recipient add ...)"
)


def check_delivery(delivery: object, range_text: object) -> str | None:
    """The request's ``delivery`` (None: not asked), checked before the proof."""
    if delivery is None:
        return None
    if delivery not in DELIVERIES:
        raise InvalidEventError('delivery must be "sealed", "inline" or "url"')
    if delivery == "sealed" and range_text is not None:
        raise InvalidEventError(
            'a sealed delivery is the whole package: ask a range without "delivery": "sealed"'
        )
    return str(delivery)


def choose_recipient(
    recipients: RecipientDirectory | None,
    settings: RetrieveSettings,
    principal: str,
    document_id: str,
    *,
    delivery: str | None,
    ranged: bool,
) -> RecipientKey | None:
    """The reader's key for a sealed delivery, or None for a plaintext one; raises
    DeliveryRefusedError (``no_recipient_key``, ``plaintext_delivery_disabled``) when the
    request can be served neither way (the table in docs/OPERATIONS.md, "Retrieval")."""
    if delivery == "sealed" or (delivery is None and not ranged):
        reader = recipients.recipient_for(principal, document_id) if recipients else None
        if reader is not None:
            return reader
        if delivery == "sealed" or not settings.plaintext_delivery:
            raise DeliveryRefusedError("no_recipient_key", NO_RECIPIENT_KEY)
        return None
    if not settings.plaintext_delivery:
        raise DeliveryRefusedError("plaintext_delivery_disabled", PLAINTEXT_DISABLED)
    return None


def refusal_reason(exc: Exception) -> str:
    """The audit's ``details.reason`` for a refusal after the attempt row."""
    if isinstance(exc, DowngradeError):
        return "downgrade"
    if isinstance(exc, ReencryptionRequiredError):
        return "suite_mismatch"
    return type(exc).__name__


def deliver_sealed(
    p: Pipeline, record: DocumentRecord, identity: SecretKey, reader: RecipientKey
) -> dict[str, Any]:
    """The sealed answer for ``reader``: the re-wrapped header and where the body is.

    Raises DowngradeError (the reader's suite ranks below the package's and the key was not
    registered with ``allow_weaker``), ReencryptionRequiredError (an HKDF-SHA256 package to
    an mlkem1024 key), KeyFormatError (the registered key fails the public key checks), or
    the opaque DecryptionError / WrongKeyError when the stored header does not verify.
    """
    bucket = record.encrypted_bucket or p.settings.storage.encrypted_bucket
    key = record.encrypted_key
    assert key is not None
    version = record.encrypted_version_id
    info = p.blobs.stat(bucket, key, version)
    raw = _read_head(p, bucket, key, version, min(MAX_HEADER_SIZE, info.size))
    header = parse_header(raw)
    if header.document_id != document_id_bytes(record.document_id):
        raise DecryptionError()  # a package filed under another document: not authentic
    body_length = info.size - header.size
    if body_length <= 0:
        raise DecryptionError()
    suite = Suite(reader.suite)
    _check_suites(header, suite, allow_weaker=reader.allow_weaker)
    public = public_key_from_bytes(suite, reader.public_key)
    new_header = rewrap_header(
        raw[: header.size], identity, public, allow_downgrade=reader.allow_weaker
    )
    seconds = p.settings.retrieve.sealed_presign_seconds
    return {
        "document_id": record.document_id,
        "delivery": "sealed",
        # The index's size; rows without one: what the body's length encodes (FORMAT.md §6).
        "size": record.plaintext_size
        if record.plaintext_size is not None
        else plaintext_size_of_body(body_length, header.segment_size),
        "content_type": _content_type(header),
        "recipient": {"fingerprint": reader.fingerprint, "suite": suite.value},
        "header_base64": base64.b64encode(new_header).decode("ascii"),
        "body": {
            "url": p.blobs.presign_get(bucket, key, version, seconds),
            "offset": header.size,
            "length": body_length,
            "expires_in": seconds,
        },
    }


def sealed_audit_details(reader: RecipientKey) -> dict[str, Any]:
    """What the success row adds about the recipient (never key material)."""
    return {
        "recipient_id": reader.recipient_id,
        "recipient_fingerprint": reader.fingerprint,
        "recipient_suite": reader.suite,
    }


def _read_head(p: Pipeline, bucket: str, key: str, version: str | None, length: int) -> bytes:
    src = p.blobs.open_read_range(bucket, key, version, 0, length)
    try:
        return bytes(src.read())
    finally:
        src.close()


def _check_suites(header: Header, suite: Suite, *, allow_weaker: bool) -> None:
    """FORMAT.md §8's rules, with messages that tell a reader what to do."""
    try:
        check_rewrap(header, suite, allow_downgrade=allow_weaker)
    except ReencryptionRequiredError:
        raise ReencryptionRequiredError(
            f"your recipient key is {suite.value}, which needs {Kdf.HKDF_SHA384.label}; this "
            f"document is a {header.kdf.label} {header.suite.value} package, which a rewrap "
            "cannot move there: register an xwing key, or have the document re-encrypted"
        ) from None
    except DowngradeError:
        raise DowngradeError(
            header.suite.value,
            suite.value,
            f"this document is stored under {header.suite.value}; your recipient key is "
            f"{suite.value}, a weaker suite: register a {header.suite.value} key, or ask an "
            "operator to register yours with --allow-weaker-suite",
        ) from None


def _content_type(header: Header) -> str:
    value = header.context.get(CONTENT_TYPE_CONTEXT)
    return value if isinstance(value, str) and value else "application/octet-stream"
