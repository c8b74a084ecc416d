"""crypto/ranged.py (RFC 9110 ranges, covering segments, authenticated partial decryption)
and crypto/segments.py (a package encrypted in independent runs of segments): pure, no I/O."""

from __future__ import annotations

import io
import os

import pytest

from pqfile.crypto import envelope, kem
from pqfile.crypto.envelope import Randomness, open_header
from pqfile.crypto.ranged import (
    InvalidRangeError,
    RangeNotSatisfiableError,
    decrypt_span,
    parse_byte_range,
    plaintext_size_of_body,
    segment_span,
)
from pqfile.crypto.segments import seal_package
from pqfile.errors import DecryptionError
from pqfile.format.header import TAG_SIZE, read_header_from

N = 1024  # the smallest segment size: many segments from little data


@pytest.mark.parametrize(
    ("spec", "size", "first", "last"),
    [
        ("bytes=0-0", 10, 0, 0),
        ("bytes=0-9", 10, 0, 9),
        ("bytes=3-", 10, 3, 9),
        ("bytes=2-99", 10, 2, 9),  # a last position past the end is cut to the end
        ("bytes=-4", 10, 6, 9),
        ("bytes=-40", 10, 0, 9),  # a suffix longer than the document: all of it
        ("bytes=9-9", 10, 9, 9),
    ],
)
def test_rfc9110_ranges(spec: str, size: int, first: int, last: int) -> None:
    r = parse_byte_range(spec, size)
    assert (r.first, r.last, r.size, r.length) == (first, last, size, last - first + 1)
    assert r.content_range == f"bytes {first}-{last}/{size}"


@pytest.mark.parametrize(
    "spec",
    ["", "0-9", "bytes=", "bytes=a-b", "bytes=5-3", "bytes=0-1,4-5", "bytes=--1", "items=0-1",
     "bytes= 0-1", "bytes=-", "bytes=" + "9" * 70, 5, None],
)  # fmt: skip
def test_malformed_ranges_are_refused(spec: object) -> None:
    with pytest.raises(InvalidRangeError):
        parse_byte_range(spec, 100)


