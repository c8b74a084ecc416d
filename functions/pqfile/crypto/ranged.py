"""Authenticated ranged reads of a PQF v1 package (docs/FORMAT.md §6, §11 "Ranged reads").

Pure: no I/O beyond the ``read``/``write`` of the streams handed in. The segments are
independent (the nonce is prefix || index || last flag, §6), so the plaintext bytes
``first..last`` of a document are recovered from the segments that cover them alone:

1. :func:`parse_byte_range` reads one RFC 9110 §14.1.2 byte range (``bytes=A-B``,
   ``bytes=A-``, ``bytes=-N``) against the plaintext size and refuses what is malformed or
   unsatisfiable;
2. :func:`segment_span` names the covering segments and where they sit in the body;
3. :func:`decrypt_span` authenticates each of them (index in the nonce, exact wire length)
   and writes only the requested bytes, segment by segment, each after it verified.

The plaintext size comes from the package's length (``stream.plaintext_size``), never from a
stored index: a range that reaches the end decrypts the final segment with ``last = 1``, so
a package truncated at a segment boundary (its new last segment was sealed ``last = 0``)
fails, exactly as a whole-document read does. A range that stops before the end proves
nothing about the bytes after it, and needs not: those bytes are not released.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pqfile.crypto.stream import (
    ReadOnly,
    Sink,
    body_size,
    new_nonce,
    plaintext_size,
    segment_count,
    segment_nonce,
    write_all,
)
from pqfile.errors import DecryptionError, InvalidEventError
from pqfile.format.header import TAG_SIZE

__all__ = [
    "ByteRange",
    "InvalidRangeError",
    "RangeNotSatisfiableError",
    "SegmentSpan",
    "decrypt_span",
    "parse_byte_range",
    "plaintext_size_of_body",
    "segment_span",
]

#: One range of RFC 9110 §14.1.2: ``bytes=first-last``, ``bytes=first-``, ``bytes=-suffix``.
_RANGE = re.compile(r"bytes=(?:(\d{1,19})-(\d{0,19})|-(\d{1,19}))")
MAX_RANGE_TEXT = 64


class InvalidRangeError(InvalidEventError):
    """The range is not one well-formed ``bytes=`` range."""


class RangeNotSatisfiableError(InvalidEventError):
    """The range is well formed but selects no byte of the document (HTTP 416)."""


@dataclass(frozen=True)
class ByteRange:
    """Plaintext bytes ``first..last``, both included, of a document of ``size`` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    @property
    def content_range(self) -> str:
        """As HTTP's Content-Range says it (RFC 9110 §14.4): ``bytes 0-99/1000``."""
        return f"bytes {self.first}-{self.last}/{self.size}"


def check_range_text(spec: object) -> str:
    """The range's text, or InvalidRangeError (shape only: the size is not needed)."""
    if not isinstance(spec, str) or not spec:
        raise InvalidRangeError('range must be a string such as "bytes=0-1023"')
    if len(spec) > MAX_RANGE_TEXT:
        raise InvalidRangeError(f"range is longer than {MAX_RANGE_TEXT} characters")
    if "," in spec:
        raise InvalidRangeError("only one range is supported (no multipart ranges)")
    match = _RANGE.fullmatch(spec)
    if match is None:
        raise InvalidRangeError('range must be "bytes=A-B", "bytes=A-" or "bytes=-N"')
    first, last, _ = match.groups()
    if last and int(last) < int(first):
        raise InvalidRangeError("range ends before it starts")
    return spec


