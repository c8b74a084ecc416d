"""Rotation use cases (pqfile.usecases.rotation) against in-memory fakes of their ports."""

from __future__ import annotations

import collections
import dataclasses
import io
import json
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
from pqfile.keys.model import KeyStatus
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


    def rewrite(self, bucket, key, *, source, transform, if_match):
        """A streamed new version: transform(reader, sink) into a buffer, committed only
        if the object did not change and the transform returned."""
        if self.blobs.stat(bucket, key).etag != if_match:
            raise TransientError("changed concurrently")
        out = io.BytesIO()
        transform(io.BytesIO(self.blobs.data(bucket, key, source.version_id)), out)
        if self.blobs.stat(bucket, key).etag != if_match:
            raise TransientError("changed concurrently")
        self.writes += 1
        self.rewrites = getattr(self, "rewrites", 0) + 1
        return self.blobs.put(bucket, key, out.getvalue(), "application/vnd.pqfile.pqf")


class FakeManifests:
    """ManifestStore in a dictionary: key -> the items (what the Map's ItemReader reads)."""

    def __init__(self) -> None:
        self.items: dict[str, list[dict[str, Any]]] = {}

    def write_manifest(self, bucket, key, items) -> ObjectInfo:
        self.items[key] = json.loads(json.dumps(list(items)))
        return ObjectInfo(bucket=bucket, key=key, size=1, etag="e", version_id="v",
                          content_type="application/json")  # fmt: skip


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
    manifests = FakeManifests()
    r = rot.Rotation(keys=keys, documents=p.documents, packages=packages, audit=p.audit,
                     encrypted_bucket=ENCRYPTED, manifests=manifests,
                     batch_size=3)  # fmt: skip
    return SimpleNamespace(p=p, r=r, keys=keys, packages=packages, manifests=manifests,
                           old=old, docs=docs)  # fmt: skip


def _items(w: SimpleNamespace, plan: Any) -> list[dict[str, Any]]:
    """The manifest a plan wrote (the distributed Map's items)."""
    assert plan.manifest is not None and plan.manifest.bucket == ENCRYPTED
    assert plan.manifest.key.startswith("rotation-manifests/")
    return w.manifests.items[plan.manifest.key]


def _package(w: SimpleNamespace, document_id: str, version_id: str | None = None) -> bytes:
    rec = w.p.documents.get(document_id)
    return w.p.blobs.data(rec.encrypted_bucket, rec.encrypted_key,
                          version_id or rec.encrypted_version_id)  # fmt: skip


def _rotate_all(w: SimpleNamespace, rotation_id: int) -> list[str]:
    """What the workflow does: plan from the cursor, rewrap each manifest item, repeat."""
    outcomes = []
    after = None
    while True:
        plan = rot.plan_rewrap(w.r, rotation_id, after=after)
        for item in _items(w, plan):
            result = rot.rewrap_document(w.r, item["rotation_id"], item["document_id"],
                                         target_key_id=item["target_key_id"])  # fmt: skip
            outcomes.append(result.outcome)
        if not plan.more:
            return outcomes
        after = plan.after


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
         "status": "queued", "to_suite": None}]  # fmt: skip
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
    old_secret = world.keys.keys.secrets[world.old]
    for document_id, plaintext in world.docs:
        rec = world.p.documents.get(document_id)
        new_key = rec.key_id
        assert new_key != world.old and world.keys.keys.status[new_key] == "active"
        new_secret = world.keys.keys.secrets[new_key]
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
    assert rec.key_id != world.old and rec.encrypted_version_id != committed
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
    assert document_id not in [d["document_id"] for d in _items(world, plan)]
    assert plan.skipped == 1 and plan.count == 2


