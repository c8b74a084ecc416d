"""Encrypt-step throughput, and the maximum document size one encrypt function finishes in
its timeout (issue 13 item 5; docs/OPERATIONS.md "Upload size limits").

Runs the ingest encrypt use case (``pqfile.usecases.ingest.encrypt_document``) in this
process, as the encrypt function does: the real S3 adapter (``S3BlobStore``: buffered
GetObject reader, ``MultipartWriter`` cutting the parts the part planner chose) and the real
cipher, over a stub S3 client that serves the upload from memory and drops the parts it is
sent (counting them). So the figure is the function's own work: reading, AES-256-GCM per
segment, part buffering; not the network, which Lambda overlaps with nothing here (see
the margin below).

Throughput is plaintext MiB per CPU second of this process (``time.process_time``), so it is
the rate of one core whatever else runs on the machine; the wall-clock rate is shown too.

From it, the sequential path's limit. The encrypt step is one thread that reads the upload,
encrypts a segment and, each time a part is full, uploads it before reading on: CPU work,
the GetObject stream and the UploadPart calls take turns. So per MiB it spends

    1 / (rate_one_core * vcpu_share) + 1 / s3_stream + 1 / s3_stream   seconds

and the limit is ``(timeout - reserve) / that * margin``.

- ``vcpu_share``: Lambda allocates CPU in proportion to memory, a full vCPU at 1,769 MB
  (AWS Lambda Developer Guide, "Configure Lambda function memory": "At 1,769 MB, a function
  has the equivalent of one vCPU (one vCPU-second of credits per second)"), so 1,024 MB
  (terraform ``lambda_memory_mb.encrypt``) is 0.579 of a vCPU. The loop is one thread, so
  more than one vCPU adds nothing.
- ``s3_stream``: one S3 request streams at about 85 MB/s (AWS's guidance for Amazon S3 is
  one concurrent request per 85-90 MB/s of wanted throughput, "Optimizing Amazon S3
  performance", horizontal scaling). It cannot be measured here (no AWS); it dominates.
- ``reserve``: seconds kept for the key unwrap, the multipart completion and a cold start.
- ``margin``: the share counted on: Graviton (arm64) against this machine's x86-64, a
  slower network than the guidance, retried parts, a noisy neighbour.

Issue 15 adds parallel ingest; the limit here is the sequential path's.

Writes the "Ingest size limit" section of BENCHMARKS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from _benchutil import write_section  # noqa: E402

HEADING = "## Ingest size limit"
MIB = 1024 * 1024
GIB = 1024 * MIB
#: AWS Lambda: one full vCPU at 1,769 MB, CPU proportional to memory below it.
ONE_VCPU_MB = 1769


class _Upload:
    """A GetObject body of ``size`` bytes, served from one random block."""

    def __init__(self, size: int, block: bytes) -> None:
        self._left, self._block, self._pos = size, block, 0

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        out = bytearray()
        while len(out) < n:
            take = min(n - len(out), len(self._block) - self._pos)
            out += self._block[self._pos : self._pos + take]
            self._pos = (self._pos + take) % len(self._block)
        self._left -= n
        return bytes(out)

    def close(self) -> None:
        pass


class _StubS3:
    """The S3 calls encrypt_document makes; parts are counted and dropped."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.block = os.urandom(4 * MIB)
        self.parts: list[int] = []

    def get_object(self, **_: Any) -> dict[str, Any]:
        return {"Body": _Upload(self.size, self.block)}

    def create_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {"UploadId": "u"}

    def upload_part(self, *, Body: Any, **_: Any) -> dict[str, Any]:
        self.parts.append(len(Body))
        return {"ETag": f'"{len(self.parts)}"'}

    def complete_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {"ETag": '"done"', "VersionId": "v1"}

    def put_object(self, *, Body: Any, **_: Any) -> dict[str, Any]:
        self.parts.append(len(Body))
        return {"ETag": '"one"', "VersionId": "v1"}

    def abort_multipart_upload(self, **_: Any) -> None:
        pass


