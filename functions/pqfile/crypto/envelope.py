"""Encrypt, decrypt, inspect and rewrap PQF v1 packages (docs/FORMAT.md).

The public API:

- :func:`encrypt_stream` / :func:`decrypt_stream` between binary file objects, constant memory;
- :func:`decrypt_to_path` (temporary file, renamed only after the final segment verified);
- :func:`encrypt_bytes` / :func:`decrypt_bytes`, the in-memory fast path;
- :func:`read_header` (no key needed) and :func:`rewrap_header` / :func:`rewrap_stream`;
- :func:`reencrypt_stream`: the same plaintext under a fresh data key, salt and key schedule
  (the compromise path of key rotation, and the only way into the CNSA 2.0 suite for a
  SHA-256 package).

Deterministic internals (:func:`_seal_header`, the ``_randomness`` parameters) exist for the
vector generator and tests; the public functions draw from ``os.urandom``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from pqfile.crypto import stream
from pqfile.crypto.kem import PublicKey, SecretKey, Suite
from pqfile.crypto.keyschedule import (
    BodyKeys,
    Kdf,
    constant_time_equal,
    derive_body_keys,
    header_mac,
)
from pqfile.crypto.stream import ProgressCallback, Sink
from pqfile.crypto.wrap import WrapFunction, hpke_info, hpke_unwrap, hpke_wrap
from pqfile.errors import (
    DecryptionError,
    DowngradeError,
    ReencryptionRequiredError,
    WrongKeyError,
)
from pqfile.format.header import (
    DATA_KEY_SIZE,
    DEFAULT_SEGMENT_SIZE,
    MAX_HEADER_SIZE,
    NONCE_PREFIX_SIZE,
    SALT_SIZE,
    Header,
    check_segment_size,
    check_suite_kdf,
    decode_context,
    document_id_bytes,
    encode_context,
    new_header,
    parse_header,
    read_header_from,
)

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "DecryptResult",
    "EncryptResult",
    "Header",
    "Randomness",
    "decrypt_bytes",
    "decrypt_stream",
    "decrypt_to_path",
    "encrypt_bytes",
    "encrypt_stream",
    "read_header",
    "reencrypt_stream",
    "rewrap_header",
    "rewrap_stream",
]


class BinarySource(Protocol):
    """A readable binary file object (``open(..., "rb")``, ``sys.stdin.buffer``, BytesIO, an
    HTTP body). ``readinto`` is used when present (no copies), else ``read``."""

    def read(self, size: int = ..., /) -> bytes: ...


@dataclass(frozen=True)
class Randomness:
    """The per-package random values; fixed only by tests and the vector generator."""

    data_key: bytes = field(repr=False)
    salt: bytes = field(repr=False)
    nonce_prefix: bytes = field(repr=False)

    @classmethod
    def fresh(cls) -> Randomness:
        return cls(os.urandom(DATA_KEY_SIZE), os.urandom(SALT_SIZE), os.urandom(NONCE_PREFIX_SIZE))


@dataclass(frozen=True)
class EncryptResult:
    header: Header
    plaintext_size: int
    package_size: int

    @property
    def header_size(self) -> int:
        return self.header.size

    @property
    def key_id(self) -> str:
        return self.header.key_id

    @property
    def segment_count(self) -> int:
        return stream.segment_count(self.plaintext_size, self.header.segment_size)


@dataclass(frozen=True)
class DecryptResult:
    header: Header
    plaintext_size: int


# --- header sealing and opening ------------------------------------------------------------


def _seal_header(
    recipient: PublicKey,
    *,
    context: Mapping[str, str],
    document_id: str | bytes | None,
    segment_size: int,
    randomness: Randomness,
    wrap: WrapFunction = hpke_wrap,
) -> tuple[Header, BodyKeys]:
    """Build and authenticate a header (FORMAT.md §1-5, §7); returns it with the body keys."""
    check_segment_size(segment_size)
    kdf = Kdf.for_suite(recipient.suite)  # FORMAT.md §1 byte 55: fixed here, for good
    keys = derive_body_keys(randomness.data_key, randomness.salt, kdf)
    header = new_header(
        suite=recipient.suite,
        kdf=kdf,
        segment_size=segment_size,
        salt=randomness.salt,
        nonce_prefix=randomness.nonce_prefix,
        commitment=keys.commitment,
        document_id=document_id_bytes(document_id),
        context_bytes=encode_context(context),
    )
    header = _wrap_into(header, keys, randomness.data_key, recipient, wrap)
    header.check()
    return header, keys


def _wrap_into(
    header: Header, keys: BodyKeys, data_key: bytes, recipient: PublicKey, wrap: WrapFunction
) -> Header:
    """Fill the stanza for ``recipient`` (FORMAT.md §4) and recompute the MAC (§7)."""
    # The core header carries the suite id, so set the new suite before computing info.
    check_suite_kdf(recipient.suite, header.kdf)
    header = header.with_stanza(recipient.suite, recipient.key_id_bytes, b"", b"")
    info = hpke_info(header.core_bytes(), recipient.key_id_bytes, header.kdf)
    enc, wrapped = wrap(data_key, recipient, info)
    header = header.with_stanza(recipient.suite, recipient.key_id_bytes, enc, wrapped)
    return header.with_mac(header_mac(keys.mac_key, header.mac_input(), header.kdf))


def open_header(
    header: Header,
    identity: SecretKey,
    *,
    expected_context: Mapping[str, str] | None = None,
    expected_document_id: str | bytes | None = None,
) -> tuple[bytes, BodyKeys]:
    """FORMAT.md §10 steps 7-8 for the header: recipient, unwrap, commitment, MAC.

    Returns (data key, body keys). Raises WrongKeyError or the opaque DecryptionError.
    """
    public = identity.public_key()
    if header.suite is not identity.suite:  # §10 step 7: the recipient is (suite, key id)
        raise WrongKeyError(
            header.key_id,
            public.key_id,
            expected_suite=header.suite.value,
            supplied_suite=identity.suite.value,
        )
    if header.key_id_bytes != public.key_id_bytes:
        raise WrongKeyError(header.key_id, public.key_id)
    info = hpke_info(header.core_bytes(), header.key_id_bytes, header.kdf)
    data_key = hpke_unwrap(header.enc, header.wrapped_key, identity, info)
    keys = derive_body_keys(data_key, header.salt, header.kdf)
    ok = constant_time_equal(keys.commitment, header.commitment)
    mac = header_mac(keys.mac_key, header.mac_input(), header.kdf)
    ok &= constant_time_equal(mac, header.mac)
    if expected_context is not None:
        ok &= encode_context(expected_context) == header.context_bytes
    if expected_document_id is not None:
        ok &= document_id_bytes(expected_document_id) == header.document_id
    if not ok:
        raise DecryptionError()
    return data_key, keys


# --- streaming ------------------------------------------------------------------------------


def encrypt_stream(
    src: BinarySource,
    dst: Sink,
    recipient: PublicKey,
    *,
    context: Mapping[str, str] | None = None,
    document_id: str | bytes | None = None,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    progress: ProgressCallback | None = None,
    _randomness: Randomness | None = None,
    _wrap: WrapFunction = hpke_wrap,
) -> EncryptResult:
    """Encrypt everything ``src`` yields into a PQF v1 package written to ``dst``."""
    header, keys = _seal_header(
        recipient,
        context=context or {},
        document_id=document_id,
        segment_size=segment_size,
        randomness=_randomness or Randomness.fresh(),
        wrap=_wrap,
    )
    raw = header.to_bytes()
    stream.write_all(dst, memoryview(raw))
    plain, body = stream.encrypt_body(
        src, dst, keys.body_key, header.nonce_prefix, segment_size, progress=progress
    )
    return EncryptResult(header=header, plaintext_size=plain, package_size=len(raw) + body)


def read_header(src: BinarySource | bytes | bytearray | memoryview) -> Header:
    """Parse the header at the start of a stream or buffer; needs no key.

    A stream is left positioned at the start of the body.
    """
    if isinstance(src, bytes | bytearray | memoryview):
        return parse_header(bytes(src))
    return read_header_from(src)[0]


def decrypt_stream(
    src: BinarySource,
    dst: Sink,
    identity: SecretKey,
    *,
    expected_context: Mapping[str, str] | None = None,
    expected_document_id: str | bytes | None = None,
    progress: ProgressCallback | None = None,
) -> DecryptResult:
    """Decrypt a package from ``src`` to ``dst``.

    Each segment is written to ``dst`` as soon as it verifies. The package is authentic
    only if this returns: on any exception the caller MUST discard everything written to
    ``dst``. Use :func:`decrypt_to_path` or :func:`decrypt_bytes` for the safe behaviour.
    """
    header = read_header_from(src)[0]
    _, keys = open_header(
        header,
        identity,
        expected_context=expected_context,
        expected_document_id=expected_document_id,
    )
    plain = stream.decrypt_body(
        src, dst, keys.body_key, header.nonce_prefix, header.segment_size, progress=progress
    )
    return DecryptResult(header=header, plaintext_size=plain)


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
    if threading.current_thread() is not threading.main_thread():
        return {}
    taken: dict[int, signal.Handlers] = {}
    for signum in _TERMINATING_SIGNALS:
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _raise_interrupted)
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


def _check_replaceable(target: Path) -> None:
    """``overwrite`` replaces a regular file only: never a directory, device, FIFO, socket
    or symlink (checked without following it)."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise FileExistsError(errno.EEXIST, NOT_A_REGULAR_FILE, str(target))


