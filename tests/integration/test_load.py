"""Fifty uploads at once on the local stack (issue 16): nothing lost, nothing duplicated, no
plaintext left, exactly one audit row per document, the chain verifies, and no upload
starts the scheduled rotate-keys workflow. The driver is tests/integration/load.py, shared
with scripts/bench_load.py (200 uploads, figures in BENCHMARKS.md "Load")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.load import (
    EXPECTED_ROWS_PER_DOCUMENT,
    LoadResult,
    ScheduleProbe,
    run_load,
    schedule_probe,
    summary_line,
)
from tests.integration.pipeline_stack import PipelineStack, deploy_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

COUNT = 50
IN_FLIGHT = 16


@pytest.fixture(scope="module")
def stack(aws_emulator: Any, emulator_role_arn: str, migrated_db_url: str) -> PipelineStack:
    return deploy_pipeline(aws_emulator, emulator_role_arn, migrated_db_url, keys=3)


@pytest.fixture(scope="module")
def probe(stack: PipelineStack, emulator_role_arn: str) -> Iterator[ScheduleProbe]:
    created = schedule_probe(stack, emulator_role_arn)
    try:
        yield created
    finally:
        created.remove()


@pytest.fixture(scope="module")
def load(stack: PipelineStack, probe: ScheduleProbe) -> LoadResult:
    result = run_load(stack, count=COUNT, in_flight=IN_FLIGHT, size=16 * 1024, timeout=150)
    print(summary_line(result))
    return result


def test_every_upload_is_stored_once(load: LoadResult) -> None:
    assert load.stored == COUNT, f"not stored: {load.missing}"
    assert load.duplicate_documents == 0
    assert load.duplicate_packages == 0


def test_every_execution_succeeded(load: LoadResult) -> None:
    assert dict(load.executions) == {"SUCCEEDED": COUNT}


def test_no_plaintext_is_left(load: LoadResult) -> None:
    assert load.plaintext_left == 0


def test_each_document_has_exactly_the_expected_audit_rows(load: LoadResult) -> None:
    expected = tuple(sorted(k for k, n in EXPECTED_ROWS_PER_DOCUMENT.items() for _ in range(n)))
    assert dict(load.rows_per_document) == {expected: COUNT}
    assert dict(load.rows_outside_documents) == {}


def test_the_audit_chain_verifies(load: LoadResult) -> None:
    assert load.chain_ok
    assert load.chain_rows >= COUNT


def test_uploads_start_no_scheduled_rotation(load: LoadResult, probe: ScheduleProbe) -> None:
    assert load.stored == COUNT
    assert probe.executions() == 0
