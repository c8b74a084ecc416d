"""`.devstack/state.json`: what `python -m devstack up` started and where it listens.

Keys (docs/CONTRACTS.md, "Local stack"):
  database_url     postgresql://... of the local PostgreSQL
  endpoint_url     http://127.0.0.1:4566, the emulated AWS
  region           us-east-1
  devstack_dir     the directory holding this file
  supervisor_pid   the detached process that owns the emulator and PostgreSQL
  emulator_pid     the emulator server process
  postgres         {"started": bool, "data_dir": str | None, "port": int | None}
  status           "starting" | "ready" | "failed"
  terraform_outputs  written by `deploy`
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from devstack.emulator import REPO_ROOT

DEVSTACK_DIR = REPO_ROOT / ".devstack"
STATE_FILE = "state.json"


def devstack_dir() -> Path:
    return Path(os.environ.get("PQFILE_DEVSTACK_DIR") or DEVSTACK_DIR)


def state_path(base: Path | None = None) -> Path:
    return (base or devstack_dir()) / STATE_FILE


def load_state(base: Path | None = None) -> dict[str, Any] | None:
    path = state_path(base)
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return state


def save_state(state: dict[str, Any], base: Path | None = None) -> None:
    """Write atomically, so a reader never sees half a file."""
    path = state_path(base)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)


def update_state(base: Path | None = None, **changes: Any) -> dict[str, Any]:
    state = load_state(base) or {}
    state.update(changes)
    save_state(state, base)
    return state


def process_alive(pid: int | None, marker: str = "devstack") -> bool:
    """True when `pid` runs and its command line names `marker` (not a recycled pid)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        try:
            os.kill(pid, 0)  # no /proc (macOS): trust the pid
        except OSError:
            return False
        return True
    return marker in cmdline and "<defunct>" not in cmdline


def stop_process(pid: int | None, marker: str, timeout: float = 20.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; return whether it was running."""
    if not process_alive(pid, marker):
        return False
    assert pid is not None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid, marker) or _is_zombie(pid):
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def _is_zombie(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] == "Z"
