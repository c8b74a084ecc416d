"""Retrieve: decrypt one document for a direct invocation, audit every attempt.

Delivery (docs/OPERATIONS.md, "Retrieval"):

- documents up to ``inline_limit`` (4 MiB by default) come back inline as base64, which keeps
  the response under Lambda's 6 MB cap;
- larger ones are decrypted straight into a multipart upload under ``retrievals/`` in the
  encrypted bucket (SSE-KMS) and returned as a presigned GET URL valid for minutes; a
  lifecycle rule removes the copies after a day.

Who asks: the audit row's actor is the verified caller when there is one (``caller``, a
principal ARN: the authorization issue provides it); until then the database records the
retrieve role itself, and any name the caller declares (``requested_by`` in the client
context or the payload) is only kept as the detail ``claimed_by``.

No unauthenticated plaintext is ever released: the inline answer is built only after
decrypt_stream returned (every segment and the final one verified), and the multipart
upload is completed only then too; until completion its parts are invisible, and any
failure aborts it. Memory stays bounded by the inline limit plus one part.
"""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pqfile.config import RETRIEVALS_PREFIX
from pqfile.errors import DecryptionError, DocumentNotFoundError, InvalidEventError, PQFileError
from pqfile.ports import AuditOutcome, DocumentRecord, DocumentStatus
from pqfile.usecases.common import HashingWriter, Pipeline
from pqfile.usecases.ingest import CONTENT_TYPE_CONTEXT, OP_DECRYPT


@dataclass(frozen=True)
class RetrieveRequest:
    document_id: str | None
    bucket: str | None
    key: str | None
    #: Who the caller says it is (see identify_actor): a detail, never the actor.
    claimed_by: str | None = None
    request_id: str | None = None
    #: The verified caller (a principal ARN), recorded as the actor; None until verified.
    caller: str | None = None

    @classmethod
    def from_payload(
        cls,
        payload: Mapping[str, Any],
        *,
        claimed_by: str | None = None,
        request_id: str | None = None,
        caller: str | None = None,
    ) -> RetrieveRequest:
        if not isinstance(payload, Mapping):
            raise InvalidEventError("the payload is not a JSON object")
        doc = payload.get("document_id")
        bucket = payload.get("bucket")
        key = payload.get("key")
        if doc is not None:
            if not isinstance(doc, str) or not doc or len(doc) > 128:
                raise InvalidEventError("document_id must be a non-empty string")
            return cls(doc, None, None, claimed_by, request_id, caller)
        if isinstance(bucket, str) and bucket and isinstance(key, str) and key:
            return cls(None, bucket, key, claimed_by, request_id, caller)
        raise InvalidEventError('payload needs "document_id" or "bucket" and "key"')


def identify_actor(
    payload: Mapping[str, Any] | None,
    *,
    client_context: Mapping[str, Any] | None = None,
    cognito_identity_id: str | None = None,
) -> str | None:
    """The name the caller declares, best source first (kept as ``claimed_by``; nothing
    here is verified, so it is never the audit row's actor):

    1. ``requested_by`` in the invocation's client context (``aws lambda invoke
       --client-context``, set by a calling service);
    2. the Cognito identity of the Lambda context, when invoked through one;
    3. ``requested_by`` in the payload;
    4. None: nothing declared.

    Lambda does not pass the IAM principal of a direct invoke to the function; the audit
    row carries the Lambda request id so CloudTrail's Invoke record names the principal.
    """
    if client_context:
        custom = client_context.get("custom")
        if isinstance(custom, Mapping) and isinstance(custom.get("requested_by"), str):
            return _clean_actor(str(custom["requested_by"]))
    if cognito_identity_id:
        return _clean_actor(f"cognito:{cognito_identity_id}")
    if payload and isinstance(payload.get("requested_by"), str) and payload["requested_by"]:
        return _clean_actor(str(payload["requested_by"]))
    return None


def _clean_actor(actor: str) -> str | None:
    return "".join(c for c in actor if c.isprintable())[:256] or None


def retrieve_payload(
    p: Pipeline,
    payload: Any,
    *,
    claimed_by: str | None = None,
    request_id: str | None = None,
    caller: str | None = None,
) -> dict[str, Any]:
    """Parse an invocation payload and retrieve; a malformed payload is refused and audited."""
    try:
        req = RetrieveRequest.from_payload(
            payload, claimed_by=claimed_by, request_id=request_id, caller=caller
        )
    except InvalidEventError as exc:
        p.audit.append(
            operation=OP_DECRYPT,
            outcome=AuditOutcome.REFUSED,
            actor=caller,
            request_id=request_id,
            details=_with_claim({"reason": type(exc).__name__}, claimed_by),
        )
        raise
    return retrieve_document(p, req)


def _with_claim(details: dict[str, Any], claimed_by: str | None) -> dict[str, Any]:
    if claimed_by is not None:
        details["claimed_by"] = claimed_by
    return details


def retrieve_document(p: Pipeline, req: RetrieveRequest) -> dict[str, Any]:
    """Decrypt and deliver one document; raise (after auditing) when refused."""
    record: DocumentRecord | None = None
    try:
        record = _lookup(p, req)
        identity = p.keys.load_decryption_key(record.key_id or "")
        result = _deliver(p, record, identity)
    except PQFileError as exc:
        p.audit.append(
            operation=OP_DECRYPT,
            outcome=AuditOutcome.REFUSED,
            actor=req.caller,
            document_id=record.document_id if record else req.document_id,
            key_id=record.key_id if record else None,
            request_id=req.request_id,
            details=_with_claim(
                {"reason": type(exc).__name__, "requested": _requested(req)}, req.claimed_by
            ),
        )
        raise
    p.audit.append(
        operation=OP_DECRYPT,
        outcome=AuditOutcome.SUCCESS,
        actor=req.caller,
        document_id=record.document_id,
        key_id=record.key_id,
        request_id=req.request_id,
        details=_with_claim(
            {"delivery": result["delivery"], "size": result["size"]}, req.claimed_by
        ),
    )
    return result


def _requested(req: RetrieveRequest) -> dict[str, str | None]:
    if req.document_id:
        return {"document_id": req.document_id}
    return {"bucket": req.bucket, "key": req.key}


def _lookup(p: Pipeline, req: RetrieveRequest) -> DocumentRecord:
    if req.document_id is not None:
        record = p.documents.get(req.document_id)
    else:
        assert req.bucket is not None and req.key is not None
        record = p.documents.find_by_encrypted_object(req.bucket, req.key)
    if record is None or record.status is not DocumentStatus.STORED or not record.encrypted_key:
        raise DocumentNotFoundError("no such document")
    if not record.key_id:
        raise DocumentNotFoundError("the document has no key recorded")
    return record


def _deliver(p: Pipeline, record: DocumentRecord, identity: Any) -> dict[str, Any]:
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
