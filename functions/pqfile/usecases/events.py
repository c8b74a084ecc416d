"""Reading S3 "Object Created" events and naming what the pipeline derives from them.

Two shapes arrive: EventBridge events (``detail.object.key`` is the raw key) and S3
notification records (``Records[].s3.object.key`` is URL-encoded, ``+`` for spaces). The
key is decoded only for the second shape: decoding an EventBridge key would corrupt a key
that really contains ``%41`` or ``+``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote_plus

from pqfile.config import ENCRYPTED_PREFIX, UPLOADS_PREFIX
from pqfile.errors import InvalidEventError, OutsideTenantError

_DOCUMENT_ID_LABEL = b"pqfile/document-id/v1"
#: S3's object key limit, bytes of UTF-8.
_MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class SourceRef:
    """The uploaded object version a document comes from: its identity for idempotency."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    size: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceRef:
        try:
            size = data.get("size")
            return cls(
                bucket=str(data["bucket"]),
                key=str(data["key"]),
                version_id=_opt_str(data.get("version_id")),
                etag=_opt_str(data.get("etag")),
                size=None if size is None else int(size),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEventError(f"malformed source reference: {exc}") from None

    @property
    def ref(self) -> str:
        """The idempotency reference, as the documents table computes `source_ref`."""
        if self.version_id and self.version_id != "null":
            return f"v:{self.version_id}"
        if self.etag:
            return f"e:{self.etag}"
        raise InvalidEventError("the event names neither a version id nor an ETag")


def _opt_str(value: object) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def document_id_for(source: SourceRef) -> str:
    """A deterministic id: the same upload always maps to the same document.

    32 hex characters of SHA-256 over a length-prefixed encoding of (bucket, key, ref).
    """
    h = hashlib.sha256(_DOCUMENT_ID_LABEL)
    for part in (source.bucket, source.key, source.ref):
        raw = part.encode("utf-8")
        h.update(len(raw).to_bytes(4, "big") + raw)
    return h.hexdigest()[:32]


def encrypted_key_for(document_id: str) -> str:
    """Where the package of a document lives; derived from the id only (no file names)."""
    return f"{ENCRYPTED_PREFIX}{document_id}.pqf"


#: A tenant: the first folder under uploads/ (sql/migrations/0011: pqfile_tenant_of).
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def tenant_of(key: str) -> str | None:
    """The tenant of an upload key ``uploads/<tenant>/<name>``, or None when the key is not
    inside a tenant folder (docs/OPERATIONS.md, "Tenants and access")."""
    if not key.startswith(UPLOADS_PREFIX):
        return None
    tenant, sep, rest = key[len(UPLOADS_PREFIX) :].partition("/")
    if not sep or not rest or _TENANT.fullmatch(tenant) is None:
        return None
    return tenant


#: Caps of what an S3 event says about the uploader (EventBridge ``detail``).
_MAX_REQUESTER = 256
_MAX_SOURCE_IP = 64


def uploader_of(event: Mapping[str, Any]) -> dict[str, str]:
    """What an EventBridge "Object Created" event says about who uploaded: ``requester``
    (the account or service principal) and ``source_ip`` (``source-ip-address``), each only
    when present, printable and capped. S3 notification records carry neither: empty."""
    detail = event.get("detail") if isinstance(event, Mapping) else None
    if not isinstance(detail, Mapping):
        return {}
    out: dict[str, str] = {}
    for field, name, cap in (("requester", "requester", _MAX_REQUESTER),
                             ("source-ip-address", "source_ip", _MAX_SOURCE_IP)):  # fmt: skip
        value = detail.get(field)
        if isinstance(value, str) and value and value[:cap].isprintable():
            out[name] = value[:cap]
    return out


def require_tenant(source: SourceRef) -> str:
    """The upload's tenant; OutsideTenantError (the upload is kept, tagged and the failure
    audited by RecordFailure) when it is not inside a tenant folder."""
    tenant = tenant_of(source.key)
    if tenant is None:
        raise OutsideTenantError(
            "the upload is outside a tenant folder: put it under uploads/<tenant>/ "
            "(letters, digits, '.', '_', '-'; at most 63 characters)"
        )
    return tenant


def parse_object_created(
    event: Mapping[str, Any],
    *,
    uploads_bucket: str,
    prefix: str = UPLOADS_PREFIX,
    max_size: int | None = None,
) -> SourceRef:
    """Validate an event and return the upload it names; raise InvalidEventError otherwise."""
    if not isinstance(event, Mapping):
        raise InvalidEventError("the event is not a JSON object")
    if "detail" in event:
        source = _from_eventbridge(event)
    elif isinstance(event.get("Records"), list):
        source = _from_s3_notification(event)
    else:
        raise InvalidEventError("not an S3 Object Created event (no detail, no Records)")

    if not uploads_bucket:
        raise InvalidEventError("the uploads bucket is not configured")
    if source.bucket != uploads_bucket:
        raise InvalidEventError(f"event for bucket {source.bucket!r}, not the uploads bucket")
    if not source.key.startswith(prefix):
        raise InvalidEventError(f"object key outside {prefix!r}")
    if source.key.endswith("/") or source.key == prefix:
        raise InvalidEventError("a folder marker, not a document")
    if len(source.key.encode("utf-8")) > _MAX_KEY_BYTES:
        raise InvalidEventError("object key longer than S3 allows")
    if source.size is not None:
        if source.size < 0:
            raise InvalidEventError("negative object size")
        if max_size is not None and source.size > max_size:
            raise InvalidEventError(
                f"object of {source.size} bytes exceeds the limit of {max_size}"
            )
    _ = source.ref  # must name a version id or an ETag
    return source


def _from_eventbridge(event: Mapping[str, Any]) -> SourceRef:
    if event.get("source", "aws.s3") != "aws.s3":
        raise InvalidEventError(f"event source {event.get('source')!r} is not aws.s3")
    detail_type = event.get("detail-type", "Object Created")
    if detail_type != "Object Created":
        raise InvalidEventError(f"event type {detail_type!r} is not 'Object Created'")
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise InvalidEventError("event detail is not an object")
    bucket = detail.get("bucket")
    obj = detail.get("object")
    if not isinstance(bucket, Mapping) or not isinstance(obj, Mapping):
        raise InvalidEventError("event detail lacks bucket or object")
    return _source(bucket.get("name"), obj.get("key"), obj, decode=False)


def _from_s3_notification(event: Mapping[str, Any]) -> SourceRef:
    records = event["Records"]
    if len(records) != 1:
        raise InvalidEventError(f"expected one record, got {len(records)}")
    rec = records[0]
    if not isinstance(rec, Mapping) or not str(rec.get("eventName", "")).startswith(
        "ObjectCreated:"
    ):
        raise InvalidEventError("not an ObjectCreated record")
    s3 = rec.get("s3")
    if not isinstance(s3, Mapping):
        raise InvalidEventError("record lacks s3")
    bucket = s3.get("bucket")
    obj = s3.get("object")
    if not isinstance(bucket, Mapping) or not isinstance(obj, Mapping):
        raise InvalidEventError("record lacks bucket or object")
    obj = {**obj, "version-id": obj.get("versionId"), "etag": obj.get("eTag", obj.get("etag"))}
    return _source(bucket.get("name"), obj.get("key"), obj, decode=True)


def _source(bucket: object, key: object, obj: Mapping[str, Any], *, decode: bool) -> SourceRef:
    if not isinstance(bucket, str) or not bucket:
        raise InvalidEventError("event lacks the bucket name")
    if not isinstance(key, str) or not key:
        raise InvalidEventError("event lacks the object key")
    if decode:
        key = unquote_plus(key)
    size = obj.get("size")
    if size is not None and not isinstance(size, int | str):
        raise InvalidEventError("object size is not a number")
    try:
        size_int = None if size is None else int(size)
    except ValueError:
        raise InvalidEventError("object size is not a number") from None
    etag = _opt_str(obj.get("etag"))
    return SourceRef(
        bucket=bucket,
        key=key,
        version_id=_opt_str(obj.get("version-id")),
        etag=etag.strip('"') if etag else None,
        size=size_int,
    )
