"""`pqfile access grant|revoke|list`: who may read what (docs/OPERATIONS.md, "Granting
access"). Deny by default: a rule allows a principal ARN, or an ARN pattern with ``*``, an
operation (``retrieve``, or ``operate`` for operator commands) on a tenant (the first
folder under ``uploads/``) or on one document. Run as ``pqfile_operator``: each change is
an audit row whose actor is the connected user (``PQFILE_ACTOR`` is kept as a claim).

``grant --recipient PUB.pem`` also registers the reader's public key for sealed retrieval,
in the same transaction as the rule (cli/access_recipients.py: ``access recipient``).
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from pqfile.cli import access_recipients
from pqfile.cli._admin_client import add_stack_options, run_admin, via_function
from pqfile.cli.db import actor, add_database_option, command_group, open_database, print_json
from pqfile.errors import PQFileError
from pqfile.ports import AccessOperation
from pqfile.usecases.recipients import exact_principal

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
    access_recipients.add_recipient_options(grant, option=True)
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
    access_recipients.register(sub)


def _change(args: argparse.Namespace, verb: str) -> int:
    if getattr(args, "recipient", None):
        return _grant_with_recipient(args)
    if getattr(args, "allow_weaker_suite", False):
        raise PQFileError("--allow-weaker-suite goes with --recipient")
    if via_function(args):
        command = "access.grant" if verb == "granted" else "access.revoke"
        result = run_admin(args, command, {"principal": args.principal, "tenant": args.tenant,
                                           "document_id": args.document,
                                           "operation": args.operation})  # fmt: skip
        rule_id = int(result["rule_id"])
    else:
        rule_id = _change_direct(args, verb)
    _print_change(args, verb, rule_id, None)
    return 0


def _print_change(
    args: argparse.Namespace, verb: str, rule_id: int, recipient: dict[str, Any] | None
) -> None:
    target = f"tenant {args.tenant}" if args.tenant else f"document {args.document}"
    if args.json:
        answer = {"rule_id": rule_id, "result": verb, "principal": args.principal,
                  "tenant": args.tenant, "document_id": args.document,
                  "operation": args.operation}  # fmt: skip
        print_json(answer if recipient is None else {**answer, "recipient": recipient})
        return
    print(f"{verb} {args.operation} on {target} to {args.principal} (rule {rule_id})")
    if recipient is not None:
        print(access_recipients.describe_change(recipient))


def _grant_with_recipient(args: argparse.Namespace) -> int:
    """The retrieve rule and the reader's key, both or neither (one transaction, on the
    direct path and in the admin function)."""
    if "*" in args.principal:
        raise PQFileError("--recipient needs an exact principal ARN, not a pattern (no *)")
    principal = exact_principal(args.principal)
    if args.operation != AccessOperation.RETRIEVE.value:
        raise PQFileError("--recipient goes with --operation retrieve")
    key, pem = access_recipients.read_recipient(args.recipient)
    if via_function(args):
        result = run_admin(args, "access.grant", {
            "principal": principal, "tenant": args.tenant, "document_id": args.document,
            "operation": args.operation, "recipient_public_key": pem,
            "allow_weaker": True if args.allow_weaker_suite else None})  # fmt: skip
        rule_id, recipient = int(result["rule_id"]), dict(result["recipient"])
    else:
        from pqfile.adapters.postgres import PostgresRecipientKeys
        from pqfile.adapters.postgres.access import recipient_change_dict

        db = open_database(args)
        try:
            rule_id, change = PostgresRecipientKeys(db).grant_with_key(
                principal, key, tenant=args.tenant, document_id=args.document,
                allow_weaker=args.allow_weaker_suite, actor=actor())  # fmt: skip
        finally:
            db.close()
        recipient = recipient_change_dict(change)
    _print_change(args, "granted", rule_id, recipient)
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