def test_documents_of_one_key_spread_over_the_pool(world: SimpleNamespace) -> None:
    """Each document gets its own target key, the least used first (as ingest picks)."""
    world.keys.due.add(world.old)
    (run,) = rot.maintain_pool(world.r).rotations
    _rotate_all(world, run.rotation_id)
    landed = collections.Counter(world.p.documents.get(d).key_id for d, _ in world.docs)
    assert world.old not in landed
    assert len(landed) == 2 and set(landed.values()) == {2}  # two pool keys, two each
    for key_id, n in landed.items():  # every move counted on its key
        assert world.keys.storage.keys.records[key_id].usage_count == n


def test_a_stopped_run_restarts_without_skipping_or_rewrapping_twice(
    world: SimpleNamespace,
) -> None:
    world.keys.due.add(world.old)
    (run,) = rot.maintain_pool(world.r).rotations
    rid = run.rotation_id
    first = rot.plan_rewrap(world.r, rid)
    items = _items(world, first)
    assert first.more and len(items) == 3
    for item in items[:2]:  # the execution is stopped after two documents
        rot.rewrap_document(world.r, rid, item["document_id"],
                            target_key_id=item["target_key_id"])  # fmt: skip
    writes = world.packages.writes
    # a child still in flight when the stop came finishes its item late: nothing to do
    late = rot.rewrap_document(world.r, rid, items[0]["document_id"],
                               target_key_id=items[0]["target_key_id"])  # fmt: skip
    assert late.outcome == "already_rewrapped" and world.packages.writes == writes
    # the next execution plans from the start: only what is still on the old key
    outcomes = _rotate_all(world, rid)
    assert outcomes == ["rewrapped"] * 2
    rewraps = collections.Counter(a["document_id"] for a in world.p.audit.rows
                                  if a["operation"] == "document.rewrap")  # fmt: skip
    assert rewraps == {d: 1 for d, _ in world.docs}
    assert world.keys.runs[rid].documents_rewrapped == len(world.docs)
    assert rot.finish_rotation(world.r, rid).run.status == "completed"


def _retarget(world: SimpleNamespace, rid: int, suite: str, allow_downgrade: bool) -> None:
    """What `pqfile keys rotate --to-suite` records on a queued run (rotation_set_target)."""
    world.keys.runs[rid] = dataclasses.replace(world.keys.runs[rid], to_suite=suite,
                                               allow_downgrade=allow_downgrade)  # fmt: skip


def test_suite_migration_moves_documents_within_the_hash_family(world: SimpleNamespace) -> None:
    """mlkem768 -> xwing: a rewrap (same SHA-256 family, stronger suite); the body stays and
    the audit names both suites."""
    from pqfile.config import Settings

    p = world.p
    old = p.keys._add(kem.Suite.MLKEM768)
    doc = p.blobs.put(UPLOADS, "uploads/a/768.bin", b"m" * 5000)
    ingest_768 = dataclasses.replace(p, settings=Settings.from_values(
        uploads_bucket=UPLOADS, encrypted_bucket=ENCRYPTED, segment_size=64 * 1024,
        default_suite="mlkem768"))  # fmt: skip
    state = run_workflow(ingest_768, event_for(doc))
    assert state["status"] == "SUCCEEDED", state
    document_id = state["document"]["document_id"]
    assert p.documents.get(document_id).key_id == old
    world.keys.due.add(old)
    runs = [r for r in rot.maintain_pool(world.r).rotations if r.old_key_id == old]
    rid = runs[0].rotation_id
    _retarget(world, rid, "xwing", False)
    _rotate_all(world, rid)
    rec = p.documents.get(document_id)
    assert p.keys.storage.keys.records[rec.key_id].suite == "xwing"
    assert envelope.read_header(_package(world, document_id)).suite is kem.Suite.XWING
    (audit,) = [a for a in p.audit.rows if a["operation"] == "document.rewrap"
                and a["document_id"] == document_id]  # fmt: skip
    assert (audit["details"]["from_suite"], audit["details"]["to_suite"]) == (
        "mlkem768", "xwing")


