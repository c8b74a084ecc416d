"""Schema migrations: ``sql/migrations/NNNN_*.sql`` applied in order, forward-only.

``migrate(db, directory=None) -> list[str]`` applies each pending migration in its own
transaction, recording its version and checksum; safe to re-run, and concurrent migrators
wait for each other (an advisory lock).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from pqfile.adapters.postgres.connection import Database
from pqfile.config import DatabaseSettings
from pqfile.errors import PQFileError


class MigrationError(PQFileError):
    """A migration is missing, changed after being applied, or failed."""


_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_MIGRATION_LOCK = 0x70716669  # "pqfi": one migrator at a time per database


def default_migrations_dir() -> Path:
    configured = DatabaseSettings.from_env().migrations_dir
    candidates = [Path(configured)] if configured else []
    candidates += [
        Path(__file__).resolve().parents[4] / "sql" / "migrations",
        Path.cwd() / "sql" / "migrations",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise MigrationError("sql/migrations not found (set PQFILE_MIGRATIONS_DIR)")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def load_migrations(directory: Path) -> list[Migration]:
    migrations: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file name must be NNNN_name.sql: {path.name}")
        migrations.append(
            Migration(int(match.group(1)), match.group(2), path.read_text(encoding="utf-8"))
        )
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migration versions must run 1..N without gaps: {versions}")
    return migrations


def migrate(db: Database, directory: Path | None = None) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    migrations = load_migrations(directory or default_migrations_dir())
    applied_now: list[str] = []
    with db.transaction() as s:
        s.run("SELECT pg_advisory_xact_lock(:k)", k=_MIGRATION_LOCK)
        s.script(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        newest = s.run("SELECT max(version) FROM schema_migrations")[0][0]
        if newest is not None and int(newest) > len(migrations):
            raise MigrationError(
                f"the database is at version {int(newest):04d}, newer than these migrations "
                f"({len(migrations):04d}): deploy the newer code instead"
            )
    for migration in migrations:
        with db.transaction() as s:
            # Serialise concurrent migrators; the lock ends with the transaction.
            s.run("SELECT pg_advisory_xact_lock(:k)", k=_MIGRATION_LOCK)
            rows = s.run(
                "SELECT checksum FROM schema_migrations WHERE version = :v", v=migration.version
            )
            if rows:
                if rows[0][0] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} changed after it "
                        "was applied; migrations are forward-only: add a new one"
                    )
                continue
            s.script(migration.sql)
            s.run(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)",
                v=migration.version,
                n=migration.name,
                c=migration.checksum,
            )
            applied_now.append(f"{migration.version:04d}_{migration.name}")
    return applied_now


def applied_versions(db: Database) -> list[int]:
    rows = db.run("SELECT version FROM schema_migrations ORDER BY version")
    return [int(r[0]) for r in rows]