def parse_byte_range(spec: object, size: int) -> ByteRange:
    """One RFC 9110 byte range against a document of ``size`` bytes.

    ``bytes=A-B`` (B past the end is cut to the end), ``bytes=A-`` (to the end) and
    ``bytes=-N`` (the last N bytes; all of them when N >= size). Malformed, several ranges,
    or B < A: InvalidRangeError. A at or past the end, ``bytes=-0``, or any range of an
    empty document: RangeNotSatisfiableError.
    """
    text = check_range_text(spec)
    match = _RANGE.fullmatch(text)
    assert match is not None
    first_text, last_text, suffix_text = match.groups()
    if suffix_text is not None:
        suffix = int(suffix_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiableError(f"range not satisfiable: the document has {size} bytes")
        return ByteRange(max(0, size - suffix), size - 1, size)
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first >= size:
        raise RangeNotSatisfiableError(f"range not satisfiable: the document has {size} bytes")
    return ByteRange(first, min(last, size - 1), size)


def plaintext_size_of_body(body_len: int, segment_size: int) -> int:
    """The plaintext size a body of ``body_len`` bytes encodes (FORMAT.md §6), or the opaque
    DecryptionError when no package has that length (a chunk shorter than a tag; an empty
    final segment after others: §6's encoding is unique)."""
    size = plaintext_size(body_len, segment_size)
    if body_size(size, segment_size) != body_len:
        raise DecryptionError()
    return size


@dataclass(frozen=True)
class SegmentSpan:
    """The body segments ``first_segment..last_segment`` (included) that cover a range."""

    first_segment: int
    last_segment: int
    segments: int  # in the whole package
    segment_size: int
    #: Offset of the first covering segment from the start of the body, and the wire bytes
    #: of the covering segments (what one ranged GET reads).
    body_offset: int
    body_length: int

    @property
    def reaches_end(self) -> bool:
        return self.last_segment == self.segments - 1


def segment_span(byte_range: ByteRange, segment_size: int) -> SegmentSpan:
    """Which segments hold ``byte_range`` of a package whose plaintext is
    ``byte_range.size`` bytes (FORMAT.md §6: segments of N bytes, N + 16 on the wire)."""
    total = segment_count(byte_range.size, segment_size)
    first = byte_range.first // segment_size
    last = byte_range.last // segment_size
    wire = segment_size + TAG_SIZE
    end = (
        byte_range.size - last * segment_size + TAG_SIZE  # the final segment, shorter
        if last == total - 1
        else wire
    )
    return SegmentSpan(
        first_segment=first,
        last_segment=last,
        segments=total,
        segment_size=segment_size,
        body_offset=first * wire,
        body_length=(last - first) * wire + end,
    )


def _read_exact(src: ReadOnly, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        chunk = src.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def decrypt_span(
    src: ReadOnly,
    dst: Sink,
    body_key: bytes,
    nonce_prefix: bytes,
    byte_range: ByteRange,
    span: SegmentSpan,
) -> int:
    """Read ``span``'s segments from ``src`` (positioned at ``span.body_offset`` of the
    body), authenticate each and write the bytes of ``byte_range`` it holds to ``dst``;
    returns the bytes written. Every segment is checked with its index and its last flag
    (the final one of the package with ``last = 1``) and an exact wire length; any failure
    is the opaque DecryptionError, and the caller MUST discard what was written.
    """
    aead = AESGCM(body_key)
    nonce = new_nonce(nonce_prefix)
    n = span.segment_size
    written = 0
    for index in range(span.first_segment, span.last_segment + 1):
        last = index == span.segments - 1
        plain_len = byte_range.size - index * n if last else n
        chunk = _read_exact(src, plain_len + TAG_SIZE)
        if len(chunk) != plain_len + TAG_SIZE:
            raise DecryptionError()  # the package is shorter than its length said
        segment_nonce(nonce, index, last)
        try:
            plain = aead.decrypt(bytes(nonce), chunk, None)
        except InvalidTag:
            raise DecryptionError() from None
        base = index * n
        lo = max(byte_range.first, base) - base
        hi = min(byte_range.last + 1, base + plain_len) - base
        write_all(dst, memoryview(plain)[lo:hi])
        written += hi - lo
    if src.read(1):
        raise DecryptionError()  # more bytes than the span: the GET was not this range
    return written