def _commit_temp(tmp: str, target: Path, overwrite: bool) -> None:
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
    return _AtomicFile(Path(target), overwrite, durable)


class _AtomicFile:
    """Temporary file next to the target; ``commit`` renames it, ``discard`` removes it.

    Either one ends its life (use it as a context manager): both remove the temporary
    file if it is still there and restore the signal handlers taken at creation.
    """

    def __init__(self, target: Path, overwrite: bool, durable: bool = False) -> None:
        self.target = target
        self.overwrite = overwrite
        self.durable = durable
        if overwrite:
            _check_replaceable(target)
        elif os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
        self.tmp: str | None = None
        self.file: BinaryIO | None = None
        self._signals = _catch_termination()
        try:
            with _signals_deferred(self._signals):
                fd, self.tmp = tempfile.mkstemp(
                    dir=target.parent, prefix=f".{target.name}.", suffix=".partial"
                )
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


def decrypt_to_path(
    src: BinarySource,
    path: str | os.PathLike[str],
    identity: SecretKey,
    *,
    overwrite: bool = False,
    expected_context: Mapping[str, str] | None = None,
    expected_document_id: str | bytes | None = None,
    progress: ProgressCallback | None = None,
) -> DecryptResult:
    """Decrypt to a file that appears only after the whole package verified (mode 0600)."""
    with write_atomically(path, overwrite=overwrite) as out:
        return decrypt_stream(
            src,
            out,
            identity,
            expected_context=expected_context,
            expected_document_id=expected_document_id,
            progress=progress,
        )


