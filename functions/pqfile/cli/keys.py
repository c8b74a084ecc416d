"""`pqfile keys status|rotate|revoke|expire|request|refill|queue-rotation`: the key pool
(docs/KEYS.md, "Rotation", "Revocation", "Shredding").

``rotate`` queues what is due (or one ``--key``, optionally onto ``--to-suite``) and starts
the rotate-keys workflow, then follows it to the end; ``revoke`` records a pending
revocation (``--now``: at once; ``--compromised``: a pending compromise, its documents
re-encrypted; ``--shred --yes-destroy-documents``: a pending shred).
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
import datetime as dt
import sys
import time
from typing import TYPE_CHECKING, Any

from pqfile.cli._admin_client import add_stack_options, run_admin, via_function
from pqfile.cli.db import actor, add_database_option, command_group, open_database, print_json
from pqfile.config import AwsSettings, CliSettings, ConfigurationError, ShredSettings
from pqfile.crypto.kem import Suite
from pqfile.errors import PQFileError
from pqfile.keys.model import KeyStatus, RequestKind
from pqfile.keys.policy import PoolPolicy
from pqfile.keys.rotation_runs import check_suite_move

if TYPE_CHECKING:
    from pqfile.adapters.postgres.connection import Database
    from pqfile.keys.pool import KeyPool

#: The domain's pool defaults (keys/policy.py), the options' defaults.
DEFAULT_POLICY = PoolPolicy()
SUITES = [suite.value for suite in Suite]
#: Audited when `keys rotate` starts (or fails to start) the rotate-keys workflow.
OP_WORKFLOW_STARTED = "key.rotation_workflow_started"


def register(subparsers: Any) -> None:
    sub = command_group(subparsers, "keys", "the key pool")

    status = sub.add_parser("status", help="counts per suite and status, age, usage spread")
    add_database_option(status)
    add_stack_options(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    _policy_options(status)
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
    _policy_options(refill)
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
    _policy_options(rotate)
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
    _policy_options(queue)
    queue.set_defaults(func=_queue)


def _policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target", type=int, default=DEFAULT_POLICY.target_active, help="active keys per suite"
    )
    parser.add_argument(
        "--floor", type=int, default=DEFAULT_POLICY.floor_active, help="refill when below this"
    )
    parser.add_argument(
        "--max-age-days", type=float, default=_days(DEFAULT_POLICY.max_age), help="rotate after"
    )


def _days(age: dt.timedelta) -> float:
    return age.total_seconds() / 86400


def _store(db: Database, args: argparse.Namespace) -> KeyPool:
    from pqfile.adapters.postgres.keystore import PostgresKeyStore

    target = getattr(args, "target", DEFAULT_POLICY.target_active)
    policy = PoolPolicy(
        target_active=target,
        floor_active=min(getattr(args, "floor", DEFAULT_POLICY.floor_active), target),
        max_age=dt.timedelta(days=getattr(args, "max_age_days", _days(DEFAULT_POLICY.max_age))),
    )
    return PostgresKeyStore(
        db, _LazyProtector(), attestor=_LazyAttestor(), policy=policy, actor=actor()
    )


class _LazyAttestor:
    """Builds the KMS client only when a command really attests or verifies a key."""

    def __init__(self) -> None:
        self._inner: Any = None

    def _get(self) -> Any:
        if self._inner is None:
            from pqfile.adapters.aws import kms_client
            from pqfile.adapters.kms_mac import KmsKeyAttestor
            from pqfile.config import KmsSettings

            self._inner = KmsKeyAttestor(
                kms_client(), KmsSettings.from_env().attestation_key_id or ""
            )
        return self._inner

    def generate(self, message: bytes) -> bytes:
        result: bytes = self._get().generate(message)
        return result

    def verify(self, message: bytes, mac: bytes) -> bool:
        return bool(self._get().verify(message, mac))


class _LazyProtector:
    """Builds the KMS client only when a command really wraps or unwraps a seed."""

    def __init__(self) -> None:
        self._inner: Any = None

    def _get(self) -> Any:
        if self._inner is None:
            from pqfile.adapters.kms import KmsSeedProtector

            self._inner = KmsSeedProtector.from_env()
        return self._inner

    def wrap(self, seed: bytes, context: Any) -> tuple[bytes, str]:
        result: tuple[bytes, str] = self._get().wrap(seed, context)
        return result

    def unwrap(self, wrapped: bytes, context: Any) -> bytes:
        result: bytes = self._get().unwrap(wrapped, context)
        return result


def _policy_args(args: argparse.Namespace) -> dict[str, Any]:
    """The pool policy options as the admin function takes them (whole days)."""
    days = args.max_age_days
    if days != int(days):
        raise ConfigurationError("--max-age-days must be whole days with --stack")
    return {"target": args.target, "floor": args.floor, "max_age_days": int(days)}


def _status(args: argparse.Namespace) -> int:
    if via_function(args):
        summary: dict[str, Any] = dict(run_admin(args, "keys.status", _policy_args(args)))
    else:
        db = open_database(args)
        try:
            summary = _store(db, args).status_summary()
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


# --- keys rotate -----------------------------------------------------------------------------


def _rotation_plan(store: KeyPool, args: argparse.Namespace) -> list[dict[str, str]]:
    """The keys this command queues: (key id, suite, reason). Read-only."""
    now = store.storage.keys.now()
    if args.key:
        key = store.get_key(args.key)
        if key.status not in (KeyStatus.ACTIVE, KeyStatus.ROTATION_QUEUED):
            raise PQFileError(f"key {key.key_id} is {key.status.value}: nothing to rotate")
        reason = store.policy.rotation_reason(key, now)
        return [{"key_id": key.key_id, "suite": key.suite,
                 "reason": reason.value if reason else "operator"}]  # fmt: skip
    due = store.policy.due_for_rotation(store.list_keys(status=KeyStatus.ACTIVE), now)
    return [{"key_id": k.key_id, "suite": k.suite, "reason": r.value} for k, r in due]


def _rotation_workflow(args: argparse.Namespace) -> Any:
    """The rotate-keys state machine: --state-machine-arn or PQFILE_ROTATION_STATE_MACHINE,
    else the local stack's (its Terraform output, on its emulator, as `pqfile upload`)."""
    from pqfile.adapters.stepfunctions import StepFunctionsWorkflow
    from pqfile.cli import _stack

    arn = args.state_machine_arn or CliSettings.from_env().rotation_state_machine
    stack = _stack.discover(args, required=False)
    if stack.kind != "local":
        if not arn:
            raise ConfigurationError(
                "no rotate-keys state machine: --state-machine-arn or "
                "PQFILE_ROTATION_STATE_MACHINE (Terraform output rotation_state_machine_arn)"
            )
        return StepFunctionsWorkflow(arn)
    arn = arn or stack.output("rotation_state_machine_arn")
    if AwsSettings.from_env().endpoint_url:  # the environment names the endpoint: use it
        return StepFunctionsWorkflow(arn)
    from pqfile.adapters.upload_client import _client, session

    sfn = _client(session(None, stack.region), "stepfunctions", stack.endpoint_url)
    return StepFunctionsWorkflow(arn, sfn)


