"""`pqfile keys|access|audit` routing: --stack / PQFILE_STACK go through the admin function,
--database-url stays direct; failures before any invoke are one clear line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pqfile.cli import main
from pqfile.cli._admin_client import via_function


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PQFILE_STACK", "PQFILE_ADMIN_FUNCTION", "PQFILE_AUDIENCE",
                 "PQFILE_DATABASE_URL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def test_database_url_wins_over_a_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    assert via_function(argparse.Namespace(database_url=None, stack="tf"))
    assert not via_function(argparse.Namespace(database_url="postgresql://x/y", stack="tf"))
    assert not via_function(argparse.Namespace(database_url=None, stack=None))
    monkeypatch.setenv("PQFILE_STACK", "tf")
    assert via_function(argparse.Namespace(database_url=None, stack=None))


def test_a_missing_stack_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert main(["keys", "status", "--stack", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err == f"pqfile: error: --stack {missing}: no such directory\n"


def test_rotate_through_the_function_is_dry_run_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PQFILE_ADMIN_FUNCTION", "pqfile-admin")
    monkeypatch.setenv("PQFILE_AUDIENCE", "pqfile-test")
    assert main(["keys", "rotate", "--stack", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pqfile: error: keys rotate through the admin function takes --dry-run")
    assert err.count("\n") == 1
