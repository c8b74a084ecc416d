"""PQF v1 header <-> bytes (docs/FORMAT.md sections 1-4, 7, 9, 10).

Pure byte functions: no keys, no cryptography. Parsing checks, in FORMAT.md §10's order, the
magic, version, flags and suite, then the KDF id, exact lengths and every limit before anything
else looks at the bytes. The MAC length follows the KDF id (byte 55), so the header length,
and with it the body offset, follows from the fixed part alone.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Protocol

from pqfile.crypto.kem import KEY_ID_SIZE, Suite
from pqfile.crypto.keyschedule import MAX_MAC_SIZE, Kdf
from pqfile.errors import (
    LimitExceededError,
    MalformedPackageError,
    NotAPackageError,
    UnsupportedSuiteError,
    UnsupportedVersionError,
)
from pqfile.format._frozen import Frozen

MAGIC = b"\x89PQF"
VERSION = 1

# FORMAT.md §1: magic(4) version(1) flags(1) suite(2) segment size(4) context length(2)
# document id length(2) salt(32) nonce prefix(7) KDF id(1) commitment(32).
_FIXED = struct.Struct(">4sBBHIHH32s7sB32s")
FIXED_SIZE = _FIXED.size  # 88
PREAMBLE_SIZE = 8
SALT_SIZE = 32
NONCE_PREFIX_SIZE = 7
COMMITMENT_SIZE = 32
DATA_KEY_SIZE = 32
WRAPPED_KEY_SIZE = DATA_KEY_SIZE + 16  # HPKE AES-256-GCM ciphertext || tag

# FORMAT.md §9 limits.
MIN_SEGMENT_SIZE = 1024
MAX_SEGMENT_SIZE = 16 * 1024 * 1024
DEFAULT_SEGMENT_SIZE = 1024 * 1024
MAX_SEGMENTS = 2**32
MAX_CONTEXT_ENTRIES = 64
MAX_CONTEXT_KEY_SIZE = 255
MAX_CONTEXT_VALUE_SIZE = 2048
MAX_CONTEXT_SIZE = 8192
MAX_DOCUMENT_ID_SIZE = 256
TAG_SIZE = 16


def stanza_size(suite: Suite) -> int:
    """FORMAT.md §4: key id || HPKE enc || wrapped data key."""
    return KEY_ID_SIZE + suite.enc_size + WRAPPED_KEY_SIZE


MAX_HEADER_SIZE = (
    FIXED_SIZE
    + MAX_DOCUMENT_ID_SIZE
    + MAX_CONTEXT_SIZE
    + max(stanza_size(s) for s in Suite)
    + MAX_MAC_SIZE
)


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


# --- encryption context (FORMAT.md §3) -------------------------------------------------


def encode_context(context: Mapping[str, str]) -> bytes:
    """The canonical encoding: entries sorted by the key's UTF-8 bytes."""
    if len(context) > MAX_CONTEXT_ENTRIES:
        raise LimitExceededError(
            f"encryption context has {len(context)} entries (limit {MAX_CONTEXT_ENTRIES})"
        )
    items: list[tuple[bytes, bytes]] = []
    for key, value in context.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("encryption context keys and values must be str")
        try:
            items.append((key.encode("utf-8"), value.encode("utf-8")))
        except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form (FORMAT.md §3)
            raise MalformedPackageError(
                "encryption context keys and values must be valid Unicode (no lone surrogates)"
            ) from None
    items.sort()
    out = bytearray()
    for kb, vb in items:
        if not 1 <= len(kb) <= MAX_CONTEXT_KEY_SIZE:
            raise LimitExceededError(
                f"encryption context key must be 1..{MAX_CONTEXT_KEY_SIZE} bytes"
            )
        if len(vb) > MAX_CONTEXT_VALUE_SIZE:
            raise LimitExceededError(
                f"encryption context value exceeds {MAX_CONTEXT_VALUE_SIZE} bytes"
            )
        out += bytes((len(kb),)) + kb + len(vb).to_bytes(2, "big") + vb
    if len(out) > MAX_CONTEXT_SIZE:
        raise LimitExceededError(
            f"encryption context is {len(out)} bytes encoded (limit {MAX_CONTEXT_SIZE})"
        )
    return bytes(out)