def _rotate(args: argparse.Namespace) -> int:
    from pqfile.adapters.postgres.keys import PostgresKeyRepository, rotation_overview

    if via_function(args):
        if not args.dry_run:
            raise ConfigurationError(
                "keys rotate through the admin function takes --dry-run only: the rotate-keys "
                "schedule queues and runs rotations (or use --database-url, break-glass)"
            )
        dry = dict(run_admin(args, "keys.rotate", {
            "dry_run": True, "key": args.key, "to_suite": args.to_suite,
            "allow_downgrade": args.allow_downgrade or None, **_policy_args(args)}))  # fmt: skip
        dry["allow_downgrade"] = args.allow_downgrade
        _print_plan(dry, args)
        return 0
    db = open_database(args)
    try:
        store = _store(db, args)
        if args.allow_downgrade and not args.to_suite:
            raise ConfigurationError("--allow-downgrade needs --to-suite")
        plan = _rotation_plan(store, args)
        if args.to_suite:  # refuse a downgrade before anything changes
            for item in plan:
                check_suite_move(item["suite"], args.to_suite,
                                 allow_downgrade=args.allow_downgrade)  # fmt: skip
        open_runs = rotation_overview(db)
        pending = store.storage.keys.pending_requests()
        shreds = [
            {"request": r.request_id, "key_id": r.key_id, "reason": r.reason}
            for r in pending
            if r.kind == RequestKind.SHRED.value
        ]
        compromises = [
            {"request": r.request_id, "key_id": r.key_id, "reason": r.reason}
            for r in pending
            if r.kind == RequestKind.COMPROMISE.value
        ]
        report: dict[str, Any] = {
            "dry_run": args.dry_run,
            "to_suite": args.to_suite,
            "allow_downgrade": args.allow_downgrade,
            "queue": plan,
            "open_runs": open_runs,
            "pending_shreds": shreds,
            "pending_compromises": compromises,
        }
        if args.dry_run:
            _print_plan(report, args)
            return 0
        workflow = _rotation_workflow(args)  # before any change: lose nothing
        keys = PostgresKeyRepository(db)
        run_ids = {int(r["rotation_id"]) for r in open_runs}
        for item in plan:
            run_id = keys.queue_rotation_now(
                item["key_id"],
                item["reason"],
                to_suite=args.to_suite,
                actor=actor(),
                request_id=None,
            )
            run_ids.add(run_id)
            if args.to_suite and rotation_overview(db, [run_id])[0]["status"] == "queued":
                # The run's target and downgrade allowance, checked again by the database.
                keys.set_rotation_target(
                    run_id, args.to_suite, allow_downgrade=args.allow_downgrade,
                    actor=actor(), request_id=None,
                )  # fmt: skip
        report["queued"] = [item["key_id"] for item in plan]
        if not args.json:
            _print_plan(report, args)
        arn = _start_audited(workflow, db, report)
        report["execution"] = {"arn": arn}
        if not args.json:
            print(f"started {arn}")
        execution = _follow(workflow, arn, db, run_ids, args)
        report["execution"] = {
            "arn": arn,
            "status": execution.status,
            "error": execution.error,
        }
        report["runs"] = rotation_overview(db, sorted(run_ids))
        shred_step = (execution.output or {}).get("shred") or {}
        report["shredded"] = shred_step.get("shredded", [])
        report["compromised"] = shred_step.get("compromised", [])
    finally:
        db.close()
    if args.json:
        print_json(report)
    else:
        _print_summary(report)
    if report["execution"]["status"] != "SUCCEEDED":
        print(
            f"pqfile: error: rotate-keys {report['execution']['status'] or 'did not finish'}"
            f" ({report['execution']['error'] or 'still running; see the audit trail'})",
            file=sys.stderr,
        )
        return 1
    return 0


