"""Signed tree heads ("digests") of the audit tree (docs/KEYS.md, "Signed tree heads").

A digest states the size and root of the audit tree (pqfile.keys.audit_tree), the rows it
covers since the previous digest, and the previous digest's hash; a KMS asymmetric key signs
its canonical encoding (under KMS's 4,096-byte limit for raw messages). Pure: no AWS, no
database. The wire layout (all integers big-endian)::

    magic                 6   "PQFSTH"
    version               1   1
    tree_size             8   uint64
    root_hash            32   MTH of the first tree_size rows
    first_seq             8   uint64   previous digest's tree_size + 1
    last_seq              8   uint64   = tree_size
    has_range             1   1 when rows were added since the previous digest, else 0
    first_at, last_at   8+8   int64 microseconds since 1970-01-01 UTC (only when has_range)
    previous_digest_hash 32   SHA-256 of the previous digest's encoding; zeros for the first
    signed_at             8   int64 microseconds since 1970-01-01 UTC
    algorithm           1+n   uint8 length, ASCII: ECDSA_SHA_384 | ML_DSA_SHAKE_256
    key_id              2+n   uint16 length, printable ASCII (1..2048): the KMS key ARN

Decoding is strict: exact length, known magic/version/algorithm, field invariants, and the
re-encoding must equal the input byte for byte. Any failure is one AuditDigestError.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pqfile.errors import AuditDigestError, AuditProofError
from pqfile.keys.audit_chain import AuditRow, compute_hash
from pqfile.keys.audit_tree import MAX_PROOF_HASHES, AuditTree, verify_inclusion

MAGIC: Final = b"PQFSTH"
VERSION: Final = 1
ECDSA_SHA_384: Final = "ECDSA_SHA_384"
ML_DSA_SHAKE_256: Final = "ML_DSA_SHAKE_256"
ALGORITHMS: Final = (ECDSA_SHA_384, ML_DSA_SHAKE_256)
GENESIS_DIGEST_HASH: Final = bytes(32)
#: KMS signs RAW messages of at most 4,096 bytes.
MAX_ENCODED: Final = 4096
MAX_KEY_ID: Final = 2048
MAX_SIGNATURE: Final = 8192
MAX_DIGEST_JSON: Final = 32768
#: The S3 object of one digest: ``digests/<tree_size as 20 digits>.json``.
OBJECT_PREFIX: Final = "digests/"

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_MICROS = 253402300799999999  # 9999-12-31T23:59:59.999999Z
_U64 = 2**64 - 1


def object_key(tree_size: int) -> str:
    """The S3 key of the digest of a tree of ``tree_size`` rows (sorts by size)."""
    return f"{OBJECT_PREFIX}{tree_size:020d}.json"


def _micros(value: dt.datetime, name: str) -> int:
    if value.tzinfo is None:
        raise AuditDigestError(f"digest field {name} must be timezone-aware")
    micros = (value - _EPOCH) // dt.timedelta(microseconds=1)
    if not 0 <= micros <= _MAX_MICROS:
        raise AuditDigestError(f"digest field {name} is out of range")
    return micros


def _from_micros(value: int, name: str) -> dt.datetime:
    if not 0 <= value <= _MAX_MICROS:
        raise AuditDigestError(f"digest field {name} is out of range")
    return _EPOCH + dt.timedelta(microseconds=value)


@dataclass(frozen=True)
class TreeHead:
    """One signed tree head. ``first_seq..last_seq`` are the rows added since the previous
    digest (empty when first_seq == last_seq + 1, and then first_at/last_at are None)."""

    tree_size: int
    root_hash: bytes
    first_seq: int
    last_seq: int
    first_at: dt.datetime | None
    last_at: dt.datetime | None
    previous_digest_hash: bytes
    signed_at: dt.datetime
    key_id: str
    algorithm: str
    version: int = VERSION

    def __post_init__(self) -> None:
        def bad(why: str) -> AuditDigestError:
            return AuditDigestError(f"invalid tree head: {why}")

        if self.version != VERSION:
            raise bad(f"version {self.version} (this build knows {VERSION})")
        if not 0 <= self.tree_size <= _U64:
            raise bad("tree_size is out of range")
        if len(self.root_hash) != 32 or len(self.previous_digest_hash) != 32:
            raise bad("root_hash and previous_digest_hash are 32 bytes")
        if self.last_seq != self.tree_size:
            raise bad("last_seq must equal tree_size")
        if not 1 <= self.first_seq <= self.last_seq + 1:
            raise bad("first_seq must lie in 1..last_seq + 1")
        has_rows = self.first_seq <= self.last_seq
        if has_rows != (self.first_at is not None) or has_rows != (self.last_at is not None):
            raise bad("first_at/last_at are set exactly when the digest covers new rows")
        if self.first_at is not None and self.last_at is not None:
            if _micros(self.first_at, "first_at") > _micros(self.last_at, "last_at"):
                raise bad("first_at is after last_at")
        _micros(self.signed_at, "signed_at")
        if self.algorithm not in ALGORITHMS:
            raise bad(f"algorithm must be one of {', '.join(ALGORITHMS)}")
        key = self.key_id
        if not (1 <= len(key) <= MAX_KEY_ID and key.isascii() and key.isprintable()):
            raise bad(f"key_id must be 1..{MAX_KEY_ID} printable ASCII characters")

    @property
    def covers_rows(self) -> bool:
        return self.first_seq <= self.last_seq

    def as_dict(self) -> dict[str, object]:
        def ts(value: dt.datetime | None) -> str | None:
            if value is None:
                return None
            return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

        return {
            "version": self.version,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "first_at": ts(self.first_at),
            "last_at": ts(self.last_at),
            "previous_digest_hash": self.previous_digest_hash.hex(),
            "signed_at": ts(self.signed_at),
            "key_id": self.key_id,
            "algorithm": self.algorithm,
        }


def encode(head: TreeHead) -> bytes:
    """The canonical encoding (module docstring) that KMS signs."""
    parts = [
        MAGIC,
        struct.pack(">BQ", head.version, head.tree_size),
        head.root_hash,
        struct.pack(">QQ", head.first_seq, head.last_seq),
    ]
    if head.first_at is not None and head.last_at is not None:
        parts.append(
            struct.pack(
                ">Bqq", 1, _micros(head.first_at, "first_at"), _micros(head.last_at, "last_at")
            )
        )
    else:
        parts.append(b"\x00")
    algorithm = head.algorithm.encode("ascii")
    key_id = head.key_id.encode("ascii")
    parts += [
        head.previous_digest_hash,
        struct.pack(">q", _micros(head.signed_at, "signed_at")),
        struct.pack(">B", len(algorithm)),
        algorithm,
        struct.pack(">H", len(key_id)),
        key_id,
    ]
    encoded = b"".join(parts)
    if len(encoded) > MAX_ENCODED:  # cannot happen within the field limits; kept as a guard
        raise AuditDigestError(f"the encoded digest exceeds {MAX_ENCODED} bytes")
    return encoded


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def take(self, n: int) -> bytes:
        if self._at + n > len(self._data):
            raise AuditDigestError("malformed digest: truncated")
        out = self._data[self._at : self._at + n]
        self._at += n
        return out

    def unpack(self, fmt: str) -> tuple[int, ...]:
        return tuple(int(v) for v in struct.unpack(fmt, self.take(struct.calcsize(fmt))))

    def done(self) -> bool:
        return self._at == len(self._data)


def decode(data: bytes) -> TreeHead:
    """Parse an encoded digest strictly; any defect raises one AuditDigestError."""
    if not isinstance(data, bytes | bytearray) or not 0 < len(data) <= MAX_ENCODED:
        raise AuditDigestError(f"malformed digest: expected 1..{MAX_ENCODED} bytes")
    data = bytes(data)
    r = _Reader(data)
    if r.take(len(MAGIC)) != MAGIC:
        raise AuditDigestError("malformed digest: not a PQFile tree head")
    version, tree_size = r.unpack(">BQ")
    if version != VERSION:
        raise AuditDigestError(f"unsupported digest version {version}")
    root_hash = r.take(32)
    first_seq, last_seq = r.unpack(">QQ")
    (has_range,) = r.unpack(">B")
    first_at = last_at = None
    if has_range == 1:
        a, b = r.unpack(">qq")
        first_at, last_at = _from_micros(a, "first_at"), _from_micros(b, "last_at")
    elif has_range != 0:
        raise AuditDigestError("malformed digest: has_range must be 0 or 1")
    previous = r.take(32)
    (signed,) = r.unpack(">q")
    (alg_len,) = r.unpack(">B")
    algorithm = r.take(alg_len)
    (key_len,) = r.unpack(">H")
    key_id = r.take(key_len)
    if not r.done():
        raise AuditDigestError("malformed digest: trailing bytes")
    try:
        head = TreeHead(
            tree_size=tree_size,
            root_hash=root_hash,
            first_seq=first_seq,
            last_seq=last_seq,
            first_at=first_at,
            last_at=last_at,
            previous_digest_hash=previous,
            signed_at=_from_micros(signed, "signed_at"),
            key_id=key_id.decode("ascii"),
            algorithm=algorithm.decode("ascii"),
            version=version,
        )
    except UnicodeDecodeError:
        raise AuditDigestError("malformed digest: algorithm and key_id are ASCII") from None
    if encode(head) != data:
        raise AuditDigestError("malformed digest: not in canonical form")
    return head


def digest_hash(encoded: bytes) -> bytes:
    """The hash the next digest links to: SHA-256 of the encoding."""
    return hashlib.sha256(encoded).digest()


def public_key_der(data: bytes) -> bytes:
    """A public key given as PEM or DER (SubjectPublicKeyInfo) -> DER."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise AuditDigestError(
            "not a public key (expected a PEM or DER SubjectPublicKeyInfo)"
        ) from None
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def verify_signature(
    encoded: bytes, signature: bytes, algorithm: str, public_key_der: bytes
) -> None:
    """Verify a KMS signature over ``encoded``; raise AuditDigestError if it does not verify.

    ``ECDSA_SHA_384``: KMS MessageType RAW, ECDSA P-384 over SHA-384 of the message, DER
    signature. ``ML_DSA_SHAKE_256``: KMS ML-DSA (FIPS 204) over the message as is, with an
    empty context.
    """
    # pyca on first use: the functions that import this module (retrieve's receipts, the
    # digest writer) sign nothing at import, and their cold init should not load it.
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, mldsa

    try:
        key = serialization.load_der_public_key(public_key_der)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise AuditDigestError("not a DER SubjectPublicKeyInfo public key") from None
    try:
        if algorithm == ECDSA_SHA_384:
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
                raise AuditDigestError("ECDSA_SHA_384 needs an ECC_NIST_P384 public key")
            key.verify(signature, encoded, ec.ECDSA(hashes.SHA384()))
        elif algorithm == ML_DSA_SHAKE_256:
            if not isinstance(key, mldsa.MLDSA65PublicKey):
                raise AuditDigestError("ML_DSA_SHAKE_256 needs an ML-DSA-65 public key")
            key.verify(signature, encoded)
        else:
            raise AuditDigestError(f"unknown signing algorithm (one of {', '.join(ALGORITHMS)})")
    except InvalidSignature:
        raise AuditDigestError("the digest's signature does not verify") from None


