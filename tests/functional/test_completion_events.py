"""Completion events (docs/CONTRACTS.md, "Completion events"): what the steps announce, and
that a lost event never fails the work it announces. The emulator's EventBridge -> SQS
route is tested in tests/integration/test_events.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pqfile.adapters.eventbridge import EventBridgePublisher
from pqfile.ports import EventType, ServiceEvent
from pqfile.usecases.notices import RevocationMode, key_revoked
from tests.functional.fakes import UPLOADS, event_for, make_pipeline, run_workflow


class RecordingEvents:
    def __init__(self, lose: bool = False) -> None:
        self.events: list[ServiceEvent] = []
        self.lose = lose

    def publish(self, events: list[ServiceEvent]) -> int:
        if self.lose:
            return len(events)
        self.events.extend(events)
        return 0


class RaisingEvents:
    def publish(self, events: list[ServiceEvent]) -> int:
        raise RuntimeError("a publisher that breaks its contract")


SECRET = b"the plaintext must never appear in an event"


def _all_text(events: list[ServiceEvent]) -> str:
    return json.dumps([e.detail for e in events])


def test_a_stored_upload_announces_document_encrypted_once() -> None:
    p = make_pipeline()
    p.events = recorder = RecordingEvents()
    info = p.blobs.put(UPLOADS, "uploads/acme/q3 report.pdf", SECRET,  # type: ignore[attr-defined]
                       content_type="application/pdf")  # fmt: skip
    state = run_workflow(p, event_for(info))
    assert state["status"] == "SUCCEEDED"
    (event,) = recorder.events
    assert event.detail_type is EventType.DOCUMENT_ENCRYPTED
    d = event.detail
    record = p.documents.get(state["document"]["document_id"])
    assert record is not None
    assert d["version"] == 1 and d["document_id"] == record.document_id and d["tenant"] == "acme"
    assert d["source"] == {"bucket": UPLOADS, "key": "uploads/acme/q3 report.pdf",
                           "version_id": info.version_id, "content_type": "application/pdf"}
    assert d["package"] == {"bucket": record.encrypted_bucket, "key": record.encrypted_key,
                            "version_id": record.encrypted_version_id}  # fmt: skip
    assert (d["key_id"], d["suite"], d["size"]) == (record.key_id, "xwing", len(SECRET))
    assert d["encrypted_size"] == record.encrypted_size and d["stored_at"]
    assert SECRET.decode() not in _all_text(recorder.events)
    # a replay of the same event stores nothing and announces nothing
    assert run_workflow(p, event_for(info), execution="exec-2")["status"] == "SUCCEEDED"
    assert len(recorder.events) == 1


def test_a_failed_upload_announces_document_failed_with_its_step() -> None:
    p = make_pipeline()
    p.events = recorder = RecordingEvents()
    p.keys.status = {k: "revoked" for k in p.keys.status}  # type: ignore[attr-defined]
    info = p.blobs.put(UPLOADS, "uploads/acme/x.bin", SECRET)  # type: ignore[attr-defined]
    state = run_workflow(p, event_for(info))
    assert state["status"] == "FAILED"
    (event,) = recorder.events
    assert event.detail_type is EventType.DOCUMENT_FAILED
    d = event.detail
    assert (d["step"], d["error_type"], d["tenant"]) == ("SelectKey", "NoActiveKeyError", "acme")
    assert d["document_id"] == state["document"]["document_id"]
    assert d["source"] == {"bucket": UPLOADS, "key": "uploads/acme/x.bin",
                           "version_id": info.version_id}  # fmt: skip
    assert set(d) == {"version", "document_id", "tenant", "source", "step", "error_type",
                      "failed_at"}  # fmt: skip (never the Cause: it may quote content)


@pytest.mark.parametrize("events", [RecordingEvents(lose=True), RaisingEvents()])
def test_a_lost_event_never_fails_the_ingest(events: Any) -> None:
    p = make_pipeline()
    p.events = events
    info = p.blobs.put(UPLOADS, "uploads/acme/kept.txt", b"stored anyway")  # type: ignore[attr-defined]
    state = run_workflow(p, event_for(info))
    assert state["status"] == "SUCCEEDED"
    assert p.documents.get(state["document"]["document_id"]).status == "stored"  # type: ignore[union-attr]


def test_key_revoked_never_carries_the_reason() -> None:
    event = key_revoked(key_id="ab" * 16, suite="xwing", mode=RevocationMode.NOW)
    assert event.detail_type is EventType.KEY_REVOKED
    assert set(event.detail) == {"version", "key_id", "suite", "mode", "revoked_at"}
    assert event.detail["mode"] == "now"


class FlakyClient:
    """PutEvents that throttles once, then fails one entry once, then accepts."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls: list[list[dict[str, Any]]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step(Entries)


