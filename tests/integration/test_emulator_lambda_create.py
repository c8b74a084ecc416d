"""CreateFunction on the emulator: fast under concurrency and while handlers run, and a replay
of an identical create answers as the create did (devstack.moto_patches.lambda_create_replay).

The `make deploy-local` flake (one deploy in nine failed with 409 "Function already exist"
after 5 min 36 s) was a function that already existed when Terraform asked to create it; the
provider retries 409 for five minutes. These tests pin what the emulator does about it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError
from devstack import terraform as tf
from devstack.emulator import Emulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CREATES = 26  # two Terraform stacks' worth
PARALLEL = 13  # as many as the stack has functions


@pytest.fixture(scope="module")
def terraform_sized_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The zip `make deploy-local` uploads for every function."""
    return tf.build_source_zip(tmp_path_factory.mktemp("zip")).read_bytes()


def _request(role_arn: str, code: bytes, name: str | None = None, **changes: Any) -> dict[str, Any]:
    """A CreateFunction request shaped like the aws provider's for the stack's functions."""
    name = name or f"create-{uuid.uuid4().hex[:10]}"
    request: dict[str, Any] = {
        "FunctionName": name,
        "Description": "Ingest step FetchDocument",
        "Runtime": "python3.12",
        "Role": role_arn,
        "Handler": "pqfile.handlers.fetch.handler",
        "Code": {"ZipFile": code},
        "Architectures": ["arm64"],
        "MemorySize": 512,
        "Timeout": 60,
        "Environment": {"Variables": {"PQFILE_UPLOADS_BUCKET": "uploads", "X": "1"}},
        "TracingConfig": {"Mode": "PassThrough"},
        "DeadLetterConfig": {"TargetArn": "arn:aws:sqs:us-east-1:123456789012:failures"},
        "LoggingConfig": {"LogFormat": "JSON", "LogGroup": f"/aws/lambda/{name}"},
        "KMSKeyArn": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
        "Tags": {"project": "pqfile"},
        "Publish": False,
    }
    request.update(changes)
    return request


def test_creates_of_the_terraform_sized_zip_are_fast_even_while_a_handler_runs(
    aws_emulator: Emulator,
    emulator_role_arn: str,
    make_lambda: Callable[..., str],
    terraform_sized_zip: bytes,
) -> None:
    lam = aws_emulator.client("lambda")
    sleeper = make_lambda("emulator_probe.sleep", timeout=60)
    busy = threading.Thread(
        target=lambda: lam.invoke(FunctionName=sleeper, Payload=json.dumps({"seconds": 8})),
        daemon=True,
    )
    busy.start()  # a warm worker holds an invocation for the whole burst
    time.sleep(1.0)

    def create(_: int) -> float:
        started = time.monotonic()
        lam.create_function(**_request(emulator_role_arn, terraform_sized_zip))
        return time.monotonic() - started

    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        durations = list(pool.map(create, range(CREATES)))
    elapsed = time.monotonic() - started
    assert busy.is_alive(), "the invocation ended before the creates: nothing was running"
    assert max(durations) < 5.0, sorted(durations)[-3:]
    assert elapsed < 20.0, f"{CREATES} creates took {elapsed:.1f} s"
    busy.join(30)


def test_a_replayed_identical_create_gets_the_original_answer(
    aws_emulator: Emulator, emulator_role_arn: str, terraform_sized_zip: bytes
) -> None:
    lam = aws_emulator.client("lambda")
    request = _request(emulator_role_arn, terraform_sized_zip)
    created = lam.create_function(**request)
    time.sleep(0.01)  # a replay comes later: LastModified must still be the create's

    replayed = lam.create_function(**request)

    assert replayed["ResponseMetadata"]["HTTPStatusCode"] == 201
    for field in ("FunctionArn", "CodeSha256", "CodeSize", "LastModified", "Environment"):
        assert replayed[field] == created[field], field
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert names.count(request["FunctionName"]) == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"Code": {"ZipFile": b"PK\x05\x06" + bytes(18)}},
        {"Handler": "pqfile.handlers.store.handler"},
        {"Environment": {"Variables": {"PQFILE_UPLOADS_BUCKET": "other"}}},
        {"Timeout": 61},
        {"Tags": {"project": "other"}},
        {"LoggingConfig": {"LogFormat": "Text"}},
    ],
    ids=["code", "handler", "environment", "timeout", "tags", "logging"],
)
def test_a_create_that_differs_from_the_existing_function_still_conflicts(
    aws_emulator: Emulator,
    emulator_role_arn: str,
    terraform_sized_zip: bytes,
    changes: dict[str, Any],
) -> None:
    lam = aws_emulator.client("lambda")
    request = _request(emulator_role_arn, terraform_sized_zip)
    lam.create_function(**request)

    with pytest.raises(ClientError) as raised:
        lam.create_function(**{**request, **changes})
    assert raised.value.response["Error"]["Code"] == "ResourceConflictException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
