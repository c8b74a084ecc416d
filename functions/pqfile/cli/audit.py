"""`pqfile audit verify|tail|prove`: the hash-chained audit trail and its signed tree heads
(docs/KEYS.md, "Audit chain", "Signed tree heads", "Receipts")."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pqfile.cli import audit_digests
from pqfile.cli._admin_client import add_stack_options, run_admin, via_function
from pqfile.cli.audit_digests import add_digest_options
from pqfile.cli.db import add_database_option, command_group, open_database, print_json


def register(subparsers: Any) -> None:
    sub = command_group(subparsers, "audit", "the audit trail")

    verify = sub.add_parser("verify", help="recompute the hash chain; name the first broken row")
    add_database_option(verify)
    add_stack_options(verify)
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.add_argument(
        "--anchor",
        action="append",
        default=[],
        type=_anchor,
        metavar="SEQ:HASH",
        help="a head recorded earlier outside the database (repeatable): must still be there",
    )
    add_digest_options(verify, required=False)
    verify.set_defaults(func=_verify)

    prove = sub.add_parser(
        "prove", help="a row's hash and its inclusion proof against the latest signed digest"
    )
    prove.add_argument("seq", type=_seq, metavar="SEQ", help="the row (a retrieve's receipt)")
    add_database_option(prove)
    add_stack_options(prove)
    add_digest_options(prove, required=False)
    prove.add_argument("--json", action="store_true", help="machine-readable output")
    prove.set_defaults(func=audit_digests.prove)

    tail = sub.add_parser("tail", help="show the most recent events")
    add_database_option(tail)
    add_stack_options(tail)
    tail.add_argument("-n", "--limit", type=int, default=20, help="how many rows (default 20)")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.set_defaults(func=_tail)


def _verify(args: argparse.Namespace) -> int:
    if args.digests:
        return audit_digests.verify_with_digests(args)
    if via_function(args):
        anchors = [f"{seq}:{digest.hex()}" for seq, digest in args.anchor]
        report: dict[str, Any] = dict(run_admin(args, "audit.verify", {"anchors": anchors}))
    else:
        from pqfile.adapters.postgres.audit import PostgresAuditLog

        db = open_database(args)
        try:
            report = PostgresAuditLog(db).verify_chain(anchors=dict(args.anchor)).as_dict()
        finally:
            db.close()
    if args.json:
        print_json(report)
    elif report["ok"]:
        print(f"audit chain OK: {report['rows']} rows, head {report['head_seq']} "
              f"{report['head_hash']}")  # fmt: skip
    else:
        print(f"audit chain BROKEN at row {report['broken_seq']}: {report['reason']}")
    return 0 if report["ok"] else 1


def _seq(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) < 2**63:
        raise argparse.ArgumentTypeError(f"expected a row number (1, 2, ...), got {value!r}")
    return int(value)


def _anchor(value: str) -> tuple[int, bytes]:
    seq, sep, digest = value.partition(":")
    try:
        raw = bytes.fromhex(digest)
        if not sep or len(raw) != 32:
            raise ValueError
        return int(seq), raw
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected SEQ:HASH (64 hex digits), got {value!r}"
        ) from None


def _tail(args: argparse.Namespace) -> int:
    if via_function(args):
        rows: list[Any] = list(run_admin(args, "audit.tail", {"limit": args.limit})["rows"])
    else:
        from pqfile.adapters.postgres.audit import PostgresAuditLog

        db = open_database(args)
        try:
            rows = list(PostgresAuditLog(db).tail(args.limit))
        finally:
            db.close()
    for row in rows:
        if args.json:
            print(json.dumps(row, sort_keys=True, default=str))
            continue
        subject = " ".join(
            f"{name}={row[name]}"
            for name in ("document_id", "key_id", "request_id", "db_role")
            if row.get(name)
        )
        print(
            f"{row['seq']:>8} {row['occurred_at']} {row['operation']:<22} "
            f"{row['outcome']:<8} {row['actor']} {subject}".rstrip()
        )
    return 0
