"""Authenticated ranged retrieval: ``{"document_id", "range": "bytes=A-B"}`` (docs/OPERATIONS.md,
"Retrieval", ranged reads; docs/FORMAT.md §11).

Only the segments that cover the range are read and decrypted (crypto/ranged.py), each
authenticated with its index and last flag; a range that reaches the end decrypts the
package's final segment as final, so a truncated package is refused. S3 moves one ranged
GET for the header (at most ``MAX_HEADER_SIZE`` bytes) and one for the covering segments:
a 1 MiB range of a 1 MiB-segment package reads at most two segments, about 2 MiB.

The retrieve use case (usecases/retrieve.py) calls :func:`deliver_range` for a request with
a range, after the same proof, access rule and attempt row as any retrieve; the proof
covers ``range`` (auth/canonical.py), so a proof for one range does not serve another.
Delivery is the same as a whole document's (usecases/retrieve_plaintext.deliver): inline up
to the inline limit, else a multipart copy under ``retrievals/`` completed only after every
covering segment verified.
"""

from __future__ import annotations

from typing import Any

from pqfile.crypto.envelope import open_header
from pqfile.crypto.kem import SecretKey
from pqfile.crypto.ranged import (
    decrypt_span,
    parse_byte_range,
    plaintext_size_of_body,
    segment_span,
)
from pqfile.errors import DecryptionError
from pqfile.format.header import MAX_HEADER_SIZE, Header, read_header_from
from pqfile.ports import DocumentRecord
from pqfile.usecases.common import HashingWriter, Pipeline
from pqfile.usecases.ingest_steps import CONTENT_TYPE_CONTEXT
from pqfile.usecases.retrieve_plaintext import deliver

__all__ = ["deliver_range"]


def deliver_range(
    p: Pipeline, record: DocumentRecord, identity: SecretKey, range_text: str
) -> dict[str, Any]:
    """Decrypt the bytes ``range_text`` names and deliver them; raises DecryptionError
    (opaque) when anything read fails to verify, InvalidRangeError or
    RangeNotSatisfiableError for the range."""
    bucket = record.encrypted_bucket or p.settings.storage.encrypted_bucket
    key = record.encrypted_key
    assert key is not None
    version = record.encrypted_version_id
    info = p.blobs.stat(bucket, key, version)
    header_src = p.blobs.open_read_range(bucket, key, version, 0, min(MAX_HEADER_SIZE, info.size))
    try:
        header: Header = read_header_from(header_src)[0]
    finally:
        header_src.close()
    _, keys = open_header(header, identity, expected_document_id=record.document_id)
    body_len = info.size - header.size
    if body_len <= 0:
        raise DecryptionError()
    # The size the package's length encodes, never the index's: the last flag checks it.
    size = plaintext_size_of_body(body_len, header.segment_size)
    wanted = parse_byte_range(range_text, size)
    span = segment_span(wanted, header.segment_size)
    content_type = _content_type(header)

    def decrypt_into(sink: HashingWriter) -> None:
        src = p.blobs.open_read_range(
            bucket, key, version, header.size + span.body_offset, span.body_length
        )
        try:
            decrypt_span(src, sink, keys.body_key, header.nonce_prefix, wanted, span)
        finally:
            src.close()

    answer: dict[str, Any] = {
        "document_id": record.document_id,
        "range": wanted.content_range,
        "content_type": content_type,
    }
    return deliver(p, record, wanted.length, answer, decrypt_into)


def _content_type(header: Header) -> str:
    value = header.context.get(CONTENT_TYPE_CONTEXT)
    return value if isinstance(value, str) and value else "application/octet-stream"
