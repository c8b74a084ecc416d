"""Migrations: from an empty database, re-run safely, forward-only; the lifecycle is
enforced by the database itself."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pqfile.adapters.postgres.connection import Database, ImmutableRowError
from pqfile.adapters.postgres.migrations import (
    MigrationError,
    applied_versions,
    default_migrations_dir,
    load_migrations,
    migrate,
)
from pqfile.keys.model import IllegalTransitionError
from tests.fixtures.postgres import FUNCTION_ROLES
from tests.fixtures.threads import run_threads

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("close_leaked_connections")]


@pytest.fixture
def empty_db(make_database: Callable[[], str]) -> Iterator[Database]:
    db = Database.from_url(make_database())
    yield db
    db.close()


def _insert_key(db: Database, key_id: str) -> None:
    db.run(
        "INSERT INTO encryption_keys (id, suite, public_key, wrapped_seed, kms_key_arn, "
        "rotate_after) VALUES (:id, 'xwing', :pk, :ws, 'arn:test', now() + interval '30 days')",
        id=key_id,
        pk=b"p" * 1216,
        ws=b"w" * 100,
    )


def test_migrate_from_empty_then_rerun(empty_db: Database) -> None:
    expected = [f"{m.version:04d}_{m.name}" for m in load_migrations(default_migrations_dir())]
    assert len(expected) >= 5
    assert migrate(empty_db) == expected
    assert applied_versions(empty_db) == list(range(1, len(expected) + 1))
    assert migrate(empty_db) == []  # re-run: nothing to do
    tables = {
        r[0]
        for r in empty_db.run(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    }
    assert {"encryption_keys", "documents", "access_logs", "key_rotations"} <= tables
    roles = {
        r[0] for r in empty_db.run("SELECT rolname FROM pg_roles WHERE rolname LIKE 'pqfile_%'")
    }
    assert {"pqfile_ingest", "pqfile_retrieve", "pqfile_rotate", "pqfile_auditor"} <= roles
    assert set(FUNCTION_ROLES.values()) | {"pqfile_operator"} <= roles  # 0010: one per function


def test_changed_migration_is_refused(empty_db: Database, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(default_migrations_dir(), migrations)
    migrate(empty_db, migrations)
    first = sorted(migrations.glob("0002_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after the fact\n")
    with pytest.raises(MigrationError, match="forward-only"):
        migrate(empty_db, migrations)


def test_new_migration_applies_and_failed_one_rolls_back(
    empty_db: Database, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(default_migrations_dir(), migrations)
    migrate(empty_db, migrations)
    n = len(load_migrations(migrations))
    (migrations / f"{n + 1:04d}_broken.sql").write_text(
        "CREATE TABLE half_done (x int);\nSELECT no_such_function();\n"
    )
    with pytest.raises(Exception):
        migrate(empty_db, migrations)
    assert applied_versions(empty_db) == list(range(1, n + 1))
    assert not empty_db.run("SELECT 1 FROM pg_tables WHERE tablename = 'half_done'")


@pytest.mark.parametrize(
    ("path", "legal"),
    [
        (["rotation_queued", "expired", "revoked"], True),
        (["expired", "active"], False),
        (["revoked", "active"], False),
        (["revoked", "expired"], False),
        (["rotation_queued", "active"], False),
        (["expired", "rotation_queued"], False),
    ],
)
def test_status_transitions_enforced_by_database(
    empty_db: Database, path: list[str], legal: bool
) -> None:
    migrate(empty_db)
    key_id = "ab" * 16
    _insert_key(empty_db, key_id)

    def move(status: str) -> None:
        empty_db.run(
            "UPDATE encryption_keys SET status = :s, revoke_reason = 'test' WHERE id = :id",
            s=status,
            id=key_id,
        )

    for status in path[:-1]:
        move(status)
    if legal:
        move(path[-1])
        row = empty_db.run(
            "SELECT status, revoked_at IS NOT NULL, expired_at IS NOT NULL FROM encryption_keys"
        )
        assert row == [["revoked", True, True]]
    else:
        with pytest.raises(IllegalTransitionError):
            move(path[-1])


def test_key_material_is_immutable_and_keys_never_deleted(empty_db: Database) -> None:
    migrate(empty_db)
    key_id = "cd" * 16
    _insert_key(empty_db, key_id)
    with pytest.raises(ImmutableRowError):
        empty_db.run(
            "UPDATE encryption_keys SET wrapped_seed = :w WHERE id = :id", w=b"x", id=key_id
        )
    with pytest.raises(ImmutableRowError):
        empty_db.run("DELETE FROM encryption_keys WHERE id = :id", id=key_id)
    with pytest.raises(IllegalTransitionError):
        empty_db.run(
            "INSERT INTO encryption_keys (id, suite, public_key, wrapped_seed, kms_key_arn, "
            "rotate_after, status) VALUES (:id, 'xwing', :pk, :ws, 'arn', now(), 'expired')",
            id="ef" * 16,
            pk=b"p",
            ws=b"w",
        )


def test_cli_db_migrate(
    make_database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pqfile.cli import main as cli_main

    url = make_database()
    monkeypatch.setenv("PQFILE_DATABASE_URL", url)
    assert cli_main(["db", "migrate"]) == 0
    out = capsys.readouterr().out
    n = len(load_migrations(default_migrations_dir()))
    assert "applied 0001_roles" in out and f"({n} applied now)" in out
    assert cli_main(["db", "migrate", "--database-url", url]) == 0
    assert "(0 applied now)" in capsys.readouterr().out


def test_database_newer_than_code_is_refused(empty_db: Database, tmp_path: Path) -> None:
    migrate(empty_db)
    older = tmp_path / "older"
    older.mkdir()
    for path in sorted(default_migrations_dir().glob("*.sql"))[:3]:
        shutil.copy(path, older / path.name)
    with pytest.raises(MigrationError, match="newer than these migrations"):
        migrate(empty_db, older)


def test_concurrent_migrators(make_database: Callable[[], str]) -> None:
    url = make_database()
    results: list[list[str]] = []

    def run(_: int) -> None:
        db = Database.from_url(url)
        try:
            results.append(migrate(db))
        finally:
            db.close()

    errors = run_threads(run, 4, timeout=120).errors
    assert not errors, errors
    applied = sorted(name for names in results for name in names)
    expected = sorted(
        f"{m.version:04d}_{m.name}" for m in load_migrations(default_migrations_dir())
    )
    assert applied == expected  # each migration applied exactly once
