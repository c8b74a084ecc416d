"""PQF v1 header codec (docs/FORMAT.md sections 1-4, 9, 10)."""

from __future__ import annotations

import io

import pytest

from pqfile.crypto import envelope
from pqfile.crypto.kem import Suite, generate
from pqfile.errors import (
    LimitExceededError,
    MalformedPackageError,
    NotAPackageError,
    UnsupportedSuiteError,
    UnsupportedVersionError,
)
from pqfile.format import header as H


@pytest.fixture(scope="module")
def package() -> bytes:
    key = generate(Suite.XWING).public_key()
    return bytes(
        envelope.encrypt_bytes(
            b"x" * 3000, key, context={"b": "2", "a": "1"}, document_id="doc", segment_size=1024
        )
    )


def test_fixed_layout_matches_spec() -> None:
    assert H.FIXED_SIZE == 88
    assert H.stanza_size(Suite.XWING) == 1184
    assert H.stanza_size(Suite.MLKEM768) == 1152
    assert H.stanza_size(Suite.MLKEM1024) == 1632
    assert H.MAX_HEADER_SIZE == 88 + 256 + 8192 + 1632 + 48 == 10216


def test_header_round_trip(package: bytes) -> None:
    hdr = H.parse_header(package)
    assert hdr.to_bytes() == package[: hdr.size]
    assert hdr.suite is Suite.XWING
    assert hdr.segment_size == 1024
    assert hdr.context == {"a": "1", "b": "2"}
    assert hdr.document_id == b"doc"
    assert package[:4] == b"\x89PQF" and package[4] == 1
    assert package[6:8] == b"\x64\x7a"
    assert hdr.size == 88 + 3 + len(hdr.context_bytes) + 1184 + 32


def test_read_header_leaves_stream_at_body(package: bytes) -> None:
    src = io.BytesIO(package)
    hdr = envelope.read_header(src)
    assert src.tell() == hdr.size


def test_repr_hides_nothing_secret_and_shows_ids(package: bytes) -> None:
    text = repr(H.parse_header(package))
    assert "key_id_bytes" in text and "salt" not in text


def test_context_canonical_encoding() -> None:
    enc = H.encode_context({"b": "2", "a": "1"})
    assert enc == b"\x01a\x00\x011\x01b\x00\x012"
    assert H.encode_context({"a": "1", "b": "2"}) == enc
    assert H.decode_context(enc) == {"a": "1", "b": "2"}
    assert H.encode_context({}) == b""


@pytest.mark.parametrize(
    "context",
    [
        {"": "x"},
        {"k" * 256: ""},
        {"k": "v" * 2049},
        {f"k{i}": "" for i in range(65)},
        {f"key{i:02d}": "v" * 200 for i in range(40)},  # > 8192 bytes encoded
    ],
)
def test_context_limits_on_write(context: dict[str, str]) -> None:
    with pytest.raises(LimitExceededError):
        H.encode_context(context)


@pytest.mark.parametrize("context", [{"k\ud800": "v"}, {"k": "\udcff"}, {"\udfff": "\ud800"}])
def test_context_with_a_lone_surrogate_is_a_pqfile_error(context: dict[str, str]) -> None:
    """Library callers get the format's error type, not UnicodeEncodeError."""
    with pytest.raises(MalformedPackageError, match="lone surrogate"):
        H.encode_context(context)


def test_context_at_limits_is_accepted() -> None:
    ctx = {f"k{i:02d}": "v" * 100 for i in range(64)}
    assert H.decode_context(H.encode_context(ctx)) == ctx


@pytest.mark.parametrize(
    "block",
    [b"\x01b\x00\x00\x01a\x00\x00", b"\x01a\x00\x00\x01a\x00\x00", b"\x00\x00\x00", b"\x01a\x00"],
)
def test_context_non_canonical_rejected(block: bytes) -> None:
    with pytest.raises(MalformedPackageError):
        H.decode_context(block)


def test_document_id_limit() -> None:
    assert H.document_id_bytes(None) == b""
    assert H.document_id_bytes("é") == "é".encode()
    H.document_id_bytes(b"x" * 256)
    with pytest.raises(LimitExceededError):
        H.document_id_bytes(b"x" * 257)


@pytest.mark.parametrize("size", [1023, 16 * 1024 * 1024 + 1, 0])
def test_segment_size_limits(size: int) -> None:
    with pytest.raises(LimitExceededError):
        H.check_segment_size(size)


def test_preamble_errors_in_order(package: bytes) -> None:
    with pytest.raises(NotAPackageError):
        H.parse_header(b"PK\x03\x04" + package[4:])
    with pytest.raises(NotAPackageError):
        H.parse_header(b"\x89P")
    with pytest.raises(UnsupportedVersionError):
        H.parse_header(package[:4] + b"\x02" + b"\xff" * 3)  # version wins over a bad suite
    with pytest.raises(UnsupportedSuiteError):
        H.parse_header(package[:6] + b"\x00\x20" + package[8:])
    with pytest.raises(MalformedPackageError):
        H.parse_header(package[:7])


def test_every_truncation_of_the_header_is_malformed(package: bytes) -> None:
    size = H.parse_header(package).size
    for cut in range(4, size):
        with pytest.raises(MalformedPackageError):
            H.parse_header(package[:cut])
