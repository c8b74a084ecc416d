"""What Terraform enforces for issue 9, read from the rendered dev and prod stacks.

Each configuration (envs/dev.tfvars, envs/prod.tfvars, as committed) is applied, in the
background with the other modules' deployments, onto an emulator of its own (one each: the
emulator's RDS loses an instance when a second stack creates its own), limited with -target
to what is checked here (the functions and their role policies, the key policies, the
bucket policies, the alarms, and what they depend on: the emulator lacks some AWS managed
policies and S3 access logging), so every ARN in the policies and every environment
variable is rendered. `terraform show -json` of that state is then read as AWS would get it:

- credentials: no function's environment or role policy names the RDS-managed master secret
  or carries a password, with one named exception, the migrate function; every other
  function connects as its own database role (IAM token) and may `rds-db:connect` as that
  role only;
- TLS: every function's database settings require verify-full against the CA bundle shipped
  in the zip;
- KMS: only rotate_maintain may Encrypt with the seeds key, only retrieve and rotate_rewrap
  Decrypt (with the seed encryption context); only rotate_maintain may GenerateMac with the
  attestation key, only select_key, encrypt and the rewrap steps VerifyMac; no administrator
  may CreateGrant or PutKeyPolicy on any key (no break-glass principal by default);
- S3: reads of uploads/ are denied to all but fetch, encrypt and store, reads of retrievals/
  to all but retrieve, deletions under encrypted/ to all but the shred role; store may delete
  only under uploads/;
- alarms: the audit verification alarm treats missing data as breaching;
- completion events (issue 13): only store, record_failure, rotate_finish, shred and admin may
  PutEvents, on the default bus only, as source `pqfile` with the service's detail types;
  the other functions have events switched off;
- rotate-keys (issue 12): its distributed Map may start executions of its own state machine
  only, and describe and stop only their child executions; it reads the batch manifests
  (only those) that only rotate_plan may write.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from devstack import terraform as tf

from tests.fixtures.postgres import ADMIN_FUNCTION, AUDITOR, FUNCTION_ROLES
from tests.terraform.background import Deployments, Launch, deployment
from tests.terraform.conftest import require_tool

pytestmark = pytest.mark.integration

ENVIRONMENTS = ("dev", "prod")
TARGETS = (
    "aws_lambda_function.this",
    "aws_iam_role_policy.function",
    "aws_iam_role_policy.admin_auditor_login",
    "aws_iam_role_policy.audit_digest",
    "aws_iam_role_policy.workflow",
    "aws_kms_key.attestation",
    "aws_s3_bucket_policy.this",
    "module.metric_alarms",
)
MIGRATE = "migrate"
#: The admin function (terraform/admin.tf): its own role (0018), and pqfile_auditor for reads.
ADMIN = "admin"
ROLES = {**FUNCTION_ROLES, ADMIN: ADMIN_FUNCTION}
CA_BUNDLE = "/var/task/certs/rds-global-bundle.pem"

SEED_ENCRYPTERS = {"rotate_maintain"}
SEED_DECRYPTERS = {"retrieve", "rotate_rewrap"}
MAC_GENERATORS = {"rotate_maintain"}
MAC_VERIFIERS = {"select_key", "encrypt", "rotate_plan", "rotate_rewrap", "rotate_finish"}
UPLOAD_READERS = {"fetch", "encrypt", "store"}
RETRIEVAL_READERS = {"retrieve"}
EVENT_PUBLISHERS = {"store", "record_failure", "rotate_finish", "shred", "admin"}
EVENT_TYPES = ("PQFile Document Encrypted", "PQFile Document Failed", "PQFile Key Revoked")


# --- the rendered stacks -------------------------------------------------------------------


def _resources(module: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from module.get("resources", [])
    for child in module.get("child_modules", []):
        yield from _resources(child)


class Stack:
    """The state of one applied configuration, indexed for the checks."""

    def __init__(self, environment: str, shown: dict[str, Any]) -> None:
        self.environment = environment
        self.resources = list(_resources(shown["values"]["root_module"]))

    def all(self, type_: str, name: str | None = None) -> dict[str, dict[str, Any]]:
        return {
            str(r.get("index", "")): r["values"]
            for r in self.resources
            if r["type"] == type_ and (name is None or r["name"] == name)
        }

    def one(self, type_: str, name: str, index: str = "") -> dict[str, Any]:
        return self.all(type_, name)[index]

    @property
    def functions(self) -> dict[str, dict[str, Any]]:
        return self.all("aws_lambda_function", "this")

    def environment_of(self, key: str) -> dict[str, str]:
        return dict(self.functions[key]["environment"][0]["variables"])

    @property
    def role_arns(self) -> dict[str, str]:
        """Function key -> its execution role ARN."""
        return {k: f["role"] for k, f in self.functions.items()}

    def role_policy(self, key: str) -> dict[str, Any]:
        return dict(json.loads(self.all("aws_iam_role_policy", "function")[key]["policy"]))

    @property
    def master_secret_arn(self) -> str:
        db = self.one("aws_db_instance", "this", "0")
        return str(db["master_user_secret"][0]["secret_arn"])

    def key_policy(self, key: str) -> dict[str, Any]:
        if key == "attestation":
            values = self.one("aws_kms_key", "attestation")
        else:
            values = self.all("aws_kms_key", "this")[key]
        return dict(json.loads(values["policy"]))

    def workflow_policy(self, workflow: str) -> dict[str, Any]:
        return dict(json.loads(self.all("aws_iam_role_policy", "workflow")[workflow]["policy"]))

    def bucket_policy(self, bucket: str) -> dict[str, Any]:
        return dict(json.loads(self.all("aws_s3_bucket_policy", "this")[bucket]["policy"]))


def _apply_targets(environment: str, launch: Launch) -> Stack:
    """Apply the committed `environment` settings, limited to TARGETS, on an emulator of its
    own (in the background: tests/terraform/background.py); its state, read."""
    workdir = launch.workdir
    root = tf.working_copy(workdir, backend_path=workdir / "terraform.tfstate")
    emulator = launch.start_emulator()
    try:
        # The committed settings; only the SDK is pointed at the emulator.
        env = tf.terraform_env(
            workdir, local=True, extra={"AWS_ENDPOINT_URL": emulator.endpoint_url}
        )
        tf.init(root, env)
        tf.run(
            root,
            [
                "apply",
                "-auto-approve",
                "-input=false",
                "-no-color",
                f"-var-file=envs/{environment}.tfvars",
                f"-var=lambda_package_path={launch.function_zip}",
                # Any zip stands in for the layer: the emulator does not run it.
                f"-var=lambda_layer_path={launch.function_zip}",
                *(f"-target={t}" for t in TARGETS),
            ],
            env,
            timeout=900,
        )
        shown = tf.run(root, ["show", "-json"], env)
    finally:
        emulator.stop()
    return Stack(environment, json.loads(shown.stdout))


@deployment("least_privilege-dev")
def dev_stack(launch: Launch) -> Stack:
    return _apply_targets("dev", launch)


@deployment("least_privilege-prod")
def prod_stack(launch: Launch) -> Stack:
    return _apply_targets("prod", launch)


@pytest.fixture(scope="module", params=ENVIRONMENTS)
def stack(request: pytest.FixtureRequest, background_deployments: Deployments) -> Stack:
    require_tool("terraform")
    result = background_deployments.result(f"least_privilege-{request.param}")
    assert isinstance(result, Stack) and result.environment == request.param
    return result


# --- policy reading --------------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(s) for s in _list(policy["Statement"])]


def _grants(statement: dict[str, Any], action: str) -> bool:
    """Whether the statement's Action (wildcards included) covers ``action``."""
    return any(
        fnmatch.fnmatchcase(action.lower(), pattern.lower())
        for pattern in _list(statement.get("Action", []))
    )


