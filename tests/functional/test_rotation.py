"""Rotation use cases (pqfile.usecases.rotation) against in-memory fakes of their ports."""

from __future__ import annotations

import dataclasses
import io
from types import SimpleNamespace
from typing import Any

import pytest

from pqfile.crypto import envelope, kem
from pqfile.errors import (
    DecryptionError,
    InvalidEventError,
    TransientError,
    WrongKeyError,
)
from pqfile.format.header import header_size
from pqfile.ports import ObjectInfo
from pqfile.usecases import rotation as rot
from pqfile.usecases.retrieve import RetrieveRequest, retrieve_document
from pqfile.usecases.rotation_steps import QueuedKey, rotation_id_from
from tests.functional.fakes import (
    ENCRYPTED,
    UPLOADS,
    FakeRotationKeys,
    event_for,
    make_pipeline,
    run_workflow,
)


class FakePackages:
    """PackageStore over the versioned FakeBlobStore."""

    def __init__(self, blobs: Any) -> None:
        self.blobs = blobs
        self.writes = 0

    def stat(self, bucket, key, version_id=None) -> ObjectInfo:
        return self.blobs.stat(bucket, key, version_id)

    def read_range(self, bucket, key, version_id, start, length) -> bytes:
        return self.blobs.data(bucket, key, version_id)[start : start + length]

    def replace_head(self, bucket, key, *, source, body_offset, new_head, if_match):
        if self.blobs.stat(bucket, key).etag != if_match:
            raise TransientError("changed concurrently")
        body = self.blobs.data(bucket, key, source.version_id)[body_offset:]
        self.writes += 1
        return self.blobs.put(bucket, key, new_head + body, "application/vnd.pqfile.pqf")


@pytest.fixture
def world() -> SimpleNamespace:
    p = make_pipeline()
    p.keys.status.clear()
    p.keys.secrets.clear()
    old = p.keys._add(kem.Suite.XWING)  # one key: every document lands on it
    docs = []
    for i, size in enumerate([0, 1, 70_000, 200_000]):
        data = bytes((i * 7 + j) % 251 for j in range(size))
        info = p.blobs.put(UPLOADS, f"uploads/a/doc-{i}.bin", data)
        state = run_workflow(p, event_for(info))
        assert state["status"] == "SUCCEEDED", state
        docs.append((state["document"]["document_id"], data))
    keys = FakeRotationKeys(p.keys, p.documents, p.audit)
    packages = FakePackages(p.blobs)
    r = rot.Rotation(keys=keys, documents=p.documents, packages=packages, audit=p.audit,
                     encrypted_bucket=ENCRYPTED, batch_size=3)  # fmt: skip
    return SimpleNamespace(p=p, r=r, keys=keys, packages=packages, old=old, docs=docs)


def _package(w: SimpleNamespace, document_id: str, version_id: str | None = None) -> bytes:
    rec = w.p.documents.get(document_id)
    return w.p.blobs.data(rec.encrypted_bucket, rec.encrypted_key,
                          version_id or rec.encrypted_version_id)  # fmt: skip


def _rotate_all(w: SimpleNamespace, rotation_id: int) -> list[str]:
    outcomes = []
    while True:
        plan = rot.plan_rewrap(w.r, rotation_id)
        for item in plan.documents:
            result = rot.rewrap_document(w.r, item.rotation_id, item.document_id)
            outcomes.append(result.outcome)
        if not plan.more:
            return outcomes


def test_maintain_queues_refills_and_lists_runs(world: SimpleNamespace) -> None:
    world.keys.due.add(world.old)
    result = rot.maintain_pool(world.r, request_id="exec-1")
    assert result.queued == [QueuedKey(world.old, "age")]
    assert result.created == {"xwing": 2} and result.active == {"xwing": 2}
    (run,) = result.rotations
    assert run.old_key_id == world.old and run.status == "queued"
    assert world.p.audit.rows[-1]["operation"] == rot.OP_MAINTAIN
    # the workflow's JSON: the ASL selects queued, created and rotations
    shaped = result.to_dict()
    assert shaped["queued"] == [{"key_id": world.old, "reason": "age"}]
    assert shaped["rotations"] == [
        {"rotation_id": run.rotation_id, "old_key_id": world.old, "new_key_id": None,
         "status": "queued"}]  # fmt: skip
    # nothing due, pool full: a second run changes nothing but still lists the open run
    again = rot.maintain_pool(world.r)
    assert again.queued == [] and again.created == {"xwing": 0}
    assert [r.rotation_id for r in again.rotations] == [run.rotation_id]