def decode_context(data: bytes) -> dict[str, str]:
    """Inverse of :func:`encode_context`; rejects every non-canonical encoding."""
    if len(data) > MAX_CONTEXT_SIZE:
        raise LimitExceededError("encryption context too large")
    result: dict[str, str] = {}
    previous: bytes | None = None
    pos = 0
    while pos < len(data):
        if len(result) >= MAX_CONTEXT_ENTRIES:
            raise LimitExceededError("too many encryption context entries")
        klen = data[pos]
        pos += 1
        if klen == 0 or pos + klen + 2 > len(data):
            raise MalformedPackageError("malformed encryption context")
        kb = data[pos : pos + klen]
        pos += klen
        vlen = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if vlen > MAX_CONTEXT_VALUE_SIZE:
            raise LimitExceededError("encryption context value too large")
        if pos + vlen > len(data):
            raise MalformedPackageError("malformed encryption context")
        vb = data[pos : pos + vlen]
        pos += vlen
        if previous is not None and kb <= previous:
            raise MalformedPackageError("encryption context entries not in canonical order")
        previous = kb
        try:
            result[kb.decode("utf-8")] = vb.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPackageError("encryption context is not valid UTF-8") from None
    return result


def document_id_bytes(document_id: str | bytes | None) -> bytes:
    """FORMAT.md §2: text is UTF-8 encoded; None is empty."""
    if document_id is None:
        raw = b""
    elif isinstance(document_id, str):
        raw = document_id.encode("utf-8")
    else:
        raw = bytes(document_id)
    if len(raw) > MAX_DOCUMENT_ID_SIZE:
        raise LimitExceededError(f"document id exceeds {MAX_DOCUMENT_ID_SIZE} bytes")
    return raw


def check_segment_size(segment_size: int) -> None:
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise LimitExceededError(
            f"segment size {segment_size} outside {MIN_SEGMENT_SIZE}..{MAX_SEGMENT_SIZE}"
        )


# --- the header ---------------------------------------------------------------------------


class Header(Frozen):
    """A parsed PQF v1 header. ``context`` is the decoded map, ``context_bytes`` the wire form."""

    _fields = (
        "suite",
        "kdf",
        "segment_size",
        "salt",
        "nonce_prefix",
        "commitment",
        "document_id",
        "context_bytes",
        "key_id_bytes",
        "enc",
        "wrapped_key",
        "mac",
    )
    __slots__ = _fields
    _hidden = frozenset(
        {"salt", "nonce_prefix", "commitment", "context_bytes", "enc", "wrapped_key", "mac"}
    )
    suite: Suite
    kdf: Kdf  # FORMAT.md §1 byte 55: the key-schedule hash, fixed at encryption
    segment_size: int
    salt: bytes
    nonce_prefix: bytes
    commitment: bytes
    document_id: bytes
    context_bytes: bytes
    key_id_bytes: bytes
    enc: bytes
    wrapped_key: bytes
    mac: bytes

    def __init__(
        self,
        suite: Suite,
        kdf: Kdf,
        segment_size: int,
        salt: bytes,
        nonce_prefix: bytes,
        commitment: bytes,
        document_id: bytes,
        context_bytes: bytes,
        key_id_bytes: bytes,
        enc: bytes,
        wrapped_key: bytes,
        mac: bytes,
    ) -> None:
        self._init(
            suite,
            kdf,
            segment_size,
            salt,
            nonce_prefix,
            commitment,
            document_id,
            context_bytes,
            key_id_bytes,
            enc,
            wrapped_key,
            mac,
        )

    @property
    def version(self) -> int:
        return VERSION

    @property
    def key_id(self) -> str:
        return self.key_id_bytes.hex()

    @property
    def context(self) -> dict[str, str]:
        return decode_context(self.context_bytes)

    @property
    def size(self) -> int:
        """Header length in bytes = offset of the body."""
        return (
            FIXED_SIZE
            + len(self.document_id)
            + len(self.context_bytes)
            + stanza_size(self.suite)
            + self.kdf.mac_size
        )

    def core_bytes(self) -> bytes:
        """Fixed part || document id || context (FORMAT.md: the core header)."""
        fixed = _FIXED.pack(
            MAGIC,
            VERSION,
            0,
            self.suite.wire_id,
            self.segment_size,
            len(self.context_bytes),
            len(self.document_id),
            self.salt,
            self.nonce_prefix,
            self.kdf.value,
            self.commitment,
        )
        return fixed + self.document_id + self.context_bytes

    def stanza_bytes(self) -> bytes:
        return self.key_id_bytes + self.enc + self.wrapped_key

    def mac_input(self) -> bytes:
        """Every header byte before the MAC (FORMAT.md §7)."""
        return self.core_bytes() + self.stanza_bytes()

    def to_bytes(self) -> bytes:
        return self.mac_input() + self.mac

    def with_stanza(
        self, suite: Suite, key_id_bytes: bytes, enc: bytes, wrapped_key: bytes
    ) -> Header:
        return Header(
            suite,
            self.kdf,
            self.segment_size,
            self.salt,
            self.nonce_prefix,
            self.commitment,
            self.document_id,
            self.context_bytes,
            key_id_bytes,
            enc,
            wrapped_key,
            self.mac,
        )

    def with_mac(self, mac: bytes) -> Header:
        return Header(
            self.suite,
            self.kdf,
            self.segment_size,
            self.salt,
            self.nonce_prefix,
            self.commitment,
            self.document_id,
            self.context_bytes,
            self.key_id_bytes,
            self.enc,
            self.wrapped_key,
            mac,
        )

    def check(self) -> None:
        """Exact lengths and limits of every field (the writer calls this too)."""
        check_segment_size(self.segment_size)
        lengths = (
            (self.salt, SALT_SIZE),
            (self.nonce_prefix, NONCE_PREFIX_SIZE),
            (self.commitment, COMMITMENT_SIZE),
            (self.key_id_bytes, KEY_ID_SIZE),
            (self.enc, self.suite.enc_size),
            (self.wrapped_key, WRAPPED_KEY_SIZE),
        )
        for value, size in lengths:
            if len(value) != size:
                raise ValueError(f"header field must be {size} bytes, got {len(value)}")
        if len(self.mac) not in (0, self.kdf.mac_size):
            raise ValueError(f"header MAC must be {self.kdf.mac_size} bytes")
        check_suite_kdf(self.suite, self.kdf)
        if len(self.document_id) > MAX_DOCUMENT_ID_SIZE:
            raise LimitExceededError(f"document id exceeds {MAX_DOCUMENT_ID_SIZE} bytes")
        decode_context(self.context_bytes)


