"""STREAM body: AES-256-GCM per segment (docs/FORMAT.md section 6).

Constant memory: preallocated buffers (two input segments for the one-segment look-ahead
that finds the final segment, three when a regular-file source is read ahead by a second
thread, and the output segments), ``readinto`` and pyca's ``encrypt_into``/``decrypt_into``;
no per-segment allocation or concatenation.

When the sink is an operating-system file (it has a working ``fileno()``), output
segments are written by one background thread (crypto/stream_io.py) from a ring of three
buffers, so the disk write of segment i overlaps the AEAD of segment i+1 (1 GiB: about
0.5 s -> 0.32 s here, see BENCHMARKS.md). Only finished segments are handed over (for
decryption: only verified ones), in order, by exactly one writer; any write error is
raised in the caller's thread. Other sinks (an S3 multipart writer, a BytesIO) are written
in the caller's thread.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Protocol, cast

from pqfile.errors import DecryptionError, LimitExceededError
from pqfile.format.header import MAX_SEGMENTS, NONCE_PREFIX_SIZE, TAG_SIZE

# pyca's AEAD, threading and signal are imported where they are used (issue 15): a handler
# or CLI command that imports this module without encrypting a body pays for none of them,
# and a one-segment body (the CLI's 1 MiB) never starts the writer thread.

_COUNTER = struct.Struct(">IB")  # counter (4) || last flag (1), after the 7-byte prefix
NONCE_SIZE = 12

ProgressCallback = Callable[[int], None]  # called with the plaintext bytes of each segment


class Source(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class ReadOnly(Protocol):
    def read(self, size: int, /) -> bytes: ...


class Sink(Protocol):
    def write(self, data: memoryview, /) -> int | None: ...


def segment_nonce(nonce: bytearray, counter: int, last: bool) -> bytearray:
    """Fill bytes 7..12 of ``nonce`` (prefix already in 0..7) in place."""
    _COUNTER.pack_into(nonce, NONCE_PREFIX_SIZE, counter, 1 if last else 0)
    return nonce


def new_nonce(nonce_prefix: bytes) -> bytearray:
    if len(nonce_prefix) != NONCE_PREFIX_SIZE:
        raise ValueError("nonce prefix must be 7 bytes")
    return bytearray(nonce_prefix) + bytearray(NONCE_SIZE - NONCE_PREFIX_SIZE)


class _ReadAdapter:
    """``readinto`` for sources that only have ``read`` (e.g. an HTTP response body)."""

    def __init__(self, src: ReadOnly) -> None:
        self._read = src.read

    def readinto(self, buffer: memoryview, /) -> int:
        data = self._read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n


def as_source(src: Source | ReadOnly) -> Source:
    """``src`` itself if it has ``readinto``, else an adapter over its ``read``."""
    if hasattr(src, "readinto"):
        return cast(Source, src)
    return _ReadAdapter(src)


def _fill(src: Source, view: memoryview) -> int:
    """readinto until ``view`` is full or the input ends; returns the bytes read."""
    total = 0
    size = len(view)
    while total < size:
        n = src.readinto(view[total:])
        if not n:
            break
        total += n
    return total


def write_all(dst: Sink, view: memoryview) -> None:
    written = dst.write(view)
    # Buffered writers write everything; raw ones may not, so loop on a short count.
    while written is not None and written < len(view):
        view = view[written:]
        written = dst.write(view)


def encrypt_body(
    src: Source | ReadOnly,
    dst: Sink,
    body_key: bytes,
    nonce_prefix: bytes,
    segment_size: int,
    *,
    start_counter: int = 0,
    progress: ProgressCallback | None = None,
) -> tuple[int, int]:
    """Encrypt ``src`` to ``dst`` as STREAM segments; returns (plaintext bytes, body bytes).

    ``start_counter`` exists for tests of the counter arithmetic near its limit.
    """
    src = as_source(src)
    from pqfile.crypto._pyca import AESGCM

    aead = AESGCM(body_key)
    nonce = new_nonce(nonce_prefix)
    from pqfile.crypto.stream_io import WriteBehind, is_os_file, read_ahead

    # A regular-file source of more than one segment is read ahead by a second thread, as
    # in decrypt_body (issue 15: encrypt_stream against cp on disk): the page-cache copy of
    # segment i+2 overlaps the AEAD of segment i and the write-behind of segment i-1.
    reader = read_ahead(src, segment_size)
    # The in-thread path allocates its look-ahead buffer only for a body of more than one
    # segment: a small input (the CLI's 1 MiB, a batch of small files) pays for neither it
    # nor a writer thread.
    ahead_view: memoryview | None = None
    cur_buffer: bytearray | None = None  # with the reader: the ring buffers held here
    ahead_buffer: bytearray | None = None
    overlap = is_os_file(dst)
    behind: WriteBehind | None = None
    out_view: memoryview | None = None

    counter = start_counter
    plain_total = 0
    body_total = 0
    try:
        cur_view: memoryview
        if reader is None:
            cur_view = memoryview(bytearray(segment_size))
            filled = _fill(src, cur_view)
        else:
            cur_buffer, filled = reader.next()
            cur_view = memoryview(cur_buffer)
        while True:
            last = filled < segment_size
            ahead_filled = 0
            if not last:
                if reader is not None:
                    ahead_buffer, ahead_filled = reader.next()
                    ahead_view = memoryview(ahead_buffer)
                else:
                    if ahead_view is None:
                        ahead_view = memoryview(bytearray(segment_size))
                    ahead_filled = _fill(src, ahead_view)
                last = ahead_filled == 0
            if counter >= MAX_SEGMENTS:
                raise LimitExceededError("input exceeds the maximum number of segments")
            segment_nonce(nonce, counter, last)
            n_out = filled + TAG_SIZE
            if behind is None and overlap and not last:
                behind = WriteBehind(dst, segment_size + TAG_SIZE)
            if behind is None and out_view is None:
                out_view = memoryview(bytearray(segment_size + TAG_SIZE))
            out = behind.acquire() if behind is not None else out_view
            assert out is not None
            aead.encrypt_into(nonce, cur_view[:filled], None, out[:n_out])
            if behind is not None:
                behind.submit(n_out)
            else:
                write_all(dst, out[:n_out])
            plain_total += filled
            body_total += n_out
            if progress is not None:
                progress(filled)
            if last:
                if behind is not None:
                    behind.close()
                    behind = None
                return plain_total, body_total
            counter += 1
            assert ahead_view is not None
            if reader is not None:
                assert cur_buffer is not None
                reader.release(cur_buffer)  # encrypted: the reader may refill it
                cur_buffer, cur_view = ahead_buffer, ahead_view
            else:
                cur_view, ahead_view = ahead_view, cur_view
            filled = ahead_filled
    finally:
        if behind is not None:  # an exception above: stop the writer, keep that exception
            behind.close(raise_errors=False)
        if reader is not None:
            reader.close()


def decrypt_body(
    src: Source | ReadOnly,
    dst: Sink,
    body_key: bytes,
    nonce_prefix: bytes,
    segment_size: int,
    *,
    start_counter: int = 0,
    progress: ProgressCallback | None = None,
) -> int:
    """Decrypt STREAM segments from ``src`` to ``dst``; returns the plaintext bytes.

    Each segment is written only after it verified; on DecryptionError the caller must
    discard what was written so far (the final-segment check comes last).
    """
    src = as_source(src)
    from pqfile.crypto._pyca import AESGCM, InvalidTag

    aead = AESGCM(body_key)
    nonce = new_nonce(nonce_prefix)
    wire = segment_size + TAG_SIZE
    from pqfile.crypto.stream_io import WriteBehind, is_os_file, read_ahead

    # A regular-file source of more than one segment is read ahead by a second thread
    # (with the write-behind, three stages overlap; issue 15: decrypt_stream against cp).
    ahead_reader = read_ahead(src, wire)
    overlap = is_os_file(dst)
    behind: WriteBehind | None = None
    out_view: memoryview | None = None
    cur_buffer: bytearray | None = None
    ahead_buffer: bytearray | None = None
    ahead_view: memoryview | None = None  # as in encrypt_body: only for a second segment

    def first() -> tuple[memoryview, int]:
        nonlocal cur_buffer
        if ahead_reader is None:
            view = memoryview(bytearray(wire))
            return view, _fill(src, view)
        cur_buffer, n = ahead_reader.next()
        return memoryview(cur_buffer), n

    def following() -> tuple[memoryview, int]:
        nonlocal ahead_view, ahead_buffer
        if ahead_reader is None:
            if ahead_view is None:
                ahead_view = memoryview(bytearray(wire))
            return ahead_view, _fill(src, ahead_view)
        ahead_buffer, n = ahead_reader.next()
        return memoryview(ahead_buffer), n

    counter = start_counter
    plain_total = 0
    try:
        cur_view, filled = first()
        while True:
            if filled < TAG_SIZE:
                raise DecryptionError()  # truncated (or empty) body
            last = filled < wire
            ahead_filled = 0
            next_view: memoryview | None = None
            if not last:
                next_view, ahead_filled = following()
                last = ahead_filled == 0
            if counter >= MAX_SEGMENTS:
                raise DecryptionError()
            if last and filled == TAG_SIZE and counter != start_counter:
                raise DecryptionError()  # an empty final segment only for an empty plaintext
            segment_nonce(nonce, counter, last)
            n_plain = filled - TAG_SIZE
            if behind is None and overlap and not last:
                behind = WriteBehind(dst, segment_size)
            if behind is None and out_view is None:
                out_view = memoryview(bytearray(segment_size))
            out = behind.acquire() if behind is not None else out_view
            assert out is not None
            try:
                aead.decrypt_into(nonce, cur_view[:filled], None, out[:n_plain])
            except InvalidTag:
                raise DecryptionError() from None
            # Only now, verified, may the segment reach the sink.
            if behind is not None:
                behind.submit(n_plain)
            else:
                write_all(dst, out[:n_plain])
            plain_total += n_plain
            if progress is not None:
                progress(n_plain)
            if last:
                if behind is not None:
                    behind.close()
                    behind = None
                return plain_total
            counter += 1
            assert next_view is not None
            if ahead_reader is not None:
                assert cur_buffer is not None
                ahead_reader.release(cur_buffer)  # decrypted: the reader may refill it
                cur_buffer = ahead_buffer
                cur_view = next_view
            else:
                cur_view, ahead_view = next_view, cur_view
            filled = ahead_filled
    finally:
        if behind is not None:  # an exception above: stop the writer, keep that exception
            behind.close(raise_errors=False)
        if ahead_reader is not None:
            ahead_reader.close()


class SegmentEncryptor:
    """STREAM encryption fed by writes (a Sink), for piping one body into another.

    :func:`encrypt_body` pulls from a source; a re-encryption gets its plaintext pushed by
    :func:`decrypt_body`, one verified segment at a time. Bytes are gathered into segments
    of ``segment_size``; a full segment is sealed as not-final only once the next byte
    arrives, and :meth:`finish` seals what is left as the final one (FORMAT.md §6). Memory:
    one plaintext and one output segment, whatever the input length.
    """

    def __init__(self, dst: Sink, body_key: bytes, nonce_prefix: bytes, segment_size: int) -> None:
        self._dst = dst
        from pqfile.crypto._pyca import AESGCM

        self._aead = AESGCM(body_key)
        self._nonce = new_nonce(nonce_prefix)
        self._segment_size = segment_size
        self._pending = memoryview(bytearray(segment_size))
        self._out = memoryview(bytearray(segment_size + TAG_SIZE))
        self._filled = 0
        self._counter = 0
        self._finished = False
        self.plaintext_size = 0
        self.body_size = 0

    def _seal(self, last: bool) -> None:
        if self._counter >= MAX_SEGMENTS:
            raise LimitExceededError("input exceeds the maximum number of segments")
        segment_nonce(self._nonce, self._counter, last)
        n_out = self._filled + TAG_SIZE
        self._aead.encrypt_into(self._nonce, self._pending[: self._filled], None, self._out[:n_out])
        write_all(self._dst, self._out[:n_out])
        self.body_size += n_out
        self._counter += 1
        self._filled = 0

    def write(self, data: memoryview, /) -> int:
        if self._finished:
            raise ValueError("write after finish")
        view = memoryview(data).cast("B")
        pos = 0
        while pos < len(view):
            if self._filled == self._segment_size:  # more follows: this one is not final
                self._seal(last=False)
            take = min(self._segment_size - self._filled, len(view) - pos)
            self._pending[self._filled : self._filled + take] = view[pos : pos + take]
            self._filled += take
            pos += take
        self.plaintext_size += len(view)
        return len(view)

    def finish(self) -> tuple[int, int]:
        """Seal the final segment (empty only for an empty plaintext); (plain, body) bytes."""
        if not self._finished:
            self._seal(last=True)
            self._finished = True
        return self.plaintext_size, self.body_size


def encrypt_body_into(
    plaintext: memoryview,
    out: memoryview,
    body_key: bytes,
    nonce_prefix: bytes,
    segment_size: int,
) -> None:
    """In-memory fast path: ``out`` is exactly body_size(len(plaintext)) bytes."""
    from pqfile.crypto._pyca import AESGCM

    aead = AESGCM(body_key)
    nonce = new_nonce(nonce_prefix)
    count = segment_count(len(plaintext), segment_size)
    for counter in range(count):
        start = counter * segment_size
        chunk = plaintext[start : start + segment_size]
        o = counter * (segment_size + TAG_SIZE)
        segment_nonce(nonce, counter, counter == count - 1)
        aead.encrypt_into(nonce, chunk, None, out[o : o + len(chunk) + TAG_SIZE])


def decrypt_body_into(
    body: memoryview,
    out: memoryview,
    body_key: bytes,
    nonce_prefix: bytes,
    segment_size: int,
) -> None:
    """In-memory fast path: ``out`` is exactly plaintext_size(len(body)) bytes."""
    from pqfile.crypto._pyca import AESGCM, InvalidTag

    aead = AESGCM(body_key)
    nonce = new_nonce(nonce_prefix)
    wire = segment_size + TAG_SIZE
    count = max(1, -(-len(body) // wire))
    if count > MAX_SEGMENTS:
        raise DecryptionError()
    for counter in range(count):
        o = counter * wire
        chunk = body[o : o + wire]
        last = counter == count - 1
        if len(chunk) < TAG_SIZE or (last and len(chunk) == TAG_SIZE and counter != 0):
            raise DecryptionError()
        segment_nonce(nonce, counter, last)
        p = counter * segment_size
        try:
            aead.decrypt_into(nonce, chunk, None, out[p : p + len(chunk) - TAG_SIZE])
        except InvalidTag:
            raise DecryptionError() from None


def segment_count(plaintext_size: int, segment_size: int) -> int:
    """Segments for a plaintext: at least one; exact multiples end with a full segment."""
    return max(1, -(-plaintext_size // segment_size))


def body_size(plaintext_size: int, segment_size: int) -> int:
    return plaintext_size + TAG_SIZE * segment_count(plaintext_size, segment_size)


def plaintext_size(body_len: int, segment_size: int) -> int:
    """Plaintext bytes in a body of ``body_len`` bytes; raises DecryptionError if impossible."""
    wire = segment_size + TAG_SIZE
    full, rest = divmod(body_len, wire)
    if rest == 0:
        if full == 0:
            raise DecryptionError()
        return full * segment_size
    if rest < TAG_SIZE:
        raise DecryptionError()
    return full * segment_size + rest - TAG_SIZE
