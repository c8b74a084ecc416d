"""Migration 0011 on a real PostgreSQL: tenants (with the backfill), access rules managed
only by operators (each change audited), access_check deny by default with ARN patterns,
and the retrieve role's attempt rows."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pqfile.adapters.postgres import (
    Database,
    DatabaseError,
    InvariantError,
    PermissionDeniedError,
    PostgresAccessPolicy,
    PostgresAccessRules,
    PostgresAuditLog,
    PostgresDocumentRepository,
)
from pqfile.adapters.postgres.migrations import default_migrations_dir, migrate
from pqfile.ports import AccessOperation, AuditOutcome
from tests.fixtures.postgres import FETCH, OPERATOR, RETRIEVE, role_url

pytestmark = pytest.mark.integration

ALICE = "arn:aws:iam::123456789012:user/alice"
BOB = "arn:aws:iam::123456789012:user/bob"
ROLE = "arn:aws:iam::123456789012:role/reader"
RETRIEVE_OP = AccessOperation.RETRIEVE


def _db(url: str, role: str) -> Database:
    return Database.from_url(role_url(url, role))


def _begin(url: str, doc: str, key: str, tenant: str) -> None:
    db = _db(url, FETCH)
    try:
        PostgresDocumentRepository(db).begin(
            document_id=doc, source_bucket="up", source_key=key, source_version_id="v1",
            source_etag=None, plaintext_size=1, tenant=tenant)  # fmt: skip
    finally:
        db.close()


def test_document_begin_requires_the_keys_tenant(db_url: str) -> None:
    _begin(db_url, "d-ok", "uploads/a/x.txt", "a")
    for key, tenant in (("uploads/a/y.txt", "b"), ("uploads/y.txt", "uploads"),
                        ("uploads/a/z.txt", "")):  # fmt: skip
        with pytest.raises(InvariantError, match="tenant"):
            _begin(db_url, "d-bad", key, tenant)


def test_grant_check_revoke(db_url: str) -> None:
    _begin(db_url, "doc-a", "uploads/a/1.txt", "a")
    _begin(db_url, "doc-b", "uploads/b/1.txt", "b")
    op_db, ret_db = _db(db_url, OPERATOR), _db(db_url, RETRIEVE)
    try:
        rules, policy = PostgresAccessRules(op_db), PostgresAccessPolicy(ret_db)
        assert not policy.allows(ALICE, "doc-a", RETRIEVE_OP)  # deny by default
        rule = rules.grant(ALICE, tenant="a", document_id=None, operation=RETRIEVE_OP,
                           actor="ops@example.com")  # fmt: skip
        assert (
            rules.grant(ALICE, tenant="a", document_id=None, operation=RETRIEVE_OP, actor=None)
            == rule
        )  # idempotent
        assert policy.allows(ALICE, "doc-a", RETRIEVE_OP)
        assert not policy.allows(ALICE, "doc-b", RETRIEVE_OP)  # another tenant
        assert not policy.allows(BOB, "doc-a", RETRIEVE_OP)
        assert not policy.allows(ALICE, "doc-a", AccessOperation.OPERATE)
        assert not policy.allows(ALICE, "no-such-doc", RETRIEVE_OP)
        # one document only
        rules.grant(BOB, tenant=None, document_id="doc-b", operation=RETRIEVE_OP, actor=None)
        assert policy.allows(BOB, "doc-b", RETRIEVE_OP)
        assert not policy.allows(BOB, "doc-a", RETRIEVE_OP)
        (listed,) = [r for r in rules.list() if r.principal == ALICE]
        assert (listed.tenant, listed.document_id, listed.created_by) == ("a", None, OPERATOR)
        rules.revoke(ALICE, tenant="a", document_id=None, operation=RETRIEVE_OP, actor=None)
        assert not policy.allows(ALICE, "doc-a", RETRIEVE_OP)
        with pytest.raises(DatabaseError, match="no such rule"):
            rules.revoke(ALICE, tenant="a", document_id=None, operation=RETRIEVE_OP, actor=None)
        trail = [tuple(r) for r in op_db.run(
            "SELECT operation, actor FROM access_logs WHERE operation LIKE 'access.%' "
            "ORDER BY seq")]  # fmt: skip
        assert trail == [("access.grant", OPERATOR)] * 3 + [("access.revoke", OPERATOR)]
    finally:
        op_db.close()
        ret_db.close()


def test_patterns_match_with_star_only(db_url: str) -> None:
    _begin(db_url, "doc-p", "uploads/p/1.txt", "p")
    op_db, ret_db = _db(db_url, OPERATOR), _db(db_url, RETRIEVE)
    try:
        rules, policy = PostgresAccessRules(op_db), PostgresAccessPolicy(ret_db)
        rules.grant("arn:aws:iam::123456789012:user/team_*", tenant="p", document_id=None,
                    operation=RETRIEVE_OP, actor=None)  # fmt: skip
        assert policy.allows("arn:aws:iam::123456789012:user/team_x", "doc-p", RETRIEVE_OP)
        # `_` in the pattern is literal, not LIKE's any-one-character
        assert not policy.allows("arn:aws:iam::123456789012:user/teamAx", "doc-p", RETRIEVE_OP)
        assert not policy.allows("arn:aws:iam::999999999999:user/team_x", "doc-p", RETRIEVE_OP)
        for bad in ("*", "arn:aws:iam::*:user/x", "alice", "arn:aws:iam::123456789012:user/a b",
                    "arn:aws:iam::123456789012:role/100%"):  # fmt: skip
            with pytest.raises(InvariantError):
                rules.grant(bad, tenant="p", document_id=None, operation=RETRIEVE_OP,
                            actor=None)  # fmt: skip
        with pytest.raises(InvariantError):
            rules.grant(ROLE, tenant="p", document_id="doc-p", operation=RETRIEVE_OP, actor=None)
    finally:
        op_db.close()
        ret_db.close()


def test_only_operators_change_rules(db_url: str) -> None:
    _begin(db_url, "doc-x", "uploads/x/1.txt", "x")
    ret_db = _db(db_url, RETRIEVE)
    try:
        with pytest.raises(PermissionDeniedError):
            PostgresAccessRules(ret_db).grant(ALICE, tenant="x", document_id=None,
                                              operation=RETRIEVE_OP, actor=None)  # fmt: skip
        with pytest.raises(PermissionDeniedError):
            PostgresAccessRules(ret_db).list()
    finally:
        ret_db.close()


def test_retrieve_appends_attempt_rows_with_its_verified_caller(db_url: str) -> None:
    ret_db = _db(db_url, RETRIEVE)
    try:
        audit = PostgresAuditLog(ret_db)
        audit.append(
            operation="document.decrypt",
            outcome=AuditOutcome.ATTEMPT,
            actor=ALICE,
            document_id="doc-1",
            details={"requested": {"document_id": "doc-1"}},
        )
        rows = Database.from_url(db_url).run(
            "SELECT actor, db_role FROM access_logs WHERE outcome = 'attempt'"
        )
        assert [tuple(r) for r in rows] == [(ALICE, RETRIEVE)]
    finally:
        ret_db.close()


def test_backfill_gives_every_older_document_a_tenant(
    make_database: Callable[[], str], tmp_path: Path
) -> None:
    before = tmp_path / "m"
    before.mkdir()
    for path in sorted(default_migrations_dir().glob("*.sql")):
        if int(path.name[:4]) < 11:  # the schema before 0011 (later ones need it)
            shutil.copy(path, before / path.name)
    url = make_database()
    db = Database.from_url(url)
    try:
        migrate(db, before)
        for doc, key in (("d1", "uploads/acme/r.pdf"), ("d2", "uploads/r.pdf"),
                         ("d3", "uploads/bad tenant/r.pdf")):  # fmt: skip
            db.run("INSERT INTO documents (document_id, source_bucket, source_key, source_etag) "
                   "VALUES (:d, 'up', :k, 'e')", d=doc, k=key)  # fmt: skip
        migrate(db)
        rows = dict(db.run("SELECT document_id, tenant FROM documents ORDER BY 1"))
        assert rows == {"d1": "acme", "d2": "legacy", "d3": "legacy"}
    finally:
        db.close()


def test_document_begin_refuses_an_out_of_range_content_type(db_url: str) -> None:
    db = _db(db_url, FETCH)
    try:
        repo = PostgresDocumentRepository(db)
        with pytest.raises(InvariantError, match="out of range"):
            db.run(
                "SELECT document_begin('d-ct', 'up', 'uploads/a/ct.txt', 'v1', NULL, 1, 'a', '')"
            )
        # the adapter cuts a long one to the column's 255 characters
        row = repo.begin(document_id="d-ct2", source_bucket="up", source_key="uploads/a/c2",
                         source_version_id="v1", source_etag=None, plaintext_size=1,
                         tenant="a", content_type="t/" + "x" * 400)  # fmt: skip
        assert row.source_content_type == "t/" + "x" * 253
    finally:
        db.close()