def check_preamble(data: bytes) -> Suite:
    """FORMAT.md §1 and §10 steps 1-4 on the first bytes of a package; returns the suite.

    One order, left to right: magic, version, flags, suite. Fewer than 4 bytes or another
    magic is "not a package"; after that, an input that ends before a field is a truncated
    header at that field (so a 4-byte input is truncated, not "newer version").
    """
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise NotAPackageError("not a PQF package (bad magic)")
    if len(data) < 5:
        raise MalformedPackageError("truncated PQF header (no version byte)")
    if data[4] != VERSION:
        raise UnsupportedVersionError(
            f"unsupported PQF version {data[4]} (this build reads version {VERSION})"
        )
    if len(data) < 6:
        raise MalformedPackageError("truncated PQF header (no flags byte)")
    if data[5] != 0:
        raise MalformedPackageError(f"reserved header flags are set (0x{data[5]:02x})")
    if len(data) < PREAMBLE_SIZE:
        raise MalformedPackageError("truncated PQF header (no suite id)")
    wire_id = int.from_bytes(data[6:8], "big")
    try:
        return Suite.from_wire_id(wire_id)
    except UnsupportedSuiteError:
        raise UnsupportedSuiteError(f"unsupported suite id 0x{wire_id:04x} in package") from None


def check_suite_kdf(suite: Suite, kdf: Kdf) -> None:
    """FORMAT.md §1: the CNSA 2.0 suite only ever carries HKDF-SHA384 (0x01).

    A SHA-256 package can never become an mlkem1024 one by rewrap (§8), so a header that
    claims it is malformed, and says so before any cryptography runs.
    """
    if suite is Suite.MLKEM1024 and kdf is not Kdf.HKDF_SHA384:
        raise MalformedPackageError(
            f"suite {suite.value} requires KDF id 0x{Kdf.HKDF_SHA384.value:02x} "
            f"({Kdf.HKDF_SHA384.label}), got 0x{kdf.value:02x}"
        )


_ParsedFixed = tuple[Suite, Kdf, int, int, int, bytes, bytes, bytes]