@dataclass(frozen=True)
class SignedDigest:
    """One digest object in S3: the encoding, its signature, how and by which key."""

    digest: bytes
    signature: bytes
    algorithm: str
    key_id: str

    @property
    def head(self) -> TreeHead:
        return decode(self.digest)

    @property
    def digest_hash(self) -> bytes:
        return digest_hash(self.digest)

    def verify(self, public_key_der: bytes) -> TreeHead:
        """The decoded head once its signature verifies under ``public_key_der``."""
        head = self.head
        verify_signature(self.digest, self.signature, self.algorithm, public_key_der)
        return head

    def to_json(self) -> bytes:
        return (
            json.dumps(
                {
                    "digest": base64.b64encode(self.digest).decode("ascii"),
                    "signature": base64.b64encode(self.signature).decode("ascii"),
                    "algorithm": self.algorithm,
                    "key_id": self.key_id,
                },
                sort_keys=True,
                separators=(",", ":"),
            ).encode("ascii")
            + b"\n"
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> SignedDigest:
        """Parse a digest object strictly (the head inside must decode and agree)."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        if len(raw) > MAX_DIGEST_JSON:
            raise AuditDigestError(f"malformed digest object: larger than {MAX_DIGEST_JSON} bytes")
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            raise AuditDigestError("malformed digest object: not JSON") from None
        fields = ("algorithm", "digest", "key_id", "signature")
        if not isinstance(obj, dict) or sorted(obj) != list(fields):
            raise AuditDigestError(f"malformed digest object: expected exactly {', '.join(fields)}")
        if not all(isinstance(obj[f], str) for f in fields):
            raise AuditDigestError("malformed digest object: every field is a string")
        try:
            digest = base64.b64decode(obj["digest"], validate=True)
            signature = base64.b64decode(obj["signature"], validate=True)
        except (binascii.Error, ValueError):
            raise AuditDigestError("malformed digest object: digest/signature are base64") from None
        if not 0 < len(signature) <= MAX_SIGNATURE:
            raise AuditDigestError("malformed digest object: signature length")
        out = cls(digest, signature, obj["algorithm"], obj["key_id"])
        head = out.head
        if head.algorithm != out.algorithm or head.key_id != out.key_id:
            raise AuditDigestError("digest object: algorithm/key_id differ from the signed head")
        return out


# --- receipts (``pqfile audit prove``) ---------------------------------------------------


@dataclass(frozen=True)
class InclusionReceipt:
    """Row ``seq``, its hash, and the sibling hashes that lead from it to the root of the
    tree of ``tree_size`` rows: nothing about any other row. ``row_hash_matches_row`` says
    the row's fields hash to ``row_hash`` (pqfile.keys.audit_chain.compute_hash)."""

    seq: int
    row_hash: bytes
    row_hash_matches_row: bool
    row: Mapping[str, object]
    tree_size: int
    root_hash: bytes
    proof: tuple[bytes, ...]

    def verify(self, root_hash: bytes) -> None:
        """Raise AuditProofError unless the proof leads to ``root_hash`` (a signed root)."""
        verify_inclusion(self.row_hash, self.seq - 1, self.tree_size, self.proof, root_hash)

    def as_dict(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "leaf_index": self.seq - 1,
            "row_hash": self.row_hash.hex(),
            "row_hash_matches_row": self.row_hash_matches_row,
            "row": dict(self.row),
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "proof": [h.hex() for h in self.proof],
        }

    @classmethod
    def from_dict(cls, obj: object) -> InclusionReceipt:
        """Parse ``as_dict()``'s output strictly (the admin function's answer)."""
        try:
            assert isinstance(obj, dict)
            proof = obj["proof"]
            assert isinstance(proof, list) and len(proof) <= MAX_PROOF_HASHES
            seq, size, row = obj["seq"], obj["tree_size"], obj["row"]
            assert type(seq) is int and type(size) is int and 1 <= seq <= size <= _U64
            assert isinstance(row, dict) and isinstance(obj["row_hash_matches_row"], bool)
            receipt = cls(
                seq=seq,
                row_hash=_hash32(obj["row_hash"]),
                row_hash_matches_row=obj["row_hash_matches_row"],
                row=row,
                tree_size=size,
                root_hash=_hash32(obj["root_hash"]),
                proof=tuple(_hash32(h) for h in proof),
            )
        except (AssertionError, KeyError, TypeError, ValueError):
            raise AuditProofError("malformed inclusion proof answer") from None
        return receipt


def _hash32(value: object) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise ValueError("not a 64-hex-digit hash")
    return bytes.fromhex(value)


def inclusion_receipt(row: AuditRow, tree: AuditTree, tree_size: int) -> InclusionReceipt:
    """The receipt of ``row`` in the tree of the first ``tree_size`` rows of ``tree``."""
    if not 1 <= row.seq <= tree_size:
        raise AuditProofError(f"row {row.seq} is not in a tree of {tree_size} rows")
    proof = tree.inclusion_proof(row.seq - 1, tree_size)
    root = tree.root(tree_size)
    verify_inclusion(row.row_hash, row.seq - 1, tree_size, proof, root)  # the row is leaf seq-1
    return InclusionReceipt(
        seq=row.seq,
        row_hash=row.row_hash,
        row_hash_matches_row=compute_hash(row) == row.row_hash,
        row=row.as_dict(),
        tree_size=tree_size,
        root_hash=root,
        proof=tuple(proof),
    )
