"""`pqfile db migrate`: apply sql/migrations/NNNN_*.sql (forward-only, safe to re-run).

Also holds the helpers the other database-backed commands (keys, audit) share.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pqfile.config import CliSettings

if TYPE_CHECKING:
    from pqfile.adapters.postgres.connection import Database


# --- helpers shared with `pqfile keys` and `pqfile audit` ----------------------------------
def add_database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="postgresql://... (default: PQFILE_DATABASE_URL or PQFILE_DATABASE_SECRET_ARN)",
    )


def open_database(args: argparse.Namespace) -> Database:
    from pqfile.adapters.postgres.connection import Database

    url: str | None = getattr(args, "database_url", None)
    return Database.from_url(url) if url else Database.from_env()


def actor() -> str:
    """Who says they are acting: PQFILE_ACTOR, else the local user. Only a claim: the
    database records the connected user as the actor and keeps this as ``claimed_by``."""
    return CliSettings.from_env().actor or f"cli:{getpass.getuser()}"


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def _usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """`pqfile keys` alone: show that command's help and exit 2 (usage error)."""

    def show(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


def command_group(subparsers: Any, name: str, help_text: str) -> Any:
    """The subparsers of a ``pqfile NAME ACTION`` group (dest ``NAME_command``); without an
    ACTION the group prints its help and exits 2."""
    group = subparsers.add_parser(name, help=help_text)
    group.set_defaults(func=_usage(group))
    return group.add_subparsers(dest=f"{name}_command", metavar="ACTION")


# --- db migrate ------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    db_sub = command_group(subparsers, "db", "database schema")
    migrate_p = db_sub.add_parser("migrate", help="apply pending migrations")
    add_database_option(migrate_p)
    migrate_p.add_argument(
        "--dir", type=Path, help="migrations directory (default: sql/migrations)"
    )
    migrate_p.set_defaults(func=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    from pqfile.adapters.postgres.migrations import applied_versions, migrate

    db = open_database(args)
    try:
        applied = migrate(db, args.dir)
        versions = applied_versions(db)
    finally:
        db.close()
    for name in applied:
        print(f"applied {name}")
    print(f"database at version {max(versions, default=0):04d} ({len(applied)} applied now)")
    return 0
