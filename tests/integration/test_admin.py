"""The admin function on the local stack (the emulator runs it, a signature-checking local
STS vouches for alice and bob, PostgreSQL holds the rules and the audit): operator commands
need an ``operate`` rule, go through the function with the CLI's ``--stack`` and print what
the direct ``--database-url`` path prints; forged and replayed proofs and unknown commands
are refused, and every request is audited."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from pqfile.cli import main
from tests.fixtures.postgres import ADMIN_FUNCTION, AUDITOR, MAINTAIN, OPERATOR, role_url
from tests.integration.pipeline_stack import AUDIENCE, deploy_admin

pytestmark = pytest.mark.integration


#: The deployment's pool policy the function runs with (and the stack's output says): a
#: floor of 0, so no suite is "below floor", where the CLI's old default (80) said so.
POOL_ENV = {"PQFILE_POOL_TARGET": "2", "PQFILE_POOL_FLOOR": "0"}
#: A one-state rotate-keys stand-in: the function starts and describes it (no workflow here).
PASS_MACHINE = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}


class Admin:
    def __init__(
        self, emulator: Any, function: str, db_url: str, sts: Any, machine: str = ""
    ) -> None:
        self.emulator, self.function, self.db_url, self.sts = emulator, function, db_url, sts
        self.machine = machine

    def arn(self, user: str) -> str:
        return str(self.sts.users[user].arn)

    def payload(
        self, user: str, command: str, args: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        from pqfile.adapters.sts_proof import build_identity_proof
        from pqfile.usecases.admin import admin_request_sha256

        request = {"command": command, "args": args or {}}
        proof = build_identity_proof(
            request, audience=AUDIENCE, endpoint=self.sts.endpoint(),
            credentials=self.sts.users[user].credentials(),
            request_sha256=admin_request_sha256(request),
        )  # fmt: skip
        return {**request, "identity_proof": proof}

    def invoke(self, payload: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        resp = self.emulator.client("lambda").invoke(
            FunctionName=self.function, Payload=json.dumps(payload).encode()
        )
        return json.loads(resp["Payload"].read() or b"null"), resp.get("FunctionError")

    def sql(self, query: str, **params: Any) -> list[list[Any]]:
        from pqfile.adapters.postgres import Database

        db = Database.from_url(self.db_url)
        try:
            return db.run(query, **params)
        finally:
            db.close()

    def admin_rows(self) -> list[dict[str, Any]]:
        rows = self.sql("SELECT outcome, actor, details FROM access_logs "
                        "WHERE operation = 'admin.command' ORDER BY seq")  # fmt: skip
        return [{"outcome": r[0], "actor": r[1], "details": json.loads(r[2]) if r[2] else {}}
                for r in rows]  # fmt: skip

    def grant_operate(self, user: str) -> None:
        from pqfile.adapters.postgres import Database, PostgresAccessRules
        from pqfile.ports import AccessOperation

        db = Database.from_url(role_url(self.db_url, OPERATOR))
        try:
            PostgresAccessRules(db).grant(
                self.arn(user), tenant="ops", document_id=None,
                operation=AccessOperation.OPERATE, actor="tests")  # fmt: skip
        finally:
            db.close()


@pytest.fixture(scope="module")
def stack(
    aws_emulator: Any, emulator_role_arn: str, migrated_db_url: str, local_sts: Any
) -> Admin:
    machine = aws_emulator.client("stepfunctions").create_state_machine(
        name=f"pqfile-rotate-keys-{uuid.uuid4().hex[:8]}", roleArn=emulator_role_arn,
        definition=json.dumps(PASS_MACHINE))["stateMachineArn"]  # fmt: skip
    function = deploy_admin(aws_emulator, emulator_role_arn, migrated_db_url, local_sts,
                            {**POOL_ENV, "PQFILE_ROTATION_STATE_MACHINE": machine})  # fmt: skip
    return Admin(aws_emulator, function, migrated_db_url, local_sts, machine)


def _as_user(monkeypatch: pytest.MonkeyPatch, stack: Admin, user: str, tmp_path: Any) -> None:
    """The CLI with --stack: the user's keys in the environment, Lambda on the emulator;
    the function and audience named in the environment (no Terraform run here)."""
    creds = stack.sts.users[user]
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "PQFILE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds.secret_access_key)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.emulator.endpoint_url)
    monkeypatch.setenv("PQFILE_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("PQFILE_STS_ENDPOINT_URL", stack.sts.endpoint_url)
    monkeypatch.setenv("PQFILE_ADMIN_FUNCTION", stack.function)
    # The stack's outputs (a file of `terraform output -json`): the direct path reads the
    # deployment's pool policy from it, the function from its environment.
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"key_pool_policy": {"value": {
        "target": int(POOL_ENV["PQFILE_POOL_TARGET"]),
        "floor": int(POOL_ENV["PQFILE_POOL_FLOOR"]),
        "suites": ["xwing"]}}}))  # fmt: skip  # what the function keeps: its default suite
    monkeypatch.setenv("PQFILE_STACK", str(outputs))


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_without_an_operate_rule_alice_is_refused_and_audited(stack: Admin) -> None:
    body, error = stack.invoke(stack.payload("alice", "keys.status"))
    assert error and body["errorType"] == "AdminRefusedError"
    other, _ = stack.invoke(stack.payload("bob", "access.list"))
    assert (other["errorType"], other["errorMessage"]) == (body["errorType"], body["errorMessage"])
    alice_row, bob_row = stack.admin_rows()[-2:]
    # The verified principal is the actor (0018), not the role and not a claim.
    assert alice_row["outcome"] == "refused" and alice_row["actor"] == stack.arn("alice")
    assert alice_row["details"]["principal"] == stack.arn("alice")
    assert "claimed_by" not in alice_row["details"]
    assert (alice_row["details"]["reason"], alice_row["details"]["command"]) == (
        "not_allowed", "keys.status")  # fmt: skip
    assert bob_row["details"]["principal"] == stack.arn("bob") == bob_row["actor"]


def test_a_retrieve_rule_is_not_an_operator_rule(stack: Admin) -> None:
    from pqfile.adapters.postgres import Database, PostgresAccessRules
    from pqfile.ports import AccessOperation

    db = Database.from_url(role_url(stack.db_url, OPERATOR))
    try:
        PostgresAccessRules(db).grant(
            stack.arn("bob"), tenant="ops", document_id=None,
            operation=AccessOperation.RETRIEVE, actor="tests")  # fmt: skip
    finally:
        db.close()
    body, error = stack.invoke(stack.payload("bob", "access.list"))
    assert error and body["errorType"] == "AdminRefusedError"


def test_with_the_rule_keys_status_and_access_list_match_the_direct_path(
    stack: Admin, monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    stack.grant_operate("alice")
    _as_user(monkeypatch, stack, "alice", tmp_path)
    direct = ("--database-url", role_url(stack.db_url, AUDITOR))
    for argv in (("access", "list"), ("access", "list", "--json"), ("keys", "rotate",
                 "--dry-run"), ("keys", "rotate", "--dry-run", "--json"),
                 ("keys", "status"), ("keys", "status", "--json")):  # fmt: skip
        via = _cli(capsys, *argv)
        straight = _cli(capsys, *argv, *direct)
        assert via[0] == straight[0] == 0, (via, straight)
        assert _no_ages(via[1]) == _no_ages(straight[1])
        assert via[1].strip()
        # The deployment's floor (0), not the CLI's old default (80), on both paths.
        assert "(below floor)" not in via[1] and '"floor_active": 80' not in via[1]
    # A suite the deployment does not keep is not "below floor", on both paths.
    for out in (_cli(capsys, "keys", "status")[1], _cli(capsys, "keys", "status", *direct)[1]):
        line = next(x for x in out.splitlines() if x.startswith("mlkem1024"))
        assert line.endswith("(not kept by this deployment)"), out
    # The function's verify ran before its own success row was appended: one row less.
    via, straight = _cli(capsys, "audit", "verify"), _cli(capsys, "audit", "verify", *direct)
    counted = [re.fullmatch(r"audit chain OK: (\d+) rows, head \d+ [0-9a-f]{64}\n", out)
               for _, out, _ in (via, straight)]  # fmt: skip
    assert counted[0] and counted[1], (via, straight)
    assert int(counted[1].group(1)) == int(counted[0].group(1)) + 1
    rows = stack.admin_rows()
    assert rows[-1]["details"]["command"] == "audit.verify"
    assert [r["details"]["command"] for r in rows[-3:-1]] == ["keys.status", "keys.status"]
    # six commands through the function above, then audit verify: all read as the auditor
    assert {(r["outcome"], r["details"]["db_role"]) for r in rows[-7:]} == {("success", "auditor")}
    assert rows[-1]["details"]["principal"] == stack.arn("alice") == rows[-1]["actor"]
    [[db_role]] = stack.sql("SELECT db_role FROM access_logs WHERE operation = 'admin.command' "
                            "ORDER BY seq DESC LIMIT 1")  # fmt: skip
    assert db_role == ADMIN_FUNCTION


def test_access_grant_through_the_function_is_audited_under_the_verified_principal(
    stack: Admin, monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    stack.grant_operate("alice")
    _as_user(monkeypatch, stack, "alice", tmp_path)
    code, out, err = _cli(capsys, "access", "grant", "--principal", stack.arn("bob"),
                          "--tenant", "acme", "--json")  # fmt: skip
    assert code == 0, err
    answer = json.loads(out)
    assert answer["result"] == "granted" and answer["tenant"] == "acme"
    [[principal, created_by]] = stack.sql(
        "SELECT principal, created_by FROM access_rules WHERE rule_id = :r", r=answer["rule_id"])
    assert (principal, created_by) == (stack.arn("bob"), stack.arn("alice"))
    [[actor, details, db_role]] = stack.sql(
        "SELECT actor, details, db_role FROM access_logs "
        "WHERE operation = 'access.grant' ORDER BY seq DESC LIMIT 1")  # fmt: skip
    assert (actor, db_role) == (stack.arn("alice"), ADMIN_FUNCTION)
    assert "claimed_by" not in json.loads(details)
    last = stack.admin_rows()[-1]
    assert (last["actor"], last["details"]["db_role"]) == (stack.arn("alice"), "admin")
    # The binding ends with the request: the role alone acts for nobody.
    assert stack.sql("SELECT count(*) FROM admin_bindings") == [[0]]


def test_a_forged_or_replayed_proof_is_refused(stack: Admin) -> None:
    stack.grant_operate("alice")
    good = stack.payload("alice", "keys.status")
    forged = json.loads(json.dumps(good))
    headers = forged["identity_proof"]["headers"]
    name = next(h for h in headers if h.lower() == "authorization")
    headers[name] = re.sub(r"Signature=[0-9a-f]{4}", "Signature=0000", headers[name])
    body, error = stack.invoke(forged)
    assert error and body["errorType"] == "IdentityProofError"
    # The same proof for another command (a grant to bob) fails its request hash.
    replayed = {**good, "command": "access.grant",
                "args": {"principal": stack.arn("bob"), "tenant": "acme"}}  # fmt: skip
    body, error = stack.invoke(replayed)
    assert error and body["errorType"] == "IdentityProofError"
    before = stack.sql(
        "SELECT count(*) FROM access_rules WHERE tenant = 'acme' "
        "AND principal = :p AND operation = 'operate'", p=stack.arn("bob"))  # fmt: skip
    assert before == [[0]]
    refused = stack.admin_rows()[-2:]
    assert [r["outcome"] for r in refused] == ["refused", "refused"]
    assert refused[-1]["details"]["reason"] == "request_hash_mismatch"


def test_an_unknown_command_is_an_invalid_event(stack: Admin) -> None:
    stack.grant_operate("alice")
    body, error = stack.invoke(stack.payload("alice", "db.migrate"))
    assert error and body["errorType"] == "InvalidEventError"
    assert "unknown command" in body["errorMessage"]
    row = stack.admin_rows()[-1]
    assert (row["outcome"], row["details"]["reason"]) == ("refused", "invalid_request")


def _no_ages(text: str) -> str:
    """keys status output without the oldest key's age (it moves between two calls)."""
    text = re.sub(r'"oldest_active_age_seconds": [0-9.e+-]+', '"age": 0', text)
    return re.sub(r"\d+(\.\d+)? (min|h|d) ", "AGE ", text)