def _principals(statement: dict[str, Any]) -> set[str]:
    principal = statement.get("Principal", {})
    if principal == "*":
        return {"*"}
    return {p for values in principal.values() for p in _list(values)}


def _allowed(policy: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in _statements(policy) if s["Effect"] == "Allow" and _grants(s, action)]


def _who(stack: Stack, statements: list[dict[str, Any]]) -> set[str]:
    """Function keys (or raw principals) allowed by the statements."""
    by_arn = {arn: key for key, arn in stack.role_arns.items()}
    return {by_arn.get(p, p) for s in statements for p in _principals(s)}


def _functions_whose_role_allows(stack: Stack, action: str, resource: str) -> set[str]:
    return {
        key
        for key in stack.functions
        if any(
            resource in _list(s.get("Resource", []))
            for s in _allowed(stack.role_policy(key), action)
        )
    }


# --- credentials -----------------------------------------------------------------------------


def test_no_function_but_migrate_carries_the_master_credentials(stack: Stack) -> None:
    secret = stack.master_secret_arn
    assert secret.startswith("arn:aws:secretsmanager:"), secret
    assert MIGRATE in stack.functions
    for key in stack.functions:
        variables = stack.environment_of(key)
        policy = json.dumps(stack.role_policy(key))
        assert not [n for n in variables if "PASSWORD" in n], key
        if key == MIGRATE:
            # The named exception: it reads the secret at run time (no password in its
            # configuration either) and connects with it, never with a role's IAM token.
            assert variables["PQFILE_DATABASE_SECRET_ARN"] == secret
            assert "PQFILE_DATABASE_URL" not in variables
            assert "PQFILE_DATABASE_IAM_AUTH" not in variables
            assert variables["PQFILE_MIGRATIONS_DIR"] == "/var/task/sql/migrations"
            assert _functions_whose_role_allows(stack, "secretsmanager:GetSecretValue", secret)
            continue
        assert not [v for v in variables.values() if secret in v], key
        assert "PQFILE_DATABASE_SECRET_ARN" not in variables, key
        assert secret not in policy and "secretsmanager:" not in policy, key
        url = urlsplit(variables["PQFILE_DATABASE_URL"])
        assert url.password is None, key
        assert url.username == ROLES[key], key
        assert variables["PQFILE_DATABASE_IAM_AUTH"] == "1", key
    assert _functions_whose_role_allows(stack, "secretsmanager:GetSecretValue", secret) == {MIGRATE}