@pytest.mark.parametrize(
    ("to_suite", "allow", "refused"),
    [("mlkem768", False, "downgrade"), ("mlkem768", True, None)],
)  # fmt: skip
def test_suite_moves_the_run_does_not_allow_are_refused(
    world: SimpleNamespace, to_suite: str, allow: bool, refused: str | None
) -> None:
    from pqfile.keys.rotation_runs import SuiteMoveRefusedError

    world.keys.due.add(world.old)  # an xwing key
    (run,) = rot.maintain_pool(world.r).rotations
    _retarget(world, run.rotation_id, to_suite, allow)
    if refused is None:  # an allowed downgrade needs keys of the lower suite
        world.keys.refill("mlkem768")
        _rotate_all(world, run.rotation_id)
        rec = world.p.documents.get(world.docs[0][0])
        assert world.keys.storage.keys.records[rec.key_id].suite == "mlkem768"
        return
    with pytest.raises(SuiteMoveRefusedError, match=refused):
        rot.plan_rewrap(world.r, run.rotation_id)
    assert world.keys.runs[run.rotation_id].status == "queued"  # nothing started
    assert world.p.documents.get(world.docs[0][0]).key_id == world.old


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
    after = None
    while True:
        plan = invoke(rotate.plan_handler, {**rid, "after": after})
        assert plan["new_key_id"] and plan["status"] == "running"
        assert plan["manifest_bucket"] == ENCRYPTED and plan["concurrency"] >= 1
        items = world.manifests.items[plan["manifest_key"]]
        assert plan["count"] == len(items)
        for item in items:
            done = invoke(rotate.rewrap_handler, item)
            assert done["outcome"] == "rewrapped" and done["key_id"] == item["target_key_id"]
        if not plan["more"]:
            break
        after = plan["after"]
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


def test_plan_and_rewrap_events_are_parsed_strictly() -> None:
    from pqfile.usecases.rotation_steps import PlanRequest, RewrapRequest

    assert PlanRequest.from_event({"rotation_id": 3, "after": None}) == PlanRequest(3, None)
    assert PlanRequest.from_event({"rotation_id": 3, "after": "d9"}).after == "d9"
    item = {"rotation_id": 3, "document_id": "d1", "target_key_id": "k2"}
    assert RewrapRequest.from_event(item) == RewrapRequest(3, "d1", "k2")
    assert RewrapRequest.from_event({**item, "target_key_id": None}).target_key_id is None
    for bad in ({"rotation_id": 3, "after": 7}, {"after": "d1"}):
        with pytest.raises(InvalidEventError):
            PlanRequest.from_event(bad)
    for bad in ({**item, "target_key_id": ""}, {**item, "target_key_id": 5},
                {**item, "document_id": ""}):  # fmt: skip
        with pytest.raises(InvalidEventError):
            RewrapRequest.from_event(bad)


def test_a_planned_target_that_stopped_encrypting_is_replaced(world: SimpleNamespace) -> None:
    """Between the plan and the rewrap the target key was queued: another pool key of the
    run's suite takes the document (the row never moves to a key that does not encrypt)."""
    world.keys.due.add(world.old)
    (run,) = rot.maintain_pool(world.r).rotations
    plan = rot.plan_rewrap(world.r, run.rotation_id)
    item = _items(world, plan)[0]
    world.keys.keys.storage.keys.set_status(item["target_key_id"], KeyStatus.ROTATION_QUEUED)
    result = rot.rewrap_document(world.r, run.rotation_id, item["document_id"],
                                 target_key_id=item["target_key_id"])  # fmt: skip
    assert result.outcome == "rewrapped"
    assert result.key_id not in (item["target_key_id"], world.old)
    assert world.keys.storage.keys.records[result.key_id].status is KeyStatus.ACTIVE
    assert world.p.documents.get(item["document_id"]).key_id == result.key_id


