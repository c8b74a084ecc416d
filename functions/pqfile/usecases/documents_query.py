"""The documents query function: a document's status, or the documents a caller may read,
for a verified caller (docs/OPERATIONS.md, "From a user's seat"; docs/CONTRACTS.md,
"Documents query function").

Order as in retrieve: the request's canonical hash, the identity proof for it (nothing
read before), the payload's fields, then one database call that checks the access rules,
answers, and appends the audit row in the same transaction (sql/migrations/0017). A caller
gets the same ``DocumentNotFoundError: no such document`` for a document that does not
exist and for one it may not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pqfile.auth import PROOF_FIELD, IdentityProofError, ProofRefusal, retrieve_request_sha256
from pqfile.errors import DocumentNotFoundError, InvalidEventError, TransientError
from pqfile.ports import CallerIdentityVerifier
from pqfile.ports.queries import DocumentQuery
from pqfile.usecases.retrieve import NOT_FOUND_MESSAGE, UploadName, claimed_name

OP_STATUS = "document.status"
OP_LIST = "document.list"
#: What ``operation`` may be, and the audit operation of each.
OPERATIONS = {"status": OP_STATUS, "list": OP_LIST}
STATUSES = frozenset(("pending", "encrypted", "stored", "failed", "shredded"))
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_FIELDS = {
    "status": frozenset(("operation", "document_id", "source", PROOF_FIELD, "requested_by")),
    "list": frozenset(("operation", "tenant", "status", "limit", PROOF_FIELD, "requested_by")),
}


@dataclass(frozen=True)
class DocumentsQuery:
    """What the documents function needs: the query port and the identity verifier."""

    query: DocumentQuery
    identity: CallerIdentityVerifier


def _text(name: str, value: object, cap: int) -> str:
    if not isinstance(value, str) or not value or len(value) > cap or not value.isprintable():
        raise InvalidEventError(f"{name} must be a printable string of 1 to {cap} characters")
    return value


def _operation(payload: Mapping[str, Any]) -> str:
    op = payload.get("operation")
    if op not in OPERATIONS:
        raise InvalidEventError('operation must be "status" or "list"')
    assert isinstance(op, str)
    unknown = sorted(str(n)[:64] for n in payload if n not in _FIELDS[op])
    if unknown:
        raise InvalidEventError(f"unknown payload field(s): {', '.join(unknown[:5])}")
    return op


def query_documents(
    q: DocumentsQuery,
    payload: Any,
    *,
    claimed_by: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Answer one status or list request (see the module docstring); refusals are audited
    and raised."""
    base = {"claimed_by": claimed_by} if claimed_by is not None else {}
    op = payload.get("operation") if isinstance(payload, Mapping) else None
    audit_op = OPERATIONS.get(op, OP_STATUS) if isinstance(op, str) else OP_STATUS
    try:
        if not isinstance(payload, Mapping):
            raise InvalidEventError("the payload is not a JSON object")
        request_sha256 = retrieve_request_sha256(payload)
        caller = q.identity.verify(payload.get(PROOF_FIELD), request_sha256=request_sha256)
    except IdentityProofError as exc:
        q.query.refused(audit_op, None, request_id, {"reason": exc.reason.value, **base})
        if exc.reason is ProofRefusal.STS_UNAVAILABLE:
            raise TransientError("identity could not be verified: STS unavailable") from None
        raise
    except InvalidEventError as exc:
        invalid = {"reason": "invalid_request", "message": str(exc)[:200], **base}
        q.query.refused(audit_op, None, request_id, invalid)
        raise
    details: dict[str, Any] = {**caller.audit_details(), **base}
    principal = caller.principal_arn
    try:
        op = _operation(payload)
        if op == "status":
            return _status(q, payload, principal, request_id, details)
        return _list(q, payload, principal, request_id, details)
    except InvalidEventError as exc:
        invalid = {"reason": "invalid_request", "message": str(exc)[:200], **details}
        q.query.refused(audit_op, principal, request_id, invalid)
        raise


def _status(
    q: DocumentsQuery, payload: Mapping[str, Any], principal: str, request_id: str | None,
    details: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    doc, src = payload.get("document_id"), payload.get("source")
    if (doc is None) == (src is None):
        raise InvalidEventError('name the document one way: "document_id" or "source"')
    source = None
    if doc is not None:
        _text("document_id", doc, 128)
    else:
        upload = UploadName.from_payload(src)
        source = (upload.bucket, upload.key, upload.version_id)
    view = q.query.status(
        principal, document_id=doc if isinstance(doc, str) else None, source=source,
        request_id=request_id, details=details,
    )  # fmt: skip
    if view is None:
        raise DocumentNotFoundError(NOT_FOUND_MESSAGE)
    return view.to_dict()


def _list(
    q: DocumentsQuery, payload: Mapping[str, Any], principal: str, request_id: str | None,
    details: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    tenant = payload.get("tenant")
    status = payload.get("status")
    limit = payload.get("limit", DEFAULT_LIMIT)
    if tenant is not None:
        _text("tenant", tenant, 63)
    if status is not None and status not in STATUSES:
        raise InvalidEventError(f"status must be one of {', '.join(sorted(STATUSES))}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidEventError(f"limit must be an integer from 1 to {MAX_LIMIT}")
    views = q.query.list(
        principal, tenant=tenant if isinstance(tenant, str) else None,
        status=status if isinstance(status, str) else None, limit=limit,
        request_id=request_id, details=details,
    )  # fmt: skip
    return {"documents": [v.to_dict() for v in views], "count": len(views), "limit": limit}


__all__ = ["DocumentsQuery", "claimed_name", "query_documents"]