def _connect_id(stack: Stack) -> str:
    """What rds-db:connect names: the RDS Proxy's id (prx-..., the last part of its ARN):
    dev and prod connect through the proxy (proxy.tf, enable_rds_proxy's default)."""
    return str(stack.one("aws_db_proxy", "this", "0")["arn"]).split(":")[6]


def test_functions_connect_through_the_proxy_with_unnamed_statements(stack: Stack) -> None:
    endpoint = stack.one("aws_db_proxy", "this", "0")["endpoint"]
    for key in stack.functions:
        if key == MIGRATE:
            continue
        url = urlsplit(stack.environment_of(key)["PQFILE_DATABASE_URL"])
        assert url.hostname == endpoint, key
        assert parse_qs(url.query)["statements"] == ["unnamed"], key


def test_each_function_may_connect_as_its_own_database_role_only(stack: Stack) -> None:
    resource_id = _connect_id(stack)
    assert stack.one("aws_db_instance", "this", "0")["iam_database_authentication_enabled"]
    for key in stack.functions:
        statements = _allowed(stack.role_policy(key), "rds-db:connect")
        resources = {r for s in statements for r in _list(s["Resource"])}
        if key == MIGRATE:
            assert not resources
            continue
        assert resources == {
            f"arn:aws:rds-db:eu-west-1:123456789012:dbuser:{resource_id}/{ROLES[key]}"
        }, key


