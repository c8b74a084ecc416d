"""`pqfile documents list [--key KEY_ID] [--tenant T] [--status S] [--json]`: the document
index, read from the database directly as the other operator commands do (the local
stack, break glass). `--as-caller` and `pqfile documents status` go through the documents
function instead (cli/documents_status.py).

Needs only SELECT on ``documents`` and ``document_tombstones``: ``pqfile_operator`` or the
read-only ``pqfile_auditor`` (docs/KEYS.md, "Roles and grants"). A shredded document shows
when its key was shredded (its tombstone).
"""

from __future__ import annotations

import argparse
from typing import Any

from pqfile.cli import documents_status
from pqfile.cli.db import add_database_option, command_group, open_database, print_json
from pqfile.ports import DocumentStatus

STATUSES = [s.value for s in DocumentStatus] + ["encrypted"]


def register(subparsers: Any) -> None:
    sub = command_group(subparsers, "documents", "the document index")
    listing = sub.add_parser(
        "list", help="documents by key, tenant and status (operator or auditor)"
    )
    add_database_option(listing)
    listing.add_argument("--key", metavar="KEY_ID", help="only documents on this key")
    listing.add_argument("--tenant", metavar="T", help="only this tenant's documents")
    listing.add_argument("--status", metavar="S", choices=STATUSES, help="only this status")
    listing.add_argument(
        "--limit", type=int, default=1000, help="at most this many, oldest first (1000)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON document on stdout")
    documents_status.add_caller_options(listing)
    listing.set_defaults(func=_list)
    documents_status.register(sub)


def _list(args: argparse.Namespace) -> int:
    from pqfile.adapters.postgres.documents import list_documents
    from pqfile.config import ConfigurationError

    if args.limit < 1:
        raise ConfigurationError("--limit must be at least 1")
    if args.as_caller:
        return documents_status.list_as_caller(args)
    db = open_database(args)
    try:
        found = list_documents(
            db, key_id=args.key, tenant=args.tenant, status=args.status, limit=args.limit
        )
    finally:
        db.close()
    if args.json:
        print_json({"documents": [d.to_dict() for d in found], "count": len(found)})
        return 0
    print(f"{'document':<34} {'tenant':<16} {'status':<9} {'key':<33} {'size':>12}  source")
    for d in found:
        size = "-" if d.plaintext_size is None else str(d.plaintext_size)
        status = d.status
        print(
            f"{d.document_id:<34} {d.tenant:<16} {status:<9} {d.key_id or '-':<33} "
            f"{size:>12}  {d.source}"
            + (f"  (shredded {d.shredded_at:%Y-%m-%d %H:%M})" if d.shredded_at else "")
        )
    print(f"{len(found)} document(s)")
    return 0
