"""Retrieve: decrypt one document for a direct invocation, audit every attempt.

What: a document id; a ``bucket`` and ``key`` naming the encrypted package
(``encrypted/<id>.pqf``); or a ``source`` object ``{"bucket", "key", "version_id"?}`` naming
the upload it was ingested from (``uploads/<tenant>/...``: that version's document, or
without ``version_id`` the newest stored document for that key).

Delivery (docs/OPERATIONS.md, "Retrieval"): ``sealed`` (usecases/retrieve_sealed.py: the
header re-wrapped to the reader's registered key, the body by a presigned GET, never
decrypted) by default when the caller has a recipient key; else, if the deployment allows
plaintext delivery:

- documents up to ``inline_limit`` (4 MiB by default) come back inline as base64, which keeps
  the response under Lambda's 6 MB cap;
- larger ones are decrypted straight into a multipart upload under ``retrievals/`` in the
  encrypted bucket (SSE-KMS) and returned as a presigned GET URL valid for minutes; a
  lifecycle rule removes the copies after a day.

Who asks: the principal STS vouches for through the payload's ``identity_proof``
(pqfile.auth; docs/CONTRACTS.md, "Caller identity proofs"), verified before anything is
read; it is the audit row's actor. Any name the caller declares (``requested_by`` in the
client context or the payload) is only kept as the detail ``claimed_by``. What they may
read: deny by default, an access rule for the document or its tenant (sql/migrations/0011);
"no such document" and "not allowed" give the caller the same answer, the audit's
``details.reason`` (``not_found``, ``not_allowed``) tells them apart. An ``attempt`` row with
the verified actor is committed before any decryption, the outcome row after.

No unauthenticated plaintext is ever released: the inline answer is built only after
decrypt_stream returned (every segment and the final one verified), and the multipart
upload is completed only then too; until completion its parts are invisible, and any
failure aborts it. Memory stays bounded by the inline limit plus one part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pqfile.auth import (
    PROOF_FIELD,
    RETRIEVE_FIELDS,
    IdentityProofError,
    ProofRefusal,
    retrieve_request_sha256,
)
from pqfile.crypto.ranged import check_range_text
from pqfile.errors import (
    DeliveryRefusedError,
    DocumentNotFoundError,
    InvalidEventError,
    PQFileError,
    TransientError,
)
from pqfile.ports import (
    AccessOperation,
    AccessPolicy,
    AuditOutcome,
    CallerIdentityVerifier,
    DocumentRecord,
    DocumentStatus,
    RecipientDirectory,
    RecipientKey,
)
from pqfile.usecases.common import Pipeline
from pqfile.usecases.ingest import OP_DECRYPT
from pqfile.usecases.retrieve_plaintext import deliver_plaintext
from pqfile.usecases.retrieve_range import deliver_range
from pqfile.usecases.retrieve_sealed import (
    check_delivery,
    choose_recipient,
    deliver_sealed,
    refusal_reason,
    sealed_audit_details,
)

#: Every top-level payload field retrieve understands (the canonical request's fields, the
#: proof, a declared name); anything else is refused.
PAYLOAD_FIELDS = frozenset((*RETRIEVE_FIELDS, PROOF_FIELD, "requested_by"))
#: Caps of the fields that reach the database and the audit (docs/OPERATIONS.md).
MAX_DOCUMENT_ID = 128
MAX_BUCKET = 63
MAX_KEY = 1024
MAX_CLAIM = 256
MAX_VERSION_ID = 1024
#: The fields of ``source`` (the upload's name); anything else in it is refused.
SOURCE_FIELDS = frozenset(("bucket", "key", "version_id"))
#: The one answer for "no such document" and "not allowed": no existence oracle.
NOT_FOUND_MESSAGE = "no such document"


@dataclass(frozen=True)
class Retrieval:
    """What the retrieve function needs beyond the pipeline: who is asking (verified) and
    whether they may (the access rules); built once per process by pqfile.wiring."""

    pipeline: Pipeline
    access: AccessPolicy
    identity: CallerIdentityVerifier
    #: Readers' registered keys (sealed delivery); None: nobody has one.
    recipients: RecipientDirectory | None = None


@dataclass(frozen=True)
class UploadName:
    """The ``source`` of a retrieve request: where the document was uploaded."""

    bucket: str
    key: str
    version_id: str | None = None

    @classmethod
    def from_payload(cls, value: object) -> UploadName:
        """Validate ``source`` (InvalidEventError naming the field and its cap, never the
        value)."""
        if not isinstance(value, Mapping):
            raise InvalidEventError('source must be an object {"bucket", "key", "version_id"?}')
        unknown = sorted(str(name)[:64] for name in value if name not in SOURCE_FIELDS)
        if unknown:
            raise InvalidEventError(f"unknown source field(s): {', '.join(unknown[:5])}")
        bucket, key, version = value.get("bucket"), value.get("key"), value.get("version_id")
        _check_text("source.bucket", bucket, MAX_BUCKET)
        _check_text("source.key", key, MAX_KEY)
        if version is not None:
            _check_text("source.version_id", version, MAX_VERSION_ID)
        assert isinstance(bucket, str) and isinstance(key, str)
        return cls(bucket, key, version if isinstance(version, str) else None)

    def to_dict(self) -> dict[str, str | None]:
        return {"bucket": self.bucket, "key": self.key, "version_id": self.version_id}


@dataclass(frozen=True)
class RetrieveRequest:
    document_id: str | None
    bucket: str | None
    key: str | None
    #: Who the caller says it is (see claimed_name): a detail, never the actor.
    claimed_by: str | None = None
    request_id: str | None = None
    #: The verified caller (a principal ARN), recorded as the actor.
    caller: str | None = None
    #: What the audit keeps about the verified caller (VerifiedCaller.audit_details()).
    caller_details: Mapping[str, str] | None = None
    #: The upload's name (``source``), when the request names the document by it.
    source: UploadName | None = None
    #: One RFC 9110 byte range (``bytes=A-B``, ``bytes=A-``, ``bytes=-N``): only those
    #: bytes are decrypted and delivered (usecases/retrieve_range.py); None: the document.
    range: str | None = None
    #: ``delivery`` as asked ("sealed", "inline", "url"); None: the default.
    delivery: str | None = None

    @classmethod
    def from_payload(
        cls,
        payload: Mapping[str, Any],
        *,
        claimed_by: str | None = None,
        request_id: str | None = None,
        caller: str | None = None,
        caller_details: Mapping[str, str] | None = None,
    ) -> RetrieveRequest:
        """Validate and cap the fields that name the document (InvalidEventError naming the
        field and its cap, never echoing the value)."""
        if not isinstance(payload, Mapping):
            raise InvalidEventError("the payload is not a JSON object")
        unknown = sorted(str(name)[:64] for name in payload if name not in PAYLOAD_FIELDS)
        if unknown:
            raise InvalidEventError(f"unknown payload field(s): {', '.join(unknown[:5])}")
        named = cls._naming(payload, claimed_by, request_id, caller, caller_details)
        delivery = check_delivery(payload.get("delivery"), payload.get("range"))
        named = replace(named, delivery=delivery)
        if payload.get("range") is not None:
            return replace(named, range=check_range_text(payload["range"]))
        return named

    @classmethod
    def _naming(
        cls,
        payload: Mapping[str, Any],
        claimed_by: str | None,
        request_id: str | None,
        caller: str | None,
        caller_details: Mapping[str, str] | None,
    ) -> RetrieveRequest:
        doc = payload.get("document_id")
        bucket = payload.get("bucket")
        key = payload.get("key")
        source = payload.get("source")
        named = [n for n, v in (("document_id", doc), ("bucket", bucket or key), ("source", source))
                 if v is not None]  # fmt: skip
        if len(named) > 1:
            raise InvalidEventError(
                'name the document one way: "document_id", "bucket" and "key", or "source"'
            )
        if source is not None:
            upload = UploadName.from_payload(source)
            return cls(None, None, None, claimed_by, request_id, caller, caller_details, upload)
        if doc is not None:
            _check_text("document_id", doc, MAX_DOCUMENT_ID)
            return cls(doc, None, None, claimed_by, request_id, caller, caller_details)
        if bucket is not None and key is not None:
            _check_text("bucket", bucket, MAX_BUCKET)
            _check_text("key", key, MAX_KEY)
            return cls(None, bucket, key, claimed_by, request_id, caller, caller_details)
        raise InvalidEventError('payload needs "document_id", "bucket" and "key", or "source"')


_CAPS = (("document_id", MAX_DOCUMENT_ID), ("bucket", MAX_BUCKET), ("key", MAX_KEY))


def _check_caps(payload: Mapping[str, Any]) -> None:
    """The fields that name the document, checked before anything else (a clear error
    naming the field, never its value)."""
    for name, cap in _CAPS:
        if payload.get(name) is not None:
            _check_text(name, payload[name], cap)
    if payload.get("source") is not None:
        UploadName.from_payload(payload["source"])
    if payload.get("range") is not None:
        check_range_text(payload["range"])
    check_delivery(payload.get("delivery"), payload.get("range"))


def _check_text(name: str, value: object, cap: int) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidEventError(f"{name} must be a non-empty string")
    if len(value) > cap:
        raise InvalidEventError(f"{name} is longer than {cap} characters")
    if not value.isprintable():
        raise InvalidEventError(f"{name} holds control characters")


def claimed_name(
    payload: Mapping[str, Any] | None,
    *,
    client_context: Mapping[str, Any] | None = None,
    cognito_identity_id: str | None = None,
) -> str | None:
    """The name the caller declares, best source first; kept as the audit detail
    ``claimed_by``, never the actor (the actor is the principal STS vouched for):

    1. ``requested_by`` in the invocation's client context (``aws lambda invoke
       --client-context``, set by a calling service);
    2. the Cognito identity of the Lambda context, when invoked through one;
    3. ``requested_by`` in the payload;
    4. None: nothing declared.
    """
    if client_context:
        custom = client_context.get("custom")
        if isinstance(custom, Mapping) and isinstance(custom.get("requested_by"), str):
            return _clean_claim(str(custom["requested_by"]))
    if cognito_identity_id:
        return _clean_claim(f"cognito:{cognito_identity_id}")
    if isinstance(payload, Mapping) and isinstance(payload.get("requested_by"), str):
        return _clean_claim(str(payload["requested_by"]))
    return None


def _clean_claim(claim: str) -> str | None:
    # Cut first: a 5 MB claim costs nothing more than a short one.
    return "".join(c for c in claim[: MAX_CLAIM * 2] if c.isprintable())[:MAX_CLAIM] or None


def retrieve(
    r: Retrieval,
    payload: Any,
    *,
    claimed_by: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The retrieve function: verify who asks, validate what they ask, check that they may,
    then decrypt (docs/OPERATIONS.md, "Retrieval"). Every refusal is audited and raised.

    Order: the request's canonical hash (its fields within the canonical form's caps), the
    identity proof for that hash (one STS round trip; nothing read from the database, KMS
    or S3 before), the payload's fields and caps, the document and the access rule, an
    ``attempt`` row with the verified actor, then decryption and the outcome row.
    """
    p = r.pipeline
    base = {"claimed_by": claimed_by} if claimed_by is not None else {}
    try:
        if not isinstance(payload, Mapping):
            raise InvalidEventError("the payload is not a JSON object")
        _check_caps(payload)
        request_sha256 = retrieve_request_sha256(payload)
        caller = r.identity.verify(payload.get(PROOF_FIELD), request_sha256=request_sha256)
    except IdentityProofError as exc:
        _refused(p, None, request_id, {"reason": exc.reason.value, **base})
        if exc.reason is ProofRefusal.STS_UNAVAILABLE:
            raise TransientError("identity could not be verified: STS unavailable") from None
        raise
    except InvalidEventError as exc:
        _refused(p, None, request_id, {"reason": "invalid_request",
                                       "message": str(exc)[:200], **base})  # fmt: skip
        raise
    details = {**caller.audit_details(), **base}
    try:
        req = RetrieveRequest.from_payload(
            payload,
            claimed_by=claimed_by,
            request_id=request_id,
            caller=caller.principal_arn,
            caller_details=details,
        )
    except InvalidEventError as exc:
        _refused(
            p,
            caller.principal_arn,
            request_id,
            {"reason": "invalid_request", "message": str(exc)[:200], **details},
        )
        raise
    record = _lookup(p, req)
    # Asked either way, so a missing document costs the same round trips as a forbidden one.
    allowed = r.access.allows(
        caller.principal_arn,
        record.document_id if record else (req.document_id or ""),
        AccessOperation.RETRIEVE,
    )
    if record is None:
        _refused(
            p,
            req.caller,
            request_id,
            {"reason": "not_found", "requested": _requested(req), **details},
        )
        raise DocumentNotFoundError(NOT_FOUND_MESSAGE)
    if not allowed:
        _refused(p, req.caller, request_id,
                 {"reason": "not_allowed", "requested": _requested(req), **details},
                 document_id=record.document_id)  # fmt: skip
        raise DocumentNotFoundError(NOT_FOUND_MESSAGE)
    try:
        reader = choose_recipient(r.recipients, p.settings.retrieve, caller.principal_arn,
                                  record.document_id, delivery=req.delivery,
                                  ranged=req.range is not None)  # fmt: skip
    except DeliveryRefusedError as exc:
        _refused(p, req.caller, request_id,
                 {"reason": exc.reason, "requested": _requested(req), **details},
                 document_id=record.document_id)  # fmt: skip
        raise
    return _decrypt_audited(p, req, record, reader)