def _start_audited(workflow: Any, db: Database, report: dict[str, Any]) -> str:
    """StartExecution, audited either way (``key.rotation_workflow_started``: the
    execution, or the error code; the operator is the connected database user)."""
    from pqfile.adapters.postgres.audit import append_audit
    from pqfile.adapters.stepfunctions import WorkflowError, execution_name

    details: dict[str, object] = {
        "queued": report.get("queued", []), "to_suite": report["to_suite"],
        "state_machine": workflow.state_machine_arn,
    }  # fmt: skip
    try:
        arn: str = workflow.start(execution_name("pqfile-rotate"), {"requested_by": actor()})
    except WorkflowError as exc:
        append_audit(db, operation=OP_WORKFLOW_STARTED, outcome="failure", actor=actor(),
                     details={**details, "error": str(exc)[:200]})  # fmt: skip
        raise
    append_audit(db, operation=OP_WORKFLOW_STARTED, outcome="success", actor=actor(),
                 request_id=arn, details=details)  # fmt: skip
    return arn


def _follow(
    workflow: Any, arn: str, db: Database, run_ids: set[int], args: argparse.Namespace
) -> Any:
    """Poll the execution until it ends (or --timeout), with a progress bar on terminals:
    documents rewrapped over documents to move, from the runs' rows. ``run_ids`` grows by
    every run seen open meanwhile (MaintainPool may queue more), for the summary."""
    from pqfile.adapters.postgres.keys import rotation_overview
    from pqfile.adapters.stepfunctions import Execution

    deadline = time.monotonic() + args.timeout
    bar = _progress() if not args.json and sys.stderr.isatty() else None
    try:
        while True:
            execution: Execution = workflow.describe(arn)
            run_ids.update(int(r["rotation_id"]) for r in rotation_overview(db))
            if bar is not None:
                runs = rotation_overview(db, sorted(run_ids))
                total = sum(int(r["documents_total"]) for r in runs)
                done = sum(int(r["documents_rewrapped"]) for r in runs)
                bar[0].update(bar[1], total=max(total, 1), completed=done)
            if execution.done or time.monotonic() >= deadline:
                return execution
            time.sleep(args.poll_seconds)
    finally:
        if bar is not None:
            bar[0].stop()