def test_rewrap_keeps_the_body_and_moves_every_document(world: SimpleNamespace) -> None:
    world.keys.due.add(world.old)
    (run,) = rot.maintain_pool(world.r).rotations
    before = {d: _package(world, d) for d, _ in world.docs}
    outcomes = _rotate_all(world, run.rotation_id)
    assert outcomes == ["rewrapped"] * len(world.docs)
    new_key = world.keys.runs[run.rotation_id].new_key_id
    assert new_key and new_key != world.old
    old_secret = world.keys.keys.secrets[world.old]
    new_secret = world.keys.keys.secrets[new_key]
    for document_id, plaintext in world.docs:
        rec = world.p.documents.get(document_id)
        assert rec.key_id == new_key
        old_pkg, new_pkg = before[document_id], _package(world, document_id)
        old_h, new_h = header_size(old_pkg[:88]), header_size(new_pkg[:88])
        assert new_pkg[new_h:] == old_pkg[old_h:]  # the body, byte for byte
        assert envelope.read_header(new_pkg).key_id == new_key
        out = io.BytesIO()
        envelope.decrypt_stream(io.BytesIO(new_pkg), out, new_secret,
                                expected_document_id=document_id)  # fmt: skip
        assert out.getvalue() == plaintext
        with pytest.raises((WrongKeyError, DecryptionError)):
            envelope.decrypt_stream(io.BytesIO(new_pkg), io.BytesIO(), old_secret,
                                    expected_document_id=document_id)  # fmt: skip
        # the retrieve use case follows the row to the new key and version
        got = retrieve_document(world.p, RetrieveRequest(document_id, None, None, "tester"))
        assert got["size"] == len(plaintext)
    rewraps = [a for a in world.p.audit.rows if a["operation"] == "document.rewrap"]
    assert sorted(a["document_id"] for a in rewraps) == sorted(d for d, _ in world.docs)
    done = rot.finish_rotation(world.r, run.rotation_id)
    assert done.run.status == "completed"
    assert world.keys.keys.status[world.old] == "expired"
    # idempotent: rewrapping again changes nothing, finishing again reports the same run
    assert rot.rewrap_document(world.r, run.rotation_id, world.docs[0][0]).outcome == (
        "already_rewrapped"
    )
    assert rot.finish_rotation(world.r, run.rotation_id).run.status == "completed"


def test_crash_between_write_and_row_update_is_resumable(world: SimpleNamespace) -> None:
    world.keys.due.add(world.old)
    (run,) = rot.maintain_pool(world.r).rotations
    rid = run.rotation_id
    document_id, plaintext = world.docs[2]
    committed = world.p.documents.get(document_id).encrypted_version_id
    world.keys.crash_before_record = 1
    with pytest.raises(TransientError):
        rot.rewrap_document(world.r, rid, document_id)
    # the new version exists, but the row still names the old key and the old version,
    # which is untouched and still decrypts with the old key
    rec = world.p.documents.get(document_id)
    assert rec.key_id == world.old and rec.encrypted_version_id == committed
    got = retrieve_document(world.p, RetrieveRequest(document_id, None, None, "tester"))
    assert got["size"] == len(plaintext)
    # the retry rewraps the committed version again and commits
    assert rot.rewrap_document(world.r, rid, document_id).outcome == "rewrapped"
    rec = world.p.documents.get(document_id)
    assert rec.key_id == world.keys.runs[rid].new_key_id and rec.encrypted_version_id != committed
    got = retrieve_document(world.p, RetrieveRequest(document_id, None, None, "tester"))
    assert got["size"] == len(plaintext)


def test_a_concurrent_change_is_transient(world: SimpleNamespace) -> None:
    world.keys.due.add(world.old)
    (run,) = rot.maintain_pool(world.r).rotations
    document_id = world.docs[1][0]
    real_stat = world.packages.stat

    def stat_then_race(bucket, key, version_id=None):
        info = real_stat(bucket, key, version_id)
        if version_id is None:  # someone writes right after we looked
            world.p.blobs.put(bucket, key, world.p.blobs.data(bucket, key) + b"!")
        return info

    world.packages.stat = stat_then_race
    with pytest.raises(TransientError):
        rot.rewrap_document(world.r, run.rotation_id, document_id)
    assert world.p.documents.get(document_id).key_id == world.old
    world.packages.stat = real_stat
    assert rot.rewrap_document(world.r, run.rotation_id, document_id).outcome == "rewrapped"


def test_finish_refuses_while_documents_remain(world: SimpleNamespace) -> None:
    world.keys.due.add(world.old)
    (run,) = rot.maintain_pool(world.r).rotations
    rid = run.rotation_id
    rot.plan_rewrap(world.r, rid)
    rot.rewrap_document(world.r, rid, world.docs[0][0])
    with pytest.raises(rot.RotationIncompleteError):
        rot.finish_rotation(world.r, rid)
    # the run stays open and the old key keeps decrypting
    assert world.keys.runs[rid].status == "running"
    assert world.keys.keys.status[world.old] == "rotation_queued"
    _rotate_all(world, rid)
    assert rot.finish_rotation(world.r, rid).run.status == "completed"


