"""scripts/build_lambda: same inputs give the same bytes; the layer holds only aarch64
native code for CPython 3.12; the artefacts fit Lambda's size limits.

The aarch64 wheels (about 24 MB) are cached in build/wheelhouse/ (git-ignored), so only the
first run downloads them.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.terraform.conftest import REPO_ROOT

BUILD = REPO_ROOT / "scripts" / "build_lambda"
EM_AARCH64 = 183
ZIPPED_LIMIT = 50 * 1024 * 1024
UNZIPPED_LIMIT = 250 * 1024 * 1024


def _build(out: Path, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(BUILD), "--output-dir", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    # Build both from one snapshot: others may edit functions/ while the test runs.
    snapshot = tmp_path_factory.mktemp("source") / "pqfile"
    shutil.copytree(REPO_ROOT / "functions" / "pqfile", snapshot)
    first, second = tmp_path_factory.mktemp("build1"), tmp_path_factory.mktemp("build2")
    _build(first, "--package-dir", str(snapshot))
    _build(second, "--package-dir", str(snapshot))
    return first, second


def _elf_machine(data: bytes) -> int | None:
    if data[:4] != b"\x7fELF":
        return None
    endian = "<" if data[5] == 1 else ">"
    return int(struct.unpack_from(endian + "H", data, 18)[0])


def test_builds_are_byte_for_byte_reproducible(two_builds: tuple[Path, Path]) -> None:
    first, second = two_builds
    for name in ("pqfile-function.zip", "pqfile-deps-layer.zip"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (first / "manifest.json").read_text() == (second / "manifest.json").read_text()


def test_function_zip_holds_the_package_only(two_builds: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(two_builds[0] / "pqfile-function.zip") as archive:
        names = archive.namelist()
        infos = archive.infolist()
    assert names == sorted(names)
    assert "pqfile/handlers/retrieve.py" in names
    assert all(n.startswith("pqfile/") for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_layer_holds_only_aarch64_native_code(two_builds: tuple[Path, Path]) -> None:
    native = {}
    with zipfile.ZipFile(two_builds[0] / "pqfile-deps-layer.zip") as archive:
        names = archive.namelist()
        for info in archive.infolist():
            with archive.open(info) as handle:
                head = handle.read(20)
            machine = _elf_machine(head)
            if machine is not None or ".so" in info.filename:
                native[info.filename] = machine
    assert all(n.startswith("python/") for n in names)
    for package in ("cryptography", "pg8000", "boto3", "aws_lambda_powertools", "aws_xray_sdk"):
        assert any(n.startswith(f"python/{package}/") for n in names), package
    assert any("_rust" in n for n in native), "cryptography's native module is missing"
    wrong = {name: machine for name, machine in native.items() if machine != EM_AARCH64}
    assert not wrong, f"native files not built for aarch64: {wrong}"
    # CPython extension modules, when tagged, are for 3.12 on aarch64.
    for name in native:
        if ".cpython-" in name:
            assert ".cpython-312-aarch64-linux-gnu.so" in name, name
    assert not [n for n in names if n.startswith("python/bin/") or n.endswith(".pyc")]


def test_artefacts_fit_lambda_size_limits(two_builds: tuple[Path, Path]) -> None:
    zipped = unzipped = 0
    for name in ("pqfile-function.zip", "pqfile-deps-layer.zip"):
        path = two_builds[0] / name
        zipped_size = path.stat().st_size
        assert zipped_size < ZIPPED_LIMIT, (name, zipped_size)
        zipped += zipped_size
        with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
            unzipped += sum(i.file_size for i in archive.infolist())
    # The 250 MB limit counts the function and all its layers, unzipped.
    assert unzipped < UNZIPPED_LIMIT, unzipped
