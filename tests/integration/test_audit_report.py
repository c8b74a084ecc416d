"""`pqfile audit report` on real PostgreSQL for a generated history, and its HTML rendered
in headless Chromium (docs/KEYS.md, "Audit report").

The history is written through the real roles (audit writer, retrieve, maintain, rewrap,
a person for key rows), then spread over ten days by a superuser who rewrites
``occurred_at`` and recomputes every hash (as tests/integration/test_audit_chain does), so
the chain still verifies and the charts have days. Two document ids and a refusal reason
carry HTML and a request to a canary host: the rendered page must show them as text and
Chromium must never try to reach the network (a loopback proxy records every request).
"""

from __future__ import annotations

import html.parser
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pqfile.adapters.postgres.audit import PostgresAuditLog
from pqfile.adapters.postgres.connection import Database
from pqfile.adapters.postgres.migrations import migrate
from pqfile.cli import main as cli_main
from tests.fixtures.chromium import (  # noqa: F401 (fixtures)
    Chromium,
    RequestRecorder,
    artefacts_dir,
    chromium,
    request_recorder,
)
from tests.fixtures.postgres import AUDIT_WRITER, AUDITOR, MAINTAIN, RETRIEVE, REWRAP, role_url

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]

CANARY = "pqfile-canary.invalid"
ALICE = "arn:aws:iam::123456789012:user/alice"
BOB = "arn:aws:iam::123456789012:user/bob"
EVIL_DOC = f'<img src="http://{CANARY}/doc.png"><script>document.title="pwned"</script>'
EVIL_REASON = f'</td></tr></table><iframe src="https://{CANARY}/frame"></iframe>'
KEY_A, KEY_B, KEY_C = "a" * 32, "b" * 32, "c" * 32


def _history(url: str) -> None:
    """About 40 rows over ten days (2026-03-01 to 2026-03-10)."""
    owner = PostgresAuditLog(Database.from_url(url))
    writer = PostgresAuditLog(Database.from_url(role_url(url, AUDIT_WRITER)))
    retrieve = PostgresAuditLog(Database.from_url(role_url(url, RETRIEVE)))
    maintain = PostgresAuditLog(Database.from_url(role_url(url, MAINTAIN)))
    rewrap = PostgresAuditLog(Database.from_url(role_url(url, REWRAP)))
    for key, suite in ((KEY_A, "xwing"), (KEY_B, "xwing"), (KEY_C, "mlkem1024")):
        owner.append(operation="key.create", outcome="success", key_id=key,
                     details={"suite": suite})  # fmt: skip
    maintain.append(operation="key.pool_maintained", outcome="success",
                    details={"queued": [], "created": {"xwing": 2, "mlkem1024": 1},
                             "rotations": []})  # fmt: skip
    for i in range(6):
        writer.append(operation="document.encrypt", outcome="success", document_id=f"doc-{i}",
                      key_id=KEY_A, request_id=f"exec-{i}", details={"tenant": "acme"})  # fmt: skip
    for i, req in enumerate(("r1", "r2", "r3")):
        retrieve.append(operation="document.decrypt", outcome="attempt", actor=ALICE,
                        document_id=f"doc-{i}", key_id=KEY_A, request_id=req)  # fmt: skip
        retrieve.append(operation="document.decrypt", outcome="success", actor=ALICE,
                        document_id=f"doc-{i}", key_id=KEY_A, request_id=req,
                        details={"delivery": "inline", "size": 1000 + i})  # fmt: skip
    retrieve.append(operation="document.decrypt", outcome="refused", actor=BOB,
                    document_id="doc-1", request_id="r4",
                    details={"reason": "not_allowed"})  # fmt: skip
    retrieve.append(operation="document.decrypt", outcome="refused", actor=BOB,
                    document_id=EVIL_DOC, request_id="r5",
                    details={"reason": EVIL_REASON})  # fmt: skip
    retrieve.append(operation="document.decrypt", outcome="attempt", actor=ALICE,
                    document_id="doc-4", key_id=KEY_A, request_id="r6")  # fmt: skip
    retrieve.append(operation="document.decrypt", outcome="failure", actor=ALICE,
                    document_id="doc-4", key_id=KEY_A, request_id="r6",
                    details={"reason": "TransientError"})  # fmt: skip
    retrieve.append(operation="document.decrypt", outcome="attempt", actor=ALICE,
                    document_id="doc-5", key_id=KEY_A, request_id="r7")  # never finished
    owner.append(operation="key.rotation_queued", outcome="success", key_id=KEY_B,
                 details={"reason": "max_age"})  # fmt: skip
    rewrap.append(operation="key.rotation_failed", outcome="failure", key_id=KEY_B,
                  details={"error": "States.Timeout"})  # fmt: skip
    owner.append(operation="key.rotation_finished", outcome="success", key_id=KEY_B,
                 details={"new_key_id": KEY_A, "documents_rewrapped": 4})  # fmt: skip
    owner.append(operation="key.expire", outcome="success", key_id=KEY_B)
    owner.append(operation="key.revoke", outcome="success", key_id=KEY_C,
                 details={"reason": "audit finding"})  # fmt: skip
    owner.append(operation="key.shred", outcome="success", key_id=KEY_C,
                 details={"documents_lost": 0})  # fmt: skip
    maintain.append(operation="key.pool_maintained", outcome="success",
                    details={"queued": [KEY_B], "created": {"xwing": 0}, "rotations": []})
    retrieve.append(operation="document.decrypt", outcome="attempt", actor=BOB,
                    document_id=EVIL_DOC, key_id=KEY_A, request_id="r8")  # fmt: skip
    retrieve.append(operation="document.decrypt", outcome="success", actor=BOB,
                    document_id=EVIL_DOC, key_id=KEY_A, request_id="r8",
                    details={"delivery": "url", "size": 77})  # fmt: skip
    # Spread the rows: row n at 2026-03-01 00:00 UTC + 6 h * n, hashes recomputed.
    db = Database.from_url(url)
    with db.transaction() as s:
        s.script("SET LOCAL session_replication_role = replica")
        s.script("""DO $$
        DECLARE r record; prev bytea := '\\x' || repeat('00', 32);
        BEGIN
          FOR r IN SELECT * FROM access_logs ORDER BY seq LOOP
            UPDATE access_logs SET
              occurred_at = timestamptz '2026-03-01 00:00:00+00' + r.seq * interval '6 hours',
              prev_hash = prev,
              row_hash = audit_row_hash_v2(r.seq,
                timestamptz '2026-03-01 00:00:00+00' + r.seq * interval '6 hours',
                r.operation, r.outcome, r.actor, r.document_id, r.key_id, r.request_id,
                r.details, r.db_role, prev)
            WHERE seq = r.seq RETURNING row_hash INTO prev;
          END LOOP;
          UPDATE audit_chain_head SET row_hash = prev;
        END $$""")
    db.close()


