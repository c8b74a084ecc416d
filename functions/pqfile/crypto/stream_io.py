"""The threads of the STREAM body (crypto/stream.py): a write-behind thread for operating-
system sinks and a read-ahead thread for regular-file sources, so disk I/O overlaps the AEAD.
Only finished (for decryption: verified) segments are handed to the writer, in order; any
I/O error is raised in the caller's thread. Split from crypto/stream.py, which imports it
where a body is processed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pqfile.crypto.stream import Sink, Source, _fill, write_all

if TYPE_CHECKING:
    import threading

__all__ = [
    "ReadAhead",
    "WriteBehind",
    "is_os_file",
    "read_ahead",
    "read_sequentially",
    "regular_file_remaining",
]


def is_os_file(dst: object) -> bool:
    fileno = getattr(dst, "fileno", None)
    if fileno is None:
        return False
    try:
        fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False
    return True


def read_sequentially(src: object) -> None:
    """Tell the kernel ``src`` (an OS file) is read once, front to back: a larger read-ahead
    window, so the next segment is in the page cache before it is asked for. Harmless for
    pipes and other objects (nothing happens)."""
    fileno = getattr(src, "fileno", None)
    advise = getattr(os, "posix_fadvise", None)
    if fileno is None or advise is None:
        return
    try:
        advise(fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except (OSError, ValueError):  # a pipe (ESPIPE), a closed or fileno-less object
        pass


_CALLER_SIGNAL_NAMES = ("SIGINT", "SIGTERM", "SIGHUP")


def _start_with_signals_blocked(thread: threading.Thread) -> None:
    """Start ``thread`` with SIGINT/SIGTERM/SIGHUP blocked in it, so the kernel delivers
    them to the caller's thread: one blocked in read() then gets EINTR and raises at once
    (KeyboardInterrupt, envelope.WriteInterrupted) instead of after its next input. Raises
    what a handler raised for a signal that came meanwhile; the thread may then be running
    (``thread.ident`` is set) and the caller must stop it."""
    import signal

    caller_signals = {getattr(signal, n) for n in _CALLER_SIGNAL_NAMES if hasattr(signal, n)}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, caller_signals)
    try:
        thread.start()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        raise
    signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # runs a pending handler


class WriteBehind:
    """A ring of output buffers written to ``dst`` in order by one background thread."""

    _DEPTH = 3

    def __init__(self, dst: Sink, size: int) -> None:
        import queue  # here: only a multi-segment body to an OS file needs these
        import threading

        self._dst = dst
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(self._DEPTH):
            self._free.put(bytearray(size))
        self._jobs: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._current = bytearray()
        self._thread = threading.Thread(target=self._run, name="pqfile-write-behind", daemon=True)
        try:
            _start_with_signals_blocked(self._thread)
        except BaseException:
            if self._thread.ident is not None:
                self.close(raise_errors=False)  # nobody will feed this writer: stop it
            raise

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            buffer, length = job
            try:
                if self._error is None:
                    write_all(self._dst, memoryview(buffer)[:length])
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._error = exc
            finally:
                self._free.put(buffer)

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def acquire(self) -> memoryview:
        """A free output buffer (waits for the writer); raises a pending write error."""
        buffer = self._free.get()
        self._raise_pending()
        self._current = buffer
        return memoryview(buffer)

    def submit(self, length: int) -> None:
        """Queue the first ``length`` bytes of the buffer from the last ``acquire``."""
        self._jobs.put((self._current, length))

    def close(self, *, raise_errors: bool = True) -> None:
        """Wait until every queued segment is written (or failed)."""
        self._jobs.put(None)
        self._thread.join()
        if raise_errors:
            self._raise_pending()


class ReadAhead:
    """Segments of a regular file read in order by one background thread into a ring of
    buffers, so the copy out of the page cache overlaps the AEAD (and the writer).

    Only for regular files: a read there never waits for a writer at the other end, so
    :meth:`close` can always join the thread. The thread stops after the first short read
    (the end of the input): the caller asks for a next buffer only after a full one.
    """

    _DEPTH = 3

    def __init__(self, src: Source, size: int) -> None:
        import queue
        import threading

        self._src = src
        self._free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
        for _ in range(self._DEPTH):
            self._free.put(bytearray(size))
        self._ready: queue.SimpleQueue[tuple[bytearray, int, BaseException | None]] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="pqfile-read-ahead", daemon=True)
        try:
            _start_with_signals_blocked(self._thread)
        except BaseException:
            if self._thread.ident is not None:
                self.close()
            raise

    def _run(self) -> None:
        while True:
            buffer = self._free.get()
            if buffer is None:
                return
            try:
                filled = _fill(self._src, memoryview(buffer))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._ready.put((buffer, 0, exc))
                return
            self._ready.put((buffer, filled, None))
            if filled < len(buffer):
                return

    def next(self) -> tuple[bytearray, int]:
        """The next buffer and how many bytes of it were read; raises a read error."""
        buffer, filled, error = self._ready.get()
        if error is not None:
            raise error
        return buffer, filled

    def release(self, buffer: bytearray) -> None:
        self._free.put(buffer)

    def close(self) -> None:
        """Stop the reader (at once if it waits for a buffer, else after its read)."""
        self._free.put(None)
        self._thread.join()


def regular_file_remaining(src: object) -> int | None:
    """Bytes left to read in ``src`` if it is a regular file (by fstat and its position)."""
    import stat

    fileno, tell = getattr(src, "fileno", None), getattr(src, "tell", None)
    if fileno is None or tell is None:
        return None
    try:
        st = os.fstat(fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        position = tell()
    except (OSError, ValueError):
        return None
    return max(0, st.st_size - position) if isinstance(position, int) else None


def read_ahead(src: Source, size: int) -> ReadAhead | None:
    """Prepare ``src`` for the body loops of crypto/stream.py: mark it read sequentially,
    and when it is a regular file with more than one ``size`` segment left, start a
    :class:`ReadAhead` of ``size`` buffers (the caller closes it); else None (the caller
    reads in its own thread)."""
    read_sequentially(src)
    remaining = regular_file_remaining(src)
    return ReadAhead(src, size) if remaining is not None and remaining > size else None
