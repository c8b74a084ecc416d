"""`pqfile keys rotate`: queue what is due (or one ``--key``, optionally onto
``--to-suite``), start the rotate-keys workflow and follow it to the end (docs/KEYS.md,
"Rotation"). Directly on the database (the operator's connection and AWS credentials), or
through the admin function with ``--stack``: it queues and starts the workflow itself
(``keys.rotate.start``), and the command follows the execution through it
(``keys.rotate.follow``). Both paths print the same plan and summary.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pqfile.cli._admin_client import run_admin, via_function
from pqfile.cli.db import actor, open_database, print_json
from pqfile.cli.keys_common import policy_args
from pqfile.cli.keys_common import store as _store
from pqfile.config import AwsSettings, CliSettings, ConfigurationError
from pqfile.errors import PQFileError
from pqfile.keys.model import KeyStatus, RequestKind
from pqfile.keys.rotation_runs import check_suite_move

if TYPE_CHECKING:
    from pqfile.adapters.postgres.connection import Database
    from pqfile.keys.pool import KeyPool

#: Audited when `keys rotate` starts (or fails to start) the rotate-keys workflow.
OP_WORKFLOW_STARTED = "key.rotation_workflow_started"
#: One look at the execution: (status, error, done, output) and the runs' rows.
Look = Callable[[set[int]], tuple[dict[str, Any], list[dict[str, Any]]]]


def rotate(args: argparse.Namespace) -> int:
    if args.allow_downgrade and not args.to_suite:
        raise ConfigurationError("--allow-downgrade needs --to-suite")
    if via_function(args):
        return _rotate_via_function(args)
    from pqfile.adapters.postgres.keys import rotation_overview

    db = open_database(args)
    try:
        store = _store(db, args)
        plan = _rotation_plan(store, args)
        if args.to_suite:  # refuse a downgrade before anything changes
            for item in plan:
                check_suite_move(item["suite"], args.to_suite,
                                 allow_downgrade=args.allow_downgrade)  # fmt: skip
        pending = store.storage.keys.pending_requests()

        def of(kind: RequestKind) -> list[dict[str, Any]]:
            return [{"request": r.request_id, "key_id": r.key_id, "reason": r.reason}
                    for r in pending if r.kind == kind.value]  # fmt: skip

        report: dict[str, Any] = {
            "dry_run": args.dry_run, "to_suite": args.to_suite,
            "allow_downgrade": args.allow_downgrade, "queue": plan,
            "open_runs": rotation_overview(db), "pending_shreds": of(RequestKind.SHRED),
            "pending_compromises": of(RequestKind.COMPROMISE),
        }  # fmt: skip
        if args.dry_run:
            print_plan(report, args)
            return 0
        workflow = _rotation_workflow(args)  # before any change: lose nothing
        run_ids = _queue(db, report, args)
        report["queued"] = [item["key_id"] for item in plan]
        if not args.json:
            print_plan(report, args)
        arn = _start_audited(workflow, db, report)
        if not args.json:
            print(f"started {arn}")

        def look(ids: set[int]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            ex = workflow.describe(arn)
            ids.update(int(r["rotation_id"]) for r in rotation_overview(db))
            state = {"status": ex.status, "error": ex.error, "done": ex.done, "output": ex.output}
            return state, rotation_overview(db, sorted(ids))

        return _follow_and_report(report, arn, run_ids, look, args)
    finally:
        db.close()


def _rotate_via_function(args: argparse.Namespace) -> int:
    fields = {"key": args.key, "to_suite": args.to_suite,
              "allow_downgrade": args.allow_downgrade or None, **policy_args(args)}  # fmt: skip
    if args.dry_run:
        dry = dict(run_admin(args, "keys.rotate", {"dry_run": True, **fields}))
        dry["allow_downgrade"] = args.allow_downgrade
        print_plan(dry, args)
        return 0
    report = dict(run_admin(args, "keys.rotate.start", fields))
    report["allow_downgrade"] = args.allow_downgrade
    run_ids = {int(i) for i in report.pop("run_ids", [])}
    arn = str(report.pop("execution")["arn"])
    if not args.json:
        print_plan(report, args)
        print(f"started {arn}")

    def look(ids: set[int]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        seen = run_admin(args, "keys.rotate.follow",
                         {"execution_arn": arn, "run_ids": sorted(ids)[-100:]})  # fmt: skip
        ids.update(int(r["rotation_id"]) for r in seen["open_runs"])
        return dict(seen["execution"]), list(seen["runs"])

    return _follow_and_report(report, arn, run_ids, look, args)


def _queue(db: Database, report: dict[str, Any], args: argparse.Namespace) -> set[int]:
    """Queue the plan's keys (and each run's target suite); every run to follow."""
    from pqfile.adapters.postgres.keys import PostgresKeyRepository, rotation_overview

    keys = PostgresKeyRepository(db)
    run_ids = {int(r["rotation_id"]) for r in report["open_runs"]}
    for item in report["queue"]:
        run_id = keys.queue_rotation_now(item["key_id"], item["reason"], to_suite=args.to_suite,
                                         actor=actor(), request_id=None)  # fmt: skip
        run_ids.add(run_id)
        if args.to_suite and rotation_overview(db, [run_id])[0]["status"] == "queued":
            # The run's target and downgrade allowance, checked again by the database.
            keys.set_rotation_target(run_id, args.to_suite, allow_downgrade=args.allow_downgrade,
                                     actor=actor(), request_id=None)  # fmt: skip
    return run_ids


def _follow_and_report(
    report: dict[str, Any], arn: str, run_ids: set[int], look: Look, args: argparse.Namespace
) -> int:
    """Follow the execution to its end (or --timeout), then print the summary."""
    execution, runs = _follow(look, run_ids, args)
    report["execution"] = {"arn": arn, "status": execution["status"],
                           "error": execution["error"]}  # fmt: skip
    report["runs"] = runs
    shred_step = (execution.get("output") or {}).get("shred") or {}
    report["shredded"] = shred_step.get("shredded", [])
    report["compromised"] = shred_step.get("compromised", [])
    if args.json:
        print_json(report)
    else:
        print_summary(report)
    if report["execution"]["status"] != "SUCCEEDED":
        print(
            f"pqfile: error: rotate-keys {report['execution']['status'] or 'did not finish'}"
            f" ({report['execution']['error'] or 'still running; see the audit trail'})",
            file=sys.stderr,
        )
        return 1
    return 0


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
    look: Look, run_ids: set[int], args: argparse.Namespace
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll until the execution ends (or --timeout), with a progress bar on terminals:
    documents rewrapped over documents to move, from the runs' rows. ``run_ids`` grows by
    every run seen open meanwhile (MaintainPool may queue more), for the summary."""
    deadline = time.monotonic() + args.timeout
    bar = _progress() if not args.json and sys.stderr.isatty() else None
    try:
        while True:
            execution, runs = look(run_ids)
            if bar is not None:
                total = sum(int(r["documents_total"]) for r in runs)
                done = sum(int(r["documents_rewrapped"]) for r in runs)
                bar[0].update(bar[1], total=max(total, 1), completed=done)
            if execution["done"] or time.monotonic() >= deadline:
                return execution, runs
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


def print_plan(report: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        if report["dry_run"]:
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


def print_summary(report: dict[str, Any]) -> None:
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