def _progress() -> tuple[Any, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    progress.start()
    return progress, progress.add_task("documents rewrapped", total=1)


def _print_plan(report: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        print_json(report)
        return
    verb = "would queue" if report["dry_run"] else "queued"
    target = f" onto {report['to_suite']}" if report["to_suite"] else ""
    for item in report["queue"]:
        print(f"{verb} {item['key_id']} ({item['suite']}, {item['reason']}){target}")
    for run in report["open_runs"]:
        print(
            f"open run {run['rotation_id']}: {run['old_key_id']} {run['status']} "
            f"({run['documents_rewrapped']}/{run['documents_total']} rewrapped)"
        )
    for shred in report["pending_shreds"]:
        print(f"pending shred {shred['request']}: {shred['key_id']} ({shred['reason']})")
    for comp in report.get("pending_compromises", []):
        print(
            f"pending compromise {comp['request']}: {comp['key_id']} ({comp['reason']}): "
            "its documents are re-encrypted"
        )
    if report["dry_run"]:
        print(
            f"{len(report['queue'])} key(s) to queue, {len(report['open_runs'])} open run(s), "
            f"{len(report['pending_shreds'])} pending shred(s); nothing changed (--dry-run)"
        )


def _print_summary(report: dict[str, Any]) -> None:
    execution = report["execution"]
    print(f"execution {execution['status']}: {execution['arn']}")
    for run in report["runs"]:
        print(
            f"run {run['rotation_id']}: {run['old_key_id']} -> {run['new_key_id'] or '-'} "
            f"{run['status']}, {run['documents_rewrapped']}/{run['documents_total']} rewrapped"
            + (f", {run['error']}" if run["error"] else "")
        )
    for done in report.get("compromised", []):
        print(
            f"compromise of {done['key_id']} completed: {done['documents']} document(s) "
            f"re-encrypted earlier, {done['versions_deleted']} older package version(s) "
            "deleted, key revoked"
        )
    for shred in report["shredded"]:
        lost = shred.get("documents_lost", [])
        print(
            f"shredded {shred['key_id']}: {len(lost)} document(s) lost, "
            f"{shred['versions_deleted']} package version(s) deleted; backups hold its "
            f"wrapped seed until {shred['complete_at']}: shredding is complete then"
        )
        for doc in lost:
            print(f"  lost {doc['document_id']} (tenant {doc['tenant']})")


# --- keys revoke -----------------------------------------------------------------------------


def _revoke(args: argparse.Namespace) -> int:
    from pqfile.adapters.postgres.documents import list_documents

    if args.yes_destroy_documents and not args.shred:
        raise ConfigurationError("--yes-destroy-documents confirms --shred only")
    if via_function(args):
        mode = "now" if args.now else "shred" if args.shred else (
            "compromised" if args.compromised else "pending")  # fmt: skip
        result: dict[str, Any] = dict(run_admin(args, "keys.revoke", {
            "key_id": args.key_id, "reason": args.reason, "mode": mode,
            "yes_destroy_documents": args.yes_destroy_documents or None}))  # fmt: skip
        if args.json:
            print_json(result)
        else:
            print(_revoke_text(mode, result))
        return 0
    db = open_database(args)
    try:
        store = _store(db, args)
        if args.now:
            record = store.revoke(args.key_id, args.reason)
            result = {
                "key_id": record.key_id, "suite": record.suite, "status": record.status.value,
                "revoked_at": record.revoked_at,
            }  # fmt: skip
            text = _revoke_text("now", result)
            from pqfile.cli._events import announce_revoked_now  # (issue 13: events)

            if announce_revoked_now(record.key_id, record.suite, record.revoked_at):
                warning = "revoked, but the PQFile Key Revoked event was not delivered"
                print(f"pqfile: warning: {warning} (events:PutEvents)", file=sys.stderr)
        elif args.shred:
            key = store.get_key(args.key_id)
            doomed = [d for d in list_documents(db, key_id=key.key_id, limit=1_000_000)
                      if d.status in ("stored", "encrypted")]  # fmt: skip
            if not args.yes_destroy_documents:
                print(
                    f"pqfile: error: --shred destroys key {key.key_id} and its "
                    f"{len(doomed)} document(s) for good: add --yes-destroy-documents",
                    file=sys.stderr,
                )
                return 2
            request = store.request(key.key_id, RequestKind.SHRED, args.reason)
            retention = ShredSettings.from_env().backup_retention_days
            now = store.storage.keys.now()
            complete = now + dt.timedelta(days=retention)
            result = {
                "request": request, "key_id": key.key_id, "kind": "shred", "status": "pending",
                "documents_to_lose": [{"document_id": d.document_id, "tenant": d.tenant}
                                      for d in doomed],
                "backup_retention_days": retention,
                "complete_at_earliest": complete.isoformat(),
            }  # fmt: skip
            text = _revoke_text("shred", result)
        elif args.compromised:
            request = store.request(args.key_id, RequestKind.COMPROMISE, args.reason)
            left = len(store.documents_on_key(args.key_id, limit=1_000_000))
            result = {
                "request": request, "key_id": args.key_id, "kind": "compromise",
                "status": "pending", "documents_to_reencrypt": left,
            }  # fmt: skip
            text = _revoke_text("compromised", result)
        else:
            request = store.request(args.key_id, RequestKind.REVOKE, args.reason)
            left = len(store.documents_on_key(args.key_id, limit=1_000_000))
            result = {
                "request": request, "key_id": args.key_id, "kind": "revoke",
                "status": "pending", "documents_to_rewrap": left,
            }  # fmt: skip
            text = _revoke_text("pending", result)
    finally:
        db.close()
    if args.json:
        print_json(result)
    else:
        print(text)
    return 0


def _revoke_text(mode: str, r: dict[str, Any]) -> str:
    """The human answer of `keys revoke`, from its JSON (the direct path's or the admin
    function's: the same words either way)."""
    if mode == "now":
        return f"revoked {r['key_id']} ({r['suite']}) at {r['revoked_at']}"
    if mode == "shred":
        retention = r["backup_retention_days"]
        complete = dt.datetime.fromisoformat(str(r["complete_at_earliest"]))
        doomed = r["documents_to_lose"]
        lines = [
            f"request {r['request']}: shred {r['key_id']} (pending; the key no longer encrypts)",
            *(f"  will be lost: {d['document_id']} (tenant {d['tenant']})" for d in doomed),
            f"{len(doomed)} document(s) will be lost when rotate-keys runs the shred "
            "(`pqfile keys rotate`)",
            f"backups keep the wrapped seed {retention} day(s) after the shred: "
            f"shredding is complete on {complete:%Y-%m-%d} at the earliest",
        ]
        return "\n".join(lines)
    if mode == "compromised":
        return (
            f"request {r['request']}: compromise of {r['key_id']} (pending; the key no longer "
            f"encrypts); rotate-keys re-encrypts its {r['documents_to_reencrypt']} document(s) "
            "under fresh data keys, deletes every older package version, then revokes it "
            "(`pqfile keys rotate`). Copies taken before this are not protected."
        )
    return (
        f"request {r['request']}: revoke {r['key_id']} (pending; the key no longer "
        f"encrypts); rotate-keys rewraps its {r['documents_to_rewrap']} document(s), then "
        "revokes it (`pqfile keys rotate`)"
    )