def test_suite_move_rules() -> None:
    from pqfile.keys.rotation_runs import SuiteMoveRefusedError, check_suite_move

    check_suite_move("mlkem768", "xwing")  # up, same family
    check_suite_move("xwing", "xwing")
    check_suite_move("xwing", "mlkem768", allow_downgrade=True)
    with pytest.raises(SuiteMoveRefusedError, match="downgrade"):
        check_suite_move("xwing", "mlkem768")
    # Across hash families is allowed (a re-encryption); the downgrade guard still holds.
    check_suite_move("xwing", "mlkem1024")
    check_suite_move("mlkem768", "mlkem1024")
    check_suite_move("mlkem1024", "mlkem768", allow_downgrade=True)
    with pytest.raises(SuiteMoveRefusedError, match="downgrade"):
        check_suite_move("mlkem1024", "xwing")
    with pytest.raises(SuiteMoveRefusedError, match="unknown"):
        check_suite_move("xwing", "rsa")


def test_planning_a_finished_run_writes_an_empty_manifest(world: SimpleNamespace) -> None:
    """Another execution finished the run meanwhile: the Map reads an empty manifest (a
    missing one would fail the ItemReader)."""
    world.keys.due.add(world.old)
    (run,) = rot.maintain_pool(world.r).rotations
    _rotate_all(world, run.rotation_id)
    assert rot.finish_rotation(world.r, run.rotation_id).run.status == "completed"
    plan = rot.plan_rewrap(world.r, run.rotation_id)
    assert plan.run.status == "completed" and not plan.more
    assert _items(world, plan) == [] and plan.count == 0


# --- re-encryption: compromise and moves across hash families (issue 12, items 3 and 4) ------


def test_choose_move_reads_the_package_kdf_not_the_suite() -> None:
    from pqfile.crypto.keyschedule import Kdf
    from pqfile.keys.rotation_runs import Move, choose_move

    # A SHA-256 package into the CNSA suite: re-encrypted.
    assert choose_move(Kdf.HKDF_SHA256, "mlkem1024", compromised=False) is Move.REENCRYPT
    # An mlkem1024 package rewrapped down to xwing kept KDF 0x01: back up is a rewrap.
    assert choose_move(Kdf.HKDF_SHA384, "mlkem1024", compromised=False) is Move.REWRAP
    assert choose_move(Kdf.HKDF_SHA384, "xwing", compromised=False) is Move.REWRAP
    assert choose_move(Kdf.HKDF_SHA256, "xwing", compromised=False) is Move.REWRAP
    assert choose_move(Kdf.HKDF_SHA256, "mlkem768", compromised=False) is Move.REWRAP
    # A compromise always re-encrypts, whatever the suites.
    for kdf in Kdf:
        for suite in ("xwing", "mlkem768", "mlkem1024"):
            assert choose_move(kdf, suite, compromised=True) is Move.REENCRYPT


def _request_compromise(world: SimpleNamespace) -> None:
    from pqfile.keys.model import RequestKind

    world.keys.request(world.old, RequestKind.COMPROMISE, "seed exposed")


def test_a_compromised_key_is_reencrypted_under_fresh_data_keys(world: SimpleNamespace) -> None:
    """Every document gets a new data key: the old header no longer opens the new body, the
    plaintext is unchanged, the audit names both keys and suites; nothing is rewrapped."""
    from pqfile.crypto import stream

    old_packages = {d: _package(world, d) for d, _ in world.docs}
    world.keys.due.add(world.old)
    (run,) = rot.maintain_pool(world.r).rotations
    _request_compromise(world)
    outcomes = _rotate_all(world, run.rotation_id)
    assert outcomes == ["reencrypted"] * len(world.docs)
    old_secret = world.keys.load_secret_key(world.old)
    for document_id, data in world.docs:
        rec = world.p.documents.get(document_id)
        assert rec.key_id != world.old
        new = _package(world, document_id)
        secret = world.p.keys.secrets[rec.key_id]
        assert envelope.decrypt_bytes(new, secret) == data
        # The old header's data key does not open the new body.
        old_header = envelope.read_header(old_packages[document_id])
        new_header = envelope.read_header(new)
        _, old_keys = envelope.open_header(old_header, old_secret)
        _, new_keys = envelope.open_header(new_header, secret)
        assert old_keys.body_key != new_keys.body_key
        assert new_header.salt != old_header.salt
        if data:
            body = io.BytesIO(new[new_header.size:])
            with pytest.raises(DecryptionError):
                stream.decrypt_body(body, io.BytesIO(), old_keys.body_key,
                                    old_header.nonce_prefix, old_header.segment_size)  # fmt: skip
    audits = [a for a in world.p.audit.rows if a["operation"] == "document.reencrypt"]
    assert sorted(a["document_id"] for a in audits) == sorted(d for d, _ in world.docs)
    for a in audits:
        assert a["details"]["from_key_id"] == world.old and a["details"]["compromise"] is True
        assert a["details"]["to_key_id"] == a["key_id"]
        assert (a["details"]["from_kdf"], a["details"]["to_kdf"]) == ("hkdf-sha256",) * 2
    assert not [a for a in world.p.audit.rows if a["operation"] == "document.rewrap"]
    assert world.packages.rewrites == len(world.docs)


