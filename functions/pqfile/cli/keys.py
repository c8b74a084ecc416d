"""`pqfile keys status|rotate|revoke|expire|request|refill|queue-rotation`: the key pool
(docs/KEYS.md, "Rotation", "Revocation", "Shredding").

``rotate`` (cli/keys_rotate.py) queues what is due (or one ``--key``, optionally onto
``--to-suite``) and starts the rotate-keys workflow, then follows it to the end; ``revoke``
(cli/keys_revoke.py) records a pending revocation (``--now``: at once; ``--compromised``: a
pending compromise, its documents re-encrypted; ``--shred --yes-destroy-documents``: a
pending shred). ``status`` marks a suite "(below floor)" by the deployment's floor (the
stack's ``key_pool_policy`` output or the admin function's policy), unless ``--floor``.
``refill`` and ``queue-rotation`` are the lower-level steps the workflow's MaintainPool
runs, kept for operators who need one of them alone.

Which database role may do what (docs/KEYS.md, "Roles and grants"): ``status`` reads (the
operator or the auditor); ``rotate``, ``revoke``, ``expire`` and ``request`` are an
operator's (``pqfile_operator``); ``refill`` and ``queue-rotation`` are the maintain
function's (run them as ``pqfile_maintain`` or the owner, with the KMS seed key and the
attestation key configured). The name in ``PQFILE_ACTOR`` is only a claim, kept as
``claimed_by``: the database records the connected user as the actor.
"""

from __future__ import annotations

import argparse
from typing import Any

from pqfile.cli._admin_client import add_stack_options, run_admin, via_function
from pqfile.cli.db import add_database_option, command_group, open_database, print_json
from pqfile.cli.keys_common import deployment_suites, policy_args, policy_options
from pqfile.cli.keys_common import store as _store
from pqfile.cli.keys_revoke import revoke as _revoke
from pqfile.cli.keys_rotate import rotate as _rotate
from pqfile.crypto.kem import Suite
from pqfile.keys.model import RequestKind

SUITES = [suite.value for suite in Suite]


