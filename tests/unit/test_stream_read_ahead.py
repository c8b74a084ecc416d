"""decrypt_stream reads a regular-file source ahead in a second thread (issue 15 target 3:
the library against cp). Pinned here: same bytes, read errors reach the caller, a failed
segment stops both threads, and nothing unauthenticated reaches the sink: the final
segment is verified before its bytes are written."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

from pqfile.crypto import envelope
from pqfile.crypto.kem import SecretKey, generate
from pqfile.errors import DecryptionError

SEGMENT = 1024


@pytest.fixture(scope="module")
def key() -> SecretKey:
    return generate()


class _TracedFile(io.FileIO):
    """A real file (fstat says regular) that records which threads read it, and can fail
    its Nth read like a bad disk."""

    def __init__(self, path: Path, fail_at: int = -1) -> None:
        super().__init__(path, "r")
        self.readers: set[str] = set()
        self.reads = 0
        self.fail_at = fail_at

    def readinto(self, b):  # type: ignore[no-untyped-def, override]
        self.reads += 1
        self.readers.add(threading.current_thread().name)
        if self.reads == self.fail_at:
            raise OSError(5, "Input/output error")
        return super().readinto(b)


def _package(key: SecretKey, tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "p.pqf"
    with path.open("wb") as out:
        envelope.encrypt_stream(io.BytesIO(data), out, key.public_key(), segment_size=SEGMENT)
    return path


def _no_reader_left() -> bool:
    return not any(t.name == "pqfile-read-ahead" for t in threading.enumerate())


def test_file_sources_are_read_ahead_byte_identical(key: SecretKey, tmp_path: Path) -> None:
    data = os.urandom(7 * SEGMENT + 5)
    src = _TracedFile(_package(key, tmp_path, data))
    sink = io.BytesIO()
    with src:
        envelope.decrypt_stream(src, sink, key)
        assert src.tell() == os.fstat(src.fileno()).st_size  # left at the end, as before
    assert sink.getvalue() == data
    assert "pqfile-read-ahead" in src.readers
    assert _no_reader_left()


def test_one_segment_starts_no_reader(key: SecretKey, tmp_path: Path) -> None:
    data = os.urandom(SEGMENT - 1)
    src = _TracedFile(_package(key, tmp_path, data))
    sink = io.BytesIO()
    with src:
        envelope.decrypt_stream(src, sink, key)
    assert sink.getvalue() == data
    assert src.readers == {threading.current_thread().name}


def test_read_error_in_the_background_reaches_the_caller(key: SecretKey, tmp_path: Path) -> None:
    src = _TracedFile(_package(key, tmp_path, os.urandom(8 * SEGMENT)), fail_at=4)
    sink = io.BytesIO()
    with src, pytest.raises(OSError, match="Input/output error"):
        envelope.decrypt_stream(src, sink, key)
    assert _no_reader_left()
    assert len(sink.getvalue()) < 8 * SEGMENT


@pytest.mark.parametrize("where", ["middle", "final"])
def test_failed_segment_releases_nothing_unverified(
    key: SecretKey, tmp_path: Path, where: str
) -> None:
    data = os.urandom(6 * SEGMENT + 100)
    path = _package(key, tmp_path, data)
    package = bytearray(path.read_bytes())
    package[-50 if where == "final" else -3000] ^= 1
    path.write_bytes(package)
    out_path = tmp_path / "plain"
    with _TracedFile(path) as src, out_path.open("wb") as out, pytest.raises(DecryptionError):
        envelope.decrypt_stream(src, out, key)
    written = out_path.read_bytes()
    assert data.startswith(written) and len(written) % SEGMENT == 0
    if where == "final":  # every full segment verified; the final one never reached the file
        assert len(written) == 6 * SEGMENT
    else:
        assert len(written) < 5 * SEGMENT
    assert _no_reader_left()


def test_truncated_file_is_refused(key: SecretKey, tmp_path: Path) -> None:
    path = _package(key, tmp_path, os.urandom(5 * SEGMENT))
    path.write_bytes(path.read_bytes()[: -(SEGMENT + 16)])  # the final segment is gone
    with _TracedFile(path) as src, pytest.raises(DecryptionError):
        envelope.decrypt_stream(src, io.BytesIO(), key)
    assert _no_reader_left()
