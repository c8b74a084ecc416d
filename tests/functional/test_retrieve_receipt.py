"""A successful retrieve answers with a receipt: its outcome audit row's sequence number
(docs/KEYS.md, "Receipts"); a refused one appends no success row and answers nothing."""

from __future__ import annotations

import pytest

from pqfile.errors import DocumentNotFoundError
from pqfile.usecases.retrieve import RECEIPT_NOTE
from tests.functional.test_retrieve import ALICE, BOB, _ask, _ingest, _world


def test_the_receipt_names_the_outcome_row() -> None:
    r = _world()
    document_id = _ingest(r, b"receipt please")
    out = _ask(r, {"document_id": document_id}, ALICE)
    rows = r.pipeline.audit.rows  # type: ignore[attr-defined]
    seq = out["receipt"]["audit_seq"]
    assert out["receipt"]["note"] == RECEIPT_NOTE and "audit prove" in RECEIPT_NOTE
    row = rows[seq - 1]  # the fake numbers rows 1, 2, ... like the database
    assert (row["operation"], str(row["outcome"]), row["actor"], row["document_id"]) == (
        "document.decrypt", "success", ALICE, document_id)  # fmt: skip
    assert seq == len(rows)  # the last row appended: the outcome, after the attempt


def test_a_refused_retrieve_has_no_receipt() -> None:
    r = _world()
    document_id = _ingest(r, b"not for bob")
    with pytest.raises(DocumentNotFoundError):
        _ask(r, {"document_id": document_id}, BOB)
