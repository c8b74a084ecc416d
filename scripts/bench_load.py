"""Load benchmark: many uploads at once on the local stack (issue 16).

Starts a private emulator and PostgreSQL on loopback, deploys the pipeline as the
integration tests do (tests/integration/pipeline_stack.py) plus a scheduled rule in front of
a probe state machine (as Terraform's rotate-keys schedule), then puts N documents of 64 KiB
(default 200, 16 PutObject calls in flight) under one tenant folder and waits, bounded in
time, until each is stored. The driver is tests/integration/load.py, which
tests/integration/test_load.py runs with 50 uploads in CI. Reports documents/s, the
upload-to-stored latency (from the PutObject call to the row's ``stored_at``) p50/p95,
executions by status, plaintext versions left, duplicate packages and documents, audit rows
per document and outside any document, stray executions of the scheduled machine, and the
audit chain verified as pqfile_auditor. Then, for where the time goes, the handler compute
per step of 10 executions (``compute_ms`` reported by each handler).

Writes the "Load" section of BENCHMARKS.md unless --quick or --no-write.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from _benchutil import compute_by_step, write_section  # noqa: E402

HEADING = "## Load"
#: Issue 16's figure before the schedule-rule fix (stray rotate-keys executions).
BASELINE_DOCS_PER_S = 1.4
TARGET_FACTOR = 2.0
STEPS = ("FetchDocument", "SelectKey", "EncryptDocument", "StoreDocument", "WriteAudit")
MAX_COUNT = 1000
MAX_TIMEOUT = 1800.0


def _compute_by_step(stack: Any, execution_arn: str) -> dict[str, float]:
    return compute_by_step(stack, execution_arn, STEPS)


def _step_compute(stack: Any, sample: int) -> dict[str, float]:
    """Median compute_ms per step over ``sample`` executions of the run."""
    sfn = stack.client("stepfunctions")
    arns = [e["executionArn"] for e in sfn.list_executions(
        stateMachineArn=stack.state_machine_arn, maxResults=sample)["executions"]]  # fmt: skip
    per = [_compute_by_step(stack, a) for a in arns]
    return {s: statistics.median([p.get(s, 0.0) for p in per]) for s in STEPS} if per else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="uploads (default 200)")
    parser.add_argument("--in-flight", type=int, default=16, help="PutObject calls at once")
    parser.add_argument("--size", type=int, default=64 * 1024, help="bytes per document")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds in all")
    parser.add_argument("--quick", action="store_true", help="40 uploads, BENCHMARKS.md untouched")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.count = min(args.count, 40)
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be 1..{MAX_COUNT}")
    if not 1 <= args.in_flight <= 64:
        parser.error("--in-flight must be 1..64")
    if not 0 <= args.size <= 64 * 1024 * 1024:
        parser.error("--size must be 0..64 MiB")
    if not 1 <= args.timeout <= MAX_TIMEOUT:
        parser.error(f"--timeout must be 1..{MAX_TIMEOUT:.0f} s")

    from devstack.emulator import REPO_ROOT, start_emulator
    from devstack.postgres import start_postgres
    from tests.integration.load import run_load, schedule_probe, summary_line
    from tests.integration.pipeline_stack import deploy_pipeline

    from pqfile.adapters.postgres import Database, migrate

    work = Path(tempfile.mkdtemp(prefix="pqfile-bench-load-"))
    pg = start_postgres(Path("/tmp") / f"pqbl-{os.getpid()}")
    emulator = start_emulator(code_paths=[REPO_ROOT / "functions"], log_path=work / "emulator.log")
    try:
        db = Database.from_url(pg.url)
        migrate(db)
        db.close()
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
            "Service": ["lambda.amazonaws.com", "states.amazonaws.com", "events.amazonaws.com"]},
            "Action": "sts:AssumeRole"}]}  # fmt: skip
        role = emulator.client("iam").create_role(
            RoleName="bench-load", AssumeRolePolicyDocument=json.dumps(trust)
        )["Role"]["Arn"]
        stack = deploy_pipeline(emulator, role, pg.url, keys=10)
        probe = schedule_probe(stack, role)
        print(f"load: {args.count} x {args.size} B, {args.in_flight} in flight ...", flush=True)
        result = run_load(stack, count=args.count, in_flight=args.in_flight, size=args.size,
                          timeout=args.timeout)  # fmt: skip
        stray = probe.executions()
        steps = _step_compute(stack, 10)
    finally:
        emulator.stop()
        pg.stop()
    print(summary_line(result) + f"; scheduled-rule executions {stray}")
    if args.json:
        print(json.dumps({**result.as_dict(), "scheduled_rule_executions": stray,
                          "compute_ms_p50_by_step": steps}, indent=2))  # fmt: skip
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = _body(result, stray, steps, when, args)
    print(body)
    if not args.quick and not args.no_write:
        write_section(args.output, HEADING, body)
        print(f"wrote the {HEADING!r} section of {args.output}")
    ok = (result.stored == result.count and result.failed_executions == 0
          and result.plaintext_left == 0 and result.duplicate_packages == 0
          and result.chain_ok and stray == 0)  # fmt: skip
    return 0 if ok else 1


def _body(result: Any, stray: int, steps: dict[str, float], when: str, args: Any) -> str:
    load = os.getloadavg()[0]
    d = result.as_dict()
    target = BASELINE_DOCS_PER_S * TARGET_FACTOR
    verdict = "met" if result.documents_per_s >= target else "NOT met"
    command = "python scripts/bench_load.py"
    if args.count != 200:
        command += f" --count {args.count}"
    if args.in_flight != 16:
        command += f" --in-flight {args.in_flight}"
    if args.timeout != 600.0:
        command += f" --timeout {args.timeout:g}"
    rows = "; ".join(f"{k}: {v}" for k, v in d["rows_per_document"].items())
    outside = "; ".join(f"{k}: {v}" for k, v in d["rows_outside_documents"].items()) or "none"
    step_text = " / ".join(f"{steps.get(s, 0.0):.1f}" for s in STEPS)
    return "\n".join([
        f"Command: `{command}` ({when}).",
        "",
        f"Machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}; load average (1 min) {load:.2f} after the run.",
        "",
        "Local stack as for the pipeline (patched moto, real ASL, our handlers in warm "
        "workers, throwaway PostgreSQL) plus a scheduled rule (`rate(1 hour)`, no event "
        "pattern) in front of a probe state machine, as Terraform's rotate-keys schedule. "
        f"{result.count} documents of {result.size // 1024} KiB put under one tenant "
        f"folder, {result.in_flight} PutObject calls in flight; S3 -> EventBridge -> Step "
        "Functions starts one ingest execution each. Documents/s is the documents stored "
        "divided by the time from the first PutObject to the last document stored; "
        "latency from each PutObject call to its row's `stored_at`. Driver: "
        "tests/integration/load.py (CI runs it with 50 uploads in "
        "tests/integration/test_load.py).",
        "",
        "| uploads | in flight | stored | first upload to last stored (s) | documents/s "
        "| upload-to-stored p50 (s) "
        "| p95 (s) | executions | plaintext left | duplicate packages | scheduled-rule "
        "executions | chain |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {result.count} | {result.in_flight} | {result.stored} | {result.drain_s:.1f} | "
        f"{result.documents_per_s:.2f} | {result.percentile(0.5):.2f} | "
        f"{result.percentile(0.95):.2f} | "
        f"{', '.join(f'{s} {n}' for s, n in sorted(result.executions.items()))} | "
        f"{result.plaintext_left} | {result.duplicate_packages} | {stray} | "
        f"{'OK' if result.chain_ok else 'BROKEN'} ({result.chain_rows} rows) |",
        "",
        f"Audit rows per document: {rows}. Rows outside any document: {outside}.",
        "",
        f"Handler compute per step, p50 of 10 executions of the run (ms), fetch / select / "
        f"encrypt / store / audit: {step_text}.",
        "",
        f"Target: at least {TARGET_FACTOR:.0f}x issue 16's {BASELINE_DOCS_PER_S} documents/s "
        f"(measured with the stray rotate-keys executions), i.e. {target:.1f} documents/s: "
        f"{verdict} ({result.documents_per_s:.2f}).",
    ])


if __name__ == "__main__":
    sys.exit(main())