def register(subparsers: Any) -> None:
    sub = command_group(subparsers, "keys", "the key pool")

    status = sub.add_parser("status", help="counts per suite and status, age, usage spread")
    add_database_option(status)
    add_stack_options(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    policy_options(status)
    status.set_defaults(func=_status)

    refill = sub.add_parser(
        "refill",
        help="lower-level step of `keys rotate`: queue due keys, then top each suite up",
    )
    add_database_option(refill)
    refill.add_argument(
        "--suite",
        choices=[*SUITES, "all"],
        default="all",
        help="which suite to refill (default: all)",
    )
    policy_options(refill)
    refill.set_defaults(func=_refill)

    rotate = sub.add_parser(
        "rotate",
        help="queue the keys due for rotation and run the rotate-keys workflow to the end",
        description="Queue every active key past its age or usage caps (or only --key, due "
        "or not), start the rotate-keys workflow (which also completes pending shreds) and "
        "follow it to the end. --dry-run shows what would happen and changes nothing.",
    )
    add_database_option(rotate)
    add_stack_options(rotate)
    policy_options(rotate)
    rotate.add_argument("--key", metavar="KEY_ID", help="rotate this key only (due or not)")
    rotate.add_argument(
        "--to-suite", choices=SUITES, help="move the documents to keys of this suite"
    )
    rotate.add_argument(
        "--allow-downgrade", action="store_true",
        help="let --to-suite name a weaker suite (mlkem768 < xwing < mlkem1024)",
    )  # fmt: skip
    rotate.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    rotate.add_argument(
        "--state-machine-arn",
        metavar="ARN",
        help="the rotate-keys state machine (default: PQFILE_ROTATION_STATE_MACHINE)",
    )
    rotate.add_argument(
        "--timeout", type=float, default=3600.0, metavar="SECONDS",
        help="stop following the execution after this long (it keeps running)",
    )  # fmt: skip
    rotate.add_argument("--poll-seconds", type=float, default=2.0, help=argparse.SUPPRESS)
    rotate.add_argument("--json", action="store_true", help="one JSON document on stdout")
    rotate.set_defaults(func=_rotate)

    revoke = sub.add_parser(
        "revoke",
        help="revoke a key (operator): pending by default, --now at once, --shred destroys",
        description="By default a pending revocation: the key stops encrypting at once, "
        "rotate-keys rewraps its documents to other keys, then revokes it. --now revokes at "
        "once (its documents are refused). --shred --yes-destroy-documents records a pending "
        "shred: rotate-keys deletes every package version still wrapped to the key and "
        "destroys its seed; its documents are lost.",
    )
    add_database_option(revoke)
    add_stack_options(revoke)
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.add_argument("--reason", required=True, help="why (kept in the key and audit rows)")
    how = revoke.add_mutually_exclusive_group()
    how.add_argument(
        "--now", action="store_true", help="revoke at once: its documents are refused from now"
    )
    how.add_argument(
        "--compromised", action="store_true",
        help="the key's secret may be exposed: rotate-keys RE-ENCRYPTS its documents under "
        "fresh data keys (a rewrap would keep them), deletes every older package version, "
        "then revokes it",
    )
    how.add_argument(
        "--shred", action="store_true",
        help="destroy the key and every document still encrypted to it (pending)",
    )  # fmt: skip
    revoke.add_argument(
        "--yes-destroy-documents", action="store_true",
        help="confirm --shred: the documents are lost for good",
    )  # fmt: skip
    revoke.add_argument("--json", action="store_true", help="one JSON document on stdout")
    revoke.set_defaults(func=_revoke)

    expire = sub.add_parser("expire", help="expire a key now (operator): decrypt only")
    add_database_option(expire)
    expire.add_argument("key_id", metavar="KEY_ID")
    expire.set_defaults(func=_expire)

    request = sub.add_parser(
        "request",
        help="record a pending request (operator): the key stops encrypting, rotate-keys "
        "moves its documents and completes a revocation",
    )
    add_database_option(request)
    add_stack_options(request)
    request.add_argument("key_id", metavar="KEY_ID")
    request.add_argument(
        "--kind", choices=[k.value for k in RequestKind], default=RequestKind.REVOKE.value
    )
    request.add_argument("--reason", required=True, help="why (kept in the request and audit)")
    request.set_defaults(func=_request)

    queue = sub.add_parser(
        "queue-rotation",
        help="lower-level step of `keys rotate`: queue keys past their age or usage caps",
    )
    add_database_option(queue)
    policy_options(queue)
    queue.set_defaults(func=_queue)


def _status(args: argparse.Namespace) -> int:
    if via_function(args):
        # The function judges the floor by the deployment's policy (or the options given).
        summary: dict[str, Any] = dict(run_admin(args, "keys.status", policy_args(args)))
    else:
        db = open_database(args)
        try:
            summary = _store(db, args).status_summary(kept_suites=deployment_suites(args))
        finally:
            db.close()
    if args.json:
        print_json(summary)
        return 0
    print(
        f"{'suite':<10} {'active':>7} {'queued':>7} {'expired':>8} {'revoked':>8} "
        f"{'oldest active':>14} {'usage min/max':>14} {'max/min':>8}"
    )
    for suite, entry in summary["suites"].items():
        counts = entry["counts"]
        age = entry["oldest_active_age_seconds"]
        age_text = "-" if age is None else _age(age)
        usage = entry["usage"]
        ratio = "-" if usage["max_over_min"] is None else f"{usage['max_over_min']:.2f}"
        flag = "  (below floor)" if entry["below_floor"] else ""
        if not entry.get("kept", True):
            flag = "  (not kept by this deployment)"
        print(
            f"{suite:<10} {counts['active']:>7} {counts['rotation_queued']:>7} "
            f"{counts['expired']:>8} {counts['revoked']:>8} {age_text:>14} "
            f"{usage['min']:>6}/{usage['max']:<7} {ratio:>8}{flag}"
        )
    runs = summary.get("rotations")
    if runs is not None:
        print("rotation runs: " + ", ".join(f"{name} {count}" for name, count in runs.items()))
    return 0


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _refill(args: argparse.Namespace) -> int:
    suites = SUITES if args.suite == "all" else [args.suite]
    db = open_database(args)
    try:
        store = _store(db, args)
        for key_id, reason in store.queue_due_for_rotation():
            print(f"queued {key_id} for rotation ({reason})")
        for suite in suites:
            created = store.refill(suite)
            print(f"{suite}: created {len(created)} key(s)")
    finally:
        db.close()
    return 0


def _queue(args: argparse.Namespace) -> int:
    db = open_database(args)
    try:
        queued = _store(db, args).queue_due_for_rotation()
    finally:
        db.close()
    for key_id, reason in queued:
        print(f"queued {key_id} for rotation ({reason})")
    print(f"{len(queued)} key(s) queued")
    return 0




def _expire(args: argparse.Namespace) -> int:
    db = open_database(args)
    try:
        record = _store(db, args).expire(args.key_id)
    finally:
        db.close()
    print(f"expired {record.key_id} ({record.suite}) at {record.expired_at}")
    return 0


def _request(args: argparse.Namespace) -> int:
    if via_function(args):
        fields = {"key_id": args.key_id, "kind": args.kind, "reason": args.reason}
        result = run_admin(args, "keys.request", fields)
        request_id = int(result["request"])
    else:
        db = open_database(args)
        try:
            request_id = _store(db, args).request(args.key_id, args.kind, args.reason)
        finally:
            db.close()
    print(f"request {request_id}: {args.kind} {args.key_id} (pending; the key no longer encrypts)")
    return 0