def _refused(
    p: Pipeline,
    actor: str | None,
    request_id: str | None,
    details: dict[str, Any],
    *,
    document_id: str | None = None,
) -> None:
    p.audit.append(
        operation=OP_DECRYPT,
        outcome=AuditOutcome.REFUSED,
        actor=actor,
        document_id=document_id,
        request_id=request_id,
        details=details,
    )


def _with_claim(details: dict[str, Any], req: RetrieveRequest) -> dict[str, Any]:
    if req.caller_details:
        details.update(req.caller_details)
    if req.claimed_by is not None:
        details["claimed_by"] = req.claimed_by
    return details


def retrieve_document(p: Pipeline, req: RetrieveRequest) -> dict[str, Any]:
    """Decrypt and deliver one document for a request already verified and allowed (the
    ingest and rotation tests call it directly); raise (after auditing) when refused."""
    record = _lookup(p, req)
    if record is None:
        p.audit.append(
            operation=OP_DECRYPT,
            outcome=AuditOutcome.REFUSED,
            actor=req.caller,
            document_id=req.document_id,
            request_id=req.request_id,
            details=_with_claim({"reason": "not_found", "requested": _requested(req)}, req),
        )
        raise DocumentNotFoundError(NOT_FOUND_MESSAGE)
    return _decrypt_audited(p, req, record)