def test_the_admin_function_logs_in_as_operator_and_auditor_and_touches_nothing_else(
    stack: Stack,
) -> None:
    resource_id = _connect_id(stack)
    extra = json.loads(stack.one("aws_iam_role_policy", "admin_auditor_login", "0")["policy"])
    assert extra["Statement"] == [{
        "Sid": "ConnectAsAuditor", "Effect": "Allow", "Action": ["rds-db:connect"],
        "Resource": [f"arn:aws:rds-db:eu-west-1:123456789012:dbuser:{resource_id}/{AUDITOR}"],
    }]  # fmt: skip
    variables = stack.environment_of(ADMIN)
    assert urlsplit(variables["PQFILE_AUDITOR_DATABASE_URL"]).username == AUDITOR
    assert urlsplit(variables["PQFILE_AUDITOR_DATABASE_URL"]).password is None
    assert variables["PQFILE_AUDIENCE"] and "PQFILE_ATTESTATION_KEY_ID" not in variables
    actions = {a for st in stack.role_policy(ADMIN)["Statement"] for a in _list(st["Action"])}
    # Logs, its failure queue, the data key through services, its own login, Key Revoked
    # events: nothing else (no S3, no seed or attestation key, no invoke; rotate-keys only
    # through aws_iam_role_policy.admin_rotation).
    assert {a for a in actions if a.split(":")[0] in {"s3", "lambda", "events", "states"}} == {
        "events:PutEvents"}  # fmt: skip
    assert not {a for a in actions if a.startswith("kms:") and a not in {
        "kms:Decrypt", "kms:GenerateDataKey"}}  # fmt: skip


def test_the_digest_function_signs_with_its_key_and_writes_digests_only(stack: Stack) -> None:
    """audit_digest (terraform/audit_digests.tf): pqfile_auditor; kms:Sign on the digest
    key alone (RAW, its one algorithm, in the key policy too); Get/Put under digests/ and a
    listing of that prefix; no delete, no retention change; the bucket locks by default."""
    key = stack.one("aws_kms_key", "audit_digests")
    bucket = stack.one("aws_s3_bucket", "audit_digests")
    role = stack.role_arns["audit_digest"]
    assert key["key_usage"] == "SIGN_VERIFY" and key["customer_master_key_spec"] == "ECC_NIST_P384"
    assert bucket["object_lock_enabled"] is True
    variables = stack.environment_of("audit_digest")
    assert variables["PQFILE_DIGEST_KEY_ARN"] == key["arn"]
    assert variables["PQFILE_DIGEST_BUCKET"] == bucket["id"]
    assert variables["PQFILE_DIGEST_SIGNING_ALGORITHM"] == "ECDSA_SHA_384"
    assert urlsplit(variables["PQFILE_DATABASE_URL"]).username == AUDITOR

    extra = json.loads(stack.one("aws_iam_role_policy", "audit_digest")["policy"])
    granted = {
        (action, resource)
        for statement in _statements(extra)
        for action in _list(statement["Action"])
        for resource in _list(statement["Resource"])
    }
    assert granted == {
        ("kms:Sign", key["arn"]),
        ("s3:GetObject", f"{bucket['arn']}/digests/*"),
        ("s3:PutObject", f"{bucket['arn']}/digests/*"),
        ("s3:ListBucket", bucket["arn"]),
    }
    # Its shared policy adds no S3, no other key, no events or invocations.
    actions = {
        a for st in stack.role_policy("audit_digest")["Statement"] for a in _list(st["Action"])
    }
    assert not {a for a in actions if a.split(":")[0] in {"s3", "lambda", "events", "states"}}
    assert not {a for a in actions if a.startswith("kms:") and a not in {
        "kms:Decrypt", "kms:GenerateDataKey"}}  # fmt: skip

    signers = _allowed(json.loads(key["policy"]), "kms:Sign")
    assert _who(stack, signers) == {"audit_digest"}
    (signer,) = signers
    assert signer["Condition"]["StringEquals"] == {
        "kms:SigningAlgorithm": "ECDSA_SHA_384", "kms:MessageType": "RAW"}  # fmt: skip
    assert role in _principals(signer)
    for other in set(stack.functions) - {"audit_digest"}:
        assert not _allowed(stack.role_policy(other), "kms:Sign"), other