# --- in memory --------------------------------------------------------------------------------


def encrypt_bytes(
    plaintext: bytes | bytearray | memoryview,
    recipient: PublicKey,
    *,
    context: Mapping[str, str] | None = None,
    document_id: str | bytes | None = None,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    _randomness: Randomness | None = None,
    _wrap: WrapFunction = hpke_wrap,
) -> bytearray:
    """Encrypt a buffer; returns the package (one allocation, no per-segment copies)."""
    header, keys = _seal_header(
        recipient,
        context=context or {},
        document_id=document_id,
        segment_size=segment_size,
        randomness=_randomness or Randomness.fresh(),
        wrap=_wrap,
    )
    raw = header.to_bytes()
    src = memoryview(plaintext).cast("B")
    out = bytearray(len(raw) + stream.body_size(len(src), segment_size))
    out[: len(raw)] = raw
    view = memoryview(out)
    stream.encrypt_body_into(
        src, view[len(raw) :], keys.body_key, header.nonce_prefix, segment_size
    )
    return out


def decrypt_bytes(
    package: bytes | bytearray | memoryview,
    identity: SecretKey,
    *,
    expected_context: Mapping[str, str] | None = None,
    expected_document_id: str | bytes | None = None,
) -> bytearray:
    """Decrypt a whole package in memory; returns the plaintext only if all of it verified."""
    view = memoryview(package).cast("B")
    header = parse_header(bytes(view[:MAX_HEADER_SIZE]))
    _, keys = open_header(
        header,
        identity,
        expected_context=expected_context,
        expected_document_id=expected_document_id,
    )
    body = view[header.size :]
    out = bytearray(stream.plaintext_size(len(body), header.segment_size))
    stream.decrypt_body_into(
        body, memoryview(out), keys.body_key, header.nonce_prefix, header.segment_size
    )
    return out


# --- rewrap (FORMAT.md §8) -----------------------------------------------------------------


def check_rewrap(header: Header, new_suite: Suite, *, allow_downgrade: bool = False) -> None:
    """FORMAT.md §8: what a rewrap may not do, decided from the header alone.

    - a SHA-256 package (KDF 0x00) cannot enter the CNSA 2.0 suite: the body keeps its hash
      family, so that takes a re-encryption (:func:`reencrypt_stream`);
    - a lower-ranked suite (mlkem768 < xwing < mlkem1024) is a downgrade, refused unless
      ``allow_downgrade``.
    """
    if new_suite is Suite.MLKEM1024 and header.kdf is not Kdf.HKDF_SHA384:
        raise ReencryptionRequiredError(
            f"cannot rewrap a {header.kdf.label} package into suite {new_suite.value} "
            f"(it needs {Kdf.HKDF_SHA384.label}): re-encrypt it instead"
        )
    check_downgrade(header.suite, new_suite, allow_downgrade=allow_downgrade)


