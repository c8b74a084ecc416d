"""devstack.moto_patches.s3_large_objects: CompleteMultipartUpload and a full GetObject of a
big object keep the emulator's memory bounded and answer what moto answers (the same bytes,
ETag, checksums and errors)."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.exceptions import ClientError
from devstack.moto_patches import s3_large_objects

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def _rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@contextmanager
def _peak_rss(pid: int) -> Iterator[dict[str, int]]:
    """{"before", "peak"}: the process's RSS on entry and its highest sample (every 20 ms)."""
    seen = {"before": _rss_mib(pid), "peak": 0}
    seen["peak"] = seen["before"]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen["peak"] = max(seen["peak"], _rss_mib(pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        done.set()
        sampler.join()
        seen["peak"] = max(seen["peak"], _rss_mib(pid))


def _part(n: int, size: int) -> bytes:
    return random.Random(n).randbytes(size)


def test_big_object_completes_and_reads_in_bounded_memory(aws_emulator) -> None:
    """512 MiB: completing the upload, a full GET and ranged GETs each grow the emulator's RSS
    by less than 64 MiB (unpatched: about 1.5 GiB to complete, 512 MiB per full GET); the
    bytes read back are the bytes uploaded."""
    s3 = aws_emulator.client("s3")
    pid = aws_emulator.pid
    bucket = "large-" + random.randbytes(4).hex()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    part_size, count = 32 * MIB, 16
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    parts, md5s, whole = [], b"", hashlib.sha256()
    for n in range(1, count + 1):
        data = _part(n, part_size)
        whole.update(data)
        md5s += hashlib.md5(data, usedforsecurity=False).digest()
        etag = s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=n,
                              Body=data)["ETag"]  # fmt: skip
        parts.append({"PartNumber": n, "ETag": etag})
    del data
    time.sleep(0.5)  # the last part's request buffers are released
    done: dict[str, Any] = {}
    try:
        with _peak_rss(pid) as completing:
            done = s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload,
                                                MultipartUpload={"Parts": parts})  # fmt: skip
        want_etag = f'"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{count}"'
        assert done["ETag"] == want_etag
        head = s3.head_object(Bucket=bucket, Key="big")
        assert (head["ContentLength"], head["ETag"]) == (part_size * count, want_etag)

        with _peak_rss(pid) as reading:
            resp = s3.get_object(Bucket=bucket, Key="big", VersionId=done["VersionId"])
            assert resp["ContentLength"] == part_size * count
            got = hashlib.sha256()
            for block in iter(lambda: resp["Body"].read(MIB), b""):
                got.update(block)
        assert got.hexdigest() == whole.hexdigest()

        with _peak_rss(pid) as ranged:
            edge = 7 * part_size - 100  # across the boundary of parts 7 and 8
            resp = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={edge}-{edge + MIB - 1}")
            assert resp["Body"].read() == (_part(7, part_size) + _part(8, part_size))[
                part_size - 100 : part_size - 100 + MIB
            ]
            assert resp["ContentRange"] == f"bytes {edge}-{edge + MIB - 1}/{part_size * count}"
        for name, seen in (("complete", completing), ("full GET", reading), ("ranged", ranged)):
            grew = seen["peak"] - seen["before"]
            assert grew < 64, f"{name}: the emulator's RSS grew by {grew} MiB"
    finally:
        if done:
            s3.delete_object(Bucket=bucket, Key="big", VersionId=done["VersionId"])
        else:
            s3.abort_multipart_upload(Bucket=bucket, Key="big", UploadId=upload)


def _complete_both(body: list[tuple[int, str]], parts: list[bytes],
                   metadata: dict[str, str]) -> tuple[Any, Any]:  # fmt: skip
    """(moto's FakeMultipart.complete, the patch's) on the same parts, in this process."""
    from moto.s3.models import FakeMultipart
    from moto.utilities.utils import CaseInsensitiveDict

    multipart = FakeMultipart("k", CaseInsensitiveDict(metadata), "123456789012", "us-east-1")
    for n, data in enumerate(parts, start=1):
        multipart.set_part(n, data)
    answers: list[Any] = []
    for complete in (FakeMultipart.complete, s3_large_objects._complete):
        try:
            value, etag, checksum = complete(multipart, iter(body))
        except Exception as exc:  # noqa: BLE001 - compared below
            answers.append(type(exc).__name__)
            continue
        if isinstance(value, s3_large_objects._Spooled):
            value.file.seek(0)
            value = value.file.read()
        answers.append((value, etag, checksum))
    multipart.dispose()
    return answers[0], answers[1]


@pytest.mark.parametrize(
    "metadata",
    [
        {},  # moto's default: CRC64NVME, FULL_OBJECT
        {"x-amz-checksum-algorithm": "CRC32"},  # COMPOSITE
        {"x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-type": "FULL_OBJECT"},
        {"x-amz-checksum-algorithm": "CRC32C"},
        {"x-amz-checksum-algorithm": "SHA1"},
        {"x-amz-checksum-algorithm": "SHA256"},
    ],
    ids=["default", "crc32", "crc32-full", "crc32c", "sha1", "sha256"],
)
def test_completion_answers_exactly_what_moto_answers(metadata: dict[str, str]) -> None:
    parts = [_part(n, 5 * MIB + n) for n in (1, 2)] + [_part(3, 1000)]
    etags = [hashlib.md5(p, usedforsecurity=False).hexdigest() for p in parts]
    body = [(n, f'"{e}"') for n, e in enumerate(etags, start=1)]
    moto_answer, patched = _complete_both(body, parts, metadata)
    assert patched == moto_answer
    assert patched[0] == b"".join(parts)


@pytest.mark.parametrize(
    ("sizes", "order", "error"),
    [
        ([5 * MIB, 10], [(1, None), (2, "0" * 32)], "InvalidPart"),
        ([5 * MIB, 10], [(1, None), (3, None)], "InvalidPart"),
        ([10, 5 * MIB], [(1, None), (2, None)], "EntityTooSmall"),
        ([10], [], "MalformedXML"),
    ],
    ids=["wrong-etag", "missing-part", "small-part", "no-parts"],
)
def test_completion_errors_are_moto_errors(sizes: list[int], order: list[Any], error: str) -> None:
    parts = [_part(n, size) for n, size in enumerate(sizes, start=1)]
    etags = [hashlib.md5(p, usedforsecurity=False).hexdigest() for p in parts]
    body = [(n, etag or (etags[n - 1] if n <= len(etags) else "0" * 32)) for n, etag in order]
    moto_answer, patched = _complete_both(body, parts, {})
    assert moto_answer == patched == error


def test_small_objects_keep_motos_path_and_missing_keys_their_error(aws_emulator) -> None:
    s3 = aws_emulator.client("s3")
    bucket = "small-" + random.randbytes(4).hex()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="s", Body=b"tiny")
    assert s3.get_object(Bucket=bucket, Key="s")["Body"].read() == b"tiny"
    with pytest.raises(ClientError, match="NoSuchKey"):
        s3.get_object(Bucket=bucket, Key="absent")
