"""Generate the PQF v1 scenario vectors in tests/vectors/ (docs/FORMAT.md section 13).

    .venv/bin/python scripts/gen_vectors.py            # (re)write tests/vectors/*.pqfv
    .venv/bin/python scripts/gen_vectors.py --check    # verify the committed files

Determinism: every random value (identities, plaintexts, data keys, salts, nonce prefixes)
comes from SHAKE-256 over a per-scenario label, passed in through the core's internal
entry points (``Randomness``, ``_wrap``). The one exception is HPKE encapsulation, which
pyca/OpenSSL randomizes internally with no public hook. Its outputs are therefore cached in
``tests/vectors/hpke-cache.json``, keyed by SHA-256(suite id || key id || info || data key):
with the committed cache, a rerun reproduces every file byte for byte; a new scenario adds
new entries (fresh HPKE randomness) once, and from then on those are fixed too. Each cached
entry is checked by unwrapping it with the scenario's secret key before use.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pqfile.crypto import envelope, stream
from pqfile.crypto.envelope import Randomness
from pqfile.crypto.kem import PublicKey, SecretKey, Suite, secret_key_from_seed
from pqfile.crypto.keyschedule import derive_body_keys
from pqfile.crypto.wrap import hpke_unwrap, hpke_wrap
from pqfile.format.header import FIXED_SIZE, TAG_SIZE, parse_header

ROOT = Path(__file__).resolve().parent.parent
VECTOR_DIR = ROOT / "tests" / "vectors"
CACHE_NAME = "hpke-cache.json"
SEGMENT = 1024  # the minimum segment size keeps the files small


def drbg(label: str, size: int) -> bytes:
    """Deterministic bytes: SHAKE-256("pqfile-vectors/v1/" || label)."""
    return hashlib.shake_256(b"pqfile-vectors/v1/" + label.encode()).digest(size)


def identity(name: str, suite: Suite) -> SecretKey:
    return secret_key_from_seed(suite, drbg(f"identity/{name}/{suite.value}", suite.seed_size))


class HpkeCache:
    """Cached HPKE seals so the generator reproduces its output (see module docstring)."""

    def __init__(self, path: Path, secrets: list[SecretKey]) -> None:
        self.path = path
        self.entries: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        self.used: dict[str, str] = {}
        self.secrets = {s.public_key().key_id_bytes: s for s in secrets}

    def wrap(self, data_key: bytes, recipient: PublicKey, info: bytes) -> tuple[bytes, bytes]:
        digest = hashlib.sha256(
            recipient.suite.wire_id.to_bytes(2, "big") + recipient.key_id_bytes + info + data_key
        ).hexdigest()
        sealed_hex = self.used.get(digest) or self.entries.get(digest)
        if sealed_hex is None:
            enc, wrapped = hpke_wrap(data_key, recipient, info)
            sealed_hex = (enc + wrapped).hex()
        sealed = bytes.fromhex(sealed_hex)
        enc, wrapped = sealed[: recipient.suite.enc_size], sealed[recipient.suite.enc_size :]
        secret = self.secrets[recipient.key_id_bytes]
        if hpke_unwrap(enc, wrapped, secret, info) != data_key:  # pragma: no cover
            raise RuntimeError("HPKE cache entry does not unwrap")
        self.used[digest] = sealed_hex
        return enc, wrapped

    def save(self) -> str:
        return json.dumps(dict(sorted(self.used.items())), indent=1) + "\n"


@dataclass
class Vector:
    name: str
    expect: str
    suite: Suite
    identity: SecretKey
    package: bytes
    comment: str
    plaintext: bytes | None = None
    rewrap: tuple[SecretKey, str] | None = None  # (new recipient, expected rewrap outcome)

    def render(self) -> bytes:
        lines = [
            f"expect: {self.expect}",
            f"suite: {self.suite.value}",
            f"identity: {self.identity.seed.hex()}",
        ]
        if self.plaintext is not None:
            lines.append(f"plaintext-sha256: {hashlib.sha256(self.plaintext).hexdigest()}")
        if self.rewrap is not None:
            to, outcome = self.rewrap
            lines.append(f"rewrap-suite: {to.suite.value}")
            lines.append(f"rewrap-identity: {to.seed.hex()}")
            lines.append(f"rewrap-expect: {outcome}")
        lines.append(f"comment: {self.comment}")
        return ("\n".join(lines) + "\n\n").encode("ascii") + self.package


class Generator:
    def __init__(self, cache_path: Path) -> None:
        self.alice = {s: identity("alice", s) for s in Suite}
        self.bob = {s: identity("bob", s) for s in Suite}
        secrets = list(self.alice.values()) + list(self.bob.values())
        self.cache = HpkeCache(cache_path, secrets)
        self.vectors: list[Vector] = []

    def randomness(self, label: str) -> Randomness:
        return Randomness(
            data_key=drbg(f"{label}/data-key", 32),
            salt=drbg(f"{label}/salt", 32),
            nonce_prefix=drbg(f"{label}/nonce-prefix", 7),
        )

    def package(
        self,
        label: str,
        plaintext: bytes,
        *,
        suite: Suite = Suite.XWING,
        to: SecretKey | None = None,
        context: dict[str, str] | None = None,
        document_id: str | None = None,
    ) -> bytes:
        recipient = (to or self.alice[suite]).public_key()
        return bytes(
            envelope.encrypt_bytes(
                plaintext,
                recipient,
                context=context,
                document_id=document_id,
                segment_size=SEGMENT,
                _randomness=self.randomness(label),
                _wrap=self.cache.wrap,
            )
        )

    def add(
        self,
        name: str,
        expect: str,
        package: bytes,
        comment: str,
        *,
        suite: Suite = Suite.XWING,
        ident: SecretKey | None = None,
        plaintext: bytes | None = None,
        rewrap: tuple[SecretKey, str] | None = None,
    ) -> None:
        self.vectors.append(
            Vector(
                name, expect, suite, ident or self.alice[suite], package, comment, plaintext, rewrap
            )
        )


def _flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def _set(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def _with_context_block(package: bytes, block: bytes) -> bytes:
    """Replace the (empty) context of ``package`` by raw ``block`` bytes, fixing the length."""
    header = parse_header(package)
    assert header.context_bytes == b"" and header.document_id == b""
    fixed = _set(package[:FIXED_SIZE], 12, len(block).to_bytes(2, "big"))
    return fixed + block + package[FIXED_SIZE:]


def _entry(key: bytes, value: bytes) -> bytes:
    return bytes((len(key),)) + key + len(value).to_bytes(2, "big") + value


def _segments(package: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(header size, [(offset, length) of each wire segment])."""
    size = parse_header(package).size
    wire = SEGMENT + TAG_SIZE
    spans = [(o, min(wire, len(package) - o)) for o in range(size, len(package), wire)]
    return size, spans