def _decrypt_audited(
    p: Pipeline, req: RetrieveRequest, record: DocumentRecord, reader: RecipientKey | None = None
) -> dict[str, Any]:
    """Attempt row (committed before anything is decrypted: if it cannot be written, nothing
    is), then KMS, S3 and decryption (or the rewrap to ``reader``), then the outcome row."""
    p.audit.append(
        operation=OP_DECRYPT,
        outcome=AuditOutcome.ATTEMPT,
        actor=req.caller,
        document_id=record.document_id,
        key_id=record.key_id,
        request_id=req.request_id,
        details=_with_claim({"requested": _requested(req)}, req),
    )
    try:
        identity = p.keys.load_decryption_key(record.key_id or "")
        if reader is not None:
            result = deliver_sealed(p, record, identity, reader)
        elif req.range is not None:
            result = deliver_range(p, record, identity, req.range)
        else:
            result = deliver_plaintext(p, record, identity)
    except PQFileError as exc:
        p.audit.append(
            operation=OP_DECRYPT,
            outcome=AuditOutcome.REFUSED,
            actor=req.caller,
            document_id=record.document_id,
            key_id=record.key_id,
            request_id=req.request_id,
            details=_with_claim({"reason": refusal_reason(exc), "requested": _requested(req)}, req),
        )
        raise
    try:
        seq = p.audit.append(
            operation=OP_DECRYPT,
            outcome=AuditOutcome.SUCCESS,
            actor=req.caller,
            document_id=record.document_id,
            key_id=record.key_id,
            request_id=req.request_id,
            details=_with_claim(
                {**_success_details(result), **(sealed_audit_details(reader) if reader else {})},
                req,
            ),
        )
    except BaseException:
        if result["delivery"] == "url":
            # No outcome row, no plaintext: the copy goes before the error is raised.
            p.blobs.delete_version(result["bucket"], result["key"], None)
        raise
    result["receipt"] = receipt(seq)
    return result


