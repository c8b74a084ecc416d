"""Key files: PEM SubjectPublicKeyInfo and PKCS#8 (docs/FORMAT.md section 12).

A deliberately tiny DER codec for exactly two structures (X.690 DER, definite lengths):

    SubjectPublicKeyInfo ::= SEQUENCE { SEQUENCE { OID }, BIT STRING }
    PrivateKeyInfo       ::= SEQUENCE { INTEGER 0, SEQUENCE { OID }, OCTET STRING }

ML-KEM-768 (OID 2.16.840.1.101.3.4.4.2) and ML-KEM-1024 (OID 2.16.840.1.101.3.4.4.3): the
BIT STRING is ek; the private OCTET STRING holds the ``seed [0] OCTET STRING (64)`` choice
(``80 40 || d || z``), byte-identical to what pyca/cryptography and OpenSSL 3.5 write.
X-Wing (OID 1.3.6.1.4.1.62253.25722, from draft-connolly-cfrg-xwing-kem): the BIT STRING is
the 1216-byte public key, the OCTET STRING the raw 32-byte seed. Anything else is a
KeyFormatError.
"""

from __future__ import annotations

import binascii
import contextlib
import errno
import os
import stat

from pqfile.crypto.atomic import split_target
from pqfile.crypto.kem import (
    PublicKey,
    SecretKey,
    Suite,
    public_key_from_bytes,
    secret_key_from_seed,
)
from pqfile.errors import KeyFormatError

OID_MLKEM768 = "2.16.840.1.101.3.4.4.2"
OID_MLKEM1024 = "2.16.840.1.101.3.4.4.3"
OID_XWING = "1.3.6.1.4.1.62253.25722"
_OIDS = {Suite.MLKEM768: OID_MLKEM768, Suite.MLKEM1024: OID_MLKEM1024, Suite.XWING: OID_XWING}
_SEED_FORM = (Suite.MLKEM768, Suite.MLKEM1024)  # secret key = [0] seed, as FIPS 203 keys

_SEQUENCE, _INTEGER, _BIT_STRING, _OCTET_STRING, _OID = 0x30, 0x02, 0x03, 0x04, 0x06
_MLKEM_SEED_TAG = 0x80  # [0] IMPLICIT OCTET STRING, the seed choice

# Our key files are under 2 KiB; the cap bounds reading and parsing of hostile input.
MAX_KEY_FILE_SIZE = 64 * 1024

PUBLIC_LABEL = "PUBLIC KEY"
PRIVATE_LABEL = "PRIVATE KEY"


# --- DER ------------------------------------------------------------------------------------


def encode_oid(dotted: str) -> bytes:
    """The content octets of an OBJECT IDENTIFIER (X.690 8.19)."""
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray((40 * arcs[0] + arcs[1],))
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return bytes(body)


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes((n,))
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes((0x80 | len(raw),)) + raw
    return bytes((tag,)) + length + content


def _read_tlv(data: bytes, pos: int, tag: int) -> tuple[bytes, int]:
    """One DER element with the expected tag at ``pos``: (content, position after it)."""
    if pos + 2 > len(data) or data[pos] != tag:
        raise KeyFormatError("malformed key: unexpected DER structure")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 3 or pos + count > len(data):
            raise KeyFormatError("malformed key: bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:  # DER requires the shortest length form
            raise KeyFormatError("malformed key: non-minimal DER length")
        pos += count
    end = pos + length
    if end > len(data):
        raise KeyFormatError("malformed key: truncated DER")
    return data[pos:end], end


def _expect_end(data: bytes, pos: int) -> None:
    if pos != len(data):
        raise KeyFormatError("malformed key: trailing bytes in DER")


def _algorithm(oid: str) -> bytes:
    return _tlv(_SEQUENCE, _tlv(_OID, encode_oid(oid)))


def _suite_from_algorithm(content: bytes) -> Suite:
    oid, end = _read_tlv(content, 0, _OID)
    _expect_end(content, end)  # parameters must be absent
    for suite, dotted in _OIDS.items():
        if oid == encode_oid(dotted):
            return suite
    raise KeyFormatError(
        "unsupported key algorithm (expected ML-KEM-768, ML-KEM-1024 or X-Wing)"
    )


def public_key_to_der(key: PublicKey) -> bytes:
    return _tlv(_SEQUENCE, _algorithm(_OIDS[key.suite]) + _tlv(_BIT_STRING, b"\0" + key.raw))


def public_key_from_der(der: bytes) -> PublicKey:
    spki, end = _read_tlv(der, 0, _SEQUENCE)
    _expect_end(der, end)
    alg, pos = _read_tlv(spki, 0, _SEQUENCE)
    suite = _suite_from_algorithm(alg)
    bits, pos = _read_tlv(spki, pos, _BIT_STRING)
    _expect_end(spki, pos)
    if not bits or bits[0] != 0:
        raise KeyFormatError("malformed key: BIT STRING with unused bits")
    return public_key_from_bytes(suite, bits[1:])


def secret_key_to_der(key: SecretKey) -> bytes:
    if key.suite in _SEED_FORM:
        private = _tlv(_MLKEM_SEED_TAG, key.seed)
    else:
        private = key.seed
    return _tlv(
        _SEQUENCE,
        _tlv(_INTEGER, b"\0") + _algorithm(_OIDS[key.suite]) + _tlv(_OCTET_STRING, private),
    )


def secret_key_from_der(der: bytes) -> SecretKey:
    info, end = _read_tlv(der, 0, _SEQUENCE)
    _expect_end(der, end)
    version, pos = _read_tlv(info, 0, _INTEGER)
    if version != b"\0":
        raise KeyFormatError("unsupported PKCS#8 version")
    alg, pos = _read_tlv(info, pos, _SEQUENCE)
    suite = _suite_from_algorithm(alg)
    private, pos = _read_tlv(info, pos, _OCTET_STRING)
    _expect_end(info, pos)  # no attributes, no public key
    if suite in _SEED_FORM:
        if not private or private[0] != _MLKEM_SEED_TAG:
            raise KeyFormatError(f"{suite.value} private key must be in the seed form")
        seed, end = _read_tlv(private, 0, _MLKEM_SEED_TAG)
        _expect_end(private, end)
    else:
        seed = private
    return secret_key_from_seed(suite, seed)


# --- PEM ------------------------------------------------------------------------------------


def _pem(label: str, der: bytes) -> bytes:
    b64 = binascii.b2a_base64(der, newline=False).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n").encode(
        "ascii"
    )


