"""Parallel ingest and ranged retrieval benchmark (issue 15 items 4-5).

Starts a private emulator and PostgreSQL and deploys the pipeline as the integration tests
do (tests/integration/pipeline_stack.py). For each size, the same document is ingested
through the real workflow twice: with the encrypt function's ``PQFILE_INGEST_WORKERS=1``
(the sequential stream) and with ``PQFILE_INGEST_WORKERS=N`` (the parallel path,
usecases/ingest_parallel.py). Measured:

- the EncryptDocument step's wall time, from the execution history (TaskStateEntered to
  TaskStateExited of that state), and the whole execution's, each after a small document
  warmed the functions (no cold start in the figures);
- the ratio sequential / parallel of the step (target: at least 1.6x on 2 cores);
- then a ranged read of 1 MiB straddling a segment edge (the worst case: two segments)
  from the parallel document, through ``usecases.retrieve_range.deliver_range`` with a real
  S3BlobStore whose client counts the object bytes it receives (target: at most 3 MiB).

Writes the "Parallel ingest and ranged reads" section of BENCHMARKS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from _benchutil import bench_role, bench_services, write_section  # noqa: E402

HEADING = "## Parallel ingest and ranged reads"
MIB = 1024 * 1024
TARGET_RATIO = 1.6
TARGET_RANGE_BYTES = 3 * MIB


def _big_file(work: Path, size: int) -> Path:
    path = work / f"big-{size}.bin"
    with path.open("wb") as f:
        for _ in range(size // MIB):
            f.write(os.urandom(MIB))
        f.write(os.urandom(size % MIB))
    return path


def _step_seconds(stack: Any, execution_arn: str, state: str) -> float:
    """Wall time of one Task state, from the execution history's timestamps."""
    entered = exited = None
    for event in stack.history(execution_arn):
        details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails")
        if not details or details.get("name") != state:
            continue
        if event["type"].endswith("StateEntered"):
            entered = event["timestamp"]
        elif event["type"].endswith("StateExited"):
            exited = event["timestamp"]
    if entered is None or exited is None:
        raise RuntimeError(f"{state} not found in the history of {execution_arn}")
    return float((exited - entered).total_seconds())


def _ingest(stack: Any, key: str, path: Path, workers: int) -> dict[str, Any]:
    lam = stack.client("lambda")
    name = stack.functions["encrypt"]
    before = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    stack.set_env("encrypt", PQFILE_INGEST_WORKERS=str(workers))
    try:
        # a small document first: the functions' cold starts are not the big one's
        warm = stack.upload(f"{key}.warm", b"warm")
        stack.wait_for_upload(f"{key}.warm", warm["version_id"], timeout=300)
        started = time.perf_counter()
        up = stack.upload(key, path)
        uploaded = time.perf_counter() - started
        execution = stack.wait_for_upload(key, up["version_id"], timeout=1800)
        if execution["status"] != "SUCCEEDED":
            raise RuntimeError(stack.explain(execution["executionArn"]))
    finally:
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": before})
    arn = execution["executionArn"]
    (doc,) = stack.documents_for(key)
    whole = (execution["stopDate"] - execution["startDate"]).total_seconds()
    return {
        "doc": dict(doc),
        "workers": workers,
        "encrypt_s": _step_seconds(stack, arn, "EncryptDocument"),
        "execution_s": float(whole),
        "upload_s": uploaded,
    }