def check_downgrade(old: Suite, new: Suite, *, allow_downgrade: bool = False) -> None:
    """Raise DowngradeError if ``new`` ranks below ``old`` and that was not asked for."""
    if new.rank < old.rank and not allow_downgrade:
        raise DowngradeError(old.value, new.value)


def rewrap_header(
    header_bytes: bytes,
    old: SecretKey,
    new: PublicKey,
    *,
    allow_downgrade: bool = False,
    _wrap: WrapFunction = hpke_wrap,
) -> bytes:
    """A new header for ``new`` carrying the same data key; the body stays byte for byte.

    ``header_bytes`` may hold more than the header (e.g. the first KiB of the package); only
    the header is read. The rules of :func:`check_rewrap` come first (DowngradeError,
    ReencryptionRequiredError); then the old header is fully verified before anything is
    rewrapped. The package's KDF (and so the body and its key schedule) never changes.
    """
    header = parse_header(header_bytes)
    check_rewrap(header, new.suite, allow_downgrade=allow_downgrade)
    data_key, keys = open_header(header, old)
    return _wrap_into(header, keys, data_key, new, _wrap).to_bytes()


def rewrap_stream(
    src: BinarySource,
    dst: Sink,
    old: SecretKey,
    new: PublicKey,
    *,
    allow_downgrade: bool = False,
    chunk_size: int = 1 << 20,
) -> Header:
    """Copy a package from ``src`` to ``dst`` with a rewrapped header; the body is copied."""
    _, raw = read_header_from(src)
    new_raw = rewrap_header(raw, old, new, allow_downgrade=allow_downgrade)
    stream.write_all(dst, memoryview(new_raw))
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    body = stream.as_source(src)
    while True:
        n = body.readinto(view)
        if not n:
            break
        stream.write_all(dst, view[:n])
    return parse_header(new_raw)


def reencrypt_stream(
    src: BinarySource,
    dst: Sink,
    identity: SecretKey,
    recipient: PublicKey,
    *,
    allow_downgrade: bool = False,
    expected_context: Mapping[str, str] | None = None,
    expected_document_id: str | bytes | None = None,
    progress: ProgressCallback | None = None,
    _randomness: Randomness | None = None,
    _wrap: WrapFunction = hpke_wrap,
) -> EncryptResult:
    """Decrypt a package and encrypt its plaintext again for ``recipient``, streaming.

    The new package has a FRESH data key, salt and nonce prefix, the key schedule of the
    new suite (KDF byte, §1), and the same document id, context and segment size. Each
    segment is re-encrypted as soon as it verified, in constant memory, so plaintext is
    never stored; but the package is authentic only if this returns: on any exception the
    caller MUST discard everything written to ``dst``. The downgrade guard applies as for
    a rewrap; moving a SHA-256 package into the CNSA 2.0 suite is exactly this path.
    """
    header = read_header_from(src)[0]
    check_downgrade(header.suite, recipient.suite, allow_downgrade=allow_downgrade)
    _, old_keys = open_header(
        header,
        identity,
        expected_context=expected_context,
        expected_document_id=expected_document_id,
    )
    new_header_, new_keys = _seal_header(
        recipient,
        context=header.context,
        document_id=header.document_id,
        segment_size=header.segment_size,
        randomness=_randomness or Randomness.fresh(),
        wrap=_wrap,
    )
    raw = new_header_.to_bytes()
    stream.write_all(dst, memoryview(raw))
    sealer = stream.SegmentEncryptor(
        dst, new_keys.body_key, new_header_.nonce_prefix, new_header_.segment_size
    )
    stream.decrypt_body(
        src, sealer, old_keys.body_key, header.nonce_prefix, header.segment_size, progress=progress
    )
    plain, body = sealer.finish()
    return EncryptResult(header=new_header_, plaintext_size=plain, package_size=len(raw) + body)


def describe(header: Header) -> dict[str, object]:
    """A JSON-ready summary of a header (for inspect and logs; holds no secrets)."""
    return {
        "format": "PQF",
        "version": header.version,
        "suite": header.suite.value,
        "suite_id": f"0x{header.suite.wire_id:04x}",
        "kdf": header.kdf.label,
        "kdf_id": f"0x{header.kdf.value:02x}",
        "key_id": header.key_id,
        "document_id": _text_or_hex(header.document_id),
        "context": decode_context(header.context_bytes),
        "segment_size": header.segment_size,
        "header_size": header.size,
    }


def _text_or_hex(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "hex:" + raw.hex()
    return text if text.isprintable() else "hex:" + raw.hex()