def test_a_tampered_header_is_refused_and_audited(world: SimpleNamespace) -> None:
    world.keys.due.add(world.old)
    (run,) = rot.maintain_pool(world.r).rotations
    document_id = world.docs[3][0]
    rec = world.p.documents.get(document_id)
    pkg = bytearray(_package(world, document_id))
    pkg[header_size(bytes(pkg[:88])) - 1] ^= 1  # the header MAC
    info = world.p.blobs.put(rec.encrypted_bucket, rec.encrypted_key, bytes(pkg))
    world.p.documents.rows[document_id] = dataclasses.replace(
        rec, encrypted_version_id=info.version_id)  # fmt: skip
    with pytest.raises(DecryptionError):
        rot.rewrap_document(world.r, run.rotation_id, document_id)
    assert world.p.documents.get(document_id).key_id == world.old
    last = world.p.audit.rows[-1]
    assert (last["operation"], last["outcome"]) == ("document.rewrap", "failure")
    assert last["details"]["reason"] == "DecryptionError"


def test_pending_documents_are_not_planned(world: SimpleNamespace) -> None:
    world.keys.due.add(world.old)
    (run,) = rot.maintain_pool(world.r).rotations
    document_id = world.docs[0][0]
    world.p.documents.rows[document_id] = dataclasses.replace(
        world.p.documents.rows[document_id], status="pending")  # fmt: skip
    plan = rot.plan_rewrap(world.r, run.rotation_id)
    assert document_id not in [d.document_id for d in plan.documents]
    assert plan.skipped == 1


def test_rotation_id_from_events() -> None:
    assert rotation_id_from({"rotation_id": 7}) == 7
    assert rotation_id_from({"rotation_id": "7"}) == 7
    for bad in ({}, {"rotation_id": True}, {"rotation_id": "x"}):
        with pytest.raises(InvalidEventError):
            rotation_id_from(bad)


def test_the_rotate_handlers_answer_the_workflow(world: SimpleNamespace, monkeypatch,
                                                 capsys) -> None:  # fmt: skip
    """The five entry points on the fakes: the JSON each answers is what the next state of
    statemachines/rotate-keys.asl.json selects."""
    import json

    from pqfile import wiring
    from pqfile.handlers import rotate

    monkeypatch.setattr(wiring.rotation, "_value", world.r)
    context = SimpleNamespace(function_name="rotate", memory_limit_in_mb=256,
                              invoked_function_arn="arn:aws:lambda:us-east-1:1:function:r",
                              aws_request_id="r-1")  # fmt: skip

    def invoke(handler: Any, payload: dict[str, Any]) -> dict[str, Any]:
        answer = handler(json.loads(json.dumps(payload)), context)
        assert answer.pop("compute_ms") >= 0 and answer.pop("duration_ms") >= 0
        return dict(json.loads(json.dumps(answer)))

    world.keys.due.add(world.old)
    capsys.readouterr()
    maintained = invoke(rotate.maintain_handler, {"execution": "e-1"})
    assert set(maintained) == {"queued", "created", "rotations", "active"}
    assert maintained["active"] == {"xwing": 2}
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines()
               if line.startswith("{") and "KeyPoolActiveKeys" in line]  # fmt: skip
    assert [(m["suite"], m["KeyPoolActiveKeys"]) for m in metrics] in (
        [("xwing", 2)], [("xwing", 2.0)], [("xwing", [2.0])])
    (run,) = maintained["rotations"]
    rid = {"rotation_id": run["rotation_id"]}
    while True:
        plan = invoke(rotate.plan_handler, rid)
        assert plan["new_key_id"] and plan["status"] == "running"
        for item in plan["documents"]:
            done = invoke(rotate.rewrap_handler, item)
            assert done["outcome"] == "rewrapped" and done["key_id"] == plan["new_key_id"]
        if not plan["more"]:
            break
    finished = invoke(rotate.finish_handler, rid)
    assert (finished["status"], finished["documents_rewrapped"]) == ("completed", 4)
    with pytest.raises(InvalidEventError):
        rotate.rewrap_handler({"rotation_id": 1}, context)
    failure = invoke(rotate.failure_handler, {"error": {"Error": "DecryptionError", "Cause": "x"},
                                              "state": rid, "execution": "e-2"})  # fmt: skip
    assert failure == {"error": "DecryptionError", "rotation_id": run["rotation_id"]}
    last = world.p.audit.rows[-1]
    assert (last["operation"], last["outcome"], last["request_id"]) == (
        "key.rotation_failed", "failure", "e-2")
