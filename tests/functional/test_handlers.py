"""The ingest handlers in process, wired to the fakes: each parses the JSON the state machine
builds from the previous answers (statemachines/ingest.asl.json), and answers JSON."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from pqfile import wiring
from pqfile.errors import InvalidEventError
from pqfile.handlers import audit, encrypt, fetch, record_failure, retrieve, select_key, store
from pqfile.usecases.ingest import failed_step
from pqfile.usecases.ingest_steps import IngestStep
from tests.functional.fakes import UPLOADS, event_for, make_pipeline, make_retrieval, proof_for

READER = "arn:aws:iam::123456789012:user/reader"

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

CONTEXT = SimpleNamespace(function_name="pqfile-test", memory_limit_in_mb=256,
                          invoked_function_arn="arn:aws:lambda:us-east-1:1:function:t",
                          aws_request_id="req-1")  # fmt: skip


@pytest.fixture
def p(monkeypatch: pytest.MonkeyPatch) -> Any:
    pipeline = make_pipeline()
    monkeypatch.setattr(wiring.pipeline, "_value", pipeline)
    retrieval = make_retrieval(pipeline)
    retrieval.access.grant(READER, tenant="a")  # type: ignore[attr-defined]
    monkeypatch.setattr(wiring.retrieval, "_value", retrieval)
    return pipeline


def _invoke(handler: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """As Lambda does: JSON in, JSON out; the entry point adds its own timing."""
    answer = handler(json.loads(json.dumps(payload)), CONTEXT)
    assert answer.pop("compute_ms") >= 0 and answer.pop("duration_ms") >= 0
    return dict(json.loads(json.dumps(answer)))


def test_the_happy_path_through_the_handlers(p: Any) -> None:
    info = p.blobs.put(UPLOADS, "uploads/a/handlers.txt", b"through the handlers")
    document = _invoke(fetch.handler, {"event": event_for(info), "execution": "x-1"})
    assert document["status"] == "new" and set(document) == {
        "document_id", "source", "content_type", "status", "uploaded_by"}  # fmt: skip
    key = _invoke(select_key.handler, {"document_id": document["document_id"]})
    assert set(key) == {"key_id", "suite"} and key["suite"] == "xwing"
    encrypted = _invoke(encrypt.handler, {
        "document_id": document["document_id"], "source": document["source"],
        "content_type": document["content_type"], "key_id": key["key_id"]})  # fmt: skip
    stored = _invoke(store.handler, {
        "document_id": document["document_id"], "source": document["source"],
        "encrypted": encrypted["encrypted"]})  # fmt: skip
    assert (stored["outcome"], stored["plaintext_deleted"]) == ("stored", True)
    written = _invoke(audit.handler, {
        "document_id": document["document_id"], "outcome": stored["outcome"],
        "execution": "x-1"})  # fmt: skip
    assert written == {"seq": 1}
    assert p.audit.rows[-1]["details"]["result"] == "stored"
    assert p.documents.get(document["document_id"]).status == "stored"
    ask = {"document_id": document["document_id"]}
    got = _invoke(retrieve.handler, {**ask, "identity_proof": proof_for(READER, ask)})
    assert got["delivery"] == "inline" and got["size"] == len(b"through the handlers")
    # a replay: fetch says stored, the workflow's MarkDuplicate feeds WriteAudit "duplicate"
    again = _invoke(fetch.handler, {"event": event_for(info), "execution": "x-2"})
    assert again["status"] == "stored"
    _invoke(audit.handler, {"document_id": document["document_id"], "outcome": "duplicate"})
    assert p.audit.rows[-1]["details"]["result"] == "duplicate"


@pytest.mark.parametrize(
    ("handler", "payload"),
    [
        (select_key.handler, {}),
        (encrypt.handler, {"document_id": "d", "key_id": "k"}),
        (encrypt.handler, {"document_id": "d", "key_id": "k", "source": {"key": "x"}}),
        (store.handler, {"document_id": "d", "source": {"bucket": "b", "key": "k"}}),
        (store.handler, {"document_id": "d", "source": {"bucket": "b", "key": "k"},
                         "encrypted": {"bucket": "b"}}),
        (audit.handler, {"document_id": "d", "outcome": "maybe"}),
        (audit.handler, {"outcome": "stored"}),
    ],
)  # fmt: skip
def test_malformed_events_are_refused_at_the_boundary(p: Any, handler: Any, payload: Any) -> None:
    with pytest.raises(InvalidEventError):
        handler(payload, CONTEXT)
    assert p.audit.rows == []


def _failed_state(p: Any, **extra: Any) -> dict[str, Any]:
    info = p.blobs.put(UPLOADS, "uploads/a/failing.txt", b"keep me")
    document = _invoke(fetch.handler, {"event": event_for(info)})
    error = {"Error": "StorageError", "Cause": "secret detail"}
    state: dict[str, Any] = {**event_for(info), "document": document, "error": error}
    state.update(extra)
    return state


def test_record_failure_uses_the_step_the_workflow_names(p: Any) -> None:
    # Only FetchDocument's result is in the state: inference would say SelectKey failed.
    state = _failed_state(p, failed_step="StoreDocument")
    report = _invoke(record_failure.handler, {"state": state, "execution": "x-3"})
    assert report["step"] == "StoreDocument" and report["error_type"] == "StorageError"
    assert report["upload_tagged"] is True
    row = p.audit.rows[-1]
    assert (row["outcome"], row["details"]["step"]) == ("failure", "StoreDocument")
    assert "secret detail" not in json.dumps(row)
    assert p.documents.get(report["document_id"]).error == "StoreDocument: StorageError"


def test_record_failure_infers_the_step_for_executions_without_it(p: Any) -> None:
    # An execution started under the previous definition of the workflow names no step.
    state = _failed_state(p)
    report = _invoke(record_failure.handler, {"state": state, "execution": "x-4"})
    assert report["step"] == "SelectKey"
    assert failed_step({"document": {}, "key": {}}) is IngestStep.ENCRYPT
    assert failed_step({"document": {}, "key": {}, "encrypted": {}}) is IngestStep.STORE
    assert failed_step({"stored": {}}) is IngestStep.AUDIT
    assert failed_step({}) is IngestStep.FETCH
    assert failed_step({"failed_step": "NoSuchState", "key": {}}) is IngestStep.ENCRYPT
    for step in IngestStep:
        assert failed_step({"failed_step": step.value}) is step
