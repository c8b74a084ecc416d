"""Parallel ingest: one upload's parts encrypted by several threads in the encrypt function
(docs/DESIGN.md, "Parallel ingest").

The header is sealed first (it does not depend on the body, FORMAT.md §1-§7) and becomes
the head of part 1. Every part is a run of whole segments (crypto/segments.py): part ``j``
(from 1) holds segments ``(j-1)*k .. j*k - 1``, with ``k`` segments the smallest number whose
wire size reaches the planned part size (usecases/parts.py), so every part but the last is
at least S3's 5 MiB and there are never more parts than the plan allows. A worker reads its
part's plaintext with one ranged GET of the pinned upload version, encrypts it segment by
segment into one part buffer and uploads it as part ``j`` (UploadPart, any order); the
upload is completed once every part is in. The result is byte for byte the package the
sequential path writes for the same randomness, so every reader decrypts it.

Memory: at most ``workers`` parts are in flight, each one part buffer plus one segment and
the GET's 1 MiB read buffer: about ``workers x (part size + 2 segments)`` (8 MiB parts, 1 MiB
segments, 2 workers: about 20 MiB). Any failure (a read, an encryption, an upload) stops
the remaining parts and aborts the multipart upload: the upload's plaintext is untouched,
no package appears, and Step Functions retries or RecordFailure keeps the upload.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

from pqfile.crypto.kem import PublicKey
from pqfile.crypto.segments import SealedPackage, seal_package
from pqfile.crypto.stream import as_source
from pqfile.errors import StorageError
from pqfile.format.header import TAG_SIZE
from pqfile.ports import ObjectInfo
from pqfile.usecases.common import PACKAGE_CONTENT_TYPE, Pipeline
from pqfile.usecases.events import SourceRef
from pqfile.usecases.parts import PartPlan

__all__ = ["PartLayout", "encrypt_in_parallel", "part_layout"]


class PartLayout:
    """Which segments each part of a package holds (part 1 also carries the header)."""

    def __init__(self, sealed: SealedPackage, plan: PartPlan) -> None:
        self.sealed = sealed
        wire = sealed.segment_size + TAG_SIZE
        #: Segments per part: the fewest whose wire size reaches the planned part size.
        self.per_part = max(1, -(-plan.part_size // wire))
        self.parts = -(-sealed.segments // self.per_part)

    def segments_of(self, number: int) -> tuple[int, int]:
        """(first segment, count) of part ``number`` (from 1)."""
        first = (number - 1) * self.per_part
        return first, min(self.per_part, self.sealed.segments - first)

    def part_size(self, number: int) -> int:
        first, count = self.segments_of(number)
        head = len(self.sealed.header_bytes) if number == 1 else 0
        return head + self.sealed.run_wire_size(first, count)


def part_layout(sealed: SealedPackage, plan: PartPlan) -> PartLayout:
    return PartLayout(sealed, plan)


def encrypt_in_parallel(
    p: Pipeline,
    document_id: str,
    source: SourceRef,
    size: int,
    recipient: PublicKey,
    context: Mapping[str, str],
    plan: PartPlan,
    target_key: str,
    *,
    workers: int,
) -> ObjectInfo:
    """Encrypt the pinned upload version ``source`` (``size`` bytes) into ``target_key`` of
    the encrypted bucket with ``workers`` threads; abort the multipart upload on any error."""
    s = p.settings
    sealed = seal_package(
        recipient,
        size,
        context=context,
        document_id=document_id,
        segment_size=s.encryption.segment_size,
    )
    layout = PartLayout(sealed, plan)
    upload = p.blobs.open_parts(
        s.storage.encrypted_bucket, target_key, content_type=PACKAGE_CONTENT_TYPE
    )
    stop = threading.Event()

    def one_part(number: int) -> None:
        if stop.is_set():
            return
        first, count = layout.segments_of(number)
        offset, length = sealed.run_plaintext(first, count)
        head = sealed.header_bytes if number == 1 else b""
        out = bytearray(layout.part_size(number))
        out[: len(head)] = head
        src = p.blobs.open_read_range(source.bucket, source.key, source.version_id, offset, length)
        try:
            sealed.encrypt_run(as_source(src), memoryview(out)[len(head) :], first, count)
        except ValueError:
            raise StorageError(
                f"the upload's bytes {offset}..{offset + length} changed while encrypting"
            ) from None
        finally:
            src.close()
        if stop.is_set():
            return
        upload.upload_part(number, out)

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pqfile-part") as pool:
            futures: list[Future[None]] = [
                pool.submit(one_part, n) for n in range(1, layout.parts + 1)
            ]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in done if f.exception() is not None), None)
            if failed is not None:
                stop.set()
                for f in futures:
                    f.cancel()
                raise failed.exception()  # type: ignore[misc]
        return upload.complete()
    except BaseException:
        stop.set()
        upload.abort()
        raise
