"""A retrieve that is killed after its `attempt` audit row (a Lambda timeout freezes and
drops the process) still leaves that row: usecases/retrieve.py commits it, on the retrieve
function's own database role, before any key is loaded or byte decrypted.

The document and its key live in the in-memory fakes; the audit log is the real one in
PostgreSQL. The retrieve runs in a forked child that is SIGKILLed while it waits inside
key loading, as the Lambda runtime would kill it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Any

import pytest

from pqfile.adapters.postgres.audit import AuditRepository
from pqfile.adapters.postgres.connection import Database
from pqfile.usecases.common import Pipeline
from pqfile.usecases.retrieve import RetrieveRequest, retrieve_document
from tests.fixtures.postgres import RETRIEVE, role_url
from tests.functional.fakes import UPLOADS, event_for, make_pipeline, run_workflow

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CALLER = "arn:aws:iam::123456789012:user/alice"


def _decrypt_rows(url: str, document_id: str) -> list[tuple[str, Any]]:
    with Database.from_url(url) as db:
        rows = db.run(
            "SELECT outcome, actor FROM access_logs WHERE operation = 'document.decrypt'"
            " AND document_id = :d ORDER BY seq",
            d=document_id,
        )
    return [(str(outcome), actor) for outcome, actor in rows]


def _retrieve_until_killed(p: Pipeline, url: str, document_id: str, reached: Any) -> None:
    # In the child: its own connection, as the retrieve function's role.
    audit = AuditRepository(Database.from_url(role_url(url, RETRIEVE)))
    loading = p.keys.load_decryption_key

    def stuck(key_id: str) -> Any:
        reached.set()  # past the attempt row: now hang like a call that never returns
        time.sleep(600)
        return loading(key_id)

    p.keys.load_decryption_key = stuck  # type: ignore[method-assign]
    wired = Pipeline(p.settings, p.blobs, p.documents, p.keys, audit, p.cipher)
    retrieve_document(wired, RetrieveRequest(document_id, None, None, caller=CALLER))


def test_a_retrieve_killed_after_its_attempt_leaves_the_attempt_row(db_url: str) -> None:
    p = make_pipeline()
    info = p.blobs.put(UPLOADS, "uploads/a/slow.txt", b"secret" * 100, "text/plain")
    state = run_workflow(p, event_for(info))
    assert state["status"] == "SUCCEEDED", state.get("error")
    document_id = state["document"]["document_id"]

    context = multiprocessing.get_context("fork")
    reached = context.Event()
    child = context.Process(
        target=_retrieve_until_killed, args=(p, db_url, document_id, reached), daemon=True
    )
    child.start()
    try:
        assert reached.wait(30), "the retrieve never got past its attempt row"
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)  # no finally, no outcome row: a hard stop
        child.join(10)
        assert child.exitcode == -signal.SIGKILL
    finally:
        if child.is_alive():
            child.kill()
    # The attempt is in the log, under the verified caller; nothing after it.
    assert _decrypt_rows(db_url, document_id) == [("attempt", CALLER)]