# --- TLS -------------------------------------------------------------------------------------


def test_every_function_verifies_the_database_certificate_with_the_shipped_bundle(
    stack: Stack,
) -> None:
    for key in stack.functions:
        variables = stack.environment_of(key)
        assert variables["PQFILE_DATABASE_SSLMODE"] == "verify-full", key
        assert variables["PQFILE_DATABASE_SSLROOTCERT"] == CA_BUNDLE, key
        if key != MIGRATE:
            query = parse_qs(urlsplit(variables["PQFILE_DATABASE_URL"]).query)
            assert query["sslmode"] == ["verify-full"], key
            assert query["sslrootcert"] == [CA_BUNDLE], key


# --- KMS -------------------------------------------------------------------------------------


def test_only_maintain_wraps_and_only_retrieve_and_rewrap_unwrap_seeds(stack: Stack) -> None:
    policy = stack.key_policy("seeds")
    assert _who(stack, _allowed(policy, "kms:Encrypt")) == SEED_ENCRYPTERS
    decrypt = _allowed(policy, "kms:Decrypt")
    assert _who(stack, decrypt) == SEED_DECRYPTERS
    for statement in _allowed(policy, "kms:Encrypt") + decrypt:
        conditions = statement["Condition"]
        assert conditions["StringEquals"]["kms:EncryptionContext:pqfile:purpose"] == "key-seed"
        assert conditions["Null"]["kms:EncryptionContext:pqfile:key-id"] == "false"
    for action in ("kms:ReEncryptFrom", "kms:GenerateDataKey", "kms:Sign"):
        assert not _allowed(policy, action), action
    # The functions' own role policies say the same.
    seeds = stack.all("aws_kms_key", "this")["seeds"]["arn"]
    assert _functions_whose_role_allows(stack, "kms:Encrypt", seeds) == SEED_ENCRYPTERS
    assert _functions_whose_role_allows(stack, "kms:Decrypt", seeds) == SEED_DECRYPTERS


def test_only_maintain_attests_and_only_key_users_verify(stack: Stack) -> None:
    key = stack.one("aws_kms_key", "attestation")
    assert key["customer_master_key_spec"] == "HMAC_256"
    assert key["key_usage"] == "GENERATE_VERIFY_MAC"
    policy = stack.key_policy("attestation")
    generate = _allowed(policy, "kms:GenerateMac")
    verify = _allowed(policy, "kms:VerifyMac")
    assert _who(stack, generate) == MAC_GENERATORS
    assert _who(stack, verify) == MAC_VERIFIERS
    for statement in generate + verify:
        assert statement["Condition"]["StringEquals"]["kms:MacAlgorithm"] == "HMAC_SHA_256"
    arn = key["arn"]
    assert _functions_whose_role_allows(stack, "kms:GenerateMac", arn) == MAC_GENERATORS
    assert _functions_whose_role_allows(stack, "kms:VerifyMac", arn) == MAC_VERIFIERS
    for k in stack.functions:
        expected = arn if k in MAC_GENERATORS | MAC_VERIFIERS else None
        assert stack.environment_of(k).get("PQFILE_ATTESTATION_KEY_ID") == expected, k


@pytest.mark.parametrize("key", ["seeds", "data", "attestation"])
def test_no_administrator_can_grant_itself_use_of_a_key(stack: Stack, key: str) -> None:
    policy = stack.key_policy(key)
    (admin,) = [s for s in _statements(policy) if s.get("Sid") == "KeyAdministration"]
    for action in ("kms:CreateGrant", "kms:PutKeyPolicy", "kms:Decrypt", "kms:Encrypt"):
        assert not _grants(admin, action), (key, action)
    assert not [s for s in _statements(policy) if s.get("Sid") == "BreakGlassPolicyAndGrants"]
    assert not _allowed(policy, "kms:PutKeyPolicy"), key
    grants = _allowed(policy, "kms:CreateGrant")
    if key == "data":
        # The data key's AWS services (RDS, Lambda environment) need grants: only through
        # those services, only for this account.
        (through_services,) = grants
        assert through_services["Sid"] == "UseThroughAwsServices"
        assert through_services["Condition"]["StringLike"]["kms:ViaService"]
    else:
        assert not grants, key
    assert not _allowed(policy, "kms:*") or key == "data"