def _throttled() -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "PutEvents")


def _ok(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"FailedEntryCount": 0, "Entries": [{"EventId": "e"} for _ in entries]}


def _first_fails(entries: list[dict[str, Any]]) -> dict[str, Any]:
    rest = [{"EventId": "e"}] * (len(entries) - 1)
    return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure"}, *rest]}


def _events(n: int) -> list[ServiceEvent]:
    return [key_revoked(key_id=f"{i:032x}", suite="xwing", mode=RevocationMode.PENDING)
            for i in range(n)]  # fmt: skip


def test_the_adapter_retries_whole_failures_then_the_failed_entries_only() -> None:
    client = FlakyClient([_throttled(), _first_fails, _ok])
    sleeps: list[float] = []
    publisher = EventBridgePublisher(lambda: client, sleep=sleeps.append)
    assert publisher.publish(_events(2)) == 0
    assert [len(c) for c in client.calls] == [2, 2, 1]
    assert client.calls[2][0] == client.calls[1][0]  # the failed entry, again
    assert sleeps == [0.2, 0.4]
    entry = client.calls[0][0]
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
        "pqfile", "PQFile Key Revoked", "default")  # fmt: skip
    assert json.loads(entry["Detail"])["mode"] == "pending"


def test_the_adapter_reports_what_it_could_not_deliver_and_never_raises() -> None:
    client = FlakyClient([_throttled()] * 3)
    publisher = EventBridgePublisher(lambda: client, sleep=lambda _: None)
    assert publisher.publish(_events(3)) == 3
    assert len(client.calls) == 3
    # more than PutEvents' 10 entries go in batches of 10
    client = FlakyClient([_ok, _ok])
    assert EventBridgePublisher(lambda: client).publish(_events(12)) == 0
    assert [len(c) for c in client.calls] == [10, 2]


def test_a_pending_revocation_completed_by_rotate_keys_announces_key_revoked() -> None:
    from pqfile.keys.model import RequestKind
    from pqfile.usecases import rotation as rot
    from tests.functional.test_rotation import _rotate_all
    from tests.functional.test_rotation import world as make_world

    w = make_world.__wrapped__()  # type: ignore[attr-defined]
    w.r.events = recorder = RecordingEvents()
    w.keys.request(w.old, RequestKind.REVOKE, "secret incident details")
    (run,) = [r for r in rot.maintain_pool(w.r).rotations if r.old_key_id == w.old]
    _rotate_all(w, run.rotation_id)
    assert recorder.events == []  # nothing revoked yet
    rot.finish_rotation(w.r, run.rotation_id)
    (event,) = recorder.events
    assert event.detail_type is EventType.KEY_REVOKED
    assert (event.detail["key_id"], event.detail["mode"], event.detail["suite"]) == (
        w.old, "pending", "xwing")  # fmt: skip
    assert "secret incident" not in json.dumps(event.detail)
    # a re-run of the finish step revokes nothing more, announces nothing more
    rot.finish_rotation(w.r, run.rotation_id)
    assert len(recorder.events) == 1


def test_a_completed_shred_announces_key_revoked_in_mode_shred() -> None:
    from pqfile.crypto import kem
    from pqfile.usecases.shred import Shredding, shred_pending
    from tests.functional.test_shred import SHREDDED_AT, FakeShredRepository, FakeVersions

    key = kem.generate().public_key()
    recorder, lost_events = RecordingEvents(), RecordingEvents(lose=True)
    repo = FakeShredRepository(key.key_id, [])
    report = shred_pending(Shredding(repo, FakeVersions(), 14, events=recorder))
    (event,) = recorder.events
    assert (event.detail["key_id"], event.detail["mode"]) == (key.key_id, "shred")
    assert event.detail["revoked_at"] == SHREDDED_AT.isoformat()
    assert event.detail["suite"] == "xwing"  # the key's suite, as the repository reads it
    assert "erase" not in json.dumps(event.detail)  # the request's reason
    assert report.shredded[0].events_lost == 0
    # a lost event is counted, the shred stands
    repo = FakeShredRepository(key.key_id, [])
    report = shred_pending(Shredding(repo, FakeVersions(), 14, events=lost_events))
    assert repo.committed and report.shredded[0].events_lost == 1