@pytest.mark.parametrize(
    ("spec", "size"),
    [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-0", 0), ("bytes=-5", 0)],
)
def test_unsatisfiable_ranges_are_refused(spec: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiableError, match="not satisfiable"):
        parse_byte_range(spec, size)


def test_span_names_the_covering_segments_and_their_wire_bytes() -> None:
    size = 5 * N + 100  # six segments, the final one of 100 bytes
    span = segment_span(parse_byte_range(f"bytes={N - 1}-{N}", size), N)
    assert (span.first_segment, span.last_segment, span.segments) == (0, 1, 6)
    assert (span.body_offset, span.body_length) == (0, 2 * (N + TAG_SIZE))
    assert not span.reaches_end
    end = segment_span(parse_byte_range("bytes=-1", size), N)
    assert (end.first_segment, end.last_segment, end.reaches_end) == (5, 5, True)
    assert (end.body_offset, end.body_length) == (5 * (N + TAG_SIZE), 100 + TAG_SIZE)


def _package(data: bytes) -> tuple[bytes, kem.SecretKey]:
    sk = kem.generate()
    out = io.BytesIO()
    envelope.encrypt_stream(io.BytesIO(data), out, sk.public_key(), segment_size=N,
                            document_id="doc-1")  # fmt: skip
    return out.getvalue(), sk


def _read_range(package: bytes, sk: kem.SecretKey, spec: str) -> bytes:
    src = io.BytesIO(package)
    header = read_header_from(src)[0]
    _, keys = open_header(header, sk, expected_document_id="doc-1")
    size = plaintext_size_of_body(len(package) - header.size, header.segment_size)
    wanted = parse_byte_range(spec, size)
    span = segment_span(wanted, header.segment_size)
    start = header.size + span.body_offset
    body = io.BytesIO(package[start : start + span.body_length])
    out = io.BytesIO()
    written = decrypt_span(body, out, keys.body_key, header.nonce_prefix, wanted, span)
    assert written == wanted.length == len(out.getvalue())
    return out.getvalue()


@pytest.mark.parametrize("size", [1, N - 1, N, N + 1, 3 * N, 3 * N + 7])
def test_every_edge_range_is_the_exact_slice(size: int) -> None:
    data = os.urandom(size)
    package, sk = _package(data)
    points = sorted({0, 1, N - 1, N, N + 1, 2 * N - 1, 2 * N, size - 2, size - 1})
    points = [x for x in points if 0 <= x < size]
    for a in points:
        for b in points:
            if b >= a:
                assert _read_range(package, sk, f"bytes={a}-{b}") == data[a : b + 1], (a, b)
    assert _read_range(package, sk, "bytes=0-") == data
    assert _read_range(package, sk, "bytes=-1") == data[-1:]


def test_a_tampered_segment_inside_the_range_is_refused_outside_it_is_not_read() -> None:
    data = os.urandom(4 * N)
    package, sk = _package(data)
    header_size = read_header_from(io.BytesIO(package))[0].size
    forged = bytearray(package)
    forged[header_size + 2 * (N + TAG_SIZE) + 5] ^= 1  # inside segment 2
    with pytest.raises(DecryptionError):
        _read_range(bytes(forged), sk, f"bytes={2 * N}-{2 * N + 10}")
    assert _read_range(bytes(forged), sk, f"bytes=0-{N}") == data[: N + 1]


def test_a_truncated_package_is_refused_when_the_range_reaches_its_end() -> None:
    data = os.urandom(4 * N + 10)
    package, sk = _package(data)
    truncated = package[: -(10 + TAG_SIZE)]  # cut at a segment boundary: 4 full segments
    with pytest.raises(DecryptionError):  # segment 3 was sealed with last = 0
        _read_range(truncated, sk, "bytes=-5")
    with pytest.raises(DecryptionError):
        _read_range(truncated, sk, "bytes=0-")
    # a range that stops before the cut releases authentic bytes only
    assert _read_range(truncated, sk, "bytes=0-99") == data[:100]
    # bytes appended, or a cut inside a tag: the final segment or the length gives it away
    with pytest.raises(DecryptionError):
        _read_range(package + bytes(TAG_SIZE), sk, "bytes=-1")
    with pytest.raises(DecryptionError):  # an empty final segment after others
        _read_range(package[: -(10 + TAG_SIZE)] + bytes(TAG_SIZE), sk, "bytes=0-0")
    with pytest.raises(DecryptionError):
        _read_range(package[:-3], sk, "bytes=-1")


def test_a_short_read_is_refused() -> None:
    data = os.urandom(2 * N)
    package, sk = _package(data)
    header = read_header_from(io.BytesIO(package))[0]
    _, keys = open_header(header, sk)
    wanted = parse_byte_range("bytes=0-", len(data))
    span = segment_span(wanted, N)
    short = io.BytesIO(package[header.size : header.size + span.body_length - 1])
    with pytest.raises(DecryptionError):
        decrypt_span(short, io.BytesIO(), keys.body_key, header.nonce_prefix, wanted, span)


@pytest.mark.parametrize("size", [0, 1, N, 7 * N, 7 * N + 3])
@pytest.mark.parametrize("per_run", [1, 2, 3])
def test_runs_encrypted_out_of_order_are_the_sequential_package_byte_for_byte(
    size: int, per_run: int
) -> None:
    sk = kem.generate()
    data = os.urandom(size)
    fixed = Randomness(os.urandom(32), os.urandom(32), os.urandom(7))
    # One KEM encapsulation fixed for both: the same stanza (HPKE is randomized).
    stanza: dict[str, tuple[bytes, bytes]] = {}

    def wrap(key: bytes, recipient: kem.PublicKey, info: bytes) -> tuple[bytes, bytes]:
        if info not in stanza:
            from pqfile.crypto.wrap import hpke_wrap

            stanza[info] = hpke_wrap(key, recipient, info)
        return stanza[info]

    sequential = io.BytesIO()
    envelope.encrypt_stream(io.BytesIO(data), sequential, sk.public_key(), segment_size=N,
                            document_id="d", context={"a": "b"}, _randomness=fixed,
                            _wrap=wrap)  # fmt: skip
    sealed = seal_package(sk.public_key(), size, context={"a": "b"}, document_id="d",
                          segment_size=N, _randomness=fixed, _wrap=wrap)  # fmt: skip
    assert sealed.package_size == len(sequential.getvalue())
    runs: dict[int, bytes] = {}
    firsts = list(range(0, sealed.segments, per_run))
    for first in reversed(firsts):  # any order
        offset, length = sealed.run_plaintext(first, per_run)
        out = bytearray(sealed.run_wire_size(first, per_run))
        n = sealed.encrypt_run(io.BytesIO(data[offset : offset + length]), memoryview(out),
                               first, per_run)  # fmt: skip
        assert n == len(out)
        runs[first] = bytes(out)
    parallel = sealed.header_bytes + b"".join(runs[f] for f in firsts)
    assert parallel == sequential.getvalue()
    assert envelope.decrypt_bytes(parallel, sk) == data


def test_a_run_whose_plaintext_changed_is_refused() -> None:
    sk = kem.generate()
    sealed = seal_package(sk.public_key(), 3 * N, context={}, document_id="d", segment_size=N)
    out = memoryview(bytearray(sealed.run_wire_size(0, 2)))
    with pytest.raises(ValueError, match="ended early"):
        sealed.encrypt_run(io.BytesIO(bytes(2 * N - 1)), out, 0, 2)
    with pytest.raises(ValueError, match="more bytes"):
        sealed.encrypt_run(io.BytesIO(bytes(2 * N + 1)), out, 0, 2)