# --- S3 --------------------------------------------------------------------------------------


def _denial(policy: dict[str, Any], sid: str) -> dict[str, Any]:
    (statement,) = [s for s in _statements(policy) if s.get("Sid") == sid]
    assert statement["Effect"] == "Deny"
    assert _principals(statement) == {"*"}
    return statement


def _exempt(stack: Stack, statement: dict[str, Any]) -> set[str]:
    by_arn = {arn: key for key, arn in stack.role_arns.items()}
    arns = _list(statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"])
    return {by_arn.get(a, a) for a in arns}


def test_plaintext_reads_are_denied_to_all_but_the_functions_that_need_them(
    stack: Stack,
) -> None:
    uploads = stack.all("aws_s3_bucket", "this")["uploads"]["arn"]
    encrypted = stack.all("aws_s3_bucket", "this")["encrypted"]["arn"]
    for bucket, sid, prefix, readers in (
        ("uploads", "DenyPlaintextReadsButIngest", f"{uploads}/uploads/*", UPLOAD_READERS),
        (
            "encrypted",
            "DenyRetrievalReadsButRetrieve",
            f"{encrypted}/retrievals/*",
            RETRIEVAL_READERS,
        ),
    ):
        statement = _denial(stack.bucket_policy(bucket), sid)
        assert _list(statement["Resource"]) == [prefix]
        assert set(_list(statement["Action"])) == {"s3:GetObject", "s3:GetObjectVersion"}
        assert _exempt(stack, statement) == readers, bucket
        # And no other function's own role may read there.
        assert _functions_whose_role_allows(stack, "s3:GetObject", prefix) <= readers


def test_packages_can_be_deleted_only_by_the_shred_role(stack: Stack) -> None:
    encrypted = stack.all("aws_s3_bucket", "this")["encrypted"]["arn"]
    statement = _denial(stack.bucket_policy("encrypted"), "DenyPackageDeletionButShred")
    assert _list(statement["Resource"]) == [f"{encrypted}/encrypted/*"]
    assert set(_list(statement["Action"])) == {"s3:DeleteObject", "s3:DeleteObjectVersion"}
    shred_role = f"arn:aws:iam::123456789012:role/pqfile-{stack.environment}-shred-eu-west-1"
    assert stack.role_arns["shred"] == shred_role  # the exempt role is the shred function's
    assert _exempt(stack, statement) == {"shred"}
    # No other function role may delete anything in the encrypted bucket; store deletes
    # plaintext versions under uploads/ only; shred deletes package versions only.
    for key in stack.functions:
        policy = stack.role_policy(key)
        for action in ("s3:DeleteObject", "s3:DeleteObjectVersion"):
            resources = {r for s in _allowed(policy, action) for r in _list(s["Resource"])}
            if key == "store":
                uploads = stack.all("aws_s3_bucket", "this")["uploads"]["arn"]
                assert resources == {f"{uploads}/uploads/*"}, action
            elif key == "shred":
                assert resources == {f"{encrypted}/encrypted/*"}, action
            else:
                assert not resources, (key, action)


# --- alarms ----------------------------------------------------------------------------------


def test_the_audit_alarms_fail_closed(stack: Stack) -> None:
    alarms = {a["alarm_name"]: a for a in stack.all("aws_cloudwatch_metric_alarm").values()}
    name = f"pqfile-{stack.environment}-audit-verification-failed"
    assert alarms[name]["treat_missing_data"] == "breaching"
    # The scheduled digest signer fails closed too: no digest for two hours is an alarm.
    digest = f"pqfile-{stack.environment}-audit-digest-failed"
    assert alarms[digest]["treat_missing_data"] == "breaching"
    assert alarms[digest]["period"] == 7200
    # Every other alarm watches a metric that is absent when all is quiet (no errors, no
    # executions, an unused suite, an empty queue): missing data is not an incident there.
    others = {a["treat_missing_data"] for n, a in alarms.items() if n not in (name, digest)}
    assert others == {"notBreaching"}


# --- the rotate-keys workflow (issue 12, item 5) ----------------------------------------------


def test_the_rotation_workflow_starts_only_its_own_children(stack: Stack) -> None:
    prefix = "arn:aws:states:eu-west-1:123456789012:"
    machine = f"pqfile-{stack.environment}-rotate-keys"
    policy = stack.workflow_policy("rotate-keys")
    (start,) = _allowed(policy, "states:StartExecution")
    assert _list(start["Resource"]) == [f"{prefix}stateMachine:{machine}"]
    for action in ("states:DescribeExecution", "states:StopExecution"):
        (track,) = _allowed(policy, action)
        assert _list(track["Resource"]) == [f"{prefix}execution:{machine}/*"], action
    # nothing else may start, stop or redrive executions; the ingest workflow none at all
    for action in ("states:StartExecution", "states:StopExecution", "states:RedriveExecution"):
        assert not _allowed(stack.workflow_policy("ingest"), action), action
    assert not any(_grants(s, "states:DeleteStateMachine") for s in _statements(policy))


def test_rotation_manifests_are_written_by_plan_and_read_by_the_workflow_only(
    stack: Stack,
) -> None:
    encrypted = stack.all("aws_s3_bucket", "this")["encrypted"]["arn"]
    manifests = f"{encrypted}/rotation-manifests/*"
    assert _functions_whose_role_allows(stack, "s3:PutObject", manifests) == {"rotate_plan"}
    plan_writes = {r for s in _allowed(stack.role_policy("rotate_plan"), "s3:PutObject")
                   for r in _list(s["Resource"])}  # fmt: skip
    assert plan_writes == {manifests}  # plan writes nothing else, no package in particular
    policy = stack.workflow_policy("rotate-keys")
    reads = {r for s in _allowed(policy, "s3:GetObject") for r in _list(s["Resource"])}
    assert reads == {manifests}
    assert not _allowed(policy, "s3:PutObject") and not _allowed(policy, "s3:DeleteObject")
    # the manifests are SSE-KMS: the data key, through S3 only
    (decrypt,) = _allowed(policy, "kms:Decrypt")
    assert _list(decrypt["Resource"]) == [stack.all("aws_kms_key", "this")["data"]["arn"]]
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}
    }


# --- completion events -----------------------------------------------------------------------


def test_only_the_announcing_functions_put_events_on_the_default_bus_only(stack: Stack) -> None:
    publishers: set[str] = set()
    for key in stack.functions:
        statements = _allowed(stack.role_policy(key), "events:PutEvents")
        variables = stack.environment_of(key)
        if not statements:
            assert variables.get("PQFILE_EVENT_BUS") == "off", key
            continue
        publishers.add(key)
        assert variables.get("PQFILE_EVENT_BUS") == "default", key
        (statement,) = statements
        assert _list(statement["Action"]) == ["events:PutEvents"]
        (bus,) = _list(statement["Resource"])
        assert fnmatch.fnmatchcase(bus, "arn:aws:events:*:*:event-bus/default"), bus
        equals = statement["Condition"]["StringEquals"]
        assert equals["events:source"] == "pqfile"
        assert sorted(_list(equals["events:detail-type"])) == sorted(EVENT_TYPES)
        # nothing else of EventBridge
        for action in ("events:PutRule", "events:PutTargets", "events:PutPermission"):
            assert not _allowed(stack.role_policy(key), action), (key, action)
    assert publishers == EVENT_PUBLISHERS