def _parse_fixed(fixed: bytes) -> _ParsedFixed:
    suite = check_preamble(fixed)
    if len(fixed) < FIXED_SIZE:
        raise MalformedPackageError("truncated PQF header")
    (_, _, _, _, segment_size, ctx_len, doc_len, salt, prefix, kdf_id, commitment) = (
        _FIXED.unpack(fixed[:FIXED_SIZE])
    )  # the flags byte was checked by check_preamble
    kdf = Kdf.from_wire_id(kdf_id)
    check_suite_kdf(suite, kdf)
    check_segment_size(segment_size)
    if ctx_len > MAX_CONTEXT_SIZE:
        raise LimitExceededError(f"encryption context length {ctx_len} exceeds limit")
    if doc_len > MAX_DOCUMENT_ID_SIZE:
        raise LimitExceededError(f"document id length {doc_len} exceeds limit")
    return suite, kdf, segment_size, ctx_len, doc_len, salt, prefix, commitment


def header_size(prefix: bytes) -> int:
    """The full header length (= body offset) from the first FIXED_SIZE bytes of a package.

    Lets a caller fetch exactly the header (e.g. an S3 range request) before parsing it.
    """
    suite, kdf, _, ctx_len, doc_len, *_ = _parse_fixed(bytes(prefix[:FIXED_SIZE]))
    return FIXED_SIZE + doc_len + ctx_len + stanza_size(suite) + kdf.mac_size


def _build(fixed: bytes, rest: bytes) -> Header:
    suite, kdf, segment_size, ctx_len, doc_len, salt, prefix, commitment = _parse_fixed(fixed)
    need = doc_len + ctx_len + stanza_size(suite) + kdf.mac_size
    if len(rest) < need:
        raise MalformedPackageError("truncated PQF header")
    pos = 0
    document_id = rest[pos : pos + doc_len]
    pos += doc_len
    context_bytes = rest[pos : pos + ctx_len]
    pos += ctx_len
    decode_context(context_bytes)  # canonical encoding and limits, before any crypto
    key_id = rest[pos : pos + KEY_ID_SIZE]
    pos += KEY_ID_SIZE
    enc = rest[pos : pos + suite.enc_size]
    pos += suite.enc_size
    wrapped = rest[pos : pos + WRAPPED_KEY_SIZE]
    pos += WRAPPED_KEY_SIZE
    mac = rest[pos : pos + kdf.mac_size]
    return Header(
        suite=suite,
        kdf=kdf,
        segment_size=segment_size,
        salt=salt,
        nonce_prefix=prefix,
        commitment=commitment,
        document_id=document_id,
        context_bytes=context_bytes,
        key_id_bytes=key_id,
        enc=enc,
        wrapped_key=wrapped,
        mac=mac,
    )


def parse_header(data: bytes) -> Header:
    """Parse a header from the start of ``data`` (extra bytes after it are ignored)."""
    data = bytes(data[:MAX_HEADER_SIZE])
    return _build(data[:FIXED_SIZE], data[FIXED_SIZE:])


def read_exact(src: Readable, size: int) -> bytes:
    """Read ``size`` bytes unless the input ends first (then fewer)."""
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = src.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_header_from(src: Readable) -> tuple[Header, bytes]:
    """Read exactly one header from a stream: (header, its raw bytes). No key needed."""
    fixed = read_exact(src, FIXED_SIZE)
    suite, kdf, _, ctx_len, doc_len, *_ = _parse_fixed(fixed)
    rest = read_exact(src, doc_len + ctx_len + stanza_size(suite) + kdf.mac_size)
    header = _build(fixed, rest)
    return header, fixed + rest


def new_header(
    *,
    suite: Suite,
    kdf: Kdf,
    segment_size: int,
    salt: bytes,
    nonce_prefix: bytes,
    commitment: bytes,
    document_id: bytes,
    context_bytes: bytes,
) -> Header:
    """A header with an empty stanza and MAC, to be filled by the wrap step."""
    return Header(
        suite=suite,
        kdf=kdf,
        segment_size=segment_size,
        salt=salt,
        nonce_prefix=nonce_prefix,
        commitment=commitment,
        document_id=document_id,
        context_bytes=context_bytes,
        key_id_bytes=b"\0" * KEY_ID_SIZE,
        enc=b"\0" * suite.enc_size,
        wrapped_key=b"\0" * WRAPPED_KEY_SIZE,
        mac=b"",
    )
