"""A PQF v1 package encrypted in independent runs of segments (docs/FORMAT.md §6; the
parallel ingest, docs/DESIGN.md "Parallel ingest").

Pure: no I/O beyond the streams handed in. The header does not depend on the body (no
length, no body MAC: §1-§7), so it is sealed first, and every segment depends only on the
body key, the nonce prefix, its index and whether it is the final one (§6). A package is
therefore ``header || run_0 || run_1 || ...`` where run ``j`` holds segments
``j*k .. j*k + k - 1``; the runs may be encrypted in any order, on any thread, and the
concatenation is byte for byte what :func:`pqfile.crypto.envelope.encrypt_stream` writes
for the same randomness (a test compares them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pqfile.crypto.envelope import Randomness, _seal_header
from pqfile.crypto.kem import PublicKey
from pqfile.crypto.stream import Source, new_nonce, segment_count, segment_nonce
from pqfile.crypto.wrap import WrapFunction, hpke_wrap
from pqfile.errors import LimitExceededError
from pqfile.format.header import MAX_SEGMENTS, TAG_SIZE

__all__ = ["SealedPackage", "seal_package"]


@dataclass(frozen=True)
class SealedPackage:
    """A sealed header and what encrypting the body's segments needs."""

    header_bytes: bytes
    segment_size: int
    plaintext_size: int
    nonce_prefix: bytes
    body_key: bytes = field(repr=False)

    @property
    def segments(self) -> int:
        return segment_count(self.plaintext_size, self.segment_size)

    @property
    def package_size(self) -> int:
        return len(self.header_bytes) + self.plaintext_size + TAG_SIZE * self.segments

    def run_plaintext(self, first: int, count: int) -> tuple[int, int]:
        """(offset, length) in the plaintext of segments ``first .. first + count - 1``."""
        start = first * self.segment_size
        end = min((first + count) * self.segment_size, self.plaintext_size)
        return start, max(0, end - start)

    def run_wire_size(self, first: int, count: int) -> int:
        """Bytes segments ``first .. first + count - 1`` take on the wire."""
        last = min(first + count, self.segments)
        return self.run_plaintext(first, count)[1] + TAG_SIZE * (last - first)

    def encrypt_run(self, src: Source, out: memoryview, first: int, count: int) -> int:
        """Encrypt segments ``first .. first + count - 1`` read from ``src`` (positioned at
        their plaintext) into ``out``; returns the bytes written. Raises ValueError when
        ``src`` ends early (the plaintext changed) or holds more."""
        last = min(first + count, self.segments)
        if first < 0 or first >= last:
            raise ValueError("no segments in this run")
        if last > MAX_SEGMENTS:
            raise LimitExceededError("input exceeds the maximum number of segments")
        aead = AESGCM(self.body_key)
        nonce = new_nonce(self.nonce_prefix)
        n = self.segment_size
        plain = memoryview(bytearray(n))
        pos = 0
        for index in range(first, last):
            final = index == self.segments - 1
            want = self.plaintext_size - index * n if final else n
            got = _fill(src, plain[:want])
            if got != want:
                raise ValueError("the plaintext ended early")
            segment_nonce(nonce, index, final)
            aead.encrypt_into(nonce, plain[:want], None, out[pos : pos + want + TAG_SIZE])
            pos += want + TAG_SIZE
        if _fill(src, plain[:1]):
            raise ValueError("the plaintext holds more bytes than planned")
        return pos


def _fill(src: Source, view: memoryview) -> int:
    total = 0
    while total < len(view):
        n = src.readinto(view[total:])
        if not n:
            break
        total += n
    return total


def seal_package(
    recipient: PublicKey,
    plaintext_size: int,
    *,
    context: Mapping[str, str],
    document_id: str | bytes | None,
    segment_size: int,
    _randomness: Randomness | None = None,
    _wrap: WrapFunction = hpke_wrap,
) -> SealedPackage:
    """Seal the header for a plaintext of ``plaintext_size`` bytes (FORMAT.md §1-§7), exactly
    as :func:`pqfile.crypto.envelope.encrypt_stream` does."""
    if plaintext_size < 0:
        raise ValueError("a size is never negative")
    if segment_count(plaintext_size, segment_size) > MAX_SEGMENTS:
        raise LimitExceededError("input exceeds the maximum number of segments")
    header, keys = _seal_header(
        recipient,
        context=context,
        document_id=document_id,
        segment_size=segment_size,
        randomness=_randomness or Randomness.fresh(),
        wrap=_wrap,
    )
    return SealedPackage(
        header_bytes=header.to_bytes(),
        segment_size=segment_size,
        plaintext_size=plaintext_size,
        nonce_prefix=header.nonce_prefix,
        body_key=keys.body_key,
    )
