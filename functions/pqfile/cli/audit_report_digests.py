"""The report's digest status: `pqfile audit report --digests SRC --public-key PEM`.

Each signed digest in SRC is listed with its period, tree size and root, and whether it
verified against the table (the checks of `pqfile audit verify --digests`, one snapshot).
Reading every row's hash needs the direct database path (an auditor), as for `verify
--digests`.
"""

from __future__ import annotations

import argparse
from typing import Any

from pqfile.cli._admin_client import via_function
from pqfile.cli.audit_digests import check_pairing, load_digests, load_public_key
from pqfile.cli.db import open_database
from pqfile.errors import AuditDigestError, PQFileError
from pqfile.keys.audit_digest import SignedDigest
from pqfile.keys.audit_digest_check import check_digests
from pqfile.usecases.audit_report import DigestStatus


def digest_statuses(args: argparse.Namespace) -> list[DigestStatus] | None:
    """One status per digest object, or None without ``--digests``."""
    check_pairing(args)
    if not getattr(args, "digests", None):
        return None
    if via_function(args):
        raise PQFileError("--digests reads every row: run it with --database-url (an auditor)")
    public_key = load_public_key(args.public_key)
    objects = load_digests(args.digests)
    from pqfile.adapters.postgres.audit import PostgresAuditLog

    leaves: list[tuple[bytes, Any]] = []
    db = open_database(args)
    try:
        PostgresAuditLog(db).verify_chain(leaves=leaves)
    finally:
        db.close()
    report = check_digests([h for h, _ in leaves], [t for _, t in leaves], objects, public_key)
    problems: dict[str, str] = {}
    for p in report.problems:
        problems.setdefault(p.name, f"{p.kind}: {p.detail}")
    out = []
    for name, raw in objects:
        try:
            head = SignedDigest.from_json(raw).head
        except AuditDigestError as exc:
            out.append(DigestStatus(name, "", "", 0, "", False, problems.get(name, str(exc))))
            continue
        out.append(
            DigestStatus(
                name=name,
                period_start=head.first_at.isoformat() if head.first_at else "",
                period_end=head.last_at.isoformat() if head.last_at else "",
                tree_size=head.tree_size,
                root_hash=head.root_hash.hex(),
                verified=name not in problems,
                problem=problems.get(name),
            )
        )
    return sorted(out, key=lambda s: (s.tree_size, s.name))