#: What a receipt promises (docs/KEYS.md, "Receipts").
RECEIPT_NOTE = (
    "the inclusion proof of this audit row is available once the next signed digest covers "
    "it: pqfile audit prove SEQ --digests SRC --public-key PEM"
)


def receipt(seq: int) -> dict[str, Any]:
    """The receipt of a successful retrieve: its outcome audit row's sequence number."""
    return {"audit_seq": seq, "note": RECEIPT_NOTE}


def _success_details(result: Mapping[str, Any]) -> dict[str, Any]:
    details = {"delivery": result["delivery"], "size": result["size"]}
    if "range" in result:  # a ranged read: what was delivered, as Content-Range says it
        details["range"] = result["range"]
    return details


def _requested(req: RetrieveRequest) -> dict[str, Any]:
    asked: dict[str, Any] = {"range": req.range} if req.range is not None else {}
    if req.delivery is not None:
        asked["delivery"] = req.delivery
    if req.document_id:
        return {"document_id": req.document_id, **asked}
    if req.source is not None:
        return {"source": req.source.to_dict(), **asked}
    return {"bucket": req.bucket, "key": req.key, **asked}


def _lookup(p: Pipeline, req: RetrieveRequest) -> DocumentRecord | None:
    """The stored document the request names, or None (one answer for every reason)."""
    if req.document_id is not None:
        record = p.documents.get(req.document_id)
    elif req.source is not None:
        # The upload's name: that version's document, else the newest stored one.
        record = p.documents.find_stored_by_source(
            req.source.bucket, req.source.key, req.source.version_id
        )
    else:
        assert req.bucket is not None and req.key is not None
        # The package's location (top-level bucket/key never name the upload).
        record = p.documents.find_by_encrypted_object(req.bucket, req.key)
    if record is None or record.status is not DocumentStatus.STORED or not record.encrypted_key:
        return None
    if not record.key_id:
        return None
    return record
