"""Property tests: round trips around segment boundaries; every single-byte change is caught."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pqfile.crypto import envelope
from pqfile.crypto.kem import Suite, secret_key_from_seed
from pqfile.errors import PQFileError, WrongKeyError
from pqfile.format import header as H

SEG = 1024
KEYS = {
    s: secret_key_from_seed(s, bytes(range(s.seed_size))) for s in Suite
}  # fixed test keys: the properties are about the format, not key generation

sizes_near_boundaries = st.one_of(
    st.integers(0, 3 * SEG + 2),
    st.sampled_from([0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG - 1, 2 * SEG, 2 * SEG + 1, 4 * SEG]),
    st.builds(lambda k, d: max(0, k * SEG + d), st.integers(0, 5), st.integers(-2, 2)),
)

context_keys = st.text(min_size=1, max_size=12).filter(lambda k: len(k.encode()) <= 255)
contexts = st.dictionaries(context_keys, st.text(max_size=20), max_size=4)

COMMON = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@COMMON
@given(
    size=sizes_near_boundaries,
    segment_size=st.sampled_from([SEG, SEG + 1, 2 * SEG, 4096]),
    suite=st.sampled_from(list(Suite)),
    context=contexts,
    seed=st.binary(min_size=1, max_size=1),
)
def test_round_trip(
    size: int, segment_size: int, suite: Suite, context: dict[str, str], seed: bytes
) -> None:
    data = (seed * size)[:size]
    key = KEYS[suite]
    pkg = envelope.encrypt_bytes(data, key.public_key(), context=context, segment_size=segment_size)
    header = H.parse_header(pkg)
    assert header.context == context
    assert len(pkg) == header.size + size + 16 * max(1, -(-size // segment_size))
    assert envelope.decrypt_bytes(pkg, key, expected_context=context) == data
    out = io.BytesIO()
    assert envelope.decrypt_stream(io.BytesIO(pkg), out, key).plaintext_size == size
    assert out.getvalue() == data


@COMMON
@given(context=contexts)
def test_context_encoding_is_canonical(context: dict[str, str]) -> None:
    enc = H.encode_context(context)
    assert H.decode_context(enc) == context
    assert H.encode_context(dict(reversed(list(context.items())))) == enc


# One package per suite with three segments; hypothesis picks the byte and the change.
PACKAGES = {
    s: bytes(
        envelope.encrypt_bytes(
            bytes(range(256)) * 10,  # 2560 bytes: 2 full segments + 1 short
            KEYS[s].public_key(),
            context={"k": "v"},
            document_id="doc",
            segment_size=SEG,
        )
    )
    for s in Suite
}


@settings(max_examples=300, deadline=None)
@given(
    suite=st.sampled_from(list(Suite)),
    position=st.floats(0, 1, exclude_max=True),
    delta=st.integers(1, 255),
)
def test_any_single_byte_change_is_rejected(suite: Suite, position: float, delta: int) -> None:
    pkg = bytearray(PACKAGES[suite])
    index = int(position * len(pkg))
    pkg[index] = (pkg[index] + delta) % 256
    key = KEYS[suite]
    failures = 0
    for attempt in (_bytes, _stream):
        try:
            attempt(bytes(pkg), key)
        except WrongKeyError:
            # Only a changed key id, or a suite id naming another known suite (FORMAT.md
            # §10 step 7), can say "wrong key"; it is still a rejection.
            header = H.parse_header(PACKAGES[suite])
            stanza = header.size - header.kdf.mac_size - H.stanza_size(suite)
            assert stanza <= index < stanza + 16 or 6 <= index < 8
            failures += 1
        except PQFileError:
            failures += 1
    assert failures == 2


@settings(max_examples=100, deadline=None)
@given(suite=st.sampled_from(list(Suite)), cut=st.floats(0, 1, exclude_max=True))
def test_any_truncation_or_extension_is_rejected(suite: Suite, cut: float) -> None:
    pkg = PACKAGES[suite]
    key = KEYS[suite]
    for bad in (pkg[: int(cut * len(pkg))], pkg + pkg[: 1 + int(cut * 40)]):
        for attempt in (_bytes, _stream):
            try:
                attempt(bad, key)
            except PQFileError:
                continue
            raise AssertionError("a truncated or extended package decrypted")


def _bytes(pkg: bytes, key) -> None:  # type: ignore[no-untyped-def]
    envelope.decrypt_bytes(pkg, key)


def _stream(pkg: bytes, key) -> None:  # type: ignore[no-untyped-def]
    envelope.decrypt_stream(io.BytesIO(pkg), io.BytesIO(), key)


def test_every_byte_of_a_package_is_protected() -> None:
    """Exhaustive companion to the property above: flip the low bit of each byte in turn."""
    pkg = PACKAGES[Suite.XWING]
    key = KEYS[Suite.XWING]
    for index in range(len(pkg)):
        bad = bytearray(pkg)
        bad[index] ^= 1
        try:
            envelope.decrypt_bytes(bad, key)
        except PQFileError:
            continue
        raise AssertionError(f"flipping byte {index} went unnoticed")
