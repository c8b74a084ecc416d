"""X-Ray subsegments for database calls (pqfile.adapters.postgres.tracing.traced) on real
PostgreSQL, recorded by aws_xray_sdk's own in-process recorder with sampling forced on and
an emitter that keeps what it would send (no daemon, no mock of the database): every
statement appears, named for what it runs, with no SQL text, parameter or error message.
Plus: importing the adapter does not load the SDK (engineer D's cold start), and with the
SDK loaded but no trace open nothing is recorded and nothing complains.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pqfile.adapters.postgres.audit import PostgresAuditLog
from pqfile.adapters.postgres.connection import Database, PermissionDeniedError, statement_name
from pqfile.adapters.postgres.migrations import migrate
from tests.fixtures.postgres import AUDIT_WRITER, AUDITOR, role_url

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]

SECRET_DOC = "doc-SECRET-4b1d"
SECRET_DETAIL = "detail-SECRET-77aa"


@pytest.fixture(scope="module")
def url(make_database: Callable[[], str]) -> str:
    url = make_database()
    db = Database.from_url(url)
    migrate(db)
    db.close()
    return url


@pytest.fixture
def recorder() -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """The SDK's global recorder, sampling every trace, its segments kept in a list."""
    from aws_xray_sdk import global_sdk_config
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.core.context import Context
    from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter

    sent: list[dict[str, Any]] = []

    class KeepingEmitter(UDPEmitter):  # type: ignore[misc]
        def send_entity(self, entity: Any) -> None:
            sent.append(json.loads(entity.serialize()))

    saved = (xray_recorder._emitter, xray_recorder.sampling, xray_recorder.context,
             xray_recorder.streaming_threshold, global_sdk_config.sdk_enabled())  # fmt: skip
    global_sdk_config.set_sdk_enabled(True)
    xray_recorder.configure(emitter=KeepingEmitter(), sampling=False, context=Context(),
                            context_missing="RUNTIME_ERROR", streaming_threshold=1000)  # fmt: skip
    try:
        yield xray_recorder, sent
    finally:
        xray_recorder.configure(emitter=saved[0], sampling=saved[1], context=saved[2],
                                streaming_threshold=saved[3])  # fmt: skip
        global_sdk_config.set_sdk_enabled(saved[4])


def _subsegments(segment: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for sub in segment.get("subsegments", []):
        out.append(sub)
        out.extend(_subsegments(sub))
    return out


def test_each_database_call_is_a_subsegment_without_values(url: str, recorder) -> None:
    xray, sent = recorder
    writer = Database.from_url(role_url(url, AUDIT_WRITER))
    auditor = Database.from_url(role_url(url, AUDITOR))
    xray.begin_segment("pqfile-test")
    try:
        PostgresAuditLog(writer).append(operation="document.encrypt", outcome="success",
                                        document_id=SECRET_DOC,
                                        details={"note": SECRET_DETAIL})  # fmt: skip
        report = PostgresAuditLog(auditor).verify_chain()
        with pytest.raises(PermissionDeniedError):  # the auditor may not append
            PostgresAuditLog(auditor).append(operation="document.encrypt", outcome="success",
                                             document_id=SECRET_DOC)  # fmt: skip
    finally:
        xray.end_segment()
        writer.close()
        auditor.close()
    assert report.ok
    (segment,) = sent
    subs = _subsegments(segment)
    names = [s["name"] for s in subs]
    assert names.count("connect") == 2
    for expected in ("SELECT audit_append", "BEGIN", "SELECT audit_chain_head",
                     "SELECT access_logs", "COMMIT"):  # fmt: skip
        assert expected in names, names
    assert all(s["namespace"] == "remote" for s in subs if s["name"] != "connect")
    append = next(s for s in subs if s["name"] == "SELECT audit_append")
    assert append["sql"] == {"database_type": "PostgreSQL", "driver_version": "pg8000",
                             "user": AUDIT_WRITER}  # fmt: skip
    refused = [s for s in subs if s["name"] == "SELECT audit_append" and s.get("fault")]
    assert len(refused) == 1 and refused[0]["annotations"] == {"sqlstate": "42501"}
    text = json.dumps(segment)
    assert SECRET_DOC not in text and SECRET_DETAIL not in text
    assert "permission denied" not in text and "cause" not in refused[0]  # no error message


def test_no_open_trace_records_nothing_and_raises_nothing(url: str, recorder) -> None:
    _, sent = recorder  # context_missing=RUNTIME_ERROR: asking for a segment would raise
    db = Database.from_url(role_url(url, AUDITOR))
    try:
        assert PostgresAuditLog(db).verify_chain().ok
    finally:
        db.close()
    assert sent == []


def test_importing_the_adapter_does_not_load_the_xray_sdk() -> None:
    code = ("import sys, pqfile.adapters.postgres.connection, pqfile.adapters.postgres.audit;"
            "print(sorted(m for m in sys.modules if m.startswith('aws_xray_sdk')))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("sql", "script", "name"),
    [
        ("SELECT audit_append(:operation, :outcome, 'x')", False, "SELECT audit_append"),
        ("SELECT * FROM key_select(:suite)", False, "SELECT key_select"),
        ("SELECT seq, row_hash FROM audit_chain_head WHERE singleton", False,
         "SELECT audit_chain_head"),
        ("UPDATE documents SET status = 'x' WHERE id = :id", False, "UPDATE documents"),
        ("INSERT INTO access_rules (principal) VALUES (:p)", False, "INSERT access_rules"),
        ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", True, "BEGIN"),
        ("-- 0001_init.sql\nCREATE TABLE t (x int);", True, "SQL script"),
        ("UPDATE access_logs SET actor = 'secret' WHERE seq = 5", True, "SQL script"),
        ("SELECT 'literal'", False, "SELECT"),
    ],
)
def test_statement_names_hold_identifiers_only(sql: str, script: bool, name: str) -> None:
    assert statement_name(sql, script=script) == name
