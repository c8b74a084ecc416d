"""The canonical retrieve request: the bytes whose SHA-256 a proof carries (docs/CONTRACTS.md,
"Caller identity proofs").

A proof names the one request it was made for, in the signed ``x-pqfile-request-sha256``
header, so a proof seen in transit or in a log cannot be replayed for another document
within its five minutes.

Canonical form: a JSON object of the payload's fields named in :data:`CANONICAL_FIELDS`
that are present and not null, keys sorted, no whitespace (``","`` and ``":"``), strings
as they are (no ``\\u`` escapes beyond the ones JSON requires), encoded as UTF-8. Values are
strings, integers (|n| < 2**53) or arrays / objects of them with ASCII keys. For these
values this is the JSON Canonicalization Scheme (RFC 8785), which other languages have.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from pqfile.errors import InvalidEventError

#: Every payload field that decides what is read or how it is delivered. A new such field
#: must be added here (and to docs/CONTRACTS.md) or a proof would not cover it.
CANONICAL_FIELDS = (
    "bucket", "delivery", "document_id", "key", "limit", "operation", "range", "source",
    "status", "tenant",
)  # fmt: skip
#: The documents query function's payloads always carry ``operation``, which retrieve
#: refuses: a proof made for one function is never accepted by the other.
RETRIEVE_FIELDS = ("bucket", "delivery", "document_id", "key", "range", "source")
#: Longest string value accepted (an S3 key is at most 1024 bytes).
MAX_STRING = 2048
_MAX_DEPTH = 4
_MAX_INT = 2**53


def _check(value: object, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise InvalidEventError("the request nests too deeply")
    if isinstance(value, bool) or value is None:
        raise InvalidEventError("request values are strings, integers, arrays or objects")
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise InvalidEventError("a request value is too long")
    elif isinstance(value, int):
        if not -_MAX_INT < value < _MAX_INT:
            raise InvalidEventError("a request integer is out of range")
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1)
    elif isinstance(value, Mapping):
        for name, item in value.items():
            if not isinstance(name, str) or not name.isascii():
                raise InvalidEventError("request object keys are ASCII strings")
            _check(item, depth + 1)
    else:
        raise InvalidEventError("request values are strings, integers, arrays or objects")


def canonical_retrieve_request(payload: Mapping[str, object]) -> bytes:
    """The canonical bytes of a retrieve payload; other fields (``identity_proof``,
    ``requested_by``) are not part of it. Raise InvalidEventError on a value outside the
    canonical form's domain."""
    if not isinstance(payload, Mapping):
        raise InvalidEventError("the payload is not a JSON object")
    fields = {name: payload[name] for name in CANONICAL_FIELDS if payload.get(name) is not None}
    for value in fields.values():
        _check(value)
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def retrieve_request_sha256(payload: Mapping[str, object]) -> str:
    """Lower-case hex SHA-256 of :func:`canonical_retrieve_request`."""
    return hashlib.sha256(canonical_retrieve_request(payload)).hexdigest()