def test_a_failing_operator_command_is_one_line_and_audited_as_failure(
    stack: Admin, monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    stack.grant_operate("alice")
    _as_user(monkeypatch, stack, "alice", tmp_path)
    missing = "0" * 32
    code, out, err = _cli(capsys, "keys", "revoke", missing, "--reason", "test")
    assert (code, out) == (1, "")
    assert err.startswith("pqfile: error: KeyNotFoundError: ") and err.count("\n") == 1
    row = stack.admin_rows()[-1]
    assert (row["outcome"], row["details"]["command"], row["details"]["db_role"]) == (
        "failure", "keys.revoke", "admin")  # fmt: skip
    assert row["actor"] == stack.arn("alice")
    assert row["details"]["reason"] == "KeyNotFoundError"


def test_audit_prove_through_the_function_matches_the_direct_path(
    stack: Admin, monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`pqfile audit prove SEQ --digests DIR` with --stack: the function (audit.prove, as the
    auditor) reads the row and proof for the signed tree size; the CLI verifies them."""
    from pqfile.adapters.postgres.connection import Database
    from pqfile.keys.audit_digest import ML_DSA_SHAKE_256
    from tests.integration.test_audit_digests import Signer

    stack.grant_operate("alice")
    signer = Signer(ML_DSA_SHAKE_256, tmp_path / "sth" / "digests")
    db = Database.from_url(stack.db_url)  # a digest of the table now, as the digest function's
    try:
        signer.digest(db)
    finally:
        db.close()
    _as_user(monkeypatch, stack, "alice", tmp_path)
    argv = ("audit", "prove", "1", "--digests", str(signer.folder), "--public-key",
            str(signer.pem), "--json")  # fmt: skip
    via = _cli(capsys, *argv)
    straight = _cli(capsys, *argv, "--database-url", role_url(stack.db_url, AUDITOR))
    assert via[0] == straight[0] == 0, (via, straight)
    assert json.loads(via[1]) == json.loads(straight[1])
    assert json.loads(via[1])["status"] == "verified"
    row = stack.admin_rows()[-1]
    assert (row["outcome"], row["details"]["command"], row["details"]["db_role"]) == (
        "success", "audit.prove", "auditor")  # fmt: skip


def test_audit_report_through_the_function_matches_the_direct_path(
    stack: Admin, monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    stack.grant_operate("alice")
    _as_user(monkeypatch, stack, "alice", tmp_path)
    period = ("audit", "report", "--since", "2020-01-01", "--until", "2100-01-01")
    via = _cli(capsys, *period, "--format", "json")
    straight = _cli(capsys, *period, "--format", "json",
                    "--database-url", role_url(stack.db_url, AUDITOR))  # fmt: skip
    assert via[0] == straight[0] == 0, (via[2], straight[2])
    v, s = json.loads(via[1]), json.loads(straight[1])
    for section in ("decryptions", "refusals", "failures", "key_events", "pool", "since",
                    "until"):  # fmt: skip
        assert v[section] == s[section], section
    # The function reported before its own success row was appended: one row less.
    assert s["rows_in_period"] == v["rows_in_period"] + 1 and s["chain"]["ok"]
    row = stack.admin_rows()[-1]
    assert (row["details"]["command"], row["details"]["db_role"]) == ("audit.report", "auditor")
    page = tmp_path / "report.html"
    assert _cli(capsys, *period, "--out", str(page))[0] == 0
    assert "Who decrypted what, and when" in page.read_text("utf-8")


class EventQueue:
    """An SQS queue every `pqfile` event on the emulator's default bus is routed to."""

    def __init__(self, emulator: Any) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.sqs = emulator.client("sqs")
        self.url = self.sqs.create_queue(QueueName=f"pqfile-admin-events-{suffix}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]  # fmt: skip
        events = emulator.client("events")
        rule = f"pqfile-admin-events-{suffix}"
        events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["pqfile"]}))
        events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": arn}])

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict:
        deadline, seen = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            answer = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                              WaitTimeSeconds=1)  # fmt: skip
            for message in answer.get("Messages", []):
                body = json.loads(message["Body"])
                if match(body):
                    return dict(body)
                seen.append(body)
        raise AssertionError(f"no such event; seen: {seen}")