def test_xwing_to_mlkem1024_is_a_reencryption_with_kdf_sha384(world: SimpleNamespace) -> None:
    from pqfile.crypto.keyschedule import Kdf

    world.keys.refill("mlkem1024")
    world.keys.due.add(world.old)
    (run,) = rot.maintain_pool(world.r).rotations
    _retarget(world, run.rotation_id, "mlkem1024", False)
    assert _rotate_all(world, run.rotation_id) == ["reencrypted"] * len(world.docs)
    for document_id, data in world.docs:
        rec = world.p.documents.get(document_id)
        header = envelope.read_header(_package(world, document_id))
        assert header.suite is kem.Suite.MLKEM1024 and header.kdf is Kdf.HKDF_SHA384
        assert rec.suite == "mlkem1024"
        assert envelope.decrypt_bytes(_package(world, document_id),
                                      world.p.keys.secrets[rec.key_id]) == data  # fmt: skip
    (audit, *_) = [a for a in world.p.audit.rows if a["operation"] == "document.reencrypt"]
    assert audit["details"]["compromise"] is False
    assert (audit["details"]["from_kdf"], audit["details"]["to_kdf"]) == (
        "hkdf-sha256", "hkdf-sha384")


def test_mlkem1024_down_to_xwing_needs_allow_downgrade_and_keeps_kdf(
    world: SimpleNamespace,
) -> None:
    """A downgrade is refused unless the run allows it; allowed, it is a rewrap that keeps
    the package's KDF 0x01 (so a later move back up is a rewrap again)."""
    from pqfile.crypto.keyschedule import Kdf
    from pqfile.keys.rotation_runs import SuiteMoveRefusedError

    world.keys.refill("mlkem1024")
    world.keys.due.add(world.old)
    (run,) = rot.maintain_pool(world.r).rotations
    _retarget(world, run.rotation_id, "mlkem1024", False)
    _rotate_all(world, run.rotation_id)
    rot.finish_rotation(world.r, run.rotation_id)
    document_id, data = world.docs[2]
    on_1024 = world.p.documents.get(document_id).key_id
    world.keys.due.add(on_1024)
    runs = [r for r in rot.maintain_pool(world.r).rotations if r.old_key_id == on_1024]
    rid = runs[0].rotation_id
    _retarget(world, rid, "xwing", False)
    with pytest.raises(SuiteMoveRefusedError, match="downgrade"):
        rot.plan_rewrap(world.r, rid)
    assert world.p.documents.get(document_id).key_id == on_1024
    _retarget(world, rid, "xwing", True)
    outcomes = _rotate_all(world, rid)
    assert outcomes and set(outcomes) == {"rewrapped"}
    header = envelope.read_header(_package(world, document_id))
    assert header.suite is kem.Suite.XWING and header.kdf is Kdf.HKDF_SHA384
    rec = world.p.documents.get(document_id)
    assert envelope.decrypt_bytes(_package(world, document_id),
                                  world.p.keys.secrets[rec.key_id]) == data  # fmt: skip
