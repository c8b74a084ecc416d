"""The digest-signing function (pqfile.handlers.audit_digest) end to end: real PostgreSQL as
the read-only pqfile_auditor, and the emulator's KMS (an ML-DSA-65 key, through
devstack/moto_patches/kms_mldsa.py) and S3 (a bucket with Object Lock, as
terraform/audit_digests.tf makes it). No Terraform apply: the key and bucket are made here."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from devstack.emulator import Emulator

from pqfile.adapters import aws
from pqfile.adapters.kms import KmsDigestSigner
from pqfile.adapters.postgres.audit import PostgresAuditLog
from pqfile.adapters.postgres.audit_leaves import PostgresAuditLeaves
from pqfile.adapters.postgres.connection import Database
from pqfile.adapters.postgres.migrations import migrate
from pqfile.adapters.s3_digests import S3DigestStore
from pqfile.errors import AuditDigestError
from pqfile.handlers import audit_digest
from pqfile.keys.audit_digest import (
    GENESIS_DIGEST_HASH,
    SignedDigest,
    object_key,
)
from pqfile.keys.audit_digest_check import check_digests
from pqfile.keys.audit_tree import AuditTree, verify_consistency
from pqfile.usecases.audit_digest import AuditDigester
from tests.fixtures.postgres import AUDIT_WRITER, AUDITOR, role_url

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    pytest.mark.usefixtures("close_leaked_connections"),
]

RETENTION_DAYS = 1


@dataclass
class Digests:
    emulator: Emulator
    db_url: str
    bucket: str
    key_arn: str
    writer: PostgresAuditLog

    def append(self, count: int) -> None:
        for _ in range(count):
            self.writer.append(operation="document.encrypt", outcome="success",
                               document_id=f"doc-{uuid.uuid4().hex[:8]}")  # fmt: skip

    def rows(self) -> tuple[list[bytes], list[dt.datetime]]:
        """Every row's hash and time, in seq order."""
        owner = Database.from_url(self.db_url)
        try:
            rows = owner.run("SELECT row_hash, occurred_at FROM access_logs ORDER BY seq")
        finally:
            owner.close()
        return [bytes(r[0]) for r in rows], [r[1] for r in rows]

    def objects(self) -> dict[str, list[dict[str, Any]]]:
        """Every version of every object in the bucket, by key."""
        listed = self.emulator.client("s3").list_object_versions(Bucket=self.bucket)
        versions: dict[str, list[dict[str, Any]]] = {}
        for version in listed.get("Versions", []):
            versions.setdefault(version["Key"], []).append(version)
        return versions

    def read(self, key: str) -> SignedDigest:
        body = self.emulator.client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return SignedDigest.from_json(body)

    def public_key(self) -> bytes:
        return bytes(self.emulator.client("kms").get_public_key(KeyId=self.key_arn)["PublicKey"])


@pytest.fixture
def digests(
    aws_emulator: Emulator,
    make_database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Digests]:
    url = make_database()
    db = Database.from_url(url)
    migrate(db)
    db.close()

    kms = aws_emulator.client("kms")
    key = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ML_DSA_65")["KeyMetadata"]
    s3 = aws_emulator.client("s3")
    bucket = f"pqfile-test-audit-digests-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)  # versioning with it
    s3.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": RETENTION_DAYS}},
        },
    )

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_emulator.endpoint_url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("PQFILE_DATABASE_URL", role_url(url, AUDITOR))
    monkeypatch.setenv("PQFILE_DIGEST_BUCKET", bucket)
    monkeypatch.setenv("PQFILE_DIGEST_KEY_ARN", key["Arn"])
    monkeypatch.setenv("PQFILE_DIGEST_SIGNING_ALGORITHM", "ML_DSA_SHAKE_256")
    aws.reset_clients()
    audit_digest.reset()
    writer = PostgresAuditLog(Database.from_url(role_url(url, AUDIT_WRITER)))
    try:
        yield Digests(aws_emulator, url, bucket, key["Arn"], writer)
    finally:
        audit_digest.reset()
        aws.reset_clients()


def _run(capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], dict[str, float]]:
    """One scheduled invocation: the answer and the metrics it published."""
    capsys.readouterr()
    context = SimpleNamespace(function_name="pqfile-audit-digest", memory_limit_in_mb=256,
                              invoked_function_arn="arn:aws:lambda:us-east-1:1:function:x",
                              aws_request_id=f"req-{uuid.uuid4().hex[:8]}")  # fmt: skip
    answer = audit_digest.handler({}, context)
    metrics: dict[str, float] = {}
    for line in capsys.readouterr().out.splitlines():
        doc = json.loads(line) if line.startswith("{") else {}
        for name in ("AuditDigestsWritten", "AuditDigestFailures"):
            if name in doc:
                value = doc[name]
                metrics[name] = float(value[0] if isinstance(value, list) else value)
    return answer, metrics


