"""The audit trail: linear under concurrent writers, tamper-evident, append-only by
privilege and by trigger; `pqfile audit verify` names the first broken row."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pqfile.adapters.postgres.audit import PostgresAuditLog
from pqfile.adapters.postgres.connection import Database, ImmutableRowError, PermissionDeniedError
from pqfile.adapters.postgres.migrations import default_migrations_dir, migrate
from pqfile.cli import main as cli_main
from pqfile.keys.audit_chain import GENESIS_HASH
from tests.fixtures.postgres import (
    AUDIT_WRITER,
    AUDITOR,
    FUNCTION_ROLES,
    INGEST,
    OPERATOR,
    RETRIEVE,
    ROTATE,
    role_url,
)
from tests.fixtures.threads import run_threads

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]


def _fill(url: str, n: int = 10) -> PostgresAuditLog:
    # As retrieve: the one role that may name its (verified) caller, a principal ARN.
    log = PostgresAuditLog(Database.from_url(role_url(url, RETRIEVE)))
    for i in range(1, n + 1):
        seq = log.append(
            operation="document.decrypt",
            outcome="success" if i % 2 else "refused",
            actor=f"arn:aws:sts::123456789012:assumed-role/reader/fn-{i}",
            document_id=f"doc-{i}",
            key_id="ab" * 16 if i % 3 else None,
            request_id=f"exec-{i}",
            details={"size": i * 1000, "note": "ünïcødé ✓"} if i % 4 else None,
        )
        assert seq == i
    return log


def _as_dba(owner: Database, *statements: str) -> None:
    """Tamper as a database superuser would: with the append-only triggers bypassed."""
    with owner.transaction() as s:
        s.script("SET LOCAL session_replication_role = replica")
        for statement in statements:
            s.script(statement)


def _verify(url: str) -> dict[str, object]:
    report = PostgresAuditLog(Database.from_url(role_url(url, AUDITOR))).verify_chain(batch_size=3)
    return report.as_dict()


def test_chain_verifies_and_python_matches_database(db_url: str, owner_db: Database) -> None:
    _fill(db_url)
    report = _verify(db_url)
    assert report["ok"] and report["rows"] == 10 and report["head_seq"] == 10
    rows = owner_db.run("SELECT seq, prev_hash, row_hash FROM access_logs ORDER BY seq")
    assert bytes(rows[0][1]) == GENESIS_HASH
    for prev, row in itertools.pairwise(rows):
        assert bytes(row[1]) == bytes(prev[2])
    tail = list(PostgresAuditLog(owner_db).tail(3))
    assert [r["seq"] for r in tail] == [8, 9, 10]
    assert tail[0]["details"] is None
    assert tail[1]["details"] == {"note": "ünïcødé ✓", "size": 9000}
    assert (
        tail[1]["actor"].endswith("fn-9")
        and tail[1]["key_id"] is None
        and tail[2]["key_id"] == "ab" * 16
    )


def test_many_concurrent_writers_keep_the_chain_linear(db_url: str) -> None:
    writers, per_writer = 8, 150
    seqs: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(writers)
    # three roles, each appending the operation it may append
    roles = (
        (AUDIT_WRITER, "document.encrypt"),
        (RETRIEVE, "document.decrypt"),
        (OPERATOR, "operator.note"),
    )

    def work(i: int) -> None:
        role, operation = roles[i % 3]
        log = PostgresAuditLog(Database.from_url(role_url(db_url, role)))
        barrier.wait()
        for j in range(per_writer):
            seq = log.append(operation=operation, outcome="success", request_id=f"{i}-{j}")
            with lock:
                seqs.append(seq)

    errors = run_threads(work, writers, timeout=300).errors
    assert not errors, errors
    assert sorted(seqs) == list(range(1, writers * per_writer + 1))
    report = _verify(db_url)
    assert report["ok"] and report["rows"] == writers * per_writer


@pytest.mark.parametrize(
    ("tamper", "broken_seq"),
    [
        # change one field of a middle row
        (["UPDATE access_logs SET actor = 'someone-else' WHERE seq = 5"], 5),
        (["UPDATE access_logs SET outcome = 'failure' WHERE seq = 5"], 5),
        (["UPDATE access_logs SET details = NULL WHERE seq = 6"], 6),
        (["UPDATE access_logs SET db_role = 'pqfile_rotate' WHERE seq = 7"], 7),
        (["UPDATE access_logs SET db_role = NULL WHERE seq = 7"], 7),
        (["UPDATE access_logs SET occurred_at = occurred_at + interval '1 hour' WHERE seq = 4"], 4),
        # delete a middle row, the last row, the first row
        (["DELETE FROM access_logs WHERE seq = 5"], 5),
        (["DELETE FROM access_logs WHERE seq = 10"], 10),
        (["DELETE FROM access_logs WHERE seq = 1"], 1),
        # swap two rows (their positions in the chain)
        (
            [
                "UPDATE access_logs SET seq = 1000 WHERE seq = 3",
                "UPDATE access_logs SET seq = 3 WHERE seq = 7",
                "UPDATE access_logs SET seq = 7 WHERE seq = 1000",
            ],
            3,
        ),
        # swap the contents of two rows, keeping each row's own seq and hashes
        (
            [
                "CREATE TEMP TABLE t AS SELECT * FROM access_logs WHERE seq IN (4, 8)",
                "UPDATE access_logs a SET actor = t.actor, request_id = t.request_id "
                "FROM t WHERE a.seq IN (4, 8) AND t.seq = 12 - a.seq",
            ],
            4,
        ),
    ],
)
def test_tampering_is_detected_and_named(
    db_url: str, owner_db: Database, tamper: list[str], broken_seq: int
) -> None:
    _fill(db_url)
    _as_dba(owner_db, *tamper)
    report = _verify(db_url)
    assert report["ok"] is False
    assert report["broken_seq"] == broken_seq, report


def test_forged_rows_are_detected(db_url: str, owner_db: Database) -> None:
    _fill(db_url)
    # A forged row appended after the tail, with a correctly computed hash: the recorded
    # chain head (updated only by audit_append) no longer matches.
    _as_dba(
        owner_db,
        "INSERT INTO access_logs SELECT 11, now(), 'decrypt', 'success', 'mallory', 'doc-1', "
        "NULL, NULL, NULL, row_hash, audit_row_hash(11, now(), 'decrypt', 'success', "
        "'mallory', 'doc-1', NULL, NULL, NULL, row_hash) FROM access_logs WHERE seq = 10",
    )
    report = _verify(db_url)
    assert report["ok"] is False and report["broken_seq"] == 11
    assert "beyond the recorded chain head" in str(report["reason"])


def test_forged_row_in_the_middle_is_detected(db_url: str, owner_db: Database) -> None:
    _fill(db_url)
    forged_hash = hashlib.sha256(b"forged").hexdigest()
    _as_dba(
        owner_db,
        "UPDATE access_logs SET seq = seq + 1000 WHERE seq >= 5",
        "UPDATE access_logs SET seq = seq - 999 WHERE seq > 1000",
        "INSERT INTO access_logs SELECT 5, now(), 'decrypt', 'success', 'mallory', 'doc-x', "
        f"NULL, NULL, NULL, row_hash, '\\x{forged_hash}'::bytea FROM access_logs WHERE seq = 4",
    )
    report = _verify(db_url)
    assert report["ok"] is False and report["broken_seq"] == 5


@pytest.mark.parametrize("role", sorted({*FUNCTION_ROLES.values(), OPERATOR, INGEST, ROTATE}))
def test_pipeline_roles_cannot_change_audit_rows(db_url: str, role: str) -> None:
    _fill(db_url, 3)
    db = Database.from_url(role_url(db_url, role))
    for statement in (
        "UPDATE access_logs SET actor = 'x' WHERE seq = 2",
        "DELETE FROM access_logs WHERE seq = 2",
        "TRUNCATE access_logs",
        "INSERT INTO access_logs (seq, occurred_at, operation, outcome, actor, prev_hash, "
        "row_hash) SELECT 4, now(), 'x', 'success', 'x', row_hash, row_hash FROM "
        "audit_chain_head",
        "UPDATE audit_chain_head SET seq = 0",
    ):
        with pytest.raises(PermissionDeniedError, match="permission denied"):
            db.run(statement)
    db.close()
    assert _verify(db_url)["ok"]


def test_even_the_owner_meets_the_append_only_trigger(db_url: str, owner_db: Database) -> None:
    _fill(db_url, 3)
    for statement in (
        "UPDATE access_logs SET actor = 'x' WHERE seq = 2",
        "DELETE FROM access_logs WHERE seq = 2",
        "TRUNCATE access_logs",
    ):
        with pytest.raises(ImmutableRowError, match="append-only"):
            owner_db.run(statement)
    assert _verify(db_url)["ok"]


def test_cli_audit_verify_and_tail(
    db_url: str,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fill(db_url, 6)
    monkeypatch.setenv("PQFILE_DATABASE_URL", db_url)
    assert cli_main(["audit", "verify"]) == 0
    assert "audit chain OK: 6 rows" in capsys.readouterr().out
    assert cli_main(["audit", "tail", "-n", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[-1].split()[0] == "6"
    assert cli_main(["audit", "tail", "--json", "-n", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["request_id"] == "exec-6"
    _as_dba(owner_db, "UPDATE access_logs SET key_id = NULL WHERE seq = 4")
    assert cli_main(["audit", "verify", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["broken_seq"] == 4
    assert cli_main(["audit", "verify"]) == 1
    assert "BROKEN at row 4" in capsys.readouterr().out


def test_consistent_rewrite_by_the_owner_is_caught_by_an_anchor(
    db_url: str,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fill(db_url, 8)
    anchor_seq, anchor_hash = PostgresAuditLog(owner_db).head()  # recorded outside, e.g. in S3
    _fill_more = PostgresAuditLog(Database.from_url(role_url(db_url, AUDIT_WRITER)))
    _fill_more.append(operation="document.encrypt", outcome="success")
    # A superuser rewrites row 5 and recomputes every later hash and the head: the chain
    # alone verifies again ...
    _as_dba(
        owner_db,
        "UPDATE access_logs SET actor = 'nobody' WHERE seq = 5",
        """DO $$
        DECLARE r record; prev bytea;
        BEGIN
          SELECT row_hash INTO prev FROM access_logs WHERE seq = 4;
          FOR r IN SELECT * FROM access_logs WHERE seq >= 5 ORDER BY seq LOOP
            UPDATE access_logs SET prev_hash = prev, row_hash = audit_row_hash_v2(r.seq,
              r.occurred_at, r.operation, r.outcome, r.actor, r.document_id, r.key_id,
              r.request_id, r.details, r.db_role, prev) WHERE seq = r.seq
            RETURNING row_hash INTO prev;
          END LOOP;
          UPDATE audit_chain_head SET row_hash = prev;
        END $$""",
    )
    assert _verify(db_url)["ok"]
    # ... but not against the anchor recorded before the rewrite.
    log = PostgresAuditLog(Database.from_url(role_url(db_url, AUDITOR)))
    report = log.verify_chain(anchors={anchor_seq: anchor_hash})
    assert not report.ok and report.broken_seq == anchor_seq
    monkeypatch.setenv("PQFILE_DATABASE_URL", db_url)
    assert cli_main(["audit", "verify", "--anchor", f"{anchor_seq}:{anchor_hash.hex()}"]) == 1
    assert f"BROKEN at row {anchor_seq}" in capsys.readouterr().out
    assert cli_main(["audit", "verify", "--anchor", f"2:{log.verify_chain().head_hash.hex()}"]) == 1
    with pytest.raises(SystemExit):
        cli_main(["audit", "verify", "--anchor", "not-an-anchor"])


_pg_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
)
_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=0, max_size=9)
# operations as audit_append accepts them: dotted lower-case words, at most 64 characters
_operation = st.lists(
    st.builds(lambda a, b: a + b, st.sampled_from("abcdefghijklmnopqrstuvwxyz"), _word),
    min_size=1,
    max_size=5,
).map(".".join)


@given(
    operation=_operation,
    outcome=st.sampled_from(["success", "failure", "refused"]),
    actor=_pg_text,
    document_id=st.none() | _pg_text,
    key_id=st.none() | st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
    request_id=st.none() | _pg_text,
    details=st.none()
    | st.dictionaries(_pg_text, st.integers() | _pg_text | st.booleans() | st.none(), max_size=4),
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_python_and_database_agree_on_the_encoding(
    migrated_db_url: str,
    operation: str,
    outcome: str,
    actor: str,
    document_id: str | None,
    key_id: str | None,
    request_id: str | None,
    details: dict[str, object] | None,
) -> None:
    # As an operator (a person may append any well-formed operation): the database records
    # the connected user as the actor and keeps the claimed name as the detail claimed_by.
    with (
        Database.from_url(role_url(migrated_db_url, OPERATOR)) as writer,
        Database.from_url(role_url(migrated_db_url, AUDITOR)) as reader,
    ):
        log = PostgresAuditLog(writer)
        seq = log.append(
            operation=operation,
            outcome=outcome,
            actor=actor,
            document_id=document_id,
            key_id=key_id,
            request_id=request_id,
            details=details,
        )
        audit = PostgresAuditLog(reader)
        (row,) = list(audit.tail(1))
        expected = dict(details or {})
        if actor != OPERATOR:
            expected["claimed_by"] = actor
        assert row["seq"] == seq and row["actor"] == OPERATOR
        assert row["details"] == (expected or details)
        assert row["db_role"] == OPERATOR  # recorded by the database, not the caller
        assert (row["document_id"], row["key_id"], row["request_id"]) == (
            document_id,
            key_id,
            request_id,
        )
        report = audit.verify_chain()
        assert report.ok, report


def test_rows_from_before_and_after_0008_verify_together(
    make_database: Callable[[], str], tmp_path: Path
) -> None:
    url = make_database()
    older = tmp_path / "migrations"
    older.mkdir()
    for path in sorted(default_migrations_dir().glob("*.sql")):
        if int(path.name[:4]) < 8:
            shutil.copy(path, older / path.name)
    with Database.from_url(url) as owner:
        migrate(owner, older)
        log = PostgresAuditLog(owner)
        for i in range(3):
            log.append(operation="encrypt", outcome="success", actor=f"v1-{i}")
        migrate(owner)
        for i in range(3):
            log.append(operation="encrypt", outcome="success", actor=f"v2-{i}")
        rows = list(log.tail(6))
        assert [r["db_role"] for r in rows] == [None] * 3 + ["postgres"] * 3
        report = log.verify_chain()
        assert report.ok and report.rows == 6
