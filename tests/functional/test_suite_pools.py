"""Every suite ingest may select from has a maintained pool (docs/KEYS.md, "Suites of new
documents"): the rotate-keys MaintainPool, configured from the same environment as the
ingest functions, refills the default suite, the suites of PQFILE_SUITE_BY_PREFIX and
PQFILE_ROTATION_SUITES, so an upload under a mapped prefix never meets an empty pool."""

from __future__ import annotations

from pqfile.config import EncryptionSettings, PoolSettings
from pqfile.crypto import envelope
from pqfile.keys.model import KeyStatus
from pqfile.usecases import rotation as rot
from pqfile.usecases.events import encrypted_key_for
from tests.functional.fakes import (
    ENCRYPTED,
    UPLOADS,
    FakeRotationKeys,
    event_for,
    make_pipeline,
    run_workflow,
)

ENV = {
    "PQFILE_DEFAULT_SUITE": "xwing",
    "PQFILE_SUITE_BY_PREFIX": '{"acme/": "mlkem1024"}',
    "PQFILE_ROTATION_SUITES": "xwing",
}


def test_maintain_pool_fills_the_mapped_suite_then_ingest_uses_it() -> None:
    encryption = EncryptionSettings.from_env(ENV)
    p = make_pipeline(
        default_suite=encryption.default_suite, suite_by_prefix=encryption.suite_by_prefix
    )
    assert p.keys.list_keys("mlkem1024") == []  # the fixture's pool is xwing only
    keys = FakeRotationKeys(p.keys, p.documents, p.audit)
    r = rot.Rotation(
        keys=keys,
        documents=p.documents,
        packages=None,  # type: ignore[arg-type]  # MaintainPool reads no package
        audit=p.audit,
        encrypted_bucket=ENCRYPTED,
        suites=PoolSettings.from_env(ENV).suites,
    )
    result = rot.maintain_pool(r)
    target = p.keys.policy.target_active
    assert result.created == {"xwing": 0, "mlkem1024": target}
    assert result.active == {"xwing": target, "mlkem1024": target}
    active = p.keys.list_keys("mlkem1024", KeyStatus.ACTIVE)
    assert len(active) == target and all(k.attestation for k in active)

    info = p.blobs.put(UPLOADS, "uploads/acme/cnsa.pdf", b"for national security systems")
    state = run_workflow(p, event_for(info))
    assert state["status"] == "SUCCEEDED", state.get("error")
    row = p.documents.get(state["document"]["document_id"])
    assert row.suite == "mlkem1024" and row.key_id in {k.key_id for k in active}
    header = envelope.read_header(p.blobs.data(ENCRYPTED, encrypted_key_for(row.document_id)))
    assert header.suite.value == "mlkem1024"
