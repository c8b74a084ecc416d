"""The audit report's pure model (pqfile.usecases.audit_report) and its HTML rendering
(pqfile.cli.report_html) from rows built here with the real chain encoding."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html.parser
import json

import pytest

from pqfile.cli.report_html import render_html
from pqfile.keys.audit_chain import GENESIS_HASH, AuditRow, compute_hash, verify_rows
from pqfile.usecases.audit_report import DigestStatus, ReportBuilder, build_report, parse_bound

T0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
ALICE = "arn:aws:iam::123456789012:user/alice"


def _chain(specs: list[dict[str, object]]) -> list[AuditRow]:
    rows, prev = [], GENESIS_HASH
    for i, spec in enumerate(specs, start=1):
        fields: dict[str, object] = {
            "seq": i, "occurred_at": T0 + dt.timedelta(hours=i), "operation": "document.encrypt",
            "outcome": "success", "actor": "pqfile_audit_writer", "document_id": None,
            "key_id": None, "request_id": None, "details": None, "prev_hash": prev,
            "row_hash": b"", "db_role": "pqfile_audit_writer",
        }  # fmt: skip
        fields.update(spec)
        if isinstance(fields["details"], dict):
            fields["details"] = json.dumps(fields["details"], sort_keys=True)
        row = AuditRow(**fields)  # type: ignore[arg-type]
        row = dataclasses.replace(row, row_hash=compute_hash(row))
        rows.append(row)
        prev = row.row_hash
    return rows


def _decrypts(n: int) -> list[dict[str, object]]:
    return [{"operation": "document.decrypt", "outcome": "success", "actor": ALICE,
             "document_id": f"doc-{i}", "request_id": f"r{i}",
             "details": {"delivery": "inline", "size": i}} for i in range(n)]  # fmt: skip


def _report(rows: list[AuditRow], **kwargs: object):  # type: ignore[no-untyped-def]
    return build_report(rows, verify_rows(rows), since=T0, until=T0 + dt.timedelta(days=30),
                        generated_at=T0, **kwargs)  # type: ignore[arg-type]  # fmt: skip


def test_a_broken_chain_is_reported_and_shown() -> None:
    rows = _chain(_decrypts(4))
    rows[2] = dataclasses.replace(rows[2], actor="arn:aws:iam::123456789012:user/mallory")
    report = _report(rows)
    assert not report.chain.ok and report.chain.broken_seq == 3
    assert len(report.decryptions) == 4  # the report still covers every row
    page = render_html(report)
    assert "Chain BROKEN at row 3" in page and "row_hash does not match" in page


def test_listed_rows_are_capped_and_the_rest_counted() -> None:
    rows = _chain(_decrypts(5))
    builder = ReportBuilder(T0, T0 + dt.timedelta(days=1), max_listed=2)
    for row in rows:
        builder.add(row)
    report = builder.build(verify_rows(rows), generated_at=T0)
    assert [d.document_id for d in report.decryptions] == ["doc-0", "doc-1"]
    assert report.omitted == {"decryptions": 3}
    assert sum(day.decryptions for day in report.activity) == 5
    page = render_html(report)
    assert "3 more row(s) not listed" in page and "<b class=\"\">5</b>decryptions" in page


def test_digest_statuses_are_shown_and_escaped() -> None:
    rows = _chain(_decrypts(1))
    assert "no digests configured" in render_html(_report(rows))
    digests = [
        DigestStatus("digests/0001.json", "2026-05-01T00:00:00Z", "2026-05-01T01:00:00Z", 1,
                     "ab" * 32, True),
        DigestStatus("digests/0002.json", "2026-05-01T01:00:00Z", "2026-05-01T02:00:00Z", 1,
                     "cd" * 32, False, problem='signature <b onmouseover="x()">bad</b>'),
    ]  # fmt: skip
    report = _report(rows, digests=digests)
    assert report.as_dict()["digests"][1]["verified"] is False
    page = render_html(report)
    assert "2 digest(s), 1 not verified" in page
    assert "&lt;b onmouseover=&quot;x()&quot;&gt;bad&lt;/b&gt;" in page
    assert "<b onmouseover" not in page


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]


def test_every_audit_text_is_inert_in_tables_and_charts() -> None:
    evil = '"><script>alert(1)</script><svg onload=alert(2)>'
    rows = _chain([
        {"operation": "key.create", "actor": evil, "key_id": "k1",
         "details": {"suite": evil}},
        {"operation": "key.pool_maintained", "actor": evil, "details": {"created": {evil: 1}}},
        {"operation": "document.decrypt", "outcome": "refused", "actor": evil,
         "document_id": evil, "details": {"reason": evil}},
        {"operation": "document.decrypt", "outcome": "success", "actor": evil,
         "document_id": evil, "request_id": evil, "details": {"delivery": evil, "size": 1}},
    ])  # fmt: skip
    page = render_html(_report(rows))
    parser = _Tags()
    parser.feed(page)
    assert "script" not in parser.tags and parser.handlers == []
    assert page.count("<svg") == 2  # the two charts, nothing injected
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_key_lifecycle_and_pool_follow_the_rows() -> None:
    rows = _chain([
        {"operation": "key.create", "key_id": "k1", "details": {"suite": "xwing"}},
        {"operation": "key.create", "key_id": "k2", "details": {"suite": "xwing"}},
        {"operation": "key.pool_maintained", "details": {"created": {"xwing": 2}, "queued": []}},
        {"operation": "key.revoke_requested", "key_id": "k1", "details": {"reason": "r"}},
        {"operation": "key.rotation_finished", "outcome": "failure", "key_id": "k1"},
        {"operation": "key.revoke", "key_id": "k1"},
        {"operation": "key.pool_maintained", "details": {"created": {}, "queued": ["k1"]}},
    ])  # fmt: skip
    report = _report(rows)
    assert [e.event for e in report.key_events] == [
        "created", "created", "revocation requested", "rotation ended unfinished", "revoked"]
    assert [p.active for p in report.pool] == [{"xwing": 2}, {"xwing": 1}]
    assert [p.queued for p in report.pool] == [0, 1]


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2026-05-01", False, dt.datetime(2026, 5, 1, tzinfo=dt.UTC)),
        ("2026-05-01", True, dt.datetime(2026, 5, 2, tzinfo=dt.UTC)),
        ("2026-05-01T12:30:00Z", False, dt.datetime(2026, 5, 1, 12, 30, tzinfo=dt.UTC)),
        ("2026-05-01T12:30:00", True, dt.datetime(2026, 5, 1, 12, 30, tzinfo=dt.UTC)),
        ("2026-05-01T12:30:00+02:00", False,
         dt.datetime(2026, 5, 1, 10, 30, tzinfo=dt.UTC)),
    ],
)  # fmt: skip
def test_bounds(text: str, end: bool, expected: dt.datetime) -> None:
    assert parse_bound(text, end=end) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "", "2026-05-01T25:00"])
def test_bad_bounds_are_one_line_errors(text: str) -> None:
    with pytest.raises(ValueError, match="expected YYYY-MM-DD") as info:
        parse_bound(text)
    assert "\n" not in str(info.value)


def test_the_pool_table_lists_the_last_runs_and_the_chart_all() -> None:
    rows = _chain([{"operation": "key.create", "key_id": "k1", "details": {"suite": "xwing"}}]
                  + [{"operation": "key.pool_maintained", "details": {"created": {"xwing": i}}}
                     for i in range(120)])  # fmt: skip
    report = _report(rows)
    page = render_html(report)
    assert len(report.pool) == 120 and page.count("<circle") == 120
    assert "the table shows the last 100 runs; the chart all 120" in page
    assert "xwing 119" in page and "<td>xwing 0</td>" not in page
