"""The architecture, enforced: pure layers never import infrastructure libraries.

format/, crypto/, keys/, usecases/, ports.py and errors.py must not import boto3, botocore,
pg8000 or Powertools; only adapters/ and handlers/ (and the CLI / devstack) may.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "functions" / "pqfile"
PURE = ["format", "crypto", "keys", "usecases", "ports.py", "errors.py"]
FORBIDDEN = ("boto3", "botocore", "pg8000", "aws_lambda_powertools", "aws_xray_sdk")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _pure_files() -> list[Path]:
    files: list[Path] = []
    for entry in PURE:
        target = PACKAGE / entry
        files.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return files


def test_pure_layers_exist() -> None:
    # Guards the test itself: an empty file list would pass vacuously.
    assert len(_pure_files()) >= 6


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_module_imports_no_infrastructure(path: Path) -> None:
    bad = sorted(
        name for name in _imports(path) if name.split(".")[0] in FORBIDDEN
    )
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}; only adapters/ and handlers/ may"


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_module_does_not_import_adapters_or_handlers(path: Path) -> None:
    bad = sorted(
        name
        for name in _imports(path)
        if name.startswith(("pqfile.adapters", "pqfile.handlers", "pqfile.cli"))
    )
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"
