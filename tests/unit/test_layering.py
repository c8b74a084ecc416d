"""The architecture, enforced: pure layers never import infrastructure libraries.

format/, crypto/, keys/, usecases/, ports/, config/ and errors.py must not import boto3,
botocore, pg8000 or Powertools. handlers/ may use Powertools, but reach AWS only through
adapters/ (via pqfile.wiring): no boto3, botocore or boto3 type stubs there either. The
stubs (mypy_boto3_*) appear only in adapters/, under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "functions" / "pqfile"
PURE = ["format", "crypto", "keys", "usecases", "ports", "config", "errors.py"]
FORBIDDEN = ("boto3", "botocore", "pg8000", "aws_lambda_powertools", "aws_xray_sdk")
#: No AWS SDK (nor its type stubs) outside adapters/.
AWS_FREE = ["handlers", "usecases", "keys", "crypto", "format", "ports", "config"]
AWS_SDK = ("boto3", "botocore", "mypy_boto3_")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(entries: list[str]) -> list[Path]:
    files: list[Path] = []
    for entry in entries:
        target = PACKAGE / entry
        files.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return files


def _pure_files() -> list[Path]:
    return _files(PURE)


def test_pure_layers_exist() -> None:
    # Guards the tests themselves: an empty file list would pass vacuously.
    assert len(_pure_files()) >= 6
    assert {p.parent.name for p in _files(AWS_FREE)} >= {"handlers", "usecases", "keys"}


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


@pytest.mark.parametrize("path", _files(AWS_FREE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_aws_sdk_outside_adapters(path: Path) -> None:
    # Includes imports under TYPE_CHECKING: the boto3 stubs belong to the adapters too.
    bad = sorted(name for name in _imports(path) if name.startswith(AWS_SDK))
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}; only adapters/ may"


@pytest.mark.parametrize(
    "path",
    _files(["handlers"]),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_handlers_get_their_adapters_from_the_composition_root(path: Path) -> None:
    adapters = sorted(n for n in _imports(path) if n.startswith("pqfile.adapters"))
    assert not adapters, f"handlers/{path.name} imports {adapters}; use pqfile.wiring"


def test_the_aws_sdk_rule_sees_a_violation(tmp_path: Path) -> None:
    # Guards the rule: TYPE_CHECKING imports and `from botocore...` forms are both found.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "from botocore.exceptions import ClientError\n"
        "if TYPE_CHECKING:\n    from mypy_boto3_s3 import S3Client\n",
        encoding="utf-8",
    )
    found = sorted(name for name in _imports(probe) if name.startswith(AWS_SDK))
    assert found == ["botocore.exceptions", "mypy_boto3_s3"]
