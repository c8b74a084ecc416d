"""decrypt_stream reads a regular-file source ahead in a second thread (issue 15 target 3:
the library against cp). Pinned here: same bytes, read errors reach the caller, a failed
segment stops both threads, and nothing unauthenticated reaches the sink: the final
segment is verified before its bytes are written."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from pqfile.crypto import envelope, stream
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


# --- encrypt_body: the same read-ahead for regular-file plaintext sources ----------------

BODY_KEY = bytes(range(32))
PREFIX = b"\x07" * 7


def _plain_file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "plain.bin"
    path.write_bytes(data)
    return path, data


def _expected_body(data: bytes) -> bytes:
    """The body from the in-memory path (no threads), for the same key and nonce prefix."""
    out = bytearray(stream.body_size(len(data), SEGMENT))
    stream.encrypt_body_into(memoryview(data), memoryview(out), BODY_KEY, PREFIX, SEGMENT)
    return bytes(out)


def _no_pqfile_thread_left() -> bool:
    return not any(t.name.startswith("pqfile-") for t in threading.enumerate())


@pytest.mark.parametrize("size", [SEGMENT + 1, 2 * SEGMENT, 7 * SEGMENT + 5, 8 * SEGMENT])
def test_encrypt_file_source_is_read_ahead_byte_identical(tmp_path: Path, size: int) -> None:
    path, data = _plain_file(tmp_path, size)
    sink = io.BytesIO()
    with _TracedFile(path) as src:
        plain, body = stream.encrypt_body(src, sink, BODY_KEY, PREFIX, SEGMENT)
        assert src.tell() == size  # left at the end, as before
    assert sink.getvalue() == _expected_body(data)
    assert (plain, body) == (size, len(sink.getvalue()))
    assert "pqfile-read-ahead" in src.readers
    assert threading.current_thread().name not in src.readers  # all reads in the reader
    assert _no_pqfile_thread_left()


def test_encrypt_to_os_file_with_both_threads_is_byte_identical(tmp_path: Path) -> None:
    path, data = _plain_file(tmp_path, 9 * SEGMENT + 77)
    out_path = tmp_path / "body"
    with _TracedFile(path) as src, out_path.open("wb") as out:
        stream.encrypt_body(src, out, BODY_KEY, PREFIX, SEGMENT)
    assert out_path.read_bytes() == _expected_body(data)
    assert "pqfile-read-ahead" in src.readers
    assert _no_pqfile_thread_left()


@pytest.mark.parametrize("size", [0, 1, SEGMENT])
def test_encrypt_one_segment_starts_no_reader(tmp_path: Path, size: int) -> None:
    path, data = _plain_file(tmp_path, size)
    sink = io.BytesIO()
    with _TracedFile(path) as src:
        stream.encrypt_body(src, sink, BODY_KEY, PREFIX, SEGMENT)
    assert sink.getvalue() == _expected_body(data)
    assert src.readers <= {threading.current_thread().name}


def test_encrypt_non_file_sources_are_read_in_the_caller(tmp_path: Path) -> None:
    data = os.urandom(5 * SEGMENT)
    src = io.BytesIO(data)
    seen: set[str] = set()
    original = src.readinto

    def readinto(b):  # type: ignore[no-untyped-def]
        seen.add(threading.current_thread().name)
        return original(b)

    src.readinto = readinto  # type: ignore[method-assign]
    sink = io.BytesIO()
    stream.encrypt_body(src, sink, BODY_KEY, PREFIX, SEGMENT)
    assert sink.getvalue() == _expected_body(data)
    assert seen == {threading.current_thread().name}


class _SlowSink(io.BytesIO):
    """Records, at each segment written, how many reads the source had done."""

    def __init__(self, src: _TracedFile) -> None:
        super().__init__()
        self.src = src
        self.leads: list[int] = []

    def write(self, b):  # type: ignore[no-untyped-def, override]
        self.leads.append(self.src.reads - len(self.leads))
        time.sleep(0.005)  # a slow disk: an unbounded reader would race ahead
        return super().write(b)


def test_encrypt_read_ahead_stays_bounded(tmp_path: Path) -> None:
    path, data = _plain_file(tmp_path, 20 * SEGMENT)
    with _TracedFile(path) as src:
        sink = _SlowSink(src)
        stream.encrypt_body(src, sink, BODY_KEY, PREFIX, SEGMENT)
    assert sink.getvalue() == _expected_body(data)
    # At segment k's write the reader holds at most k, k+1 (the look-ahead) and k+2: the
    # ring has three buffers, refilled only once a segment is encrypted.
    assert max(sink.leads) <= 3
    assert max(sink.leads) >= 2  # it did read ahead while the sink was slow
    assert _no_pqfile_thread_left()


@pytest.mark.parametrize("to_os_file", [False, True])
def test_encrypt_read_error_in_the_background_reaches_the_caller(
    tmp_path: Path, to_os_file: bool
) -> None:
    path, _ = _plain_file(tmp_path, 8 * SEGMENT)
    out_path = tmp_path / "body"
    with _TracedFile(path, fail_at=4) as src, out_path.open("wb") as out:
        sink = out if to_os_file else io.BytesIO()
        with pytest.raises(OSError, match="Input/output error"):
            stream.encrypt_body(src, sink, BODY_KEY, PREFIX, SEGMENT)
    assert "pqfile-read-ahead" in src.readers
    assert _no_pqfile_thread_left()


class _Terminated(Exception):
    pass


def test_encrypt_sigterm_mid_body_leaves_no_thread(tmp_path: Path) -> None:
    """A real SIGTERM (its handler raises, as the CLI's does) lands in the caller's thread
    (the reader and writer block it) and stops both threads before it propagates."""
    path, _ = _plain_file(tmp_path, 30 * SEGMENT)
    out_path = tmp_path / "body"
    handled: list[str] = []

    def on_term(signum: int, frame: object) -> None:
        handled.append(threading.current_thread().name)
        raise _Terminated

    calls: list[int] = []

    def progress(n: int) -> None:
        calls.append(n)
        if len(calls) == 3:  # segment 3 is encrypted: the reader and writer are busy
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with _TracedFile(path) as src, out_path.open("wb") as out:
            with pytest.raises(_Terminated):
                stream.encrypt_body(src, out, BODY_KEY, PREFIX, SEGMENT, progress=progress)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert handled == [threading.current_thread().name]
    assert "pqfile-read-ahead" in src.readers
    assert _no_pqfile_thread_left()
