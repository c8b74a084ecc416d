"""The admin function's use case (pqfile.usecases.admin) against fakes: the proof is
checked first and bound to the command, the operate rule is required (deny by default),
input is whitelisted, every request is audited. The database side runs in
tests/integration/test_admin.py."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import pytest

from pqfile.auth import IdentityProofError, ProofRefusal
from pqfile.errors import InvalidEventError, PQFileError, TransientError
from pqfile.ports import AccessRule
from pqfile.usecases.admin import (
    COMMANDS,
    Admin,
    AdminRefusedError,
    AdminRequest,
    admin,
    admin_request_sha256,
    principal_matches,
)
from tests.functional.fakes import FakeVerifier, proof_for

ACCOUNT = "123456789012"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
KEY = "0123456789abcdef0123456789abcdef"


class FakeBackend:
    def __init__(self) -> None:
        self.rules: list[AccessRule] = []
        self.audits: list[dict[str, Any]] = []
        self.ran: list[tuple[str, dict[str, object], str]] = []
        self.fail: PQFileError | None = None
        self.bound: str | None = None
        self.bindings: list[str] = []
        self.answer: dict[str, Any] = {"ok": True}

    def allow(self, principal: str, operation: str = "operate") -> None:
        self.rules.append(AccessRule(len(self.rules) + 1, principal, "ops", None, operation,
                                     "pqfile_operator", dt.datetime.now(dt.UTC)))  # fmt: skip

    def operate_rules(self) -> list[AccessRule]:
        return [r for r in self.rules if r.operation == "operate"]

    def begin(self, principal: str, request_id: str | None) -> None:
        self.bound = principal
        self.bindings.append(principal)

    def end(self) -> None:
        self.bound = None

    def run(self, request: AdminRequest, *, actor: str, request_id: str | None) -> dict[str, Any]:
        assert self.bound == actor  # the database acts only for the bound principal
        if self.fail is not None:
            raise self.fail
        self.ran.append((request.command, dict(request.args), actor))
        return dict(self.answer)

    def audit(
        self, outcome: str, *, actor: str | None, request_id: str | None,
        details: Mapping[str, Any], operation: str = "admin.command",
    ) -> None:  # fmt: skip
        if outcome != "refused":
            assert self.bound == actor  # admin_audit: success/failure name the bound principal
        self.audits.append({"outcome": outcome, "actor": actor, "request_id": request_id,
                            "details": dict(details), "operation": operation})  # fmt: skip


def _payload(principal: str, command: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"command": command, "args": args or {}}
    proof = proof_for(principal, {})
    proof["request_sha256"] = admin_request_sha256(body)
    return {**body, "identity_proof": proof}


@pytest.fixture
def setup() -> tuple[Admin, FakeBackend, FakeVerifier]:
    backend, verifier = FakeBackend(), FakeVerifier()
    return Admin(backend=backend, identity=verifier), backend, verifier


def test_without_an_operate_rule_the_caller_is_refused_and_audited(setup: Any) -> None:
    a, backend, _ = setup
    backend.allow(ALICE, "retrieve")  # a reader is not an operator
    with pytest.raises(AdminRefusedError, match="operate access rule"):
        admin(a, _payload(ALICE, "keys.status"), request_id="r1")
    assert backend.ran == []
    [row] = backend.audits
    assert row["outcome"] == "refused" and row["actor"] == ALICE
    assert row["details"]["reason"] == "not_allowed"
    assert row["details"]["command"] == "keys.status"
    assert row["request_id"] == "r1"


def test_with_an_operate_rule_the_command_runs_and_is_audited(setup: Any) -> None:
    a, backend, _ = setup
    backend.allow(f"arn:aws:iam::{ACCOUNT}:user/ali*")
    answer = admin(a, _payload(ALICE, "access.list"), request_id="r2")
    assert answer == {"command": "access.list", "principal": ALICE, "result": {"ok": True}}
    assert backend.ran == [("access.list", {}, ALICE)]
    [row] = backend.audits
    assert row["outcome"] == "success" and row["actor"] == ALICE
    assert row["details"]["db_role"] == "auditor"
    assert row["details"]["principal"] == ALICE


def test_a_rule_for_another_principal_does_not_admit(setup: Any) -> None:
    a, backend, _ = setup
    backend.allow(BOB)
    with pytest.raises(AdminRefusedError):
        admin(a, _payload(ALICE, "keys.status"))
    assert backend.ran == []


def test_a_proof_for_another_command_is_refused_before_anything_is_read(setup: Any) -> None:
    a, backend, _ = setup
    backend.allow(ALICE)
    payload = _payload(ALICE, "keys.status")
    replayed = {**payload, "command": "access.grant",
                "args": {"principal": BOB, "tenant": "acme"}}  # fmt: skip
    with pytest.raises(IdentityProofError) as refused:
        admin(a, replayed)
    assert refused.value.reason is ProofRefusal.REQUEST_HASH
    assert backend.ran == []
    [row] = backend.audits
    assert row["outcome"] == "refused" and row["actor"] is None
    assert row["details"] == {"reason": ProofRefusal.REQUEST_HASH.value}


def test_changed_arguments_break_the_proof(setup: Any) -> None:
    a, backend, _ = setup
    backend.allow(ALICE)
    payload = _payload(ALICE, "access.grant", {"principal": BOB, "tenant": "acme"})
    payload["args"] = {"principal": BOB, "tenant": "other"}
    with pytest.raises(IdentityProofError):
        admin(a, payload)
    assert backend.ran == []


def test_a_missing_proof_is_refused(setup: Any) -> None:
    a, backend, _ = setup
    with pytest.raises(IdentityProofError):
        admin(a, {"command": "keys.status", "args": {}})
    assert backend.audits[0]["details"] == {"reason": ProofRefusal.MISSING.value}


def test_sts_unavailable_is_transient(setup: Any) -> None:
    a, backend, verifier = setup
    verifier.unavailable = True
    with pytest.raises(TransientError):
        admin(a, _payload(ALICE, "keys.status"))
    assert backend.audits[0]["details"] == {"reason": ProofRefusal.STS_UNAVAILABLE.value}


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("db.migrate", {}, "unknown command"),
        ("keys.refill", {}, "unknown command"),
        ("keys.status", {"sql": "1"}, "unknown argument"),
        ("keys.revoke", {"key_id": KEY}, "needs args.reason"),
        ("keys.revoke", {"key_id": "not-a-key", "reason": "x"}, "key id"),
        ("keys.revoke", {"key_id": KEY, "reason": "x", "mode": "later"}, "mode"),
        ("keys.revoke", {"key_id": KEY, "reason": "x", "yes_destroy_documents": "y"}, "true or"),
        ("keys.rotate", {}, "needs args.dry_run"),
        ("keys.rotate", {"dry_run": False}, "dry_run"),
        ("audit.tail", {"limit": 10**6}, "limit"),
        ("audit.tail", {"limit": True}, "limit"),
        ("audit.verify", {"anchors": ["1:zz"]}, "SEQ:HASH"),
        ("access.grant", {"principal": BOB}, "tenant or args.document_id"),
        ("access.grant", {"principal": BOB, "tenant": "a", "document_id": "d"}, "tenant or"),
        ("access.grant", {"principal": "x" * 1001, "tenant": "a"}, "principal"),
        ("access.grant", {"principal": BOB, "tenant": "a\n"}, "control"),
    ],
)  # fmt: skip
def test_bad_input_is_invalid_event_and_audited(
    setup: Any, command: str, args: dict[str, Any], message: str
) -> None:
    a, backend, _ = setup
    backend.allow(ALICE)
    with pytest.raises(InvalidEventError, match=message):
        admin(a, _payload(ALICE, command, args))
    assert backend.ran == []
    [row] = backend.audits
    assert row["outcome"] == "refused" and row["actor"] == ALICE
    assert row["details"]["reason"] == "invalid_request"


def test_unknown_top_level_fields_are_refused_before_the_proof(setup: Any) -> None:
    a, backend, verifier = setup
    payload = {**_payload(ALICE, "keys.status"), "proof": {}}
    with pytest.raises(InvalidEventError, match="unknown payload field"):
        admin(a, payload)
    assert verifier.calls == 0
    assert backend.audits[0]["actor"] is None


def test_a_failing_command_is_audited_as_failure(setup: Any) -> None:
    a, backend, _ = setup
    backend.allow(ALICE)
    backend.fail = PQFileError("no key")
    with pytest.raises(PQFileError, match="no key"):
        admin(a, _payload(ALICE, "keys.revoke", {"key_id": KEY, "reason": "r", "mode": "now"}))
    [row] = backend.audits
    assert row["outcome"] == "failure" and row["details"]["reason"] == "PQFileError"
    assert row["details"]["db_role"] == "admin"
    assert backend.bindings == [ALICE] and backend.bound is None  # bound, then released


def test_each_command_maps_to_the_least_role() -> None:
    reads = {n for n, c in COMMANDS.items() if c.role == "auditor"}
    assert reads == {"keys.status", "keys.rotate", "keys.rotate.follow", "access.list",
                     "access.recipient_list", "audit.verify", "audit.tail", "audit.prove",
                     "audit.report"}  # fmt: skip
    assert {n for n, c in COMMANDS.items() if c.role == "admin"} == {
        "keys.revoke", "keys.request", "keys.rotate.start", "access.grant", "access.revoke",
        "access.recipient_add", "access.recipient_revoke"}  # fmt: skip


def test_admin_and_retrieve_proofs_never_share_a_hash() -> None:
    from pqfile.auth import retrieve_request_sha256

    assert admin_request_sha256({"command": "keys.status"}) != retrieve_request_sha256(
        {"document_id": "keys.status"}
    )
    # Canonical: the order of fields does not matter, their values do.
    one = admin_request_sha256({"command": "audit.tail", "args": {"limit": 5}})
    assert one == admin_request_sha256({"args": {"limit": 5}, "command": "audit.tail"})
    assert one != admin_request_sha256({"args": {"limit": 6}, "command": "audit.tail"})


@pytest.mark.parametrize(
    ("pattern", "principal", "matches"),
    [
        (ALICE, ALICE, True),
        (f"arn:aws:iam::{ACCOUNT}:user/*", ALICE, True),
        (f"arn:aws:iam::{ACCOUNT}:user/al", ALICE, False),
        (f"arn:aws:iam::{ACCOUNT}:user/al.ce", ALICE, False),  # `.` is literal
        (f"arn:aws:iam::{ACCOUNT}:user/a%", ALICE, False),  # `%` is literal
        ("arn:aws:iam::999999999999:user/*", ALICE, False),
    ],
)
def test_principal_patterns_match_like_access_check(
    pattern: str, principal: str, matches: bool
) -> None:
    assert principal_matches(pattern, principal) is matches


@pytest.mark.parametrize(
    ("payload", "digest"),
    [
        ({"command": "keys.status"},
         "1364b3d28a8e35d012c2887b56fb2b2be6749cea3f3c9b50c48590591f3dd6c9"),
        ({"command": "audit.tail", "args": {"limit": 5}},
         "60e98433f36926d6c56875bde6ac16be423d2e62b2dcfb67de1412b71a148c76"),
    ],
)  # fmt: skip
def test_the_canonical_admin_request_vectors_of_contracts(
    payload: dict[str, Any], digest: str
) -> None:
    assert admin_request_sha256(payload) == digest


MACHINE = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:pqfile-local-rotate-keys"


class FakeWorkflow:
    state_machine_arn = MACHINE

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []
        self.fail = False

    def start(self, name: str, payload: dict[str, Any]) -> str:
        if self.fail:
            raise PQFileError("AccessDeniedException")
        self.started.append(payload)
        return MACHINE.replace(":stateMachine:", ":execution:") + ":" + name

    def describe(self, execution_arn: str) -> Any:
        from pqfile.adapters.stepfunctions import Execution

        return Execution(execution_arn, "SUCCEEDED", output={"shred": {}})


class FakeEvents:
    def __init__(self) -> None:
        self.published: list[Any] = []

    def publish(self, events: list[Any]) -> int:
        self.published.extend(events)
        return 0


def test_keys_rotate_start_queues_then_starts_and_audits_under_the_principal(
    setup: Any,
) -> None:
    a, backend, verifier = setup
    workflow = FakeWorkflow()
    a = Admin(backend=backend, identity=verifier, rotation=workflow)
    backend.allow(ALICE)
    answer = admin(a, _payload(ALICE, "keys.rotate.start", {"to_suite": "mlkem1024"}))
    assert backend.ran == [("keys.rotate.start", {"to_suite": "mlkem1024"}, ALICE)]
    assert workflow.started == [{"requested_by": ALICE}]
    started, done = backend.audits
    assert started["operation"] == "key.rotation_workflow_started"
    assert (started["outcome"], started["actor"]) == ("success", ALICE)
    assert started["request_id"] == answer["result"]["execution"]["arn"]
    assert (done["operation"], done["outcome"]) == ("admin.command", "success")


def test_keys_rotate_start_refused_without_a_state_machine_changes_nothing(
    setup: Any,
) -> None:
    a, backend, _ = setup
    backend.allow(ALICE)
    with pytest.raises(PQFileError, match="no rotate-keys state machine"):
        admin(a, _payload(ALICE, "keys.rotate.start"))
    assert backend.ran == []
    assert backend.audits[-1]["outcome"] == "failure"


def test_a_failed_start_is_audited_as_the_direct_path_does(setup: Any) -> None:
    a, backend, verifier = setup
    workflow = FakeWorkflow()
    workflow.fail = True
    a = Admin(backend=backend, identity=verifier, rotation=workflow)
    backend.allow(ALICE)
    with pytest.raises(PQFileError):
        admin(a, _payload(ALICE, "keys.rotate.start"))
    started, done = backend.audits
    assert (started["operation"], started["outcome"]) == ("key.rotation_workflow_started",
                                                          "failure")  # fmt: skip
    assert started["details"]["error"] == "AccessDeniedException"
    assert (done["operation"], done["outcome"]) == ("admin.command", "failure")


def test_keys_rotate_follow_reads_only_this_deployments_executions(setup: Any) -> None:
    a, backend, verifier = setup
    a = Admin(backend=backend, identity=verifier, rotation=FakeWorkflow())
    backend.allow(ALICE)
    mine = MACHINE.replace(":stateMachine:", ":execution:") + ":pqfile-rotate-1"
    answer = admin(a, _payload(ALICE, "keys.rotate.follow", {"execution_arn": mine}))
    assert answer["result"]["execution"]["status"] == "SUCCEEDED"
    assert answer["result"]["execution"]["done"] is True
    other = mine.replace("pqfile-local-rotate-keys", "someone-elses")
    with pytest.raises(InvalidEventError, match="not an execution of rotate-keys"):
        admin(a, _payload(ALICE, "keys.rotate.follow", {"execution_arn": other}))


def test_revoke_now_announces_key_revoked_and_pending_does_not(setup: Any) -> None:
    a, backend, verifier = setup
    events = FakeEvents()
    a = Admin(backend=backend, identity=verifier, events=events)
    backend.allow(ALICE)
    backend.answer = {"key_id": KEY, "suite": "xwing", "status": "revoked",
                      "revoked_at": "2026-11-29 23:00:00+00:00"}  # fmt: skip
    answer = admin(a, _payload(ALICE, "keys.revoke",
                                {"key_id": KEY, "reason": "r", "mode": "now"}))  # fmt: skip
    assert answer["events_not_delivered"] == 0
    [event] = events.published
    assert event.detail_type.value == "PQFile Key Revoked"
    assert event.detail["key_id"] == KEY and event.detail["mode"] == "now"
    assert "reason" not in event.detail
    admin(a, _payload(ALICE, "keys.revoke", {"key_id": KEY, "reason": "r"}))
    assert len(events.published) == 1


def _recipient_pem() -> str:
    from pqfile.crypto.kem import generate
    from pqfile.crypto.keyfiles import public_key_to_pem

    return public_key_to_pem(generate().public_key()).decode()


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("access.recipient_add", {"principal": f"arn:aws:iam::{ACCOUNT}:user/*",
                                  "public_key": "PEM"}, "not a pattern"),
        ("access.recipient_add", {"principal": "alice", "public_key": "PEM"}, "principal ARN"),
        ("access.recipient_add", {"principal": BOB, "public_key": "-----BEGIN PUBLIC KEY-----"},
         "args.public_key"),
        ("access.recipient_add", {"principal": BOB, "public_key": "A" * 5000},
         "at most 4096 characters"),
        ("access.recipient_add", {"principal": BOB, "public_key": 7}, "args.public_key"),
        ("access.recipient_add", {"principal": BOB, "public_key": "PEM", "allow_weaker": "yes"},
         "true or false"),
        ("access.recipient_revoke", {"principal": f"arn:aws:iam::{ACCOUNT}:role/r-*"},
         "not a pattern"),
        ("access.grant", {"principal": f"arn:aws:iam::{ACCOUNT}:role/r-*", "tenant": "acme",
                          "recipient_public_key": "PEM"}, "not a pattern"),
        ("access.grant", {"principal": BOB, "tenant": "acme", "operation": "operate",
                          "recipient_public_key": "PEM"}, "retrieve rule"),
        ("access.grant", {"principal": BOB, "tenant": "acme", "allow_weaker": True},
         "goes with args.recipient_public_key"),
        ("access.revoke", {"principal": BOB, "tenant": "acme", "recipient_public_key": "PEM"},
         "unknown argument"),
    ],
)  # fmt: skip
def test_recipient_arguments_are_checked_before_anything_runs(
    setup: Any, command: str, args: dict[str, Any], message: str
) -> None:
    a, backend, _ = setup
    backend.allow(ALICE)
    pem = _recipient_pem()
    args = {k: pem if v == "PEM" else v for k, v in args.items()}
    with pytest.raises(InvalidEventError, match=message):
        admin(a, _payload(ALICE, command, args))
    assert backend.ran == []
    [row] = backend.audits
    assert (row["outcome"], row["details"]["reason"]) == ("refused", "invalid_request")
    assert "BEGIN PUBLIC KEY" not in json.dumps(row)  # the key is named, never echoed


def test_recipient_commands_run_with_the_checked_key(setup: Any) -> None:
    a, backend, _ = setup
    backend.allow(ALICE)
    pem = _recipient_pem()
    admin(a, _payload(ALICE, "access.recipient_add",
                      {"principal": BOB, "public_key": pem, "allow_weaker": True}))  # fmt: skip
    admin(a, _payload(ALICE, "access.grant", {"principal": BOB, "document_id": "d1",
                                              "recipient_public_key": pem}))  # fmt: skip
    admin(a, _payload(ALICE, "access.recipient_revoke", {"principal": BOB}))
    admin(a, _payload(ALICE, "access.recipient_list", {}))
    assert [(c, actor) for c, _, actor in backend.ran] == [
        ("access.recipient_add", ALICE), ("access.grant", ALICE),
        ("access.recipient_revoke", ALICE), ("access.recipient_list", ALICE)]  # fmt: skip
    assert backend.ran[0][1] == {"principal": BOB, "public_key": pem, "allow_weaker": True}
