"""Encrypt, decrypt, inspect and rewrap PQF v1 packages (docs/FORMAT.md).

The public API:

- :func:`encrypt_stream` / :func:`decrypt_stream` between binary file objects, constant memory;
- :func:`decrypt_to_path` (temporary file, renamed only after the final segment verified);
- :func:`encrypt_bytes` / :func:`decrypt_bytes`, the in-memory fast path;
- :func:`read_header` (no key needed) and :func:`rewrap_header` / :func:`rewrap_stream`;
- :func:`reencrypt_stream`: the same plaintext under a fresh data key, salt and key schedule
  (the compromise path of key rotation, and the only way into the CNSA 2.0 suite for a
  SHA-256 package).

Rewrap and re-encryption live in :mod:`pqfile.crypto.reencrypt`, atomic output files in
:mod:`pqfile.crypto.atomic`; both are re-exported here under their old names.

Deterministic internals (:func:`_seal_header`, the ``_randomness`` parameters) exist for the
vector generator and tests; the public functions draw from ``os.urandom``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

from pqfile.crypto import stream
from pqfile.crypto.atomic import NOT_A_REGULAR_FILE, WriteInterrupted, write_atomically
from pqfile.crypto.kem import PublicKey, SecretKey
from pqfile.crypto.keyschedule import BodyKeys, Kdf, derive_body_keys, header_mac, open_body_keys
from pqfile.crypto.stream import ProgressCallback, Sink
from pqfile.crypto.wrap import WrapFunction, hpke_info, hpke_unwrap, hpke_wrap
from pqfile.errors import DecryptionError, WrongKeyError
from pqfile.format._frozen import Frozen
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
    "NOT_A_REGULAR_FILE",
    "DecryptResult",
    "EncryptResult",
    "Header",
    "Randomness",
    "WriteInterrupted",
    "check_downgrade",
    "check_rewrap",
    "decrypt_bytes",
    "decrypt_stream",
    "decrypt_to_path",
    "encrypt_bytes",
    "encrypt_stream",
    "read_header",
    "reencrypt_stream",
    "rewrap_header",
    "rewrap_stream",
    "write_atomically",
]


class BinarySource(Protocol):
    """A readable binary file object (``open(..., "rb")``, ``sys.stdin.buffer``, BytesIO, an
    HTTP body). ``readinto`` is used when present (no copies), else ``read``."""

    def read(self, size: int = ..., /) -> bytes: ...


class Randomness(Frozen):
    """The per-package random values; fixed only by tests and the vector generator."""

    _fields = ("data_key", "salt", "nonce_prefix")
    __slots__ = _fields
    _hidden = frozenset(_fields)
    data_key: bytes
    salt: bytes
    nonce_prefix: bytes

    def __init__(self, data_key: bytes, salt: bytes, nonce_prefix: bytes) -> None:
        self._init(data_key, salt, nonce_prefix)

    @classmethod
    def fresh(cls) -> Randomness:
        return cls(os.urandom(DATA_KEY_SIZE), os.urandom(SALT_SIZE), os.urandom(NONCE_PREFIX_SIZE))


class EncryptResult(Frozen):
    _fields = ("header", "plaintext_size", "package_size")
    __slots__ = _fields
    header: Header
    plaintext_size: int
    package_size: int

    def __init__(self, header: Header, plaintext_size: int, package_size: int) -> None:
        self._init(header, plaintext_size, package_size)

    @property
    def header_size(self) -> int:
        return self.header.size

    @property
    def key_id(self) -> str:
        return self.header.key_id

    @property
    def segment_count(self) -> int:
        return stream.segment_count(self.plaintext_size, self.header.segment_size)


class DecryptResult(Frozen):
    _fields = ("header", "plaintext_size")
    __slots__ = _fields
    header: Header
    plaintext_size: int

    def __init__(self, header: Header, plaintext_size: int) -> None:
        self._init(header, plaintext_size)


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
    public, pyca_identity = identity.with_pyca()
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
    data_key = hpke_unwrap(header.enc, header.wrapped_key, identity, info, pyca_identity)
    opened = open_body_keys(
        data_key, header.salt, header.kdf, header.commitment, header.mac_input(), header.mac
    )
    ok = opened is not None
    if expected_context is not None:
        ok &= encode_context(expected_context) == header.context_bytes
    if expected_document_id is not None:
        ok &= document_id_bytes(expected_document_id) == header.document_id
    if not ok or opened is None:
        raise DecryptionError()
    return data_key, opened


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


# Re-exported under their old names; imported last because reencrypt builds on the above.
from pqfile.crypto.reencrypt import (  # noqa: E402
    check_downgrade,
    check_rewrap,
    reencrypt_stream,
    rewrap_header,
    rewrap_stream,
)