def test_digests_over_several_periods_are_signed_linked_and_locked(
    digests: Digests, capsys: pytest.CaptureFixture[str]
) -> None:
    answer, metrics = _run(capsys)
    assert answer["written"] is False and answer["ok"] is True
    assert answer["skipped"] == "nothing new: the audit log has no rows yet"
    assert digests.objects() == {}

    sizes = []
    for added in (3, 4, 1):
        digests.append(added)
        answer, metrics = _run(capsys)
        sizes.append(answer["tree_size"])
        assert answer["written"] is True and answer["skipped"] is None, answer
        assert answer["key"] == object_key(answer["tree_size"])
        assert metrics == {"AuditDigestsWritten": 1.0, "AuditDigestFailures": 0.0}
    assert sizes == [3, 7, 8]

    # Nothing new: a second run writes nothing and says so.
    answer, metrics = _run(capsys)
    assert answer["written"] is False and answer["ok"] is True
    assert answer["skipped"] == "nothing new: the latest digest already covers 8 rows"
    assert metrics == {"AuditDigestsWritten": 0.0, "AuditDigestFailures": 0.0}

    objects = digests.objects()
    assert sorted(objects) == [object_key(n) for n in sizes]
    assert all(len(versions) == 1 for versions in objects.values())  # written once each

    public_key = digests.public_key()
    row_hashes, occurred_at = digests.rows()
    tree = AuditTree(row_hashes)
    previous_hash, previous_size, previous_root = GENESIS_DIGEST_HASH, 0, tree.root(0)
    s3 = digests.emulator.client("s3")
    for size in sizes:
        signed = digests.read(object_key(size))
        head = signed.verify(public_key)  # ML-DSA-65, pyca, against GetPublicKey
        assert signed.algorithm == "ML_DSA_SHAKE_256" and head.key_id == digests.key_arn
        assert head.tree_size == size and head.root_hash == tree.root(size)
        assert (head.first_seq, head.last_seq) == (previous_size + 1, size)
        assert head.first_at == occurred_at[previous_size]  # row previous_size + 1
        assert head.last_at == occurred_at[size - 1]
        assert head.previous_digest_hash == previous_hash
        verify_consistency(
            previous_size, size, previous_root, head.root_hash,
            tree.consistency_proof(previous_size, size),
        )  # fmt: skip
        lock = s3.head_object(Bucket=digests.bucket, Key=object_key(size))
        assert lock["ObjectLockMode"] == "GOVERNANCE"
        assert lock["ObjectLockRetainUntilDate"] > dt.datetime.now(dt.UTC)
        previous_hash, previous_size, previous_root = signed.digest_hash, size, head.root_hash

    # The offline check of `pqfile audit verify --digests` agrees.
    report = check_digests(
        row_hashes, occurred_at,
        [(key, digests.emulator.client("s3").get_object(Bucket=digests.bucket, Key=key)[
            "Body"].read()) for key in sorted(objects)],
        public_key,
    )  # fmt: skip
    assert report.ok and report.digests == 3 and report.latest_tree_size == 8, report.as_dict()

    # A signature over another message does not verify.
    forged = SignedDigest(signed.digest[:-1] + b"x", signed.signature, signed.algorithm,
                          signed.key_id)  # fmt: skip
    with pytest.raises(AuditDigestError, match="does not verify"):
        forged.verify(public_key)


def test_a_retry_after_the_write_leaves_the_digest_as_it_was(
    digests: Digests, capsys: pytest.CaptureFixture[str]
) -> None:
    digests.append(2)
    first, _ = _run(capsys)
    assert first["written"] is True
    before = digests.objects()[object_key(2)]

    class StaleStore(S3DigestStore):
        """A run that started before the first one wrote: it has not seen the digest."""

        def latest(self) -> SignedDigest | None:
            return None

    signer = KmsDigestSigner(digests.emulator.client("kms"), digests.key_arn, "ML_DSA_SHAKE_256")
    auditor = Database.from_url(role_url(digests.db_url, AUDITOR))
    try:
        outcome = AuditDigester(
            PostgresAuditLeaves(auditor),
            signer,
            StaleStore(digests.bucket, digests.emulator.client("s3")),
        ).run()
    finally:
        auditor.close()
    assert outcome.ok is True and outcome.written is False
    assert outcome.skipped == f"{object_key(2)} was already written (a retry or another run)"
    assert digests.objects()[object_key(2)] == before  # no second version


def test_a_rewritten_log_is_refused_and_nothing_is_signed(
    digests: Digests, capsys: pytest.CaptureFixture[str]
) -> None:
    digests.append(4)
    assert _run(capsys)[0]["written"] is True
    owner = Database.from_url(digests.db_url)
    try:
        with owner.transaction() as s:  # the database owner, triggers bypassed
            s.script("SET LOCAL session_replication_role = replica")
            s.script("UPDATE access_logs SET row_hash = sha256(row_hash) WHERE seq = 2")
    finally:
        owner.close()
    digests.append(1)

    answer, metrics = _run(capsys)
    assert answer["ok"] is False and answer["written"] is False
    assert "no longer have the root" in answer["skipped"]
    assert metrics == {"AuditDigestsWritten": 0.0, "AuditDigestFailures": 1.0}
    assert sorted(digests.objects()) == [object_key(4)]
