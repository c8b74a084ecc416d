"""Rewrap benchmark: documents per second and bytes the rewrap function moves per document
(rewrap, and re-encryption after a compromise).

Starts a private emulator and PostgreSQL, deploys the pipeline as the integration tests do
(tests/integration/pipeline_stack.py), ingests documents of each size onto one key, queues
that key, and then runs the rotate-keys steps in this process exactly as the Lambda
functions do (pqfile.usecases.rotation: plan_rewrap writes the manifest, rewrap_document per
item, as pqfile_rewrap), on S3 of the emulator and the real PostgreSQL. The S3 client the
rewrap uses is wrapped to count the bytes that pass through the function: object bodies it
reads (GetObject, ranged) and writes (PutObject, UploadPart). UploadPartCopy moves the rest
of the body inside S3 and is not counted: that is the point.

- documents/s: rewraps of one size, one after another in one process (one function
  instance; the workflow runs PQFILE_REWRAP_CONCURRENCY of them at once), wall time per
  ``rewrap_document`` call: unwrap the old key, the header, the S3 copy, the read-back
  check, the row update and its audit row;
- bytes moved per document: read + written through the function, max over the documents.
- re-encrypt rows: the same documents re-encrypted after a compromise request (every byte
  is read and written once, streamed), with the peak of Python memory allocated during one
  call (tracemalloc) and the largest multipart part buffer held.

Target (issue 12): at most 12 MiB moved per document whatever its size (rewrap).

Writes the "Rewrap" section of BENCHMARKS.md unless --quick or --no-write.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from _benchutil import bench_role, bench_services, write_section  # noqa: E402

HEADING = "## Rewrap"
MIB = 1024 * 1024
TARGET_BYTES = 12 * MIB


class CountingBody:
    """A GetObject body that counts what is read from it."""

    def __init__(self, body: Any, counter: CountingS3) -> None:
        self._body, self._counter = body, counter

    def read(self, *args: Any) -> bytes:
        data: bytes = self._body.read(*args)
        self._counter.read += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)


class CountingS3:
    """An S3 client that counts the object bytes passing through this process."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.read = 0
        self.written = 0

    def reset(self) -> None:
        self.read = self.written = 0

    def get_object(self, **kwargs: Any) -> Any:
        resp = self._client.get_object(**kwargs)
        resp["Body"] = CountingBody(resp["Body"], self)
        return resp

    def put_object(self, **kwargs: Any) -> Any:
        self.written += len(kwargs.get("Body") or b"")
        return self._client.put_object(**kwargs)

    def upload_part(self, **kwargs: Any) -> Any:
        self.written += len(kwargs.get("Body") or b"")
        return self._client.upload_part(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _human(size: int) -> str:
    if size >= MIB:
        return f"{size // MIB} MiB"
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def _ingest(stack: Any, key: str, data: bytes | Path) -> dict[str, Any]:
    up = stack.upload(key, data)
    execution = stack.wait_for_upload(key, up["version_id"], timeout=900)
    if execution["status"] != "SUCCEEDED":
        raise RuntimeError(stack.explain(execution["executionArn"]))
    (doc,) = stack.documents_for(key)
    return dict(doc)


def _big_file(work: Path, size: int) -> Path:
    path = work / f"big-{size}.bin"
    with path.open("wb") as f:
        for _ in range(size // MIB):
            f.write(os.urandom(MIB))
        f.write(os.urandom(size % MIB))
    return path


def _measure(
    stack: Any, pg_url: str, size: int, count: int, work: Path, mode: str = "rewrap"
) -> dict[str, Any]:
    from tests.fixtures.postgres import MAINTAIN, REWRAP, role_url

    from pqfile.adapters.kms import KmsSeedProtector
    from pqfile.adapters.kms_mac import KmsKeyAttestor
    from pqfile.adapters.postgres import (
        Database,
        PostgresAuditLog,
        PostgresDocumentRepository,
        PostgresKeyStore,
    )
    from pqfile.adapters.s3_manifest import S3ManifestStore
    from pqfile.adapters.s3_rewrap import S3PackageStore
    from pqfile.keys.policy import PoolPolicy
    from pqfile.usecases import rotation as rot

    # one fresh active key, so exactly this size's documents land on it (earlier sizes'
    # rotations left a pool of new keys behind)
    for (key_id,) in stack.sql("SELECT id FROM encryption_keys WHERE status = 'active'"):
        stack.sql("SELECT key_expire(:k, 'bench', NULL)", k=key_id)
    stack.keystore().create_keys("xwing", 1, actor="bench")
    print(f"{mode}: ingesting {count} x {_human(size)} ...", flush=True)
    source = _big_file(work, size) if size >= 16 * MIB else None
    docs = [
        _ingest(stack, f"uploads/a/bench-{mode}-{size}-{i}.bin", source or os.urandom(size))
        for i in range(count)
    ]
    old = docs[0]["key_id"]
    if any(d["key_id"] != old for d in docs):
        raise RuntimeError("the documents of one size must share a key")
    stack.sql(
        "UPDATE encryption_keys SET rotate_after = now() - interval '1 second' WHERE id = :k",
        k=old,
    )
    kms = KmsSeedProtector(stack.client("kms"), stack.kms_key_id)
    attestor = KmsKeyAttestor(stack.client("kms"), stack.attestation_key_id)
    policy = PoolPolicy(target_active=2, floor_active=2)
    counting = CountingS3(stack.client("s3"))
    rewrap_db = Database.from_url(role_url(pg_url, REWRAP))
    maintain_db = Database.from_url(role_url(pg_url, MAINTAIN))
    try:
        maintainer = rot.Rotation(
            keys=PostgresKeyStore(maintain_db, kms, attestor=attestor, policy=policy),
            documents=PostgresDocumentRepository(maintain_db),
            packages=S3PackageStore(stack.client("s3")),
            audit=PostgresAuditLog(maintain_db),
            encrypted_bucket=stack.encrypted,
        )
        r = rot.Rotation(
            keys=PostgresKeyStore(rewrap_db, kms, attestor=attestor, policy=policy),
            documents=PostgresDocumentRepository(rewrap_db),
            packages=(packages := S3PackageStore(counting)),
            audit=PostgresAuditLog(rewrap_db),
            encrypted_bucket=stack.encrypted,
            manifests=S3ManifestStore(stack.client("s3")),
        )
        (run,) = [x for x in rot.maintain_pool(maintainer).rotations if x.old_key_id == old]
        if mode == "reencrypt":  # an operator's compromise request: re-encrypt, not rewrap
            stack.sql("SELECT key_request(:k, 'compromise', 'bench', 'bench', NULL)", k=old)
        plan = rot.plan_rewrap(r, run.rotation_id)
        assert plan.manifest is not None and not plan.more
        body = stack.client("s3").get_object(Bucket=plan.manifest.bucket, Key=plan.manifest.key)
        items = json.loads(body["Body"].read())
        # every call is timed; the first also unwraps the old key's seed (cached after, as
        # in a warm function) and is reported apart
        seconds: list[float] = []
        moved: list[int] = []
        peaks: list[int] = []
        parts: list[int] = []
        expected = "reencrypted" if mode == "reencrypt" else "rewrapped"
        for item in items:
            counting.reset()
            if mode == "reencrypt":
                tracemalloc.start()
            started = time.perf_counter()
            result = rot.rewrap_document(r, run.rotation_id, item["document_id"],
                                         target_key_id=item["target_key_id"])  # fmt: skip
            seconds.append(time.perf_counter() - started)
            if mode == "reencrypt":
                peaks.append(tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
                parts.append(packages.last_peak_buffer)
            moved.append(counting.read + counting.written)
            if result.outcome != expected:
                raise RuntimeError(f"{item['document_id']}: {result.outcome}")
        rot.finish_rotation(r, run.rotation_id)
    finally:
        rewrap_db.close()
        maintain_db.close()
    warm = seconds[1:] or seconds
    return {
        "mode": mode,
        "peak": max(peaks) if peaks else None,
        "part": max(parts) if parts else None,
        "size": size,
        "count": len(items),
        "docs_per_s": len(warm) / sum(warm),
        "p50_ms": statistics.median(warm) * 1000,
        "first_ms": seconds[0] * 1000,
        "moved_max": max(moved),
        "moved_median": statistics.median(moved),
        "keys": len({i["target_key_id"] for i in items}),
    }


def _body(results: list[dict[str, Any]], when: str, command: str) -> str:
    load = os.getloadavg()[0]
    lines = [
        f"Command: `{command}` ({when}).",
        "",
        f"Machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPUs; Python "
        f"{platform.python_version()}; load average (1 min) {load:.2f} after the run.",
        "",
        "Local stack: the patched moto emulator's S3 and KMS, a throwaway PostgreSQL. The "
        "rotate-keys steps run in this process as the functions run them (plan_rewrap writes "
        "the batch manifest; rewrap_document per manifest item, as `pqfile_rewrap`), one "
        "document after another: one function instance (the workflow runs "
        "`PQFILE_REWRAP_CONCURRENCY` at once). Documents/s is over the warm calls (the first "
        "call also unwraps the old key's seed through KMS). Bytes moved counts the object "
        "bytes the function's S3 client reads (GetObject, ranged) and writes (PutObject, "
        "UploadPart); the rest of the body is copied inside S3 by UploadPartCopy. The time "
        "of a large document here is mostly the emulator copying the parts in its own "
        "process (moto holds objects in memory); on AWS the copy is S3's, not the "
        "function's. Re-encrypt rows: the same steps after an operator's compromise "
        "request, so every document is re-encrypted under a fresh data key (docs/KEYS.md, "
        "\"Compromise\"): the whole package is read (one GetObject, streamed) and the new one "
        "written in 8 MiB multipart parts; peak memory is what Python allocated during one "
        "call (tracemalloc, which also slows the call a little), part buffer the largest "
        "part held.",
        "",
        "| mode | document | documents | documents/s | p50 (ms) | first call (ms) | bytes moved "
        "per document (max) | median | target keys | peak memory (MiB) | part buffer (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        peak = "-" if r["peak"] is None else f"{r['peak'] / MIB:.1f}"
        part = "-" if r["part"] is None else f"{r['part'] / MIB:.1f}"
        lines.append(
            f"| {r['mode']} | {_human(r['size'])} | {r['count']} | {r['docs_per_s']:.1f} "
            f"| {r['p50_ms']:.0f} | {r['first_ms']:.0f} "
            f"| {r['moved_max'] / MIB:.2f} MiB ({r['moved_max']:,} B) "
            f"| {r['moved_median'] / MIB:.2f} MiB | {r['keys']} | {peak} | {part} |"
        )
    worst = max(r["moved_max"] for r in results if r["mode"] == "rewrap")
    met = "met" if worst <= TARGET_BYTES else "NOT met"
    lines += [
        "",
        f"Target (rewrap): at most 12 MiB moved through the function per document whatever "
        f"its size: "
        f"{met} (at most {worst / MIB:.2f} MiB: the new header plus the first 5 MiB part of "
        "the body, read once and written once; a body under 5 MiB is read and written whole).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer documents; no rewrite")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)

    from tests.integration.pipeline_stack import deploy_pipeline

    plan = [(1024, 10), (200 * MIB, 1)] if args.quick else [(1024, 50), (200 * MIB, 3)]
    results: list[dict[str, Any]] = []
    with bench_services("rewrap") as (work, pg, emulator):
        stack = deploy_pipeline(emulator, bench_role(emulator), pg.url, keys=1)
        for mode in ("rewrap", "reencrypt"):
            for size, count in plan:
                r = _measure(stack, pg.url, size, count, work, mode)
                print(
                    f"  {mode} {_human(size)}: {r['docs_per_s']:.1f} documents/s, p50 "
                    f"{r['p50_ms']:.0f} ms, moved at most {r['moved_max'] / MIB:.2f} MiB per "
                    "document",
                    flush=True,
                )
                results.append(r)

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = "python scripts/bench_rewrap.py" + (" --quick" if args.quick else "")
    body = _body(results, when, command)
    print(body)
    if not args.quick and not args.no_write:
        write_section(args.output, HEADING, body)
        print(f"wrote the {HEADING!r} section of {args.output}")
    rewraps = [r["moved_max"] for r in results if r["mode"] == "rewrap"]
    return 0 if max(rewraps) <= TARGET_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
