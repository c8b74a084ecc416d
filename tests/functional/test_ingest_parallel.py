"""The parallel ingest with fakes (usecases/ingest_parallel.py): parts of whole segments
encrypted by several threads, the header at the head of part 1, the package the sequential
path writes (structure compared, decrypted by the existing reader), one failing part aborts
the upload and loses nothing, memory bounded by workers x (part + 2 segments)."""

from __future__ import annotations

import io
import os
import threading
import tracemalloc

import pytest

from pqfile.crypto import envelope
from pqfile.errors import StorageError
from pqfile.format.header import TAG_SIZE, read_header_from
from pqfile.usecases import ingest
from pqfile.usecases.events import SourceRef
from tests.functional.fakes import ENCRYPTED, UPLOADS, event_for, make_pipeline, run_workflow

MIB = 1024 * 1024
SEGMENT = 64 * 1024


def _run(data: bytes, **settings: object) -> tuple[object, dict]:
    p = make_pipeline(segment_size=SEGMENT, part_size=5 * MIB, **settings)
    info = p.blobs.put(UPLOADS, "uploads/a/big.bin", data)
    state = run_workflow(p, event_for(info))
    return p, state


def _package(p, state) -> bytes:  # type: ignore[no-untyped-def]
    key = state["encrypted"]["encrypted"]["key"]
    return p.blobs.data(ENCRYPTED, key)


def test_parallel_package_has_the_sequential_structure_and_decrypts() -> None:
    data = os.urandom(16 * MIB + 12_345)
    par, par_state = _run(data, ingest_workers=3)
    seq, seq_state = _run(data, ingest_workers=1)
    assert par_state["status"] == seq_state["status"] == "SUCCEEDED", par_state.get("error")
    a, b = _package(par, par_state), _package(seq, seq_state)
    assert len(a) == len(b)  # same header size and segment layout
    ha, hb = read_header_from(io.BytesIO(a))[0], read_header_from(io.BytesIO(b))[0]
    assert (ha.suite, ha.segment_size, ha.document_id, ha.context, ha.size) == (
        hb.suite, hb.segment_size, hb.document_id, hb.context, hb.size,
    )  # fmt: skip
    # the parallel path really ran: numbered parts and one ranged GET per part
    parts = [n for key, n, _ in par.blobs.parts_uploaded]  # type: ignore[attr-defined]
    assert sorted(parts) == list(range(1, len(parts) + 1)) and len(parts) == 4
    assert len(par.blobs.range_reads) == 4  # type: ignore[attr-defined]
    assert seq.blobs.parts_uploaded == []  # type: ignore[attr-defined]
    # every part but the last is at least S3's 5 MiB, and whole segments (+ the header)
    sizes = dict((n, size) for _, n, size in par.blobs.parts_uploaded)  # type: ignore[attr-defined]
    assert all(sizes[n] >= 5 * MIB for n in sizes if n != len(sizes))
    assert all((sizes[n] % (SEGMENT + TAG_SIZE)) == 0 for n in sizes if 1 < n < len(sizes))
    assert (sizes[1] - ha.size) % (SEGMENT + TAG_SIZE) == 0
    # the existing reader decrypts it
    secret = par.keys.load_decryption_key(par_state["key"]["key_id"])  # type: ignore[attr-defined]
    out = io.BytesIO()
    envelope.decrypt_stream(io.BytesIO(a), out, secret)
    assert out.getvalue() == data
    assert par.blobs.objects.get((UPLOADS, "uploads/a/big.bin")) is None  # plaintext gone


def test_one_failing_part_aborts_the_upload_and_keeps_the_plaintext() -> None:
    p = make_pipeline(segment_size=SEGMENT, part_size=5 * MIB, ingest_workers=2)
    data = os.urandom(12 * MIB)
    info = p.blobs.put(UPLOADS, "uploads/a/fail.bin", data)
    p.blobs.fail_part = 2  # type: ignore[attr-defined]
    state = run_workflow(p, event_for(info))
    assert state["status"] == "FAILED" and state["failure"]["step"] == "EncryptDocument"
    assert p.blobs.aborted == 1  # type: ignore[attr-defined]
    assert p.blobs.keys(ENCRYPTED, "encrypted/") == []  # type: ignore[attr-defined]
    assert p.blobs.data(UPLOADS, "uploads/a/fail.bin") == data  # type: ignore[attr-defined]


def test_a_changed_upload_fails_the_part_and_aborts() -> None:
    p = make_pipeline(segment_size=SEGMENT, part_size=5 * MIB, ingest_workers=2)
    info = p.blobs.put(UPLOADS, "uploads/a/short.bin", os.urandom(11 * MIB))
    p.blobs.open_read_range = lambda b, k, v, start, length: io.BytesIO(bytes(length - 1))  # type: ignore[method-assign]
    fetched = ingest.fetch_document(p, event_for(info))
    choice = ingest.select_key(p, fetched.document_id)
    with pytest.raises(StorageError, match="changed"):
        ingest.encrypt_document(p, fetched.document_id, fetched.source, choice.key_id)
    assert p.blobs.aborted == 1  # type: ignore[attr-defined]


class _ZeroRange(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


class _CountingParts:
    def __init__(self) -> None:
        self.parts: dict[int, int] = {}
        self.lock = threading.Lock()

    def upload_part(self, number: int, data) -> None:  # type: ignore[no-untyped-def]
        with self.lock:
            self.parts[number] = len(data)

    def complete(self):  # type: ignore[no-untyped-def]
        from pqfile.ports import ObjectInfo

        return ObjectInfo(ENCRYPTED, "encrypted/x.pqf", sum(self.parts.values()), "e", "v1",
                          "application/octet-stream")  # fmt: skip

    def abort(self) -> None:
        raise AssertionError("not expected")


def test_memory_is_bounded_by_workers_times_part_size() -> None:
    size, workers, part = 160 * MIB, 2, 8 * MIB
    p = make_pipeline(segment_size=MIB, part_size=part, ingest_workers=workers)
    parts = _CountingParts()
    p.blobs.open_read_range = (  # type: ignore[method-assign]
        lambda b, k, v, start, length: io.BufferedReader(_ZeroRange(length), MIB)
    )
    p.blobs.open_parts = lambda b, k, *, content_type: parts  # type: ignore[method-assign]
    info = p.blobs.put(UPLOADS, "uploads/a/huge.bin", b"")
    fetched = ingest.fetch_document(p, event_for(info))
    choice = ingest.select_key(p, fetched.document_id)
    source = SourceRef(UPLOADS, "uploads/a/huge.bin", info.version_id, info.etag, size)
    tracemalloc.start()
    try:
        written = ingest.encrypt_document(p, fetched.document_id, source, choice.key_id)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 1000 < written.size - size - 160 * TAG_SIZE < 12_000  # the header
    assert len(parts.parts) == 20
    # workers x (part + one segment + the 1 MiB read buffer), plus slack
    assert peak < workers * (part + 2 * MIB) + 4 * MIB, peak
