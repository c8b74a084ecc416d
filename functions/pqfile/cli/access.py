"""`pqfile access grant|revoke|list`: who may read what (docs/OPERATIONS.md, "Granting
access"). Deny by default: a rule allows a principal ARN, or an ARN pattern with ``*``, an
operation (``retrieve``, or ``operate`` for operator commands) on a tenant (the first
folder under ``uploads/``) or on one document. Run as ``pqfile_operator``: each change is
an audit row whose actor is the connected user (``PQFILE_ACTOR`` is kept as a claim).
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from pqfile.cli._admin_client import add_stack_options, run_admin, via_function
from pqfile.cli.db import actor, add_database_option, command_group, open_database, print_json
from pqfile.ports import AccessOperation

OPERATIONS = [op.value for op in AccessOperation]


def _rule_options(parser: argparse.ArgumentParser) -> None:
    add_database_option(parser)
    add_stack_options(parser)
    parser.add_argument(
        "--principal",
        required=True,
        metavar="ARN_OR_PATTERN",
        help="a principal ARN (arn:aws:iam::ACCOUNT:user/NAME, ...:role/NAME) or a pattern "
        "with * (arn:aws:iam::ACCOUNT:role/team-*); the account is always named",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--tenant", help="every document under uploads/TENANT/")
    target.add_argument("--document", metavar="ID", help="one document")
    parser.add_argument(
        "--operation", choices=OPERATIONS, default=AccessOperation.RETRIEVE.value,
        help="what the rule allows (default: retrieve)",
    )  # fmt: skip


def register(subparsers: Any) -> None:
    sub = command_group(subparsers, "access", "who may read what (operator)")
    grant = sub.add_parser("grant", help="allow a principal (or pattern) a tenant or document")
    _rule_options(grant)
    grant.add_argument("--json", action="store_true", help="machine-readable output")
    grant.set_defaults(func=_grant)
    revoke = sub.add_parser("revoke", help="remove the rule with exactly these arguments")
    _rule_options(revoke)
    revoke.add_argument("--json", action="store_true", help="machine-readable output")
    revoke.set_defaults(func=_revoke)
    listing = sub.add_parser("list", help="every rule")
    add_database_option(listing)
    add_stack_options(listing)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=_list)


def _change(args: argparse.Namespace, verb: str) -> int:
    if via_function(args):
        command = "access.grant" if verb == "granted" else "access.revoke"
        result = run_admin(args, command, {"principal": args.principal, "tenant": args.tenant,
                                           "document_id": args.document,
                                           "operation": args.operation})  # fmt: skip
        rule_id = int(result["rule_id"])
    else:
        rule_id = _change_direct(args, verb)
    target = f"tenant {args.tenant}" if args.tenant else f"document {args.document}"
    if args.json:
        print_json({"rule_id": rule_id, "result": verb, "principal": args.principal,
                    "tenant": args.tenant, "document_id": args.document,
                    "operation": args.operation})  # fmt: skip
    else:
        print(f"{verb} {args.operation} on {target} to {args.principal} (rule {rule_id})")
    return 0


def _change_direct(args: argparse.Namespace, verb: str) -> int:
    from pqfile.adapters.postgres import PostgresAccessRules

    db = open_database(args)
    try:
        rules = PostgresAccessRules(db)
        change = rules.grant if verb == "granted" else rules.revoke
        return change(
            args.principal,
            tenant=args.tenant,
            document_id=args.document,
            operation=AccessOperation(args.operation),
            actor=actor(),
        )
    finally:
        db.close()


def _grant(args: argparse.Namespace) -> int:
    return _change(args, "granted")


def _revoke(args: argparse.Namespace) -> int:
    return _change(args, "revoked")


def _list(args: argparse.Namespace) -> int:
    if via_function(args):
        rules: list[dict[str, Any]] = list(run_admin(args, "access.list", {})["rules"])
    else:
        from pqfile.adapters.postgres import PostgresAccessRules
        from pqfile.adapters.postgres.operator import rule_dict

        db = open_database(args)
        try:
            rules = [rule_dict(r) for r in PostgresAccessRules(db).list()]
        finally:
            db.close()
    if args.json:
        print_json(rules)
        return 0
    if not rules:
        print("no rules: nobody may retrieve anything (deny by default)")
        return 0
    for r in rules:
        target = f"tenant {r['tenant']}" if r["tenant"] else f"document {r['document_id']}"
        created = dt.datetime.fromisoformat(r["created_at"])
        print(f"{r['rule_id']:>5}  {r['operation']:<8}  {target:<40}  {r['principal']}  "
              f"(by {r['created_by']}, {created:%Y-%m-%d %H:%M})")  # fmt: skip
    return 0
