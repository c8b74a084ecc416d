"""The scheduled audit verification (pqfile.handlers.audit_verify) on real PostgreSQL, as
the read-only pqfile_auditor role: the AuditVerificationFailures metric it publishes (the
audit-verification-failed alarm's) is 0 for an intact chain and 1 for a tampered one."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from pqfile.adapters.postgres.audit import PostgresAuditLog
from pqfile.adapters.postgres.connection import Database
from pqfile.adapters.postgres.migrations import migrate
from pqfile.handlers import audit_verify
from tests.fixtures.postgres import AUDIT_WRITER, AUDITOR, role_url

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]


@pytest.fixture
def db_url(make_database: Callable[[], str]) -> str:
    url = make_database()
    db = Database.from_url(url)
    migrate(db)
    db.close()
    log = PostgresAuditLog(Database.from_url(role_url(url, AUDIT_WRITER)))
    for i in range(1, 8):
        log.append(operation="document.encrypt", outcome="success",
                   document_id=f"doc-{i}", request_id=f"exec-{i}")  # fmt: skip
    return url


@pytest.fixture
def verify(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[[], tuple[dict[str, Any], list[float]]]]:
    """Run the handler as pqfile_auditor; return its report and the metric values printed."""
    monkeypatch.setenv("PQFILE_DATABASE_URL", role_url(db_url, AUDITOR))
    monkeypatch.setattr(audit_verify, "BATCH_SIZE", 3)  # several batches over 7 rows

    def run() -> tuple[dict[str, Any], list[float]]:
        audit_verify.reset()
        capsys.readouterr()
        context = SimpleNamespace(function_name="pqfile-audit-verify", memory_limit_in_mb=256,
                                  invoked_function_arn="arn:aws:lambda:us-east-1:1:function:x",
                                  aws_request_id="req-1")  # fmt: skip
        report = audit_verify.handler({}, context)
        values = []
        for line in capsys.readouterr().out.splitlines():
            doc = json.loads(line) if line.startswith("{") else {}
            if "AuditVerificationFailures" in doc:
                (directive,) = doc["_aws"]["CloudWatchMetrics"]
                assert directive["Namespace"] == "PQFile"
                assert ["service"] in directive["Dimensions"] and doc["service"] == "pqfile"
                value = doc["AuditVerificationFailures"]  # Powertools prints a list of values
                values.extend(float(v) for v in (value if isinstance(value, list) else [value]))
        return report, values

    yield run
    audit_verify.reset()


def test_intact_chain_publishes_zero_failures(verify) -> None:
    report, values = verify()
    assert report["ok"] is True and report["rows_checked"] == 7
    assert report["head_seq"] == 7 and len(report["head_hash"]) == 64
    assert report["first_broken_seq"] is None
    assert values == [0.0]


def test_tampered_row_is_named_and_publishes_one_failure(verify, db_url: str) -> None:
    owner = Database.from_url(db_url)
    try:
        with owner.transaction() as s:  # as a DBA would: append-only triggers bypassed
            s.script("SET LOCAL session_replication_role = replica")
            s.script("UPDATE access_logs SET actor = 'someone-else' WHERE seq = 5")
    finally:
        owner.close()
    report, values = verify()
    assert report["ok"] is False
    assert report["first_broken_seq"] == 5 and report["reason"]
    assert values == [1.0]


def test_the_auditor_role_is_read_only(db_url: str) -> None:
    from pqfile.adapters.postgres.connection import PermissionDeniedError

    auditor = PostgresAuditLog(Database.from_url(role_url(db_url, AUDITOR)))
    with pytest.raises(PermissionDeniedError):
        auditor.append(operation="forged", outcome="success", actor="tests")
