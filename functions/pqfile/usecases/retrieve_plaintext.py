"""Plaintext delivery of a whole document (docs/OPERATIONS.md, "Retrieval"): inline as base64
up to the inline limit, else decrypted straight into a multipart upload under
``retrievals/`` (SSE-KMS) and handed out as a presigned GET. Served only where the
deployment allows plaintext delivery (``retrieve_plaintext_delivery``); sealed delivery
(usecases/retrieve_sealed.py) is the default for readers with a recipient key.

No unauthenticated plaintext is released: the inline answer is built only after
decrypt_stream returned, and the multipart upload is completed only then too.
"""

from __future__ import annotations

import base64
import io
import uuid
from typing import Any

from pqfile.config import RETRIEVALS_PREFIX
from pqfile.errors import DecryptionError
from pqfile.ports import DocumentRecord
from pqfile.usecases.common import HashingWriter, Pipeline
from pqfile.usecases.ingest import CONTENT_TYPE_CONTEXT

__all__ = ["deliver_plaintext"]


def deliver_plaintext(p: Pipeline, record: DocumentRecord, identity: Any) -> dict[str, Any]:
    s = p.settings.retrieve
    bucket = record.encrypted_bucket or p.settings.storage.encrypted_bucket
    assert record.encrypted_key is not None
    size = record.plaintext_size
    src = p.blobs.open_read(bucket, record.encrypted_key, record.encrypted_version_id)
    try:
        if size is not None and size <= s.inline_limit:
            buffer = io.BytesIO()
            sink = HashingWriter(buffer, limit=s.inline_limit)
            content_type = _decrypt(p, src, sink, identity, record.document_id)
            return {
                "document_id": record.document_id,
                "delivery": "inline",
                "size": sink.count,
                "content_type": content_type,
                "sha256": sink.sha256.hexdigest(),
                "content_base64": base64.b64encode(buffer.getvalue()).decode("ascii"),
            }
        key = f"{RETRIEVALS_PREFIX}{record.document_id}/{uuid.uuid4().hex}"
        writer = p.blobs.open_write(
            bucket,
            key,
            content_type="application/octet-stream",
            kms_key_id=s.retrievals_kms_key_id or "",
        )
        try:
            sink = HashingWriter(writer)
            content_type = _decrypt(p, src, sink, identity, record.document_id)
            copy = writer.complete()
        except BaseException:
            writer.abort()
            raise
        url = p.blobs.presign_get(bucket, key, copy.version_id, s.presign_seconds)
        return {
            "document_id": record.document_id,
            "delivery": "url",
            "size": sink.count,
            "content_type": content_type,
            "sha256": sink.sha256.hexdigest(),
            "url": url,
            "expires_in": s.presign_seconds,
            "bucket": bucket,
            "key": key,
        }
    finally:
        src.close()


def _decrypt(p: Pipeline, src: Any, sink: HashingWriter, identity: Any, document_id: str) -> str:
    """Decrypt into ``sink``; return the content type the package's context records."""
    try:
        result = p.cipher.decrypt_stream(src, sink, identity, document_id=document_id)
    except OverflowError:
        # More plaintext than the index recorded: treat as not authentic.
        raise DecryptionError() from None
    header = getattr(result, "header", None)
    context = getattr(header, "context", None)
    if isinstance(context, dict):
        content_type = context.get(CONTENT_TYPE_CONTEXT)
        if isinstance(content_type, str) and content_type:
            return content_type
    return "application/octet-stream"
