"""Output files that appear only when complete: a temporary file next to the target,
renamed at the end and removed on every failure (including SIGTERM and SIGHUP).

:func:`write_atomically` is re-exported by :mod:`pqfile.crypto.envelope` under the same name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import signal
else:
    try:  # the C module that `signal` wraps: the same calls, with plain ints where `signal`
        import _signal as signal  # builds IntEnums on import (~0.5 ms of CLI start-up)
    except ImportError:  # pragma: no cover (an interpreter without it)
        import signal

__all__ = ["NOT_A_REGULAR_FILE", "WriteInterrupted", "split_target", "write_atomically"]

NOT_A_REGULAR_FILE = "exists and is not a regular file; refusing to replace it"


class WriteInterrupted(KeyboardInterrupt):
    """A termination signal (SIGTERM, SIGHUP) arrived while an output file was being
    written; the temporary file is gone. A KeyboardInterrupt, so callers treat it as one."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


# Signals whose default action would kill the process with the temporary file in place.
_TERMINATING_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def _raise_interrupted(signum: int, frame: object) -> None:
    raise WriteInterrupted(signum)


def _catch_termination() -> dict[int, signal.Handlers]:
    """Turn SIGTERM/SIGHUP into WriteInterrupted while a temporary file exists, so the
    ``finally`` that removes it runs. Only signals left at their default action are taken
    (an application's own handler, or SIG_IGN under nohup, stays), and only in the main
    thread, the one Python delivers signals to; returns what to restore."""
    taken: dict[int, signal.Handlers] = {}
    for signum in _TERMINATING_SIGNALS:
        if signal.getsignal(signum) == signal.SIG_DFL:
            try:
                signal.signal(signum, _raise_interrupted)
            except ValueError:  # not the main thread (checked so, without loading threading)
                _restore_signals(taken)
                return {}
            taken[signum] = signal.SIG_DFL
    return taken


def _restore_signals(taken: dict[int, signal.Handlers]) -> None:
    for signum, handler in taken.items():
        signal.signal(signum, handler)


@contextlib.contextmanager
def _signals_deferred(taken: dict[int, signal.Handlers]) -> Iterator[None]:
    """Hold the taken signals back while a file is created or removed, so the exception
    cannot fall between creating the file and recording its name. A signal that arrived
    meanwhile raises when they are unblocked (pthread_sigmask runs the handlers)."""
    if not taken:
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, taken)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def split_target(target: str | os.PathLike[str]) -> tuple[str, str, str]:
    """(path, folder, name) of an output path, as ``pathlib`` reads it (trailing slashes
    dropped; the folder of a bare name is ``.``) without importing pathlib, which loads
    ``urllib.parse`` and ``ipaddress`` (CLI start-up, issue 15)."""
    path = os.fspath(target)
    path = path.rstrip("/") or path
    folder, name = os.path.split(path)
    return path, folder or ".", name


def _check_replaceable(target: str) -> None:
    """``overwrite`` replaces a regular file only: never a directory, device, FIFO, socket
    or symlink (checked without following it)."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise FileExistsError(errno.EEXIST, NOT_A_REGULAR_FILE, target)


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _create_temp(target: str) -> tuple[int, str]:
    """A new file ``.<name>.<random>.partial`` beside ``target``, mode 0600 (what
    ``tempfile.mkstemp`` does, without importing tempfile and random: CLI start-up)."""
    _, folder, base = split_target(target)
    for _ in range(100):
        name = os.path.join(folder, f".{base}.{os.urandom(6).hex()}.partial")
        try:
            return os.open(name, _TEMP_FLAGS, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", folder)


def _commit_temp(tmp: str, target: str, overwrite: bool) -> None:
    if overwrite:
        _check_replaceable(target)  # again: the target may have changed while we wrote
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic and refuses to clobber (FileExistsError)
    finally:
        os.unlink(tmp)


def write_atomically(
    target: str | os.PathLike[str], *, overwrite: bool = False, durable: bool = False
) -> _AtomicFile:
    """A file object that appears at ``target`` (mode 0600) only when committed.

    ``overwrite`` replaces an existing regular file, nothing else (FileExistsError).
    ``durable`` fsyncs before the rename (slower; off by default, as for ``cp``).
    The temporary file is removed on every failure, including KeyboardInterrupt and, in
    the main thread, SIGTERM and SIGHUP (raised as :class:`WriteInterrupted` meanwhile).
    """
    return _AtomicFile(split_target(target)[0], overwrite, durable)


class _AtomicFile:
    """Temporary file next to the target; ``commit`` renames it, ``discard`` removes it.

    Either one ends its life (use it as a context manager): both remove the temporary
    file if it is still there and restore the signal handlers taken at creation.
    """

    def __init__(self, target: str, overwrite: bool, durable: bool = False) -> None:
        self.target = target
        self.overwrite = overwrite
        self.durable = durable
        if overwrite:
            _check_replaceable(target)
        elif os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target)
        self.tmp: str | None = None
        self.file: BinaryIO | None = None
        self._signals = _catch_termination()
        try:
            with _signals_deferred(self._signals):
                fd, self.tmp = _create_temp(target)
                self.file = os.fdopen(fd, "wb")
        except BaseException:
            self.discard()
            raise

    def _open_file(self) -> BinaryIO:
        if self.file is None or self.tmp is None:
            raise ValueError("the temporary file is gone (committed or discarded)")
        return self.file

    def write(self, data: memoryview, /) -> int:
        return self._open_file().write(data)

    def fileno(self) -> int:
        """The temporary file's descriptor (the body writer overlaps writes to real files)."""
        return self._open_file().fileno()

    def commit(self) -> None:
        try:
            file = self._open_file()
            file.flush()
            if self.durable:
                os.fsync(file.fileno())
            file.close()
            assert self.tmp is not None
            _commit_temp(self.tmp, self.target, self.overwrite)
            self.tmp = None
        except BaseException:
            self._remove_temp()
            raise
        finally:
            _restore_signals(self._signals)

    def discard(self) -> None:
        try:
            self._remove_temp()
        finally:
            _restore_signals(self._signals)

    def _remove_temp(self) -> None:
        with _signals_deferred(self._signals):
            if self.file is not None:
                with contextlib.suppress(OSError):  # a failed flush must not keep the file
                    self.file.close()
            if self.tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.tmp)
                self.tmp = None

    def __enter__(self) -> _AtomicFile:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
