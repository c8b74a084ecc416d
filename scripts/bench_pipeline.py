"""Pipeline benchmark: end-to-end latency on the local stack and the handlers' own compute.

Starts a private emulator and PostgreSQL, deploys the pipeline as the integration tests do
(tests/integration/pipeline_stack.py), then for each size uploads documents one at a time
and measures:

- end-to-end latency: from the PutObject call until the ingest execution is observed
  finished (polled every 20 ms), p50 / p95;
- handler compute: the CPU time each handler reports for its own invocation
  (``compute_ms``, ``time.process_time`` inside the handler), read from the execution
  history; waiting on S3 / PostgreSQL / KMS and the emulator's own work are excluded.

Writes the "Pipeline" section of BENCHMARKS.md (other sections untouched) unless --quick
or --no-write.
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
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from _benchutil import write_section  # noqa: E402

HEADING = "## Pipeline"
STEPS = ("FetchDocument", "SelectKey", "EncryptDocument", "StoreDocument", "WriteAudit")
TARGET_MS = 30.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _compute_by_step(stack: Any, execution_arn: str) -> dict[str, float]:
    """compute_ms of each Task, from the Lambda results recorded in the history."""
    out: dict[str, float] = {}
    current = None
    for ev in stack.history(execution_arn):
        entered = ev.get("stateEnteredEventDetails")
        if entered:
            current = entered["name"]
        details = ev.get("taskSucceededEventDetails") or ev.get(
            "lambdaFunctionSucceededEventDetails"
        )
        if details and current in STEPS:
            try:
                result = json.loads(details.get("output") or "{}")
            except ValueError:
                continue
            payload = result.get("Payload", result)
            if isinstance(payload, dict) and "compute_ms" in payload:
                out[current] = float(payload["compute_ms"])
    return out


def _measure(stack: Any, size: int, runs: int, warmup: int) -> dict[str, Any]:
    s3 = stack.client("s3")
    sfn = stack.client("stepfunctions")
    latencies: list[float] = []
    computes: list[dict[str, float]] = []
    data = os.urandom(size)
    for i in range(warmup + runs):
        key = f"uploads/bench/{size}-{i}-{uuid.uuid4().hex[:6]}.bin"
        started = time.perf_counter()
        put = s3.put_object(Bucket=stack.uploads, Key=key, Body=data)
        arn = None
        while arn is None:
            found = stack.executions_for(key, put.get("VersionId"))
            arn = found[0]["executionArn"] if found else None
            if arn is None:
                time.sleep(0.02)
        while True:
            desc = sfn.describe_execution(executionArn=arn)
            if desc["status"] != "RUNNING":
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        if desc["status"] != "SUCCEEDED":
            raise RuntimeError(f"{key}: {desc['status']}: {stack.explain(arn)}")
        if i >= warmup:
            latencies.append(elapsed)
            computes.append(_compute_by_step(stack, arn))
        # keep list_executions short: the bench polls it
    totals = [sum(c.values()) for c in computes]
    per_step = {
        step: statistics.median([c.get(step, 0.0) for c in computes]) for step in STEPS
    }
    return {
        "size": size,
        "runs": runs,
        "p50_s": statistics.median(latencies),
        "p95_s": _pct(latencies, 0.95),
        "compute_p50_ms": statistics.median(totals),
        "compute_p95_ms": _pct(totals, 0.95),
        "per_step_ms": per_step,
    }


def _human(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size // (1024 * 1024)} MiB"
    return f"{size // 1024} KiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few runs, BENCHMARKS.md untouched")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)

    from devstack.emulator import REPO_ROOT, start_emulator
    from devstack.postgres import start_postgres
    from tests.integration.pipeline_stack import deploy_pipeline

    from pqfile.adapters.postgres import Database, migrate

    plan = [(1024, 5, 1), (1024 * 1024, 3, 1), (20 * 1024 * 1024, 2, 1)] if args.quick else [
        (1024, 30, 3), (1024 * 1024, 20, 2), (20 * 1024 * 1024, 10, 1)]  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="pqfile-bench-"))
    pg = start_postgres(Path("/tmp") / f"pqb-{os.getpid()}")
    emulator = start_emulator(
        code_paths=[REPO_ROOT / "functions"], log_path=work / "emulator.log"
    )
    try:
        db = Database.from_url(pg.url)
        migrate(db)
        db.close()
        iam = emulator.client("iam")
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
            "Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
            "Action": "sts:AssumeRole"}]}  # fmt: skip
        role = iam.create_role(RoleName="bench", AssumeRolePolicyDocument=json.dumps(trust))
        stack = deploy_pipeline(emulator, role["Role"]["Arn"], pg.url, keys=10)
        results = []
        for size, runs, warmup in plan:
            print(f"pipeline: {_human(size)} x {runs} ...", flush=True)
            r = _measure(stack, size, runs, warmup)
            print(
                f"  latency p50 {r['p50_s'] * 1000:.0f} ms, p95 {r['p95_s'] * 1000:.0f} ms; "
                f"handler compute p50 {r['compute_p50_ms']:.1f} ms "
                f"({', '.join(f'{k} {v:.1f}' for k, v in r['per_step_ms'].items())})",
                flush=True,
            )
            results.append(r)
    finally:
        emulator.stop()
        pg.stop()

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    lines = [
        f"Command: `python scripts/bench_pipeline.py` ({when}).",
        "",
        f"Machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}; load average (1 min) {load:.2f} after the run.",
        "",
        "Local stack: the patched moto emulator (Step Functions executing "
        "statemachines/ingest.asl.json, our handlers in warm worker processes), a throwaway "
        "PostgreSQL, S3 -> EventBridge -> Step Functions. One document at a time, after "
        "warm-up uploads (so warm Lambda workers). Latency is from the PutObject call to the "
        "execution observed finished (20 ms polling), so it includes the emulator's own "
        "work (event delivery, the ASL interpreter, HTTP between processes). Handler "
        "compute is the CPU time the five handlers report for their own invocations "
        "(`compute_ms`, `time.process_time()`), summed per document: waiting on S3, "
        "PostgreSQL and KMS is excluded, and so is the emulator.",
        "",
        "| document | runs | latency p50 (ms) | latency p95 (ms) | handler compute p50 (ms) "
        "| p95 (ms) | fetch / select / encrypt / store / audit p50 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        steps = " / ".join(f"{r['per_step_ms'][s]:.1f}" for s in STEPS)
        lines.append(
            f"| {_human(r['size'])} | {r['runs']} | {r['p50_s'] * 1000:.0f} | "
            f"{r['p95_s'] * 1000:.0f} | {r['compute_p50_ms']:.1f} | {r['compute_p95_ms']:.1f} "
            f"| {steps} |"
        )
    one_mib = next((r for r in results if r["size"] == 1024 * 1024), None)
    if one_mib is not None:
        verdict = "met" if one_mib["compute_p50_ms"] <= TARGET_MS else "NOT met"
        lines += [
            "",
            f"Target: handler compute at most {TARGET_MS:.0f} ms for a 1 MiB document: "
            f"{verdict} (p50 {one_mib['compute_p50_ms']:.1f} ms).",
        ]
    body = "\n".join(lines)
    print(body)
    if not args.quick and not args.no_write:
        write_section(args.output, HEADING, body)
        print(f"wrote the {HEADING!r} section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