def _new_key(stack: Admin) -> str:
    """One active, attested xwing key, made as the maintain function makes them (KMS on the
    emulator)."""
    from pqfile.adapters.kms import KmsSeedProtector
    from pqfile.adapters.kms_mac import KmsKeyAttestor
    from pqfile.adapters.postgres import Database, PostgresKeyStore

    kms = stack.emulator.client("kms")
    seeds = kms.create_key(Description="pqfile admin test seeds")["KeyMetadata"]["KeyId"]
    mac = kms.create_key(Description="pqfile admin test attestation", KeySpec="HMAC_256",
                         KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]  # fmt: skip
    db = Database.from_url(role_url(stack.db_url, MAINTAIN))
    try:
        store = PostgresKeyStore(db, KmsSeedProtector(kms, seeds),
                                 attestor=KmsKeyAttestor(kms, mac))  # fmt: skip
        (key,) = store.create_keys("xwing", 1)
    finally:
        db.close()
    return str(key.key_id)


def test_revoke_now_through_the_function_publishes_key_revoked(
    stack: Admin, monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    key_id = _new_key(stack)
    queue = EventQueue(stack.emulator)
    stack.grant_operate("alice")
    _as_user(monkeypatch, stack, "alice", tmp_path)
    reason = "incident 4711: laptop of j.doe stolen"
    code, out, err = _cli(capsys, "keys", "revoke", key_id, "--now", "--reason", reason,
                          "--json")  # fmt: skip
    assert code == 0, err
    assert "not delivered" not in err
    assert json.loads(out)["status"] == "revoked"
    event = queue.wait_for(lambda e: e["detail-type"] == "PQFile Key Revoked"
                           and e["detail"]["key_id"] == key_id)  # fmt: skip
    assert (event["source"], event["detail"]["mode"], event["detail"]["suite"]) == (
        "pqfile", "now", "xwing")  # fmt: skip
    assert reason not in json.dumps(event)
    [[actor, db_role]] = stack.sql(
        "SELECT actor, db_role FROM access_logs WHERE operation = 'key.revoke' "
        "AND key_id = :k", k=key_id)  # fmt: skip
    assert (actor, db_role) == (stack.arn("alice"), ADMIN_FUNCTION)


def test_rotate_through_the_function_queues_starts_and_follows_rotate_keys(
    stack: Admin, monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    key_id = _new_key(stack)
    stack.grant_operate("alice")
    _as_user(monkeypatch, stack, "alice", tmp_path)
    code, out, err = _cli(capsys, "keys", "rotate", "--key", key_id, "--to-suite", "mlkem1024",
                          "--poll-seconds", "0.2", "--json")  # fmt: skip
    assert code == 0, (out, err)
    report = json.loads(out)
    assert report["queued"] == [key_id] and report["to_suite"] == "mlkem1024"
    assert report["execution"]["status"] == "SUCCEEDED"
    assert report["execution"]["arn"].startswith(
        stack.machine.replace(":stateMachine:", ":execution:"))  # fmt: skip
    [run] = [r for r in report["runs"] if r["old_key_id"] == key_id]
    assert run["status"] == "queued"  # the stand-in workflow runs nothing
    # Queued as the direct path queues: the key and the run, under alice's name.
    [[status]] = stack.sql("SELECT status FROM encryption_keys WHERE id = :k", k=key_id)
    assert status == "rotation_queued"
    rows = stack.sql(
        "SELECT operation, outcome, actor, request_id FROM access_logs WHERE operation IN "
        "('key.rotation_queued', 'key.rotation_target', 'key.rotation_workflow_started') "
        "ORDER BY seq DESC LIMIT 3")  # fmt: skip
    assert {r[0] for r in rows} == {"key.rotation_queued", "key.rotation_target",
                                    "key.rotation_workflow_started"}  # fmt: skip
    assert {r[2] for r in rows} == {stack.arn("alice")}
    started = next(r for r in rows if r[0] == "key.rotation_workflow_started")
    assert (started[1], started[3]) == ("success", report["execution"]["arn"])
    execution = stack.emulator.client("stepfunctions").describe_execution(
        executionArn=report["execution"]["arn"])  # fmt: skip
    assert json.loads(execution["input"]) == {"requested_by": stack.arn("alice")}
    # Following is read-only, each look audited under alice.
    follows = [r for r in stack.admin_rows() if r["details"].get("command") ==
               "keys.rotate.follow"]  # fmt: skip
    assert follows and {(r["actor"], r["details"]["db_role"]) for r in follows} == {
        (stack.arn("alice"), "auditor")}  # fmt: skip


def test_recipient_keys_through_the_function_name_the_verified_principal(
    stack: Admin, monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`pqfile access recipient add|list|revoke` and `access grant --recipient` with
    --stack: the function checks the key again, registers it as pqfile_admin_function under
    alice's verified name, and answers what the direct path prints."""
    import hashlib

    from pqfile.crypto.kem import Suite, generate
    from pqfile.crypto.keyfiles import public_key_to_pem

    stack.grant_operate("alice")
    _as_user(monkeypatch, stack, "alice", tmp_path)
    bob = stack.arn("bob")
    first, second = generate(Suite.MLKEM768).public_key(), generate().public_key()
    (tmp_path / "first.pem").write_bytes(public_key_to_pem(first))
    (tmp_path / "second.pem").write_bytes(public_key_to_pem(second))
    code, out, err = _cli(capsys, "access", "recipient", "add", "--principal", bob,
                          str(tmp_path / "first.pem"), "--json")  # fmt: skip
    assert code == 0, err
    added = json.loads(out)
    assert (added["suite"], added["created"]) == ("mlkem768", True)
    assert added["fingerprint"] == hashlib.sha256(first.raw).hexdigest()
    [[created_by]] = stack.sql("SELECT created_by FROM recipient_keys WHERE recipient_id = :r",
                               r=added["recipient_id"])  # fmt: skip
    assert created_by == stack.arn("alice")
    [[actor, db_role, details]] = stack.sql(
        "SELECT actor, db_role, details FROM access_logs "
        "WHERE operation = 'access.recipient_add' ORDER BY seq DESC LIMIT 1")  # fmt: skip
    assert (actor, db_role) == (stack.arn("alice"), ADMIN_FUNCTION)
    assert json.loads(details)["fingerprint"] == added["fingerprint"]
    assert stack.admin_rows()[-1]["details"]["command"] == "access.recipient_add"
    # The rule and a new key in one request: the old key is retired.
    code, out, err = _cli(capsys, "access", "grant", "--principal", bob, "--tenant", "acme",
                          "--recipient", str(tmp_path / "second.pem"), "--json")  # fmt: skip
    assert code == 0, err
    granted = json.loads(out)
    assert granted["recipient"]["replaced"] == added["recipient_id"]
    assert granted["result"] == "granted" and granted["operation"] == "retrieve"
    direct = ("--database-url", role_url(stack.db_url, AUDITOR))
    for argv in (("access", "recipient", "list", "--json"),
                 ("access", "recipient", "list", "--all")):  # fmt: skip
        via, straight = _cli(capsys, *argv), _cli(capsys, *argv, *direct)
        assert via[0] == straight[0] == 0 and via[1] == straight[1], (via, straight)
        assert bob in via[1]
    code, out, err = _cli(capsys, "access", "recipient", "revoke", "--principal", bob, "--json")
    assert code == 0, err
    assert json.loads(out)["recipient_id"] == granted["recipient"]["recipient_id"]
    code, out, err = _cli(capsys, "access", "recipient", "revoke", "--principal", bob)
    assert (code, out) == (1, "") and err.count("\n") == 1
    row = stack.admin_rows()[-1]
    assert (row["outcome"], row["details"]["command"]) == ("failure", "access.recipient_revoke")
    # A key that fails the checks never reaches the database: refused, audited, named only.
    bad = public_key_to_pem(second).decode().replace("A", "B", 40)
    body, error = stack.invoke(stack.payload("alice", "access.recipient_add",
                                             {"principal": bob, "public_key": bad}))  # fmt: skip
    assert error and body["errorType"] == "InvalidArgument"  # an InvalidEventError
    assert "args.public_key" in body["errorMessage"] and bad not in body["errorMessage"]
    assert stack.admin_rows()[-1]["details"]["reason"] == "invalid_request"
    assert stack.sql("SELECT count(*) FROM recipient_keys WHERE principal = :p "
                     "AND revoked_at IS NULL", p=bob) == [[0]]  # fmt: skip
    assert stack.sql("SELECT count(*) FROM admin_bindings") == [[0]]
