"""Issue 9's findings 2, 3 and 4, reproduced as an attacker holding one function's database
credentials would: connected as that role to a migrated PostgreSQL, trying the attack with
plain SQL. Each test first names the attack, then asserts the database refuses it (or that
what it lets through is never used). The grants matrix (test_grants_matrix.py) checks every
cell; these check the rules inside the SECURITY DEFINER functions of migration 0010."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pqfile.adapters.kms import KmsSeedProtector
from pqfile.adapters.kms_mac import KmsKeyAttestor
from pqfile.adapters.postgres.audit import PostgresAuditLog
from pqfile.adapters.postgres.connection import (
    AuditRefusedError,
    Database,
    InvariantError,
    PermissionDeniedError,
)
from pqfile.adapters.postgres.documents import PostgresDocumentRepository
from pqfile.adapters.postgres.keystore import PostgresKeyStore
from pqfile.crypto import kem
from pqfile.errors import CustodyError, NoActiveKeyError, TransientError
from pqfile.keys.custody import seed_context
from pqfile.keys.model import IllegalTransitionError
from tests.fixtures.postgres import (
    AUDIT_WRITER,
    AUDITOR,
    ENCRYPT,
    FETCH,
    FUNCTION_ROLES,
    INGEST,
    INGEST_ROLES,
    MAINTAIN,
    OPERATOR,
    RECORD_FAILURE,
    RETRIEVE,
    REWRAP,
    ROTATE,
    SELECT_KEY,
    SHRED,
    STORE,
    role_url,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]

FUNCTION_ROLE_NAMES = sorted(set(FUNCTION_ROLES.values()))
EVERY_ROLE = sorted({*FUNCTION_ROLE_NAMES, OPERATOR, INGEST, ROTATE})
ARN = "arn:aws:sts::123456789012:assumed-role/reader/alice"


@pytest.fixture
def connect(db_url: str) -> Iterator[Callable[[str], Database]]:
    """``connect(role)``: a Database on the test database as that role (closed after)."""
    opened: list[Database] = []

    def make(role: str) -> Database:
        db = Database.from_url(role_url(db_url, role))
        opened.append(db)
        return db

    yield make
    for db in opened:
        db.close()


@pytest.fixture
def pool(
    db_url: str, protector: KmsSeedProtector, attestor: KmsKeyAttestor
) -> Callable[[str], PostgresKeyStore]:
    """``pool(role)``: the key pool as that role, with the real KMS seed and HMAC keys."""

    def make(role: str) -> PostgresKeyStore:
        db = Database.from_url(role_url(db_url, role))
        return PostgresKeyStore(db, protector, attestor=attestor)

    return make


def _planted_key(protector: KmsSeedProtector, suite: str = "xwing") -> tuple[kem.SecretKey, dict]:
    """A key whose secret the attacker keeps, its seed wrapped with the real KMS key (the
    maintain role may Encrypt with it), its id correct: everything but the attestation."""
    secret = kem.generate(kem.Suite.from_name(suite))
    public = secret.public_key()
    wrapped, arn = protector.wrap(secret.seed, seed_context(public.key_id, suite))
    return secret, {"id": public.key_id, "suite": suite, "pk": public.raw, "ws": wrapped,
                    "arn": arn}  # fmt: skip


_KEY_CREATE = (
    "SELECT key_create(:id, :suite, :pk, :ws, :arn, :att, CAST(2592000 AS double precision), "
    "NULL, NULL)"
)


# --- finding 2: one role for five functions could plant and revoke keys ---------------------


@pytest.mark.parametrize("role", EVERY_ROLE)
def test_no_role_can_insert_a_key_row(
    role: str, connect: Callable[[str], Database], protector: KmsSeedProtector
) -> None:
    _, key = _planted_key(protector)
    with pytest.raises(PermissionDeniedError, match="permission denied"):
        connect(role).run(
            "INSERT INTO encryption_keys (id, suite, public_key, wrapped_seed, kms_key_arn, "
            "rotate_after) VALUES (:id, :suite, :pk, :ws, :arn, now() + interval '30 days')",
            **key,
        )


def test_a_key_planted_with_a_forged_attestation_is_stored_but_never_used(
    connect: Callable[[str], Database],
    pool: Callable[[str], PostgresKeyStore],
    protector: KmsSeedProtector,
    db_url: str,
) -> None:
    (good,) = pool(MAINTAIN).create_keys("xwing", 1)
    # The attacker holds the maintain role: key_create checks the id, the lengths, the KMS
    # ARN and that there is an attestation, but it cannot check a KMS MAC.
    _, key = _planted_key(protector)
    maintain = connect(MAINTAIN)
    maintain.run(_KEY_CREATE, att=bytes(32), **key)
    assert connect(OPERATOR).run("SELECT status FROM encryption_keys WHERE id = :id",
                                 id=key["id"]) == [["active"]]  # fmt: skip
    # ... but selection verifies every key's attestation: the planted key, least used of
    # all, is skipped every time, and the encrypt step's lookup refuses it.
    select = pool(SELECT_KEY)
    assert {select.select_key_record("xwing").key_id for _ in range(30)} == {good.key_id}
    with pytest.raises(CustodyError):
        pool(ENCRYPT).encryption_key(key["id"])
    # nor does a rotation ever move documents onto it
    owner = Database.from_url(db_url)
    owner.run("INSERT INTO key_rotations (old_key_id, reason) VALUES (:k, 'age')", k=good.key_id)
    owner.run("UPDATE encryption_keys SET status = 'rotation_queued' WHERE id = :k", k=good.key_id)
    owner.close()
    rewrap = pool(REWRAP)
    (run,) = rewrap.rotations("queued")
    with pytest.raises(NoActiveKeyError):
        rewrap.begin_rotation(run.rotation_id)
    (fresh,) = pool(MAINTAIN).create_keys("xwing", 1)
    assert rewrap.begin_rotation(run.rotation_id).new_key_id == fresh.key_id


def test_key_create_checks_the_key_itself(
    connect: Callable[[str], Database], protector: KmsSeedProtector
) -> None:
    maintain = connect(MAINTAIN)
    _, key = _planted_key(protector)
    other = kem.generate(kem.Suite.XWING).public_key()
    for bad, why in (
        ({**key, "id": other.key_id}, r"not H\(public key\)"),
        ({**key, "pk": key["pk"][:-1]}, "wrong length"),
        ({**key, "arn": "arn:aws:iam::123456789012:root"}, "KMS key"),
        ({**key, "suite": "rsa"}, "unknown suite"),
    ):
        with pytest.raises(InvariantError, match=why):
            maintain.run(_KEY_CREATE, att=bytes(32), **bad)
    with pytest.raises(InvariantError, match="attestation"):
        maintain.run(_KEY_CREATE, att=None, **key)
    for role in (REWRAP, SELECT_KEY, OPERATOR):  # only maintain creates keys
        with pytest.raises(PermissionDeniedError):
            connect(role).run(_KEY_CREATE, att=bytes(32), **key)


@pytest.mark.parametrize("role", [r for r in EVERY_ROLE if r != OPERATOR])
def test_nobody_but_the_operator_can_revoke(
    role: str, connect: Callable[[str], Database], pool: Callable[[str], PostgresKeyStore]
) -> None:
    (key,) = pool(MAINTAIN).create_keys("xwing", 1)
    db = connect(role)
    for statement in (
        "SELECT key_revoke(:id, 'an attacker', NULL, NULL)",
        "SELECT key_expire(:id, NULL, NULL)",
        "SELECT key_request(:id, 'revoke', 'an attacker', NULL, NULL)",
        "UPDATE encryption_keys SET status = 'revoked', revoke_reason = 'x' WHERE id = :id",
    ):
        with pytest.raises(PermissionDeniedError, match="permission denied"):
            db.run(statement, id=key.key_id)
    assert pool(OPERATOR).get_key(key.key_id).status.value == "active"


def test_the_operator_revokes_and_a_workflow_only_completes(
    connect: Callable[[str], Database], pool: Callable[[str], PostgresKeyStore]
) -> None:
    a, b = pool(MAINTAIN).create_keys("xwing", 2)
    operator = pool(OPERATOR)
    assert operator.revoke(a.key_id, "lost laptop").status.value == "revoked"
    request = operator.request(b.key_id, "revoke", "rotate it out first")
    rewrap = connect(REWRAP)
    # the workflow completes the pending request (no document uses b) ...
    assert rewrap.run("SELECT key_complete_request(:r, NULL, NULL)", r=request) == [[True]]
    assert operator.get_key(b.key_id).status.value == "revoked"
    # ... but never starts one, nor completes one twice
    with pytest.raises(IllegalTransitionError):
        rewrap.run("SELECT key_complete_request(:r, NULL, NULL)", r=request)
    with pytest.raises(PermissionDeniedError):
        rewrap.run("SELECT key_request(:k, 'revoke', 'x', NULL, NULL)", k=a.key_id)


def test_maintain_cannot_drain_the_pool_by_queueing_keys(
    connect: Callable[[str], Database], pool: Callable[[str], PostgresKeyStore]
) -> None:
    keys = pool(MAINTAIN).create_keys("xwing", 3)
    maintain = connect(MAINTAIN)
    attempts = [("age", 1_000_000), ("document_cap", 1), ("document_cap", 1000),
                ("unattested", 1), ("whim", 1)]  # fmt: skip
    for reason, max_documents in attempts:
        with pytest.raises(IllegalTransitionError, match="not due"):
            maintain.run(
                "SELECT key_queue_rotation(:k, :r, :d, CAST(1099511627776 AS bigint), NULL, NULL)",
                k=keys[0].key_id,
                r=reason,
                d=max_documents,
            )
    statuses = {k.status.value for k in pool(OPERATOR).list_keys("xwing")}
    assert statuses == {"active"}


# --- finding 3: an ingest role could make every document unavailable -----------------------


@pytest.mark.parametrize("role", INGEST_ROLES)
def test_ingest_roles_cannot_fail_documents_or_exhaust_keys(
    role: str, connect: Callable[[str], Database], pool: Callable[[str], PostgresKeyStore]
) -> None:
    pool(MAINTAIN).create_keys("xwing", 1)
    db = connect(role)
    for statement in (
        "UPDATE documents SET status = 'failed'",
        "UPDATE documents SET key_id = NULL",
        "DELETE FROM documents",
        "UPDATE encryption_keys SET usage_count = usage_count + 1000000",
        "UPDATE encryption_keys SET bytes_encrypted = bytes_encrypted + 1099511627776",
        "UPDATE encryption_keys SET rotate_after = now()",
    ):
        with pytest.raises(PermissionDeniedError, match="permission denied"):
            db.run(statement)


def test_record_failure_cannot_touch_a_stored_document(
    db_url: str, connect: Callable[[str], Database], pool: Callable[[str], PostgresKeyStore]
) -> None:
    (key,) = pool(MAINTAIN).create_keys("xwing", 1)

    def docs(role: str) -> PostgresDocumentRepository:
        return PostgresDocumentRepository(connect(role))

    docs(FETCH).begin(document_id="d1", source_bucket="b", source_key="uploads/a/d1",
                      source_version_id="v1", source_etag=None, plaintext_size=10,
                      tenant="a")  # fmt: skip
    docs(SELECT_KEY).assign_key("d1", key.key_id)
    docs(STORE).mark_stored("d1", encrypted_bucket="e", encrypted_key="encrypted/d1.pqf",
                            encrypted_version_id="ev1", encrypted_size=100)  # fmt: skip
    failure = connect(RECORD_FAILURE)
    seq = failure.run(
        "SELECT document_record_failure('d1', 'forged failure', '{\"step\": \"x\"}', NULL)"
    )[0][0]
    assert docs(FETCH).get_document("d1").status == "stored"  # still available
    (row,) = [r for r in PostgresAuditLog(connect(AUDITOR)).tail(5) if r["seq"] == seq]
    assert (row["operation"], row["outcome"], row["actor"]) == (
        "document.encrypt",
        "failure",
        RECORD_FAILURE,
    )
    # and the store role cannot call it (nor any other role but record_failure)
    with pytest.raises(PermissionDeniedError):
        connect(STORE).run("SELECT document_record_failure('d1', 'x', NULL, NULL)")


# --- finding 4: audit_append took any operation, any actor, any size ------------------------

_APPEND = "SELECT audit_append(:op, :outcome, :actor, NULL, NULL, NULL, :details)"


@pytest.mark.parametrize(
    ("role", "operation"),
    [
        (AUDIT_WRITER, "key.create"),
        (AUDIT_WRITER, "document.decrypt"),
        (RETRIEVE, "document.encrypt"),
        (RETRIEVE, "key.revoke"),
        (MAINTAIN, "document.decrypt"),
        (REWRAP, "key.pool_maintained"),
        (REWRAP, "key.create"),
    ],
)
def test_a_role_may_append_only_its_own_operations(
    role: str, operation: str, connect: Callable[[str], Database]
) -> None:
    with pytest.raises(AuditRefusedError, match="may not append"):
        connect(role).run(_APPEND, op=operation, outcome="success", actor=None, details=None)


@pytest.mark.parametrize("role", [FETCH, SELECT_KEY, ENCRYPT, STORE, RECORD_FAILURE, AUDITOR])
def test_roles_without_audit_operations_cannot_append(
    role: str, connect: Callable[[str], Database]
) -> None:
    with pytest.raises(PermissionDeniedError):
        connect(role).run(
            _APPEND, op="document.encrypt", outcome="success", actor=None, details=None
        )


def test_the_database_decides_the_actor(connect: Callable[[str], Database]) -> None:
    forged = "arn:aws:iam::123456789012:user/admin"
    connect(AUDIT_WRITER).run(
        _APPEND, op="document.encrypt", outcome="success", actor=forged, details=None
    )
    connect(RETRIEVE).run(_APPEND, op="document.decrypt", outcome="success", actor=ARN,
                          details=None)  # fmt: skip
    with pytest.raises(AuditRefusedError, match="verified principal ARN"):
        connect(RETRIEVE).run(
            _APPEND, op="document.decrypt", outcome="success", actor="alice", details=None
        )
    connect(OPERATOR).run(_APPEND, op="operator.note", outcome="success", actor="root",
                          details='{"note": "hello"}')  # fmt: skip
    rows = list(PostgresAuditLog(connect(AUDITOR)).tail(3))
    assert [(r["actor"], r["db_role"]) for r in rows] == [
        (AUDIT_WRITER, AUDIT_WRITER),  # the forged actor is ignored
        (ARN, RETRIEVE),  # retrieve alone names its (verified) caller
        (OPERATOR, OPERATOR),  # a person is the connected user ...
    ]
    assert rows[2]["details"] == {"note": "hello", "claimed_by": "root"}  # ... with the claim


def test_oversized_details_are_refused_with_a_bounded_error(
    connect: Callable[[str], Database],
) -> None:
    writer = connect(AUDIT_WRITER)
    head_before = PostgresAuditLog(connect(AUDITOR)).head()
    five_mb = json.dumps({"x": "a" * (5 * 1024 * 1024)})
    with pytest.raises(AuditRefusedError) as refused:
        writer.run(_APPEND, op="document.encrypt", outcome="success", actor=None, details=five_mb)
    assert len(str(refused.value)) < 200 and "aaaa" not in str(refused.value)
    one_field = json.dumps({"x": "a" * 2000})
    with pytest.raises(AuditRefusedError, match="cap"):
        writer.run(_APPEND, op="document.encrypt", outcome="success", actor=None,
                   details=one_field)  # fmt: skip
    for bad_op in ("Key.Create", "a" * 65, "x;drop", ""):
        with pytest.raises(AuditRefusedError):
            writer.run(_APPEND, op=bad_op, outcome="success", actor=None, details=None)
    assert PostgresAuditLog(connect(AUDITOR)).head() == head_before  # nothing appended
    # a legitimate writer never meets the caps: the adapter shortens what exceeds them
    log = PostgresAuditLog(writer)
    seq = log.append(operation="document.encrypt", outcome="success",
                     details={"x": "a" * (5 * 1024 * 1024), "y": 1})  # fmt: skip
    (row,) = [r for r in PostgresAuditLog(connect(AUDITOR)).tail(1) if r["seq"] == seq]
    assert row["details"]["y"] == 1 and len(json.dumps(row["details"])) <= 4096


@pytest.mark.parametrize("role", [*FUNCTION_ROLE_NAMES, OPERATOR])
def test_each_role_has_its_timeouts(role: str, connect: Callable[[str], Database]) -> None:
    db = connect(role)

    def show(name: str) -> Any:
        return db.run(f"SHOW {name}")[0][0]

    assert show("idle_in_transaction_session_timeout") == "15s"
    assert show("lock_timeout") == "10s"
    # the shred role's key_shred tombstones every document of a key in one statement
    long = (AUDITOR, OPERATOR, SHRED)
    assert show("statement_timeout") == ("5min" if role in long else "30s")


def test_a_stuck_transaction_cannot_hold_the_audit_chain(
    connect: Callable[[str], Database], db_url: str
) -> None:
    """A writer that appends and then hangs with its transaction open holds the chain head:
    the others wait at most lock_timeout (10 s, a TransientError the workflow retries), and
    the stuck session is ended after 15 s idle in its transaction, its row never committed."""
    stuck = Database.from_url(role_url(db_url, AUDIT_WRITER))
    held = threading.Event()
    release = threading.Event()

    def hang() -> None:
        try:
            with stuck.transaction() as s:
                s.run(_APPEND, op="document.encrypt", outcome="success", actor=None,
                      details=None)  # fmt: skip
                held.set()
                release.wait(30)
        except Exception:  # noqa: BLE001 - the server ended this session, as intended
            pass

    thread = threading.Thread(target=hang, daemon=True)
    thread.start()
    assert held.wait(10)
    other = PostgresAuditLog(connect(RETRIEVE))
    started = time.monotonic()
    with pytest.raises(TransientError):
        other.append(operation="document.decrypt", outcome="success")
    assert 8 < time.monotonic() - started < 14  # lock_timeout, not forever
    time.sleep(max(0.0, 16.5 - (time.monotonic() - started)))  # idle timeout has fired
    seq = other.append(operation="document.decrypt", outcome="success")
    release.set()
    thread.join(10)
    stuck.close()
    report = PostgresAuditLog(connect(AUDITOR)).verify_chain()
    assert report.ok and report.head_seq == seq == 1  # the stuck row was never committed
