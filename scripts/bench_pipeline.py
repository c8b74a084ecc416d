"""Pipeline benchmark: end-to-end latency on the local stack and the handlers' own compute.

Starts a private emulator and PostgreSQL, deploys the pipeline as the integration tests do
(tests/integration/pipeline_stack.py), then for each size uploads documents one at a time
and measures:

- end-to-end latency: from the PutObject call until the ingest execution is observed
  finished (polled every 20 ms), p50 / p95;
- handler compute: the CPU time each handler reports for its own invocation
  (``compute_ms``, ``time.process_time`` inside the handler), read from the execution
  history; waiting on S3 / PostgreSQL / KMS and the emulator's own work are excluded.

Then (the "Retrieve" section) a warm retrieve of a 1 MiB document: the stack is deployed
with a local STS (devstack/local_sts.py, alice granted tenant ``a``) behind a counting
HTTP proxy in this process, which the retrieve function is configured to verify proofs
against; each retrieve carries a fresh proof, and the bench reads the handler's
``compute_ms`` / ``duration_ms`` from the answer and counts the requests that reached the
STS during that invoke.

Writes the "Pipeline" and "Retrieve" sections of BENCHMARKS.md (other sections untouched)
unless --quick or --no-write; ``--only retrieve`` (or ``pipeline``) runs one of them.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import http.server
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from _benchutil import compute_by_step, write_section  # noqa: E402

HEADING = "## Pipeline"
STEPS = ("FetchDocument", "SelectKey", "EncryptDocument", "StoreDocument", "WriteAudit")
TARGET_MS = 30.0
RETRIEVE_HEADING = "## Retrieve"
RETRIEVE_TARGET_MS = 30.0
RETRIEVE_TARGET_STS = 1
SECTIONS = ("pipeline", "retrieve")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _compute_by_step(stack: Any, execution_arn: str) -> dict[str, float]:
    return compute_by_step(stack, execution_arn, STEPS)


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


class CountingStsProxy:
    """A loopback HTTP proxy in front of the local STS that counts the requests it forwards.

    The retrieve function's PQFILE_STS_ENDPOINT_URL and the proofs' URL both name this
    proxy, so every request the handler makes to "STS" passes here, and only those (the
    bench signs proofs locally, without a network call). Headers (Host included, which
    the signature covers) and body are forwarded unchanged; moto checks the signature.
    """

    def __init__(self, upstream: str) -> None:
        up = urllib.parse.urlsplit(upstream)
        self.requests = 0
        self._lock = threading.Lock()
        proxy = self

        class Forward(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    proxy.requests += 1
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                try:
                    conn.request("POST", self.path, body=body, headers=dict(self.headers))
                    reply = conn.getresponse()
                    data = reply.read()
                finally:
                    conn.close()
                self.send_response(reply.status)
                for name, value in reply.getheaders():
                    if name.lower() not in ("content-length", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def count(self) -> int:
        with self._lock:
            return self.requests

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _measure_retrieve(
    stack: Any, proxy: CountingStsProxy, runs: int, warmup: int
) -> dict[str, Any]:
    """N warm retrieves of one 1 MiB document by id, each with a fresh proof (alice)."""
    size = 1024 * 1024
    data = os.urandom(size)
    key = f"uploads/a/bench-retrieve-{uuid.uuid4().hex[:8]}.bin"
    put = stack.upload(key, data)
    desc = stack.wait_for_upload(key, put["version_id"])
    if desc["status"] != "SUCCEEDED":
        raise RuntimeError(f"{key}: {desc['status']}: {stack.explain(desc['executionArn'])}")
    (document,) = stack.documents_for(key)
    expected = hashlib.sha256(data).hexdigest()
    computes: list[float] = []
    durations: list[float] = []
    sts_per_proof: list[int] = []
    for i in range(warmup + runs):
        before = proxy.count()
        answer, error = stack.retrieve({"document_id": document["document_id"]})
        sts_requests = proxy.count() - before
        if error or answer.get("sha256") != expected or answer.get("delivery") != "inline":
            raise RuntimeError(f"retrieve failed: {error} {str(answer)[:300]}")
        if i >= warmup:
            computes.append(float(answer["compute_ms"]))
            durations.append(float(answer["duration_ms"]))
            sts_per_proof.append(sts_requests)
    return {
        "size": size,
        "runs": runs,
        "compute_p50_ms": statistics.median(computes),
        "compute_p95_ms": _pct(computes, 0.95),
        "duration_p50_ms": statistics.median(durations),
        "duration_p95_ms": _pct(durations, 0.95),
        "sts_max": max(sts_per_proof),
        "sts_total": sum(sts_per_proof),
    }


def _retrieve_lines(r: dict[str, Any], when: str, command: str) -> list[str]:
    load = os.getloadavg()[0]
    compute_met = "met" if r["compute_p50_ms"] <= RETRIEVE_TARGET_MS else "NOT met"
    sts_met = "met" if r["sts_max"] <= RETRIEVE_TARGET_STS else "NOT met"
    return [
        f"Command: `{command}` ({when}).",
        "",
        f"Machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}; load average (1 min) {load:.2f} after the run.",
        "",
        "Local stack as for the pipeline, plus the local STS (devstack/local_sts.py: a moto "
        "process checking SigV4 signatures) with alice granted tenant `a`. One 1 MiB "
        "document uploaded under `uploads/a/` and ingested, then retrieved by id through "
        "the retrieve function (`lambda invoke`, inline delivery) after warm-up invokes "
        "(so a warm worker), one at a time, each with a fresh identity proof signed by "
        "alice. Handler compute is the CPU time the retrieve handler reports for its own "
        "invocation (`compute_ms`, `time.process_time()`): identity verification, the "
        "access rule, the audit rows, key unwrap and decryption; waiting on STS, "
        "PostgreSQL, KMS and S3 is excluded, and is in the handler's wall time "
        "(`duration_ms`). STS requests are counted by a loopback HTTP proxy in front of "
        "the local STS that both the retrieve function's `PQFILE_STS_ENDPOINT_URL` and the "
        "proofs' URL name: every request the handler sends to STS passes through it (the "
        "bench signs proofs locally, without a request).",
        "",
        "| document | runs | handler compute p50 (ms) | p95 (ms) | handler wall p50 (ms) "
        "| p95 (ms) | STS requests per proof (max) | STS requests in total |",
        "|---|---|---|---|---|---|---|---|",
        f"| {_human(r['size'])} | {r['runs']} | {r['compute_p50_ms']:.1f} | "
        f"{r['compute_p95_ms']:.1f} | {r['duration_p50_ms']:.1f} | {r['duration_p95_ms']:.1f} "
        f"| {r['sts_max']} | {r['sts_total']} |",
        "",
        f"Targets: handler compute at most {RETRIEVE_TARGET_MS:.0f} ms for a warm 1 MiB "
        f"retrieve, authorization included: {compute_met} (p50 {r['compute_p50_ms']:.1f} ms, "
        f"p95 {r['compute_p95_ms']:.1f} ms); at most {RETRIEVE_TARGET_STS} STS round trip "
        f"per proof: {sts_met} (at most {r['sts_max']}, {r['sts_total']} for {r['runs']} "
        "proofs).",
    ]


def _human(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size // (1024 * 1024)} MiB"
    return f"{size // 1024} KiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few runs, BENCHMARKS.md untouched")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help="comma-separated: pipeline,retrieve"
    )
    parser.add_argument("--retrieves", type=int, default=30, help="measured warm retrieves")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not only or only - set(SECTIONS):
        parser.error(f"--only takes {','.join(SECTIONS)}")

    from devstack.emulator import REPO_ROOT, start_emulator
    from devstack.local_sts import LocalSts, start_local_sts, stop_local_sts
    from devstack.postgres import start_postgres
    from tests.integration.pipeline_stack import deploy_pipeline

    from pqfile.adapters.postgres import Database, migrate

    plan = [(1024, 5, 1), (1024 * 1024, 3, 1), (20 * 1024 * 1024, 2, 1)] if args.quick else [
        (1024, 30, 3), (1024 * 1024, 20, 2), (20 * 1024 * 1024, 10, 1)]  # fmt: skip
    retrieve_runs, retrieve_warmup = (5, 2) if args.quick else (args.retrieves, 3)
    work = Path(tempfile.mkdtemp(prefix="pqfile-bench-"))
    pg = start_postgres(Path("/tmp") / f"pqb-{os.getpid()}")
    emulator = start_emulator(
        code_paths=[REPO_ROOT / "functions"], log_path=work / "emulator.log"
    )
    sts = proxy = None
    results: list[dict[str, Any]] = []
    retrieved: dict[str, Any] | None = None
    try:
        db = Database.from_url(pg.url)
        migrate(db)
        db.close()
        iam = emulator.client("iam")
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
            "Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
            "Action": "sts:AssumeRole"}]}  # fmt: skip
        role = iam.create_role(RoleName="bench", AssumeRolePolicyDocument=json.dumps(trust))
        stack_sts = None
        if "retrieve" in only:
            sts = start_local_sts(work / "local_sts.log")
            proxy = CountingStsProxy(sts.endpoint_url)
            # The same users, reached through the counting proxy.
            stack_sts = LocalSts(endpoint_url=proxy.url, process=sts.process, users=sts.users,
                                 role_arn=sts.role_arn)  # fmt: skip
        stack = deploy_pipeline(emulator, role["Role"]["Arn"], pg.url, keys=10, sts=stack_sts)
        if "pipeline" in only:
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
        if proxy is not None:
            print(f"retrieve: 1 MiB x {retrieve_runs} ...", flush=True)
            retrieved = _measure_retrieve(stack, proxy, retrieve_runs, retrieve_warmup)
    finally:
        if proxy is not None:
            proxy.close()
        if sts is not None:
            stop_local_sts(sts)
        emulator.stop()
        pg.stop()

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    write = not args.quick and not args.no_write
    if results:
        body = _pipeline_body(results, when)
        print(body)
        if write:
            write_section(args.output, HEADING, body)
            print(f"wrote the {HEADING!r} section of {args.output}")
    if retrieved is not None:
        command = "python scripts/bench_pipeline.py" + (
            f" --only {args.only}" if only != set(SECTIONS) else "")  # fmt: skip
        if args.retrieves != 30:
            command += f" --retrieves {args.retrieves}"
        body = "\n".join(_retrieve_lines(retrieved, when, command))
        print(body)
        if write:
            write_section(args.output, RETRIEVE_HEADING, body)
            print(f"wrote the {RETRIEVE_HEADING!r} section of {args.output}")
    return 0


def _pipeline_body(results: list[dict[str, Any]], when: str) -> str:
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
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
