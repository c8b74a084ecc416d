"""The audit report model (``pqfile audit report``; docs/KEYS.md, "Audit report").

Pure: built from audit rows (pqfile.keys.audit_chain.AuditRow) in seq order, with no I/O.
The adapter (pqfile.adapters.postgres.audit_report) feeds every row of one snapshot to a
:class:`ReportBuilder` while the chain is verified; renderers (JSON: :meth:`AuditReport.as_dict`,
HTML: pqfile.cli.report_html) only read the model.

Sections, for rows with ``since <= occurred_at < until``:

- decryptions: ``document.decrypt`` successes (who, what, when, how delivered, size), and
  attempts whose request never recorded an outcome (a retrieve killed mid-way);
- refusals and failures: every row whose outcome is ``refused`` / ``failure``;
- key lifecycle: every ``key.*`` row but pool maintenance (created, rotation queued,
  rotated, expired, revoked, shredded, requests);
- pool health: at each ``key.pool_maintained`` row, the active keys per suite as the
  chain's key rows tell it from the first row on, plus what that run created and queued;
- activity per UTC day (encryptions, decryptions, refusals, failures) for the charts;
- the chain's verification status and the signed digests' status (:class:`DigestStatus`,
  given by the caller; none configured until digests are wired in).

Listed rows are capped per section (:data:`MAX_LISTED`); the counts always cover every row.
Text in the model is the audit's own and attacker-influenced (document ids, reasons):
renderers must escape it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pqfile.keys.audit_chain import AuditRow, ChainReport, format_timestamp

#: Rows listed per section at most (counts are never capped).
MAX_LISTED = 5000

OP_DECRYPT = "document.decrypt"
OP_ENCRYPT = "document.encrypt"
OP_POOL = "key.pool_maintained"

#: Key rows and what they mean for a key's status (None: no change).
KEY_EVENTS: Mapping[str, tuple[str, str | None]] = {
    "key.create": ("created", "active"),
    "key.rotation_queued": ("rotation queued", "rotation_queued"),
    "key.rotation_target": ("rotation target set", None),
    "key.rotation_started": ("rotation started", None),
    "key.rotation_finished": ("rotated", None),
    "key.rotation_failed": ("rotation failed", None),
    "key.rotation_workflow_started": ("rotation workflow started", None),
    "key.expire": ("expired", "expired"),
    "key.revoke_requested": ("revocation requested", "rotation_queued"),
    "key.shred_requested": ("shred requested", "rotation_queued"),
    "key.compromise_requested": ("compromise reported", "rotation_queued"),
    "key.revoke": ("revoked", "revoked"),
    "key.shred": ("shredded", "shredded"),
}


def _ts(value: dt.datetime) -> str:
    return format_timestamp(value)


@dataclass(frozen=True)
class Decryption:
    occurred_at: str
    seq: int
    actor: str
    document_id: str | None
    key_id: str | None
    delivery: str | None
    size: int | None
    request_id: str | None


@dataclass(frozen=True)
class Incident:
    """A refusal or a failure."""

    occurred_at: str
    seq: int
    operation: str
    outcome: str
    actor: str
    document_id: str | None
    key_id: str | None
    reason: str | None


@dataclass(frozen=True)
class KeyEvent:
    occurred_at: str
    seq: int
    key_id: str | None
    event: str
    outcome: str
    actor: str
    suite: str | None
    detail: str | None


@dataclass(frozen=True)
class PoolSample:
    """One pool-maintenance run: active keys per suite after it, what it created, queued."""

    occurred_at: str
    seq: int
    active: dict[str, int]
    created: dict[str, int]
    queued: int


@dataclass(frozen=True)
class DayActivity:
    day: str  # YYYY-MM-DD, UTC
    encryptions: int = 0
    decryptions: int = 0
    refusals: int = 0
    failures: int = 0


@dataclass(frozen=True)
class ChainStatus:
    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    broken_seq: int | None
    reason: str | None

    @classmethod
    def of(cls, report: ChainReport) -> ChainStatus:
        return cls(report.ok, report.rows, report.head_seq, report.head_hash.hex(),
                   report.broken_seq, report.reason)  # fmt: skip


@dataclass(frozen=True)
class DigestStatus:
    """One signed digest as a digest verifier saw it (wired in by the caller)."""

    name: str  # e.g. the digest's object key
    period_start: str
    period_end: str
    tree_size: int
    root_hash: str
    verified: bool
    problem: str | None = None


@dataclass(frozen=True)
class AuditReport:
    generated_at: str
    since: str
    until: str
    rows_in_period: int
    totals: dict[str, int]
    decryptions: list[Decryption]
    unfinished_attempts: list[Decryption]
    refusals: list[Incident]
    failures: list[Incident]
    key_events: list[KeyEvent]
    pool: list[PoolSample]
    activity: list[DayActivity]
    chain: ChainStatus
    #: None: no digests configured (the section says so); else every digest checked.
    digests: list[DigestStatus] | None
    #: Rows left out of a listed section (the cap), by section.
    omitted: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditReport:
        """The model back from :meth:`as_dict` (the admin function's answer); ValueError if
        it is not one."""
        try:
            digests = d.get("digests")
            return cls(
                generated_at=str(d["generated_at"]),
                since=str(d["since"]),
                until=str(d["until"]),
                rows_in_period=int(d["rows_in_period"]),
                totals={str(k): int(v) for k, v in d["totals"].items()},
                decryptions=[Decryption(**x) for x in d["decryptions"]],
                unfinished_attempts=[Decryption(**x) for x in d["unfinished_attempts"]],
                refusals=[Incident(**x) for x in d["refusals"]],
                failures=[Incident(**x) for x in d["failures"]],
                key_events=[KeyEvent(**x) for x in d["key_events"]],
                pool=[PoolSample(**x) for x in d["pool"]],
                activity=[DayActivity(**x) for x in d["activity"]],
                chain=ChainStatus(**d["chain"]),
                digests=None if digests is None else [DigestStatus(**x) for x in digests],
                omitted={str(k): int(v) for k, v in d.get("omitted", {}).items()},
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"not an audit report: {type(exc).__name__}") from None


def _details(row: AuditRow) -> dict[str, Any]:
    if row.details is None:
        return {}
    try:
        value = json.loads(row.details)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _reason(details: Mapping[str, Any]) -> str | None:
    for name in ("reason", "error", "message"):
        if details.get(name) is not None:
            return str(details[name])
    return None


class ReportBuilder:
    """Feed every row in seq order (:meth:`add`), then :meth:`build`."""

    def __init__(self, since: dt.datetime, until: dt.datetime, *, max_listed: int = MAX_LISTED):
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("report bounds must be timezone-aware")
        if until <= since:
            raise ValueError("--until must be later than --since")
        self.since, self.until = since, until
        self.max_listed = max_listed
        self.rows_in_period = 0
        self.totals: Counter[str] = Counter()
        self.decryptions: list[Decryption] = []
        self.attempts: dict[str, Decryption] = {}  # request id -> attempt without an outcome
        self.refusals: list[Incident] = []
        self.failures: list[Incident] = []
        self.key_events: list[KeyEvent] = []
        self.pool: list[PoolSample] = []
        self.days: dict[str, Counter[str]] = {}
        self.omitted: Counter[str] = Counter()
        self.key_suite: dict[str, str] = {}
        self.key_status: dict[str, str] = {}
        self.active: Counter[str] = Counter()  # active keys per suite, kept as rows arrive

    def _listed(self, section: str, items: list[Any], item: Any) -> None:
        if len(items) < self.max_listed:
            items.append(item)
        else:
            self.omitted[section] += 1

    def _track_key(self, row: AuditRow, details: Mapping[str, Any]) -> None:
        if row.key_id is None or row.outcome != "success":
            return
        if row.operation == "key.create" and details.get("suite") is not None:
            self.key_suite[row.key_id] = str(details["suite"])
        status = KEY_EVENTS.get(row.operation, ("", None))[1]
        if status is None:
            return
        suite = self.key_suite.get(row.key_id, "unknown")
        was = self.key_status.get(row.key_id)
        self.key_status[row.key_id] = status
        if was == "active" and status != "active":
            self.active[suite] -= 1
        elif was != "active" and status == "active":
            self.active[suite] += 1

    def _active(self) -> dict[str, int]:
        return {suite: n for suite, n in sorted(self.active.items()) if n}

    def add(self, row: AuditRow) -> None:
        if row.occurred_at >= self.until:
            return
        details = _details(row)
        self._track_key(row, details)
        if row.occurred_at < self.since:
            return
        self.rows_in_period += 1
        when = _ts(row.occurred_at)
        day = self.days.setdefault(row.occurred_at.astimezone(dt.UTC).date().isoformat(),
                                   Counter())  # fmt: skip
        self.totals[f"{row.operation}/{row.outcome}"] += 1
        if row.operation == OP_ENCRYPT and row.outcome == "success":
            day["encryptions"] += 1
        if row.operation == OP_DECRYPT:
            self._decrypt(row, details, when, day)
        if row.outcome == "refused":
            day["refusals"] += 1
            self._listed("refusals", self.refusals, self._incident(row, details, when))
        elif row.outcome == "failure":
            day["failures"] += 1
            self._listed("failures", self.failures, self._incident(row, details, when))
        if row.operation in KEY_EVENTS:
            self._key_event(row, details, when)
        elif row.operation == OP_POOL:
            created = details.get("created")
            queued = details.get("queued")
            sample = PoolSample(
                occurred_at=when, seq=row.seq, active=self._active(),
                created={str(k): int(v) for k, v in created.items()
                         if isinstance(v, int)} if isinstance(created, dict) else {},
                queued=len(queued) if isinstance(queued, list) else 0,
            )  # fmt: skip
            self._listed("pool", self.pool, sample)

    def _decrypt(self, row: AuditRow, details: Mapping[str, Any], when: str,
                 day: Counter[str]) -> None:  # fmt: skip
        request = row.request_id or f"seq-{row.seq}"
        if row.outcome == "attempt":
            self.attempts[request] = Decryption(when, row.seq, row.actor, row.document_id,
                                                row.key_id, None, None, row.request_id)  # fmt: skip
            return
        self.attempts.pop(request, None)
        if row.outcome == "success":
            day["decryptions"] += 1
            entry = Decryption(when, row.seq, row.actor, row.document_id, row.key_id,
                               _str_or_none(details.get("delivery")),
                               _int_or_none(details.get("size")), row.request_id)  # fmt: skip
            self._listed("decryptions", self.decryptions, entry)

    @staticmethod
    def _incident(row: AuditRow, details: Mapping[str, Any], when: str) -> Incident:
        return Incident(when, row.seq, row.operation, row.outcome, row.actor, row.document_id,
                        row.key_id, _reason(details))  # fmt: skip

    def _key_event(self, row: AuditRow, details: Mapping[str, Any], when: str) -> None:
        label = KEY_EVENTS[row.operation][0]
        if row.operation == "key.rotation_finished" and row.outcome != "success":
            label = "rotation ended unfinished"
        parts = []
        for name in ("reason", "to_suite", "new_key_id", "documents_rewrapped",
                     "documents_lost", "documents_total", "from", "to"):  # fmt: skip
            if details.get(name) is not None:
                parts.append(f"{name}={details[name]}")
        suite = self.key_suite.get(row.key_id or "") or _str_or_none(details.get("suite"))
        event = KeyEvent(when, row.seq, row.key_id, label, row.outcome, row.actor, suite,
                         ", ".join(parts) or None)  # fmt: skip
        self._listed("key_events", self.key_events, event)

    def build(
        self,
        chain: ChainReport,
        *,
        digests: Sequence[DigestStatus] | None = None,
        generated_at: dt.datetime | None = None,
    ) -> AuditReport:
        now = generated_at or dt.datetime.now(dt.UTC)
        activity = [
            DayActivity(day, c["encryptions"], c["decryptions"], c["refusals"], c["failures"])
            for day, c in sorted(self.days.items())
        ]
        unfinished = sorted(self.attempts.values(), key=lambda d: d.seq)[: self.max_listed]
        return AuditReport(
            generated_at=_ts(now),
            since=_ts(self.since),
            until=_ts(self.until),
            rows_in_period=self.rows_in_period,
            totals=dict(sorted(self.totals.items())),
            decryptions=self.decryptions,
            unfinished_attempts=unfinished,
            refusals=self.refusals,
            failures=self.failures,
            key_events=self.key_events,
            pool=self.pool,
            activity=activity,
            chain=ChainStatus.of(chain),
            digests=None if digests is None else list(digests),
            omitted=dict(self.omitted),
        )


def build_report(
    rows: Iterable[AuditRow],
    chain: ChainReport,
    *,
    since: dt.datetime,
    until: dt.datetime,
    digests: Sequence[DigestStatus] | None = None,
    generated_at: dt.datetime | None = None,
) -> AuditReport:
    """The report over ``rows`` (every row from seq 1, in order)."""
    builder = ReportBuilder(since, until)
    for row in rows:
        builder.add(row)
    return builder.build(chain, digests=digests, generated_at=generated_at)


def parse_bound(text: str, *, end: bool = False) -> dt.datetime:
    """``YYYY-MM-DD`` (UTC midnight; for ``end``, the next midnight so the day is included)
    or an ISO 8601 date-time (UTC when it names no offset). ValueError with one line."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return start + dt.timedelta(days=1) if end else start
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected YYYY-MM-DD or an ISO 8601 date-time, got {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