_PEM_BEGIN, _PEM_END, _PEM_DASHES = b"-----BEGIN ", b"-----END ", b"-----"
_BASE64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _shown(label: bytes) -> str:
    """A label from an untrusted file, safe and short enough for a one-line error."""
    text = label.decode("latin-1")  # every byte maps; ascii() then escapes the odd ones
    return ascii(text if len(text) <= 40 else text[:40] + "...")


def _unpem(data: bytes, label: str) -> bytes:
    """The DER inside the first PEM block (RFC 7468), which must carry ``label``.

    One pass over the lines, no regular expression: time is linear in the input, which
    :func:`_read_key_file` caps at MAX_KEY_FILE_SIZE. Text before the BEGIN line and after
    the END line is ignored, as RFC 7468 allows; whitespace in body lines is tolerated.
    """
    lines = iter(data.splitlines())
    found: bytes | None = None
    for line in lines:
        line = line.strip()
        if line.startswith(_PEM_BEGIN) and line.endswith(_PEM_DASHES) and len(line) > 16:
            found = line[len(_PEM_BEGIN) : -len(_PEM_DASHES)]
            break
    if found is None:
        raise KeyFormatError("not a PEM key file (no -----BEGIN ...----- line)")
    if found != label.encode("ascii"):
        raise KeyFormatError(f"expected a PEM {label!r} block, found {_shown(found)}")
    end_line = b"".join((_PEM_END + found + _PEM_DASHES).split())
    body = bytearray()
    for line in lines:
        chunk = b"".join(line.split())
        if chunk == end_line:
            break
        if chunk.startswith(_PEM_DASHES):
            raise KeyFormatError(f"PEM {label!r} block ends with a wrong END line")
        if not _BASE64_ALPHABET.issuperset(chunk):
            raise KeyFormatError("PEM body is not valid base64")
        body += chunk
    else:
        raise KeyFormatError(f"PEM {label!r} block has no END line")
    try:
        return binascii.a2b_base64(bytes(body), strict_mode=True)  # base64.b64decode's check
    except (binascii.Error, ValueError):
        raise KeyFormatError("PEM body is not valid base64") from None


def public_key_to_pem(key: PublicKey) -> bytes:
    return _pem(PUBLIC_LABEL, public_key_to_der(key))


def public_key_from_pem(data: bytes) -> PublicKey:
    return public_key_from_der(_unpem(data, PUBLIC_LABEL))


def secret_key_to_pem(key: SecretKey) -> bytes:
    return _pem(PRIVATE_LABEL, secret_key_to_der(key))


def secret_key_from_pem(data: bytes) -> SecretKey:
    return secret_key_from_der(_unpem(data, PRIVATE_LABEL))


# --- files ----------------------------------------------------------------------------------


def _write_file(target: str | os.PathLike[str], data: bytes, mode: int, overwrite: bool) -> None:
    path, folder, name = split_target(target)
    if not overwrite:
        # O_EXCL: never follow or replace an existing file; the mode applies at creation.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.lstat(path).st_mode):  # never replace a device, FIFO, link...
            raise FileExistsError(errno.EEXIST, "exists and is not a regular file", path)
    import tempfile  # here: the file commands start faster without it

    fd_tmp, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd_tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_public_key(
    path: str | os.PathLike[str], key: PublicKey, *, overwrite: bool = False
) -> None:
    """Write a PEM public key (mode 0644)."""
    _write_file(path, public_key_to_pem(key), 0o644, overwrite)


def write_secret_key(
    path: str | os.PathLike[str], key: SecretKey, *, overwrite: bool = False
) -> None:
    """Write a PEM PKCS#8 secret key, created with mode 0600."""
    _write_file(path, secret_key_to_pem(key), 0o600, overwrite)


def _read_key_file(path: str | os.PathLike[str]) -> bytes:
    """At most MAX_KEY_FILE_SIZE bytes: a larger file (or ``/dev/zero``) is not a key."""
    with open(path, "rb") as f:
        data = f.read(MAX_KEY_FILE_SIZE + 1)
    if len(data) > MAX_KEY_FILE_SIZE:
        raise KeyFormatError(
            f"{os.fsdecode(path)!r} is larger than {MAX_KEY_FILE_SIZE // 1024} KiB: not a key file"
        )
    return data


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    return public_key_from_pem(_read_key_file(path))


def load_secret_key(path: str | os.PathLike[str]) -> SecretKey:
    return secret_key_from_pem(_read_key_file(path))
