"""tests/terraform/background.py: a registered deployment runs once, in the background, and
its value or its failure reaches the tests that wait for it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.terraform.background import Deployments, Launch, deployment

CALLS: list[str] = []


@deployment("selftest-answers")
def answers(launch: Launch) -> tuple[str, Path, int, str]:
    CALLS.append(launch.name)
    return threading.current_thread().name, launch.workdir, launch.port, launch.function_zip.name


@deployment("selftest-fails")
def fails(launch: Launch) -> None:
    raise ValueError("the emulator said no")


def test_a_deployment_runs_once_in_a_thread_of_its_own(
    background_deployments: Deployments,
) -> None:
    thread, workdir, port, zip_name = background_deployments.result("selftest-answers")
    assert background_deployments.result("selftest-answers")[1] == workdir
    assert CALLS == ["selftest-answers"]
    assert thread == "deploy-selftest-answers" != threading.current_thread().name
    assert workdir.is_dir() and "selftest-answers" in workdir.name
    assert 0 < port < 65536
    assert zip_name == "pqfile-function.zip"


def test_a_failed_deployment_fails_the_tests_that_wait_for_it(
    background_deployments: Deployments,
) -> None:
    with pytest.raises(RuntimeError, match="selftest-fails") as raised:
        background_deployments.result("selftest-fails")
    assert isinstance(raised.value.__cause__, ValueError)
    assert str(raised.value.__cause__) == "the emulator said no"


def test_waiting_for_a_deployment_nobody_started_is_an_error(
    background_deployments: Deployments,
) -> None:
    with pytest.raises(LookupError, match="was not started"):
        background_deployments.result("no-such-deployment")
