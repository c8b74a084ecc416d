"""`pqfile access recipient add|revoke|list`, and the key half of `pqfile access grant
--recipient`: readers' own post-quantum public keys, to which a sealed retrieve re-wraps a
document (issue 18; docs/KEYS.md, "Recipient keys"; docs/OPERATIONS.md, "Tenants and
access").

A key belongs to one exact principal ARN (no pattern), at most one active per principal:
adding another retires the old one. The key file is checked here (crypto.keyfiles: the
suite's OID, exact length, the FIPS 203 modulus check) before anything is sent, and again
by the admin function and the database. Each change is an audit row
(``access.recipient_add`` / ``access.recipient_revoke``) carrying the key's fingerprint
(SHA-256 of the raw public key) and, through the admin function, the verified caller.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from typing import Any

from pqfile.cli._admin_client import add_stack_options, run_admin, via_function
from pqfile.cli._output import printable
from pqfile.cli.db import actor, add_database_option, command_group, open_database, print_json
from pqfile.crypto.kem import PublicKey
from pqfile.crypto.keyfiles import public_key_to_pem
from pqfile.errors import PQFileError
from pqfile.usecases.recipients import MAX_RECIPIENT_PEM, exact_principal, recipient_key_from_pem


class RecipientFileError(PQFileError):
    """The public key file cannot be read."""


def read_recipient(path: str) -> tuple[PublicKey, str]:
    """The checked key in ``path`` and its canonical PEM (what the admin function gets:
    nothing of the file but the key)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_RECIPIENT_PEM + 1)
    except OSError as exc:
        reason = printable(exc.strerror or type(exc).__name__)
        raise RecipientFileError(f"{reason}: {printable(os.fsdecode(path))}") from None
    key = recipient_key_from_pem(data)
    return key, public_key_to_pem(key).decode("ascii")


def add_recipient_options(parser: argparse.ArgumentParser, *, option: bool) -> None:
    """The key file (``--recipient PUB.pem`` on `access grant`, a positional on `recipient
    add`) and ``--allow-weaker-suite``."""
    helps = "the reader's public key (PEM, from `pqfile keygen`; xwing, mlkem768 or mlkem1024)"
    if option:
        parser.add_argument(
            "--recipient", metavar="PUB.pem",
            help=f"also register {helps}; needs an exact principal ARN",
        )  # fmt: skip
    else:
        parser.add_argument("public_key", metavar="PUB.pem", help=helps)
    parser.add_argument(
        "--allow-weaker-suite", action="store_true",
        help="allow documents stored under a stronger suite to be re-wrapped to this key "
        "(the downgrade guard: mlkem768 < xwing < mlkem1024)",
    )  # fmt: skip


def register(access: Any) -> None:
    """`pqfile access recipient ...` under the `access` group's subparsers."""
    sub = command_group(access, "recipient", "readers' public keys for sealed retrieval")
    add = sub.add_parser("add", help="register a principal's public key (replaces its old one)")
    _common(add, principal=True)
    add_recipient_options(add, option=False)
    add.set_defaults(func=_add)
    revoke = sub.add_parser("revoke", help="retire a principal's public key")
    _common(revoke, principal=True)
    revoke.set_defaults(func=_revoke)
    listing = sub.add_parser("list", help="the registered keys")
    _common(listing, principal=False)
    listing.add_argument("--all", action="store_true", help="the retired keys too")
    listing.set_defaults(func=_list)


def _common(parser: argparse.ArgumentParser, *, principal: bool) -> None:
    add_database_option(parser)
    add_stack_options(parser)
    if principal:
        parser.add_argument("--principal", required=True, metavar="ARN",
                            help="the reader: one exact principal ARN (no pattern)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _add(args: argparse.Namespace) -> int:
    principal = exact_principal(args.principal)
    key, pem = read_recipient(args.public_key)
    if via_function(args):
        change: dict[str, Any] = dict(run_admin(args, "access.recipient_add", {
            "principal": principal, "public_key": pem,
            "allow_weaker": True if args.allow_weaker_suite else None}))  # fmt: skip
    else:
        from pqfile.adapters.postgres import PostgresRecipientKeys
        from pqfile.adapters.postgres.access import recipient_change_dict

        db = open_database(args)
        try:
            change = recipient_change_dict(PostgresRecipientKeys(db).register(
                principal, key, allow_weaker=args.allow_weaker_suite, actor=actor()))  # fmt: skip
        finally:
            db.close()
    if args.json:
        print_json(change)
    else:
        print(describe_change(change))
    return 0


def describe_change(change: dict[str, Any]) -> str:
    """One line for a registration (`recipient add`, `access grant --recipient`)."""
    weaker = ", weaker suites allowed" if change["allow_weaker"] else ""
    what = (f"{change['suite']} key {change['fingerprint'][:16]} of {change['principal']} "
            f"(recipient {change['recipient_id']}{weaker})")  # fmt: skip
    if not change["created"]:
        return f"already registered: {what}"
    replaced = change.get("replaced")
    return f"registered {what}" + (f", replacing recipient {replaced}" if replaced else "")


def _revoke(args: argparse.Namespace) -> int:
    principal = exact_principal(args.principal)
    if via_function(args):
        result = dict(run_admin(args, "access.recipient_revoke", {"principal": principal}))
    else:
        from pqfile.adapters.postgres import PostgresRecipientKeys

        db = open_database(args)
        try:
            recipient_id = PostgresRecipientKeys(db).revoke(principal, actor=actor())
        finally:
            db.close()
        result = {"recipient_id": recipient_id, "result": "revoked", "principal": principal}
    if args.json:
        print_json(result)
    else:
        print(f"revoked the recipient key of {principal} (recipient {result['recipient_id']})")
    return 0


def _list(args: argparse.Namespace) -> int:
    if via_function(args):
        answer = run_admin(args, "access.recipient_list",
                           {"include_revoked": True if args.all else None})  # fmt: skip
        entries: list[dict[str, Any]] = list(answer["recipients"])
    else:
        from pqfile.adapters.postgres import PostgresRecipientKeys
        from pqfile.adapters.postgres.access import recipient_entry_dict

        db = open_database(args)
        try:
            listed = PostgresRecipientKeys(db).list(include_revoked=args.all)
            entries = [recipient_entry_dict(e) for e in listed]
        finally:
            db.close()
    if args.json:
        print_json(entries)
        return 0
    if not entries:
        print("no recipient keys: nobody gets a sealed retrieval")
        return 0
    for e in entries:
        created = dt.datetime.fromisoformat(e["created_at"])
        state = " revoked" if e["revoked_at"] else ""
        weaker = " allow-weaker" if e["allow_weaker"] else ""
        print(f"{e['recipient_id']:>5}  {e['suite']:<9}  {e['fingerprint'][:16]}  "
              f"{e['principal']}  (by {e['created_by']}, {created:%Y-%m-%d %H:%M})"
              f"{weaker}{state}")  # fmt: skip
    return 0
