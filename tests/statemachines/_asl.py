"""Shared by the state machine tests: asl-validator, and rendering a template as Terraform."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"
_PLACEHOLDER = r"\$\{(\w+)\}"

requires_validator = pytest.mark.skipif(
    not VALIDATOR.exists() and shutil.which("npm") is None, reason="asl-validator not installed"
)


def render(sm_text: str) -> str:
    """What Terraform's templatefile() produces, with fake ARNs."""
    return re.sub(
        _PLACEHOLDER,
        lambda m: f"arn:aws:lambda:us-east-1:123456789012:function:pqfile-{m.group(1)}",
        sm_text,
    )


def placeholders(asl: Path) -> set[str]:
    """The template variables a definition file names."""
    return set(re.findall(_PLACEHOLDER, asl.read_text(encoding="utf-8")))


def run_validator(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=60
    )


def assert_validator_accepts(asl: Path, tmp_path: Path, rendered: bool) -> None:
    """The template as it is, or rendered (``<name>.rendered.asl.json``), validates."""
    assert VALIDATOR.exists(), "run `npm ci` (make test does)"
    path = asl
    if rendered:
        path = tmp_path / asl.name.replace(".asl.json", ".rendered.asl.json")
        path.write_text(render(asl.read_text(encoding="utf-8")), encoding="utf-8")
    proc = run_validator(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
