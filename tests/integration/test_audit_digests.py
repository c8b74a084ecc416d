"""`pqfile audit verify --digests` and `pqfile audit prove` on real PostgreSQL, against
digests signed here with pyca keys (ECDSA P-384 as KMS ECDSA_SHA_384 signs, ML-DSA-65 as
KMS ML_DSA_SHAKE_256 signs) over several periods: intact, the whole table rewritten
consistently by its owner, a missing digest, receipts proved and forged ones refused."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa

from pqfile.adapters.postgres.audit import PostgresAuditLog
from pqfile.adapters.postgres.connection import Database
from pqfile.cli import main as cli_main
from pqfile.errors import AuditProofError
from pqfile.keys import audit_digest as d
from pqfile.keys.audit_tree import tree_root, verify_inclusion
from tests.fixtures.postgres import AUDITOR, RETRIEVE, role_url

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-aaaa-bbbb-cccc-000000000001"


class Signer:
    """What the digest function does (engineer G's, on KMS), with a local pyca key."""

    def __init__(self, algorithm: str, folder: Path) -> None:
        self.algorithm = algorithm
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        if algorithm == d.ECDSA_SHA_384:
            self._ec = ec.generate_private_key(ec.SECP384R1())
            public: Any = self._ec.public_key()
        else:
            self._ml = mldsa.MLDSA65PrivateKey.generate()
            public = self._ml.public_key()
        self.pem = folder.parent / f"{algorithm}.pem"
        self.pem.write_bytes(
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.previous = d.GENESIS_DIGEST_HASH
        self.previous_size = 0

    def sign(self, encoded: bytes) -> bytes:
        if self.algorithm == d.ECDSA_SHA_384:
            return self._ec.sign(encoded, ec.ECDSA(hashes.SHA384()))
        return self._ml.sign(encoded)

    def digest(self, owner: Database) -> Path:
        rows = owner.run("SELECT seq, row_hash, occurred_at FROM access_logs ORDER BY seq")
        size = len(rows)
        new = rows[self.previous_size :]
        head = d.TreeHead(
            tree_size=size,
            root_hash=tree_root([bytes(r[1]) for r in rows]),
            first_seq=self.previous_size + 1,
            last_seq=size,
            first_at=new[0][2] if new else None,
            last_at=new[-1][2] if new else None,
            previous_digest_hash=self.previous,
            signed_at=dt.datetime.now(dt.UTC),
            key_id=KEY_ARN,
            algorithm=self.algorithm,
        )
        encoded = d.encode(head)
        signed = d.SignedDigest(encoded, self.sign(encoded), self.algorithm, KEY_ARN)
        path = self.folder / Path(d.object_key(size)).name
        path.write_bytes(signed.to_json())
        self.previous, self.previous_size = d.digest_hash(encoded), size
        return path


def _append(url: str, n: int, start: int) -> None:
    log = PostgresAuditLog(Database.from_url(role_url(url, RETRIEVE)))
    for i in range(start, start + n):
        log.append(
            operation="document.decrypt",
            outcome="success",
            actor=f"arn:aws:sts::123456789012:assumed-role/reader/r-{i}",
            document_id=f"doc-{i}",
            request_id=f"req-{i}",
            details={"delivery": "inline", "size": i},
        )


@pytest.fixture
def history(
    request: pytest.FixtureRequest, db_url: str, owner_db: Database, tmp_path: Path
) -> tuple[str, Signer]:
    """Three signed periods (5, 4 and 6 rows), then 3 rows no digest covers yet."""
    algorithm = getattr(request, "param", d.ML_DSA_SHAKE_256)  # the post-quantum path
    signer = Signer(algorithm, tmp_path / "digests")
    start = 1
    for n in (5, 4, 6):
        _append(db_url, n, start)
        start += n
        signer.digest(owner_db)
    _append(db_url, 3, start)
    return db_url, signer


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = cli_main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if "--json" in argv else out


def _verify(
    capsys: pytest.CaptureFixture[str], url: str, signer: Signer, *more: str
) -> tuple[int, Any]:
    return _run(capsys, "audit", "verify", "--database-url", role_url(url, AUDITOR),
                "--digests", str(signer.folder), "--public-key", str(signer.pem),
                *more)  # fmt: skip


def _rewrite_whole_table(owner: Database, seq: int) -> None:
    """The database owner changes one row and recomputes every hash from row 1 on, and the
    head: the chain alone verifies again."""
    with owner.transaction() as s:
        s.script("SET LOCAL session_replication_role = replica")
        s.run("UPDATE access_logs SET actor = 'nobody' WHERE seq = :seq", seq=seq)
        s.script(
            """DO $$
            DECLARE r record; prev bytea := decode(repeat('00', 32), 'hex');
            BEGIN
              FOR r IN SELECT * FROM access_logs ORDER BY seq LOOP
                UPDATE access_logs SET prev_hash = prev, row_hash = audit_row_hash_v2(r.seq,
                  r.occurred_at, r.operation, r.outcome, r.actor, r.document_id, r.key_id,
                  r.request_id, r.details, r.db_role, prev) WHERE seq = r.seq
                RETURNING row_hash INTO prev;
              END LOOP;
              UPDATE audit_chain_head SET row_hash = prev;
            END $$"""
        )


@pytest.mark.parametrize("history", [d.ECDSA_SHA_384, d.ML_DSA_SHAKE_256], indirect=True)
def test_intact_history_verifies(
    history: tuple[str, Signer], capsys: pytest.CaptureFixture[str]
) -> None:
    url, signer = history
    code, report = _verify(capsys, url, signer, "--json")
    assert code == 0, report
    assert report["ok"] and report["chain"]["ok"] and report["chain"]["rows"] == 18
    digests = report["digests"]
    assert (digests["digests"], digests["latest_tree_size"], digests["unsigned_rows"]) == (3, 15, 3)
    assert digests["problems"] == [] and digests["gaps"] == 0
    code, text = _verify(capsys, url, signer)
    assert code == 0 and "digests OK" in text and "the latest covers rows 1..15" in text


def test_owner_rewrite_of_the_whole_table_is_caught(
    history: tuple[str, Signer], owner_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    url, signer = history
    _rewrite_whole_table(owner_db, 7)  # a row of the second period
    assert cli_main(["audit", "verify", "--database-url", role_url(url, AUDITOR)]) == 0
    code, report = _verify(capsys, url, signer, "--json")
    assert code == 1 and report["chain"]["ok"] and not report["ok"]
    problems = report["digests"]["problems"]
    # The first period still matches; the second and third digests no longer do.
    assert [(p["kind"], p["tree_size"]) for p in problems] == [("root", 9), ("root", 15)]
    assert "within 6..9" in problems[0]["detail"]
    code, text = _verify(capsys, url, signer)
    assert code == 1 and "ROOT:" in text and "digests FAILED: 2 problem(s)" in text


def test_a_missing_digest_is_reported_as_a_gap(
    history: tuple[str, Signer], capsys: pytest.CaptureFixture[str]
) -> None:
    url, signer = history
    (signer.folder / Path(d.object_key(9)).name).unlink()  # the second period's digest
    code, report = _verify(capsys, url, signer, "--json")
    assert code == 1 and report["chain"]["ok"]
    problems = report["digests"]["problems"]
    assert [(p["kind"], p["tree_size"]) for p in problems] == [("gap", 15)]
    assert report["digests"]["gaps"] == 1
    (signer.folder / Path(d.object_key(5)).name).unlink()  # and the first: a gap at the start
    code, report = _verify(capsys, url, signer, "--json")
    assert [(p["kind"], p["tree_size"]) for p in report["digests"]["problems"]] == [("gap", 15)]
    assert "rows 1..9 have no digest" in report["digests"]["problems"][0]["detail"]


def test_digests_signed_by_another_key_or_tampered_are_refused(
    history: tuple[str, Signer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, signer = history
    other = Signer(signer.algorithm, tmp_path / "other" / "digests")
    code, report = _run(capsys, "audit", "verify", "--database-url", role_url(url, AUDITOR),
                        "--digests", str(signer.folder), "--public-key", str(other.pem),
                        "--json")  # fmt: skip
    assert code == 1
    assert [p["kind"] for p in report["digests"]["problems"]] == ["signature"] * 3
    path = signer.folder / Path(d.object_key(15)).name
    obj = json.loads(path.read_text())
    obj["digest"] = obj["digest"][:-4] + "AAAA"
    path.write_text(json.dumps(obj))
    code, report = _verify(capsys, url, signer, "--json")
    assert code == 1
    assert [p["kind"] for p in report["digests"]["problems"]] == ["malformed"]


def test_bad_input_is_one_line(
    history: tuple[str, Signer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, signer = history
    auditor = role_url(url, AUDITOR)
    for argv in (
        ["--digests", str(tmp_path / "nowhere"), "--public-key", str(signer.pem)],
        ["--digests", str(signer.folder)],
        ["--digests", str(signer.folder), "--public-key", str(tmp_path / "missing.pem")],
        ["--digests", str(signer.folder), "--public-key", str(next(signer.folder.iterdir()))],
    ):
        capsys.readouterr()
        assert cli_main(["audit", "verify", "--database-url", auditor, *argv]) == 1
        err = capsys.readouterr().err
        assert err.startswith("pqfile: error: ") and err.count("\n") == 1, err
    for command in (["verify"], ["prove", "3"]):  # a public key without digests
        capsys.readouterr()
        assert cli_main(["audit", *command, "--database-url", auditor,
                         "--public-key", str(signer.pem)]) == 1  # fmt: skip
        assert "--public-key goes with --digests" in capsys.readouterr().err


@pytest.mark.parametrize("history", [d.ECDSA_SHA_384, d.ML_DSA_SHAKE_256], indirect=True)
def test_a_receipt_is_proved_against_the_latest_digest(
    history: tuple[str, Signer], capsys: pytest.CaptureFixture[str]
) -> None:
    url, signer = history
    code, proof = _run(capsys, "audit", "prove", "7", "--database-url", role_url(url, AUDITOR),
                       "--digests", str(signer.folder), "--public-key", str(signer.pem),
                       "--json")  # fmt: skip
    assert code == 0 and proof["status"] == "verified"
    assert proof["tree_size"] == 15 and proof["row"]["document_id"] == "doc-7"
    # Checked here again from the printed values only, against the signed head.
    signed = d.SignedDigest.from_json((signer.folder / Path(d.object_key(15)).name).read_bytes())
    head = signed.verify(d.public_key_der(signer.pem.read_bytes()))
    siblings = [bytes.fromhex(h) for h in proof["proof"]]
    verify_inclusion(bytes.fromhex(proof["row_hash"]), 6, 15, siblings, head.root_hash)
    assert len(siblings) == 4 and proof["row_hash_matches_row"]
    # No other row is revealed: only the sibling hashes, none of them a row hash.
    rows = PostgresAuditLog(Database.from_url(role_url(url, AUDITOR))).tail(18)
    other_hashes = {r["row_hash"] for r in rows if r["seq"] != 7}
    assert not other_hashes & set(proof["proof"])
    code, text = _run(capsys, "audit", "prove", "7", "--database-url", role_url(url, AUDITOR),
                      "--digests", str(signer.folder), "--public-key", str(signer.pem))  # fmt: skip
    assert code == 0 and "inclusion proof VERIFIED against the signed root" in text
    # A row no digest covers yet: the promise, not a failure.
    code, pending = _run(capsys, "audit", "prove", "17", "--database-url",
                         role_url(url, AUDITOR), "--digests", str(signer.folder),
                         "--public-key", str(signer.pem), "--json")  # fmt: skip
    assert code == 0 and pending["status"] == "pending"


def test_a_forged_receipt_is_refused(
    history: tuple[str, Signer], owner_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    url, signer = history
    _rewrite_whole_table(owner_db, 7)  # the owner rewrites the receipt's row
    code = cli_main(["audit", "prove", "7", "--database-url", role_url(url, AUDITOR),
                     "--digests", str(signer.folder), "--public-key", str(signer.pem)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("pqfile: error: ") and "root" in err
    # A proof edited by hand is refused too.
    code, proof = _run(capsys, "audit", "prove", "3", "--database-url", role_url(url, AUDITOR),
                       "--json")  # fmt: skip
    assert code == 0 and proof["status"] == "unsigned"
    receipt = d.InclusionReceipt.from_dict({**proof, "proof": proof["proof"][::-1]})
    with pytest.raises(AuditProofError):
        receipt.verify(bytes.fromhex(proof["root_hash"]))


def test_prove_refuses_a_row_that_does_not_exist(
    history: tuple[str, Signer], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = history
    assert cli_main(["audit", "prove", "99", "--database-url", role_url(url, AUDITOR)]) == 1
    assert "no audit row 99" in capsys.readouterr().err


def test_prove_through_the_admin_backend_as_the_auditor(history: tuple[str, Signer]) -> None:
    """The admin function's side of `pqfile audit prove --stack` (audit.prove, an auditor
    read): its answer parses back into a receipt that verifies against the signed root."""
    from pqfile.adapters.postgres.operator import PostgresOperatorBackend
    from pqfile.errors import InvalidEventError
    from pqfile.usecases.admin import AdminRequest

    url, signer = history
    backend = PostgresOperatorBackend(
        admin=lambda: pytest.fail("audit.prove must not connect as pqfile_admin_function"),
        auditor=lambda: Database.from_url(role_url(url, AUDITOR)),
    )
    request = AdminRequest.from_payload({"command": "audit.prove",
                                         "args": {"seq": 7, "tree_size": 15}})  # fmt: skip
    assert request.role == "auditor"
    answer = backend.run(request, actor="tests", request_id=None)
    receipt = d.InclusionReceipt.from_dict(json.loads(json.dumps(answer)))
    signed = d.SignedDigest.from_json((signer.folder / Path(d.object_key(15)).name).read_bytes())
    receipt.verify(signed.verify(d.public_key_der(signer.pem.read_bytes())).root_hash)
    for bad in ({"seq": "7"}, {"seq": 0}, {"seq": 7, "tree_size": True}, {"seq": 7, "rows": 1}):
        with pytest.raises(InvalidEventError):
            AdminRequest.from_payload({"command": "audit.prove", "args": bad})
    with pytest.raises(AuditProofError):  # beyond the table
        backend.run(AdminRequest.from_payload({"command": "audit.prove",
                                               "args": {"seq": 7, "tree_size": 99}}),
                    actor="tests", request_id=None)  # fmt: skip


def test_digests_read_from_s3(
    history: tuple[str, Signer],
    aws_emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SRC as s3://bucket/prefix on the emulator (the session's, no deployment): the same
    answer as the directory; an object missing from the bucket is a gap."""
    url, signer = history
    s3 = aws_emulator.client("s3")
    bucket = f"digests-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    for path in sorted(signer.folder.glob("*.json")):
        if path.name != Path(d.object_key(9)).name:
            s3.put_object(Bucket=bucket, Key=f"digests/{path.name}", Body=path.read_bytes())
    s3.put_object(Bucket=bucket, Key="digests/README.txt", Body=b"not a digest")
    env = {"AWS_ENDPOINT_URL": aws_emulator.endpoint_url, "AWS_ACCESS_KEY_ID": "test",
           "AWS_DEFAULT_REGION": aws_emulator.region, "AWS_SECRET_ACCESS_KEY": "test"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    code, report = _run(capsys, "audit", "verify", "--database-url", role_url(url, AUDITOR),
                        "--digests", f"s3://{bucket}/digests/", "--public-key", str(signer.pem),
                        "--json")  # fmt: skip
    assert code == 1 and report["digests"]["digests"] == 2
    assert [(p["kind"], p["name"]) for p in report["digests"]["problems"]] == [
        ("gap", f"s3://{bucket}/digests/{Path(d.object_key(15)).name}")]  # fmt: skip
    s3.put_object(Bucket=bucket, Key=f"digests/{Path(d.object_key(9)).name}",
                  Body=(signer.folder / Path(d.object_key(9)).name).read_bytes())  # fmt: skip
    code, report = _run(capsys, "audit", "verify", "--database-url", role_url(url, AUDITOR),
                        "--digests", f"s3://{bucket}/digests/", "--public-key", str(signer.pem),
                        "--json")  # fmt: skip
    assert code == 0 and report["digests"]["latest_tree_size"] == 15
    assert cli_main(["audit", "verify", "--database-url", role_url(url, AUDITOR),
                     "--digests", f"s3://{bucket}-missing/x", "--public-key",
                     str(signer.pem)]) == 1  # fmt: skip
    assert capsys.readouterr().err.startswith("pqfile: error: ")


def test_the_report_lists_each_digest_and_flags_a_rewrite(
    history: tuple[str, Signer], owner_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    url, signer = history

    def report() -> tuple[int, Any]:
        capsys.readouterr()
        code = cli_main(["audit", "report", "--database-url", role_url(url, AUDITOR),
                         "--since", "2000-01-01", "--format", "json",
                         "--digests", str(signer.folder),
                         "--public-key", str(signer.pem)])  # fmt: skip
        return code, json.loads(capsys.readouterr().out)

    code, intact = report()
    assert code == 0
    digests = intact["digests"]
    assert [(x["tree_size"], x["verified"]) for x in digests] == [(5, True), (9, True), (15, True)]
    assert all(x["problem"] is None and len(x["root_hash"]) == 64 for x in digests)
    _rewrite_whole_table(owner_db, 7)
    code, rewritten = report()
    flagged = [(x["tree_size"], x["verified"]) for x in rewritten["digests"]]
    assert flagged == [(5, True), (9, False), (15, False)]
    assert rewritten["digests"][1]["problem"].startswith("root:")