class _CountingS3:
    """An S3 client that counts the object bytes GetObject returns."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.read = 0
        self.gets = 0

    def get_object(self, **kwargs: Any) -> Any:
        resp = self._client.get_object(**kwargs)
        self.read += int(resp["ContentLength"])
        self.gets += 1
        return resp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _ranged(stack: Any, doc: dict[str, Any], size: int) -> dict[str, Any]:
    import base64

    from pqfile.adapters.postgres.documents import PostgresDocumentRepository
    from pqfile.adapters.s3 import S3BlobStore
    from pqfile.config import Settings
    from pqfile.usecases.common import Pipeline
    from pqfile.usecases.retrieve_range import deliver_range

    counting = _CountingS3(stack.client("s3"))
    p = Pipeline(
        settings=Settings.from_values(encrypted_bucket=stack.encrypted),
        blobs=S3BlobStore(counting),  # type: ignore[arg-type]
        documents=None, keys=None, audit=None, cipher=None,  # type: ignore[arg-type]
    )  # fmt: skip
    db = stack.db()
    try:
        record = PostgresDocumentRepository(db).get(doc["document_id"])
    finally:
        db.close()
    assert record is not None
    secret = stack.keystore().load_decryption_key(doc["key_id"])
    first = size // 2 - MIB // 2  # straddles a segment edge: two segments
    started = time.perf_counter()
    answer = deliver_range(p, record, secret, f"bytes={first}-{first + MIB - 1}")
    seconds = time.perf_counter() - started
    assert len(base64.b64decode(answer["content_base64"])) == MIB
    return {"read": counting.read, "gets": counting.gets, "ms": seconds * 1000}


def _body(rows: list[dict[str, Any]], ranged: dict[str, Any], size: int, when: str,
          command: str, workers: int) -> str:  # fmt: skip
    load = os.getloadavg()[0]
    seq = next(r for r in rows if r["workers"] == 1)
    par = next(r for r in rows if r["workers"] != 1)
    ratio = seq["encrypt_s"] / par["encrypt_s"]
    lines = [
        f"Command: `{command}` ({when}).",
        "",
        f"Machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPUs (shared "
        f"with other work); Python {platform.python_version()}; load average (1 min) "
        f"{load:.2f} after the run.",
        "",
        "Local stack: the patched moto emulator (S3, Lambda, Step Functions, KMS) and a "
        "throwaway PostgreSQL; the functions run as local processes of the emulator. The "
        f"same {size // MIB} MiB document is ingested through the real workflow twice, with "
        "the encrypt function's `PQFILE_INGEST_WORKERS=1` (the sequential stream) and "
        f"`={workers}` (parallel parts: ranged GETs and numbered UploadParts, "
        "usecases/ingest_parallel.py). EncryptDocument is that state's wall time from the "
        "execution history, after a small document warmed the functions; the execution is "
        "the whole workflow (the store step reads the "
        "header back and deletes the upload).",
        "",
        "| path | workers | EncryptDocument (s) | MiB/s | execution (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        name = "sequential" if r["workers"] == 1 else "parallel"
        lines.append(
            f"| {name} | {r['workers']} | {r['encrypt_s']:.1f} | "
            f"{size / MIB / r['encrypt_s']:.0f} | {r['execution_s']:.1f} |"
        )
    met = "met" if ratio >= TARGET_RATIO else "NOT met"
    rmet = "met" if ranged["read"] <= TARGET_RANGE_BYTES else "NOT met"
    lines += [
        "",
        f"Target: the parallel encrypt step at least {TARGET_RATIO}x faster than the "
        f"sequential one on 2 cores: {met} ({ratio:.2f}x).",
        "",
        f"Ranged read: 1 MiB straddling a segment edge of the {size // MIB} MiB document "
        f"(two 1 MiB segments), through the S3 adapter: {ranged['gets']} GETs (the header, "
        f"then the covering segments), {ranged['read']:,} bytes from S3 "
        f"({ranged['read'] / MIB:.2f} MiB), {ranged['ms']:.0f} ms. Target at most 3 MiB: "
        f"{rmet}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="document size (1024)")
    parser.add_argument("--workers", type=int, default=2, help="parallel workers (2)")
    parser.add_argument("--quick", action="store_true", help="64 MiB; no rewrite")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    size = (64 if args.quick else args.size_mib) * MIB

    from tests.integration.pipeline_stack import deploy_pipeline

    rows: list[dict[str, Any]] = []
    with bench_services("ingest") as (work, pg, emulator):
        stack = deploy_pipeline(emulator, bench_role(emulator), pg.url, keys=1)
        path = _big_file(work, size)
        for workers in (1, args.workers):
            print(f"ingesting {size // MIB} MiB with {workers} worker(s) ...", flush=True)
            row = _ingest(stack, f"uploads/a/bench-{workers}.bin", path, workers)
            print(f"  EncryptDocument {row['encrypt_s']:.1f} s", flush=True)
            rows.append(row)
        ranged = _ranged(stack, rows[-1]["doc"], size)

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = "python scripts/bench_ingest_parallel.py" + (
        " --quick" if args.quick else f" --size-mib {args.size_mib} --workers {args.workers}"
    )
    body = _body(rows, ranged, size, when, command, args.workers)
    print(body)
    if not args.quick and not args.no_write:
        write_section(args.output, HEADING, body)
        print(f"wrote the {HEADING!r} section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