@pytest.fixture(scope="module")
def history_url(make_database: Callable[[], str]) -> str:
    url = make_database()
    db = Database.from_url(url)
    migrate(db)
    db.close()
    _history(url)
    return role_url(url, AUDITOR)


def _report(url: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli_main(["audit", "report", "--database-url", url, *args])
    return rc, capsys.readouterr().out


def test_json_report_counts_the_generated_history(history_url: str, capsys) -> None:
    rc, out = _report(history_url, capsys, "--since", "2026-03-01", "--until", "2026-03-20",
                      "--format", "json")  # fmt: skip
    assert rc == 0
    report = json.loads(out)
    assert report["chain"]["ok"] is True and report["chain"]["rows"] == report["rows_in_period"]
    assert [d["actor"] for d in report["decryptions"]] == [ALICE] * 3 + [BOB]
    assert [d["size"] for d in report["decryptions"]] == [1000, 1001, 1002, 77]
    assert [d["document_id"] for d in report["unfinished_attempts"]] == ["doc-5"]
    assert [(r["actor"], r["reason"]) for r in report["refusals"]] == [
        (BOB, "not_allowed"), (BOB, EVIL_REASON)]  # fmt: skip
    failures = {(f["operation"], f["reason"]) for f in report["failures"]}
    assert failures == {("document.decrypt", "TransientError"),
                        ("key.rotation_failed", "States.Timeout")}  # fmt: skip
    events = [(k["key_id"], k["event"]) for k in report["key_events"]]
    for expected in ((KEY_A, "created"), (KEY_B, "rotated"), (KEY_C, "revoked"),
                     (KEY_C, "shredded"), (KEY_B, "expired")):  # fmt: skip
        assert expected in events
    # Pool health from the chain's key rows: 3 active after the first run; KEY_B queued
    # then expired and KEY_C revoked by the second.
    assert [p["active"] for p in report["pool"]] == [{"mlkem1024": 1, "xwing": 2}, {"xwing": 1}]
    assert report["pool"][0]["created"] == {"mlkem1024": 1, "xwing": 2}
    assert report["pool"][1]["queued"] == 1
    days = {d["day"]: d for d in report["activity"]}
    assert sum(d["decryptions"] for d in days.values()) == 4
    assert sum(d["encryptions"] for d in days.values()) == 6
    assert len(days) >= 8  # 6-hour steps over the history
    assert report["digests"] is None


def test_period_bounds_select_rows_and_pool_state_counts_earlier_rows(
    history_url: str, capsys
) -> None:
    # Rows 1..3 (key.create) fall on 2026-03-01; 2026-03-02 on holds neither.
    rc, out = _report(history_url, capsys, "--since", "2026-03-02T00:00:00Z",
                      "--until", "2026-03-05", "--format", "json")  # fmt: skip
    report = json.loads(out)
    assert rc == 0
    assert all("2026-03-02" <= r["occurred_at"] < "2026-03-06" for r in report["decryptions"])
    assert not any(k["event"] == "created" for k in report["key_events"])
    assert report["until"].startswith("2026-03-06T00:00:00")  # a date includes its day
    # The whole chain is verified whatever the period.
    assert report["chain"]["rows"] > report["rows_in_period"]


def test_bad_input_is_one_line_and_writes_nothing(history_url: str, tmp_path: Path,
                                                  capsys) -> None:  # fmt: skip
    out = tmp_path / "r.html"
    out.write_text("keep")
    assert cli_main(["audit", "report", "--database-url", history_url, "--since", "2026-03-01",
                     "--out", str(out)]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "use --force" in err and out.read_text() == "keep"
    assert cli_main(["audit", "report", "--database-url", history_url, "--since", "2026-03-05",
                     "--until", "2026-03-01"]) == 1  # fmt: skip
    assert "later than --since" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["audit", "report", "--since", "yesterday"])
    assert "expected YYYY-MM-DD" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


class _Dom(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "action", "xlink:href", "srcset", "poster", "data"):
                self.urls.append(value or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_renders_in_chromium_with_content_and_no_network(
    history_url: str, tmp_path: Path, capsys, chromium: Chromium,  # noqa: F811
    request_recorder: RequestRecorder, artefacts_dir: Path,  # noqa: F811
) -> None:  # fmt: skip
    page = tmp_path / "audit-report.html"
    rc = cli_main(["audit", "report", "--database-url", history_url, "--since", "2026-03-01",
                   "--until", "2026-03-20", "--format", "html", "--out", str(page)])  # fmt: skip
    assert rc == 0 and "wrote" in capsys.readouterr().out
    raw = page.read_text("utf-8")
    assert "Content-Security-Policy" in raw and "<script" not in raw
    assert "http://" not in raw.replace(f"http://{CANARY}", "")  # only the escaped payloads

    dom_text = chromium.dump_dom(page, proxy=request_recorder)
    dom = _Dom()
    dom.feed(dom_text)
    text = " ".join(dom.text)
    assert "content=\"default-src 'none';" in dom_text  # the policy as the browser read it
    # The payloads are text on the page, not elements.
    assert "script" not in dom.tags and "img" not in dom.tags and "iframe" not in dom.tags
    assert not any(u.startswith(("http:", "https:", "//")) for u in dom.urls)
    assert EVIL_DOC in text and EVIL_REASON in text
    assert "pwned" not in (dom_text.split("<title>", 1)[1].split("</title>", 1)[0])
    # Content: names, numbers, sections.
    assert ALICE in text and BOB in text and "doc-5" in text
    for heading in ("Who decrypted what, and when", "Refusals", "Failures", "Key lifecycle",
                    "Key pool health", "Chain verification", "Signed digests"):  # fmt: skip
        assert heading in text
    assert "Chain verified" in text and "no digests configured" in text
    assert "shredded" in text and "rotated" in text and "TransientError" in text
    assert dom.tags.count("svg") == 2 and "rect" in dom.tags and "polyline" in dom.tags
    assert not [line for line in request_recorder.lines if CANARY in line], request_recorder.lines

    shot = chromium.screenshot(page, artefacts_dir / "audit-report.png", proxy=request_recorder)
    pdf = chromium.print_pdf(page, artefacts_dir / "audit-report.pdf", proxy=request_recorder)
    (artefacts_dir / "audit-report.html").write_text(raw, "utf-8")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    print(f"audit report artefacts: {shot} {pdf}")
    assert not [line for line in request_recorder.lines if CANARY in line]


def test_the_network_check_sees_a_request_when_one_is_made(
    tmp_path: Path, chromium: Chromium, request_recorder: RequestRecorder,  # noqa: F811
) -> None:  # fmt: skip
    """Control: the recorder would catch the payload had it been rendered as markup."""
    page = tmp_path / "control.html"
    page.write_text(f"<!DOCTYPE html><html><body>{EVIL_DOC}</body></html>", "utf-8")
    chromium.dump_dom(page, proxy=request_recorder)
    assert [line for line in request_recorder.lines if CANARY in line]


def test_the_admin_command_builds_the_same_model_as_the_auditor(history_url: str,
                                                                 capsys) -> None:  # fmt: skip
    from pqfile.adapters.postgres.operator import PostgresOperatorBackend
    from pqfile.errors import InvalidEventError
    from pqfile.usecases.admin import AdminRequest
    from pqfile.usecases.audit_report import AuditReport

    backend = PostgresOperatorBackend(admin=lambda: Database.from_url(history_url),
                                      auditor=lambda: Database.from_url(history_url))  # fmt: skip
    request = AdminRequest.from_payload({"command": "audit.report", "args": {
        "since": "2026-03-01T00:00:00+00:00", "until": "2026-03-21T00:00:00+00:00"}})
    assert request.role == "auditor"
    answer = backend.run(request, actor="tests", request_id=None)
    rc, out = _report(history_url, capsys, "--since", "2026-03-01", "--until", "2026-03-20",
                      "--format", "json")  # fmt: skip
    direct = json.loads(out)
    assert rc == 0 and {**answer, "generated_at": ""} == {**direct, "generated_at": ""}
    assert AuditReport.from_dict(answer).as_dict() == answer
    for bad in ({"since": "yesterday", "until": "2026-03-02"}, {"since": "2026-03-01"},
                {"since": "2026-03-01", "until": "2026-03-02", "limit": 3}):  # fmt: skip
        with pytest.raises(InvalidEventError):
            AdminRequest.from_payload({"command": "audit.report", "args": bad})