def _reseal(
    gen: Generator, label: str, package: bytes, segments: list[tuple[bytes, int, bool]]
) -> bytes:
    """Keep the header, seal hand-made segments (plaintext, counter, last) with its body key."""
    header = parse_header(package)
    keys = derive_body_keys(gen.randomness(label).data_key, header.salt, header.kdf)
    aead = AESGCM(keys.body_key)
    nonce = stream.new_nonce(header.nonce_prefix)
    body = b"".join(
        aead.encrypt(bytes(stream.segment_nonce(nonce, i, last)), pt, None)
        for pt, i, last in segments
    )
    return package[: header.size] + body


def build(gen: Generator) -> None:
    x, m = Suite.XWING, Suite.MLKEM768
    pt = {n: drbg(f"plaintext/{n}", n) for n in (0, 1, 1000, SEGMENT, 2500, 3 * SEGMENT)}

    # --- valid packages
    for n, name, comment in (
        (0, "valid_empty", "empty plaintext: one empty final segment"),
        (1, "valid_one_byte", "one byte"),
        (SEGMENT, "valid_one_full_segment", "exactly one segment, no empty trailer"),
        (3 * SEGMENT, "valid_three_full_segments", "exact multiple of the segment size"),
        (2500, "valid_three_segments", "two full segments and a short final one"),
    ):
        gen.add(name, "success", gen.package(name, pt[n]), comment, plaintext=pt[n])
    ctx = {"purpose": "scenario vectors", "bucket": "uploads", "ümlaut": "välue"}
    with_ctx = gen.package("ctx", pt[1000], context=ctx, document_id="doc-0001")
    gen.add("valid_context", "success", with_ctx, "context and document id", plaintext=pt[1000])
    ml = gen.package("mlkem", pt[2500], suite=m)
    gen.add("valid_mlkem768", "success", ml, "ML-KEM-768 suite", suite=m, plaintext=pt[2500])
    base = gen.package("base", pt[2500])
    rewrapped = envelope.rewrap_header(
        base, gen.alice[x], gen.bob[x].public_key(), _wrap=gen.cache.wrap
    )
    size = parse_header(base).size
    gen.add(
        "valid_rewrapped",
        "success",
        rewrapped + base[size:],
        "base package rewrapped from alice to bob; body bytes unchanged",
        ident=gen.bob[x],
        plaintext=pt[2500],
    )
    cross = envelope.rewrap_header(
        base, gen.alice[x], gen.bob[m].public_key(), allow_downgrade=True, _wrap=gen.cache.wrap
    )
    gen.add(
        "valid_rewrapped_to_mlkem768",
        "success",
        cross + base[size:],
        "rewrapped from an X-Wing key to an ML-KEM-768 key (a downgrade, allowed explicitly)",
        suite=m,
        ident=gen.bob[m],
        plaintext=pt[2500],
    )

    # --- the CNSA 2.0 suite: ML-KEM-1024, KDF 0x01 (HKDF-SHA384), 48-byte MAC
    k = Suite.MLKEM1024
    cnsa = gen.package("mlkem1024", pt[2500], suite=k, context={"tier": "cnsa"})
    gen.add("valid_mlkem1024", "success", cnsa, "ML-KEM-1024 suite", suite=k, plaintext=pt[2500])
    cnsa_size = parse_header(cnsa).size
    down = envelope.rewrap_header(
        cnsa, gen.alice[k], gen.bob[x].public_key(), allow_downgrade=True, _wrap=gen.cache.wrap
    )
    gen.add(
        "valid_rewrapped_mlkem1024_to_xwing",
        "success",
        down + cnsa[cnsa_size:],
        "an allowed downgrade: X-Wing stanza, the body and its KDF 0x01 (48-byte MAC) kept",
        ident=gen.bob[x],
        plaintext=pt[2500],
    )
    gen.add(
        "rewrap_downgrade_refused",
        "success",
        cnsa,
        "decrypts; a rewrap to the X-Wing key is a downgrade, refused unless allowed",
        suite=k,
        plaintext=pt[2500],
        rewrap=(gen.bob[x], "downgrade_refused"),
    )
    gen.add(
        "rewrap_sha256_into_mlkem1024",
        "success",
        base,
        "decrypts; a SHA-256 package cannot be rewrapped into mlkem1024 (re-encrypt it)",
        plaintext=pt[2500],
        rewrap=(gen.bob[k], "reencryption_required"),
    )
    for name, offset in (("mlkem1024_flip_mac_first", 48), ("mlkem1024_flip_mac_last", 1)):
        gen.add(
            name,
            "decryption_error",
            _flip(cnsa, cnsa_size - offset),
            f"48-byte MAC, bit flipped {offset} bytes before the body",
            suite=k,
        )
    gen.add(
        "mlkem1024_truncated_mac",
        "malformed",
        cnsa[: cnsa_size - 16],
        "cut 16 bytes short: complete for a 32-byte MAC, not for this 48-byte one",
        suite=k,
    )
    gen.add(
        "mlkem1024_kdf_flipped",
        "malformed",
        _set(cnsa, 55, b"\x00"),
        "ML-KEM-1024 package relabelled KDF 0x00: the suite requires 0x01",
        suite=k,
    )
    gen.add(
        "mlkem1024_flip_enc",
        "decryption_error",
        _flip(cnsa, cnsa_size - 48 - 48 - 1),
        "last ML-KEM-1024 ciphertext byte flipped",
        suite=k,
    )
    _, cnsa_spans = _segments(cnsa)
    gen.add(
        "mlkem1024_segment1_flip",
        "decryption_error",
        _flip(cnsa, cnsa_spans[1][0] + 10),
        "ML-KEM-1024 package, segment 1 damaged",
        suite=k,
    )
    gen.add(
        "wrong_key_mlkem1024_id",
        "wrong_key",
        cnsa,
        "ML-KEM-1024 package opened with an X-Wing key",
    )

    # --- preamble
    gen.add("header_bad_magic", "not_a_package", _flip(base, 0), "first magic byte changed")
    gen.add("header_empty_file", "not_a_package", b"", "zero bytes")
    gen.add("header_text_file", "not_a_package", b"hello, world\n", "not a package at all")
    gen.add("header_magic_only", "malformed", base[:4], "magic and nothing else")
    gen.add("header_unknown_version", "unsupported_version", _set(base, 4, b"\x02"), "version 2")
    gen.add("header_version_zero", "unsupported_version", _set(base, 4, b"\x00"), "version 0")
    gen.add(
        "header_unknown_suite",
        "unsupported_suite",
        _set(base, 6, b"\x00\x00"),
        "0x0000 (reserved in the HPKE KEM registry, so it stays unknown)",
    )
    gen.add("header_flags_set", "malformed", _set(base, 5, b"\x80"), "reserved flags bit set")
    gen.add("header_unknown_kdf", "malformed", _set(base, 55, b"\x02"), "KDF id 0x02")
    gen.add(
        "header_kdf_flipped",
        "decryption_error",
        _set(base, 55, b"\x01"),
        "X-Wing SHA-256 package relabelled KDF 0x01: a 48-byte MAC is read, the info differs",
    )
    gen.add("header_truncated_fixed", "malformed", base[:50], "cut inside the fixed part")
    gen.add("header_truncated_stanza", "malformed", base[: size - 100], "cut inside the stanza")
    gen.add("header_truncated_mac", "malformed", base[: size - 1], "cut inside the MAC")

    # --- limits
    seg_small = _set(base, 8, (SEGMENT - 1).to_bytes(4, "big"))
    gen.add("limit_segment_size_too_small", "limit_exceeded", seg_small, "segment size 1023")
    seg_big = _set(base, 8, (16 * 1024 * 1024 + 1).to_bytes(4, "big"))
    gen.add("limit_segment_size_too_large", "limit_exceeded", seg_big, "16 MiB + 1")
    gen.add(
        "limit_context_length",
        "limit_exceeded",
        _set(base, 12, (8193).to_bytes(2, "big")),
        "context length field 8193",
    )
    gen.add(
        "limit_document_id_length",
        "limit_exceeded",
        _set(base, 14, (257).to_bytes(2, "big")),
        "document id length field 257",
    )
    many = b"".join(_entry(f"k{i:03d}".encode(), b"") for i in range(65))
    gen.add(
        "limit_context_entries", "limit_exceeded", _with_context_block(base, many), "65 entries"
    )
    long_value = _entry(b"k", b"v" * 2049)
    gen.add(
        "limit_context_value",
        "limit_exceeded",
        _with_context_block(base, long_value),
        "a 2049-byte context value",
    )

    # --- context encoding
    unsorted = _entry(b"b", b"1") + _entry(b"a", b"2")
    gen.add("context_unsorted", "malformed", _with_context_block(base, unsorted), "b before a")
    dup = _entry(b"a", b"1") + _entry(b"a", b"2")
    gen.add("context_duplicate_key", "malformed", _with_context_block(base, dup), "key twice")
    bad_utf8 = _entry(b"\xff", b"1")
    gen.add("context_bad_utf8", "malformed", _with_context_block(base, bad_utf8), "key 0xff")
    empty_key = b"\x00\x00\x00"
    gen.add("context_empty_key", "malformed", _with_context_block(base, empty_key), "key length 0")
    overrun = _entry(b"a", b"12")[:-1]
    gen.add("context_entry_overruns", "malformed", _with_context_block(base, overrun), "short")
    ctx_header = parse_header(with_ctx)
    ctx_offset = FIXED_SIZE + len(ctx_header.document_id)
    value_at = with_ctx.index(b"uploads", ctx_offset)
    gen.add(
        "context_mismatch",
        "decryption_error",
        _set(with_ctx, value_at, b"Uploads"),
        "a context value changed (still canonical): the HPKE info differs",
    )
    gen.add(
        "document_id_mismatch",
        "decryption_error",
        _set(with_ctx, FIXED_SIZE, b"D"),
        "document id changed: the HPKE info differs",
    )

    # --- keys
    to_bob = gen.package("to-bob", pt[1000], to=gen.bob[x])
    gen.add("wrong_key_id", "wrong_key", to_bob, "encrypted to bob, opened by alice")
    stanza_at = size - 32 - (16 + x.enc_size + 48)
    alice_id = gen.alice[x].public_key().key_id_bytes
    gen.add(
        "wrong_key_forged_id",
        "decryption_error",
        _set(to_bob, stanza_at, alice_id),
        "bob's stanza relabelled with alice's key id",
    )
    gen.add(
        "header_suite_swapped",
        "wrong_key",
        _set(base, 6, b"\x00\x41"),
        "X-Wing package relabelled ML-KEM-768; the key id still names alice's X-Wing key",
    )
    gen.add("wrong_key_mlkem_id", "wrong_key", ml, "ML-KEM-768 package opened with X-Wing key")
    gen.add("header_flip_key_id", "wrong_key", _flip(base, stanza_at + 3), "a key id bit")

    # --- header bit flips (each authenticated field)
    for name, offset in (
        ("header_flip_segment_size", 11),
        ("header_flip_salt", 16),
        ("header_flip_nonce_prefix", 48),
        ("header_flip_commitment", 56),
        ("header_flip_enc", stanza_at + 16),
        ("header_flip_enc_last", stanza_at + 16 + x.enc_size - 1),
        ("header_flip_wrapped_key", stanza_at + 16 + x.enc_size),
        ("header_flip_wrapped_key_tag", stanza_at + 16 + x.enc_size + 47),
        ("header_flip_mac", size - 32),
        ("header_flip_mac_last", size - 1),
    ):
        gen.add(name, "decryption_error", _flip(base, offset), f"bit flipped at {offset}")
    gen.add(
        "header_flip_mlkem768_enc",
        "decryption_error",
        _flip(ml, parse_header(ml).size - 32 - 48 - 1),
        "last ML-KEM-768 ciphertext byte flipped",
        suite=m,
    )

    # --- body
    _, spans = _segments(base)
    for i, (offset, length) in enumerate(spans):
        gen.add(f"segment{i}_flip_ciphertext", "decryption_error", _flip(base, offset), "")
        gen.add(f"segment{i}_flip_tag", "decryption_error", _flip(base, offset + length - 1), "tag")
    gen.add("body_missing", "decryption_error", base[:size], "header only, no segments")
    gen.add(
        "truncated_at_boundary",
        "decryption_error",
        base[: spans[2][0]],
        "final segment dropped: segment 1 was sealed as not last",
    )
    gen.add(
        "truncated_mid_segment", "decryption_error", base[: spans[1][0] + 500], "cut in segment 1"
    )
    gen.add("truncated_in_tag", "decryption_error", base[:-5], "last 5 tag bytes missing")
    gen.add("truncated_to_short_tail", "decryption_error", base[: spans[2][0] + 7], "7-byte tail")
    gen.add("trailing_byte", "decryption_error", base + b"\x00", "one byte after the final segment")
    gen.add("trailing_segment", "decryption_error", base + base[spans[2][0] :], "final twice")
    a, b, c = (base[o : o + n] for o, n in spans)
    gen.add("segments_reordered", "decryption_error", base[:size] + b + a + c, "0 and 1 swapped")
    gen.add("segment_duplicated", "decryption_error", base[:size] + a + a + c, "0 twice")
    other = gen.package("other", pt[2500])
    _, other_spans = _segments(other)
    o1, n1 = other_spans[1]
    gen.add(
        "segment_spliced",
        "decryption_error",
        base[:size] + a + other[o1 : o1 + n1] + c,
        "segment 1 from another package to the same key",
    )
    full = pt[3 * SEGMENT]
    three = gen.package("valid_three_full_segments", full)
    gen.add(
        "final_empty_segment_appended",
        "decryption_error",
        _reseal(
            gen,
            "valid_three_full_segments",
            three,
            [
                (full[:SEGMENT], 0, False),
                (full[SEGMENT : 2 * SEGMENT], 1, False),
                (full[2 * SEGMENT :], 2, False),
                (b"", 3, True),
            ],
        ),
        "authentic segments but an empty final segment after full ones (non-canonical)",
    )
    gen.add(
        "early_last_flag",
        "decryption_error",
        _reseal(
            gen,
            "base",
            base,
            [
                (pt[2500][:SEGMENT], 0, True),
                (pt[2500][SEGMENT:2048], 1, False),
                (pt[2500][2048:], 2, True),
            ],
        ),
        "segment 0 sealed as final although more follow",
    )
    gen.add(
        "missing_last_flag",
        "decryption_error",
        _reseal(
            gen,
            "base",
            base,
            [
                (pt[2500][:SEGMENT], 0, False),
                (pt[2500][SEGMENT:2048], 1, False),
                (pt[2500][2048:], 2, False),
            ],
        ),
        "no segment sealed as final",
    )
    _, ml_spans = _segments(ml)
    gen.add(
        "mlkem768_segment1_flip",
        "decryption_error",
        _flip(ml, ml_spans[1][0] + 10),
        "ML-KEM-768 package, segment 1 damaged",
        suite=m,
    )


def generate(cache_path: Path) -> tuple[dict[str, bytes], str]:
    gen = Generator(cache_path)
    build(gen)
    files = {f"{v.name}.pqfv": v.render() for v in gen.vectors}
    assert len(files) == len(gen.vectors), "duplicate vector names"
    return files, gen.cache.save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=VECTOR_DIR)
    parser.add_argument("--check", action="store_true", help="compare with the files in --out")
    args = parser.parse_args(argv)
    out: Path = args.out
    files, cache = generate(out / CACHE_NAME)
    if args.check:
        bad = [
            n
            for n, data in files.items()
            if not (out / n).is_file() or (out / n).read_bytes() != data
        ]
        extra = sorted(p.name for p in out.glob("*.pqfv") if p.name not in files)
        for name in bad:
            print(f"differs: {name}", file=sys.stderr)
        for name in extra:
            print(f"not generated: {name}", file=sys.stderr)
        return 1 if bad or extra else 0
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.pqfv"):
        if stale.name not in files:
            stale.unlink()
    for name, data in files.items():
        (out / name).write_bytes(data)
    (out / CACHE_NAME).write_text(cache)
    print(f"wrote {len(files)} vectors to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
