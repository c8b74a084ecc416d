"""`python -m devstack up|status|down`: the detached local stack starts, answers and goes away."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from devstack.emulator import REPO_ROOT, free_port, is_answering
from devstack.state import process_alive

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _devstack(base: Path, port: int, *command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PQFILE_"))}
    return subprocess.run(
        [sys.executable, "-m", "devstack", "--dir", str(base), "--port", str(port), *command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_up_status_down(tmp_path: Path) -> None:
    base = tmp_path / "devstack"
    port = free_port()
    up = _devstack(base, port, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((base / "state.json").read_text())
        assert state["status"] == "ready"
        assert state["endpoint_url"] == f"http://127.0.0.1:{port}"
        assert state["database_url"].startswith("postgresql://")
        assert process_alive(state["supervisor_pid"])
        assert is_answering(state["endpoint_url"])  # outlived the `up` command

        status = _devstack(base, port, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "answers" in status.stdout

        again = _devstack(base, port, "up")
        assert again.returncode == 0 and "already up" in again.stdout
    finally:
        down = _devstack(base, port, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not base.exists()
    assert not process_alive(state["supervisor_pid"])
    assert not process_alive(state["emulator_pid"], "devstack.emulator")
    assert not is_answering(state["endpoint_url"])
    assert _devstack(base, port, "status").returncode == 1


def test_down_cleans_up_after_a_killed_supervisor(tmp_path: Path) -> None:
    base = tmp_path / "devstack"
    port = free_port()
    up = _devstack(base, port, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((base / "state.json").read_text())
        os.kill(state["supervisor_pid"], signal.SIGKILL)
        deadline = time.monotonic() + 15
        while process_alive(state["emulator_pid"], "devstack.emulator"):
            assert time.monotonic() < deadline, "the emulator outlived its supervisor"
            time.sleep(0.2)
        assert _devstack(base, port, "status").returncode == 1
    finally:
        down = _devstack(base, port, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    data_dir = Path(state["postgres"]["data_dir"])
    assert not data_dir.exists()
    assert not base.exists()