def run_once(size: int) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, largest part) for one encrypt_document of ``size``."""
    from pqfile.adapters.cipher import CryptoCipher
    from pqfile.adapters.s3 import S3BlobStore
    from pqfile.config import Settings
    from pqfile.crypto import kem
    from pqfile.ports import DocumentRecord, DocumentStatus
    from pqfile.usecases.common import Pipeline
    from pqfile.usecases.events import SourceRef
    from pqfile.usecases.ingest import encrypt_document

    settings = Settings.from_env()
    public = kem.generate().public_key()
    record = DocumentRecord("doc", "up", "uploads/t/x", "v", "e", DocumentStatus.PENDING,
                            key_id=public.key_id, plaintext_size=size)  # fmt: skip
    client = _StubS3(size)
    pipeline = Pipeline(
        settings=settings,
        blobs=S3BlobStore(client),  # type: ignore[arg-type]
        documents=SimpleNamespace(get=lambda _id: record),  # type: ignore[arg-type]
        keys=SimpleNamespace(encryption_key=lambda _id: public),  # type: ignore[arg-type]
        audit=SimpleNamespace(),  # type: ignore[arg-type]
        cipher=CryptoCipher(),
    )
    source = SourceRef(bucket="up", key="uploads/t/x", version_id="v", etag="e", size=size)
    cpu, wall = time.process_time(), time.perf_counter()
    info = encrypt_document(pipeline, "doc", source, public.key_id)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert info.size == sum(client.parts) and info.size > size, "the package was not written"
    return cpu, wall, max(client.parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=256, help="document size per run")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--memory-mb", type=int, default=1024, help="the encrypt function's memory")
    ap.add_argument("--timeout", type=int, default=900, help="the encrypt function's timeout, s")
    ap.add_argument("--reserve", type=int, default=60, help="seconds kept for the rest, s")
    ap.add_argument("--s3-stream-mb", type=float, default=85.0, help="one S3 stream, MB/s")
    ap.add_argument("--margin", type=float, default=0.75, help="share of the rate counted on")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()

    size = args.size_mib * MIB
    runs = [run_once(size) for _ in range(args.rounds)]
    cpu_rate = statistics.median(size / MIB / cpu for cpu, _, _ in runs)
    wall_rate = statistics.median(size / MIB / wall for _, wall, _ in runs)
    share = min(1.0, args.memory_mb / ONE_VCPU_MB)
    seconds = args.timeout - args.reserve
    s3_mib = args.s3_stream_mb * 1e6 / MIB
    rate = 1 / (1 / (cpu_rate * share) + 2 / s3_mib)  # MiB/s, CPU and both streams in turn
    limit_mib = rate * seconds * args.margin
    limit_gib_floor = int(limit_mib // 1024)
    from pqfile.config import Settings
    from pqfile.usecases.parts import plan_parts

    settings = Settings.from_env()
    plan = plan_parts(limit_gib_floor * GIB, segment_size=settings.encryption.segment_size,
                      preferred_part_size=settings.storage.part_size)  # fmt: skip
    segment_kib = settings.encryption.segment_size // 1024
    largest_part = max(p for _, _, p in runs) / MIB
    default_bytes = limit_gib_floor * GIB
    body = f"""
`python scripts/bench_ingest_limit.py` (at {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
{platform.machine()}, Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}):
`encrypt_document` over the real S3 adapter and cipher, with a stub S3 client (no network),
{args.rounds} runs of {args.size_mib} MiB, segment size {segment_kib} KiB.

| figure | value |
|---|---|
| encrypt rate, one core (plaintext MiB per CPU second, median) | {cpu_rate:.0f} MiB/s |
| encrypt rate, wall clock (median, shared machine) | {wall_rate:.0f} MiB/s |
| largest part buffered at {args.size_mib} MiB | {largest_part:.0f} MiB |
| Lambda CPU share at {args.memory_mb} MB (1 vCPU at {ONE_VCPU_MB} MB) | {share:.3f} vCPU |
| time counted on | {args.timeout} s timeout - {args.reserve} s reserve = {seconds} s |
| one S3 stream (AWS guidance, not measured) | {args.s3_stream_mb:.0f} MB/s = {s3_mib:.1f} MiB/s |
| sequential rate: 1 / (1 / (core rate x share) + 2 / stream) | {rate:.1f} MiB/s |
| margin (arm64, network below guidance, retries, neighbours) | {args.margin:.2f} |
| sequential limit = rate x time x margin | {limit_mib / 1024:.1f} GiB |
| default `max_document_size_bytes` (whole GiB) | {limit_gib_floor} GiB = {default_bytes} |
| part size planned there (one in memory) | {plan.part_size / MIB:.0f} MiB, {plan.parts} parts |

The limit is the sequential encrypt path's (one function streams the whole document);
issue 15's parallel ingest will raise it.
"""
    print(body.strip())
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", HEADING, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
