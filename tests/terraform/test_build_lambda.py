"""scripts/build_lambda: same inputs give the same bytes; the layer holds only aarch64
native code for CPython 3.12; the artefacts fit Lambda's size limits; the function zip
carries the migrations and the RDS CA bundle (required for an AWS build, never downloaded).

The aarch64 wheels (about 24 MB) are cached in build/wheelhouse/ (git-ignored), so only the
first run downloads them.
"""

from __future__ import annotations

import datetime
import io
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.terraform.conftest import REPO_ROOT

BUILD = REPO_ROOT / "scripts" / "build_lambda"
EM_AARCH64 = 183
ZIPPED_LIMIT = 50 * 1024 * 1024
UNZIPPED_LIMIT = 250 * 1024 * 1024


ZIP_CA_BUNDLE = "certs/rds-global-bundle.pem"


def _run(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PQFILE_RDS_CA_BUNDLE"}
    return subprocess.run(
        [sys.executable, str(BUILD), "--output-dir", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


def _build(out: Path, *args: str) -> None:
    proc = _run(out, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for the RDS global bundle: one self-signed CA certificate (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pqfile test RDS root CA")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("certs") / "global-bundle.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory, ca_bundle: Path) -> tuple[Path, Path]:
    # Build both from one snapshot: others may edit functions/ while the test runs.
    snapshot = tmp_path_factory.mktemp("source") / "pqfile"
    shutil.copytree(REPO_ROOT / "functions" / "pqfile", snapshot)
    first, second = tmp_path_factory.mktemp("build1"), tmp_path_factory.mktemp("build2")
    for out in (first, second):
        _build(out, "--package-dir", str(snapshot), "--rds-ca-bundle", str(ca_bundle))
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


def test_function_zip_holds_the_package_migrations_and_ca_bundle_only(
    two_builds: tuple[Path, Path], ca_bundle: Path
) -> None:
    with zipfile.ZipFile(two_builds[0] / "pqfile-function.zip") as archive:
        names = archive.namelist()
        infos = archive.infolist()
        bundle = archive.read(ZIP_CA_BUNDLE)
    assert names == sorted(names)
    assert "pqfile/handlers/retrieve.py" in names
    assert "pqfile/handlers/migrate.py" in names
    # The migrate function applies them from /var/task/sql/migrations (terraform/migrate.tf).
    migrations = sorted(p.name for p in (REPO_ROOT / "sql" / "migrations").glob("*.sql"))
    assert sorted(n.removeprefix("sql/migrations/") for n in names if n.startswith("sql/")) == (
        migrations
    )
    # The bundle, byte for byte, where database_ssl_root_cert points (/var/task/ + this),
    # then the Amazon root CAs an RDS Proxy endpoint chains to (terraform/proxy.tf).
    assert bundle.startswith(ca_bundle.read_bytes().rstrip(b"\n") + b"\n")
    assert bundle.endswith((REPO_ROOT / "scripts" / "amazon-root-cas.pem").read_bytes())
    subjects = {c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(bundle)}
    assert {f"CN=Amazon Root CA {i},O=Amazon,C=US" for i in (1, 2, 3, 4)} <= subjects
    variables = (REPO_ROOT / "terraform" / "variables.tf").read_text()
    assert f'default     = "/var/task/{ZIP_CA_BUNDLE}"' in variables
    assert all(
        n.startswith("pqfile/") or n.startswith("sql/migrations/") or n == ZIP_CA_BUNDLE
        for n in names
    )
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


def test_an_aws_build_requires_the_ca_bundle(tmp_path: Path) -> None:
    # Run from a copy of the script so a bundle at the default build/certs/ path is not found.
    script = tmp_path / "repo" / "scripts" / "build_lambda"
    script.parent.mkdir(parents=True)
    shutil.copy(BUILD, script)
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            "--output-dir",
            str(tmp_path / "out"),
            "--package-dir",
            str(REPO_ROOT / "functions" / "pqfile"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PQFILE_RDS_CA_BUNDLE"},
    )
    assert proc.returncode != 0
    assert "RDS CA bundle is required" in proc.stderr
    assert not (tmp_path / "out" / "pqfile-function.zip").exists()


def test_a_ca_bundle_that_is_not_pem_certificates_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bundle.pem"
    bogus.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    proc = _run(tmp_path / "out", "--source-only", "--rds-ca-bundle", str(bogus))
    assert proc.returncode != 0
    assert "not a PEM certificate bundle" in proc.stderr
