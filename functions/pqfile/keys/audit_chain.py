"""The audit chain's canonical encoding and its verification (docs/KEYS.md, "Audit chain").

The database computes each row's hash in ``audit_append()`` (sql/migrations/0004_audit.sql);
this module recomputes it independently from the stored fields::

    row_hash = SHA-256("pqfile/audit/v1" || F(seq) || F(occurred_at) || F(operation)
                       || F(outcome) || F(actor) || F(document_id) || F(key_id)
                       || F(request_id) || F(details) || F(prev_hash))

    F(None) = FF FF FF FF;  F(x) = uint32_be(len(bytes(x))) || bytes(x), text as UTF-8;
    seq as decimal text; occurred_at as UTC "YYYY-MM-DDTHH:MM:SS.ffffffZ".

Rows that record the appending database role (migration 0008) use "pqfile/audit/v2", with
F(db_role) between F(details) and F(prev_hash); rows without one keep the v1 encoding.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DOMAIN = b"pqfile/audit/v1"
DOMAIN_V2 = b"pqfile/audit/v2"
GENESIS_HASH = bytes(32)
_NULL = b"\xff\xff\xff\xff"


@dataclass(frozen=True)
class AuditRow:
    seq: int
    occurred_at: dt.datetime
    operation: str
    outcome: str
    actor: str
    document_id: str | None
    key_id: str | None
    request_id: str | None
    details: str | None
    prev_hash: bytes
    row_hash: bytes
    db_role: str | None = None  # the database role that appended the row (v2 rows)

    def as_dict(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "occurred_at": format_timestamp(self.occurred_at),
            "operation": self.operation,
            "outcome": self.outcome,
            "actor": self.actor,
            "document_id": self.document_id,
            "key_id": self.key_id,
            "request_id": self.request_id,
            "details": json.loads(self.details) if self.details is not None else None,
            "db_role": self.db_role,
            "prev_hash": self.prev_hash.hex(),
            "row_hash": self.row_hash.hex(),
        }


#: The database's caps on audit input (sql/migrations/0010: audit_check_fields).
MAX_DETAILS_BYTES = 4096
MAX_DETAIL_FIELD_BYTES = 1024
MAX_DETAIL_KEY_CHARS = 64
MAX_DOCUMENT_ID_CHARS = 256
MAX_REQUEST_ID_CHARS = 256
#: Headroom under the caps: PostgreSQL measures each field as jsonb prints it.
_FIELD_BUDGET = MAX_DETAIL_FIELD_BYTES - 24
_DETAILS_BUDGET = MAX_DETAILS_BYTES - 64


def _json_size(value: object) -> int:
    # jsonb's text form puts a space after ':' and ','; measure the same way.
    text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False, default=str)
    return len(text.encode("utf-8"))


def _shorten(value: object, budget: int) -> object:
    """``value`` if its JSON fits ``budget`` bytes; a string cut to fit otherwise (marked)."""
    if _json_size(value) <= budget:
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    marker = f"...[{len(text)} chars, truncated]"
    keep = len(text)
    while keep > 0 and _json_size(text[:keep] + marker) > budget:
        keep = keep * 3 // 4 if keep > 64 else keep - 8
    return text[: max(0, keep)] + marker


def bounded_details(details: Mapping[str, object] | None) -> dict[str, object] | None:
    """``details`` shortened to fit the database's caps (each field at most 1 KiB, the
    whole at most 4 KiB, keys at most 64 characters), so a legitimate writer is never
    refused: long values are cut and marked, and if the whole is still too large the
    largest fields are replaced by a marker and ``"truncated": true`` is added."""
    if details is None:
        return None
    out: dict[str, object] = {}
    for key, value in details.items():
        out[str(key)[:MAX_DETAIL_KEY_CHARS]] = _shorten(value, _FIELD_BUDGET)
    while _json_size(out) > _DETAILS_BUDGET:
        largest = max((k for k in out if k != "truncated"), key=lambda k: _json_size(out[k]))
        if out[largest] == "[truncated]":
            break  # only markers left: give up shortening (cannot happen under 64 keys)
        out[largest] = "[truncated]"
        out["truncated"] = True
    return out


def bounded_text(value: str | None, limit: int) -> str | None:
    """``value`` cut to ``limit`` characters (identifiers the database caps)."""
    return None if value is None else value[:limit]


def canonical_details(details: Mapping[str, object] | None) -> str | None:
    """The stored text of ``details``: compact JSON with sorted keys, or None."""
    if details is None:
        return None
    return json.dumps(
        details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def format_timestamp(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _field(value: str | bytes | None) -> bytes:
    if value is None:
        return _NULL
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return len(raw).to_bytes(4, "big") + raw


def encode_row(
    *,
    seq: int,
    occurred_at: dt.datetime,
    operation: str,
    outcome: str,
    actor: str,
    document_id: str | None,
    key_id: str | None,
    request_id: str | None,
    details: str | None,
    prev_hash: bytes,
    db_role: str | None = None,
) -> bytes:
    """The bytes hashed for one row: v2 when ``db_role`` is set, else v1."""
    role = [] if db_role is None else [_field(db_role)]
    return b"".join(
        [
            DOMAIN if db_role is None else DOMAIN_V2,
            _field(str(seq)),
            _field(format_timestamp(occurred_at)),
            _field(operation),
            _field(outcome),
            _field(actor),
            _field(document_id),
            _field(key_id),
            _field(request_id),
            _field(details),
            *role,
            _field(prev_hash),
        ]
    )


def compute_hash(row: AuditRow) -> bytes:
    return hashlib.sha256(
        encode_row(
            seq=row.seq,
            occurred_at=row.occurred_at,
            operation=row.operation,
            outcome=row.outcome,
            actor=row.actor,
            document_id=row.document_id,
            key_id=row.key_id,
            request_id=row.request_id,
            details=row.details,
            prev_hash=row.prev_hash,
            db_role=row.db_role,
        )
    ).digest()


@dataclass(frozen=True)
class ChainReport:
    """Result of a verification. ``broken_seq`` names the first row that does not verify."""

    ok: bool
    rows: int
    head_seq: int
    head_hash: bytes
    broken_seq: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash.hex(),
            "broken_seq": self.broken_seq,
            "reason": self.reason,
        }


def verify_rows(
    rows: Iterable[AuditRow],
    head: tuple[int, bytes] | None = None,
    anchors: Mapping[int, bytes] | None = None,
) -> ChainReport:
    """Recompute the chain over ``rows`` (ordered by seq) and compare with the recorded head.

    Detects a changed field (hash mismatch), a deleted row (sequence gap / broken link),
    an inserted or forged row (broken link, or a tail beyond the recorded head) and swapped
    rows (the sequence number is hashed, so a row moved elsewhere no longer verifies).
    ``anchors`` maps seq -> row_hash recorded earlier outside the database (a head printed by
    ``pqfile audit verify``): a chain rewritten consistently from an anchor on fails there.
    """
    anchors = dict(anchors or {})
    expected_prev = GENESIS_HASH
    expected_seq = 1
    count = 0
    last_seq, last_hash = 0, GENESIS_HASH

    def broken(seq: int, reason: str) -> ChainReport:
        return ChainReport(False, count, last_seq, last_hash, broken_seq=seq, reason=reason)

    for row in rows:
        if row.seq > expected_seq:
            missing = (
                f"row {expected_seq} is missing"
                if row.seq == expected_seq + 1
                else f"rows {expected_seq}..{row.seq - 1} are missing"
            )
            return broken(expected_seq, missing)
        if row.seq < expected_seq:
            return broken(row.seq, f"sequence out of order (expected {expected_seq})")
        if row.prev_hash != expected_prev:
            return broken(row.seq, "prev_hash does not match the previous row's hash")
        if compute_hash(row) != row.row_hash:
            return broken(row.seq, "row_hash does not match the row's contents")
        anchored = anchors.pop(row.seq, None)
        if anchored is not None and anchored != row.row_hash:
            return broken(row.seq, "row_hash differs from the anchored hash recorded earlier")
        count += 1
        last_seq, last_hash = row.seq, row.row_hash
        expected_prev = row.row_hash
        expected_seq += 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq > last_seq:
            return broken(
                last_seq + 1,
                f"row(s) {last_seq + 1}..{head_seq} are missing (the chain head is further on)",
            )
        if head_seq < last_seq:
            return broken(head_seq + 1, "row(s) beyond the recorded chain head")
        if head_hash != last_hash:
            return broken(last_seq, "last row's hash differs from the recorded chain head")
    if anchors:
        first = min(anchors)
        return broken(first, f"anchored row {first} is no longer in the chain")
    return ChainReport(True, count, last_seq, last_hash)
