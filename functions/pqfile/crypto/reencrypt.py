"""Changing a package's recipient (FORMAT.md §8): rewrap (new header, same body) and
re-encryption (same plaintext under a fresh data key, salt and key schedule: the
compromise path of key rotation, and the only way into the CNSA 2.0 suite for a SHA-256
package).

Every name here is re-exported by :mod:`pqfile.crypto.envelope` under the same name.
"""

from __future__ import annotations

from collections.abc import Mapping

from pqfile.crypto import stream
from pqfile.crypto.envelope import (
    BinarySource,
    EncryptResult,
    Randomness,
    _seal_header,
    _wrap_into,
    open_header,
)
from pqfile.crypto.kem import PublicKey, SecretKey, Suite
from pqfile.crypto.keyschedule import Kdf
from pqfile.crypto.stream import ProgressCallback, Sink
from pqfile.crypto.wrap import WrapFunction, hpke_wrap
from pqfile.errors import DowngradeError, ReencryptionRequiredError
from pqfile.format.header import Header, parse_header, read_header_from

__all__ = [
    "check_downgrade",
    "check_rewrap",
    "reencrypt_stream",
    "rewrap_header",
    "rewrap_stream",
]


def check_rewrap(header: Header, new_suite: Suite, *, allow_downgrade: bool = False) -> None:
    """FORMAT.md §8: what a rewrap may not do, decided from the header alone.

    - a SHA-256 package (KDF 0x00) cannot enter the CNSA 2.0 suite: the body keeps its hash
      family, so that takes a re-encryption (:func:`reencrypt_stream`);
    - a lower-ranked suite (mlkem768 < xwing < mlkem1024) is a downgrade, refused unless
      ``allow_downgrade``.
    """
    if new_suite is Suite.MLKEM1024 and header.kdf is not Kdf.HKDF_SHA384:
        raise ReencryptionRequiredError(
            f"cannot rewrap a {header.kdf.label} package into suite {new_suite.value} "
            f"(it needs {Kdf.HKDF_SHA384.label}): re-encrypt it instead"
        )
    check_downgrade(header.suite, new_suite, allow_downgrade=allow_downgrade)


def check_downgrade(old: Suite, new: Suite, *, allow_downgrade: bool = False) -> None:
    """Raise DowngradeError if ``new`` ranks below ``old`` and that was not asked for."""
    if new.rank < old.rank and not allow_downgrade:
        raise DowngradeError(old.value, new.value)


def rewrap_header(
    header_bytes: bytes,
    old: SecretKey,
    new: PublicKey,
    *,
    allow_downgrade: bool = False,
    _wrap: WrapFunction = hpke_wrap,
) -> bytes:
    """A new header for ``new`` carrying the same data key; the body stays byte for byte.

    ``header_bytes`` may hold more than the header (e.g. the first KiB of the package); only
    the header is read. The rules of :func:`check_rewrap` come first (DowngradeError,
    ReencryptionRequiredError); then the old header is fully verified before anything is
    rewrapped. The package's KDF (and so the body and its key schedule) never changes.
    """
    header = parse_header(header_bytes)
    check_rewrap(header, new.suite, allow_downgrade=allow_downgrade)
    data_key, keys = open_header(header, old)
    return _wrap_into(header, keys, data_key, new, _wrap).to_bytes()


def rewrap_stream(
    src: BinarySource,
    dst: Sink,
    old: SecretKey,
    new: PublicKey,
    *,
    allow_downgrade: bool = False,
    chunk_size: int = 1 << 20,
) -> Header:
    """Copy a package from ``src`` to ``dst`` with a rewrapped header; the body is copied."""
    _, raw = read_header_from(src)
    new_raw = rewrap_header(raw, old, new, allow_downgrade=allow_downgrade)
    stream.write_all(dst, memoryview(new_raw))
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    body = stream.as_source(src)
    while True:
        n = body.readinto(view)
        if not n:
            break
        stream.write_all(dst, view[:n])
    return parse_header(new_raw)


def reencrypt_stream(
    src: BinarySource,
    dst: Sink,
    identity: SecretKey,
    recipient: PublicKey,
    *,
    allow_downgrade: bool = False,
    expected_context: Mapping[str, str] | None = None,
    expected_document_id: str | bytes | None = None,
    progress: ProgressCallback | None = None,
    _randomness: Randomness | None = None,
    _wrap: WrapFunction = hpke_wrap,
) -> EncryptResult:
    """Decrypt a package and encrypt its plaintext again for ``recipient``, streaming.

    The new package has a FRESH data key, salt and nonce prefix, the key schedule of the
    new suite (KDF byte, §1), and the same document id, context and segment size. Each
    segment is re-encrypted as soon as it verified, in constant memory, so plaintext is
    never stored; but the package is authentic only if this returns: on any exception the
    caller MUST discard everything written to ``dst``. The downgrade guard applies as for
    a rewrap; moving a SHA-256 package into the CNSA 2.0 suite is exactly this path.
    """
    header = read_header_from(src)[0]
    check_downgrade(header.suite, recipient.suite, allow_downgrade=allow_downgrade)
    _, old_keys = open_header(
        header,
        identity,
        expected_context=expected_context,
        expected_document_id=expected_document_id,
    )
    new_header_, new_keys = _seal_header(
        recipient,
        context=header.context,
        document_id=header.document_id,
        segment_size=header.segment_size,
        randomness=_randomness or Randomness.fresh(),
        wrap=_wrap,
    )
    raw = new_header_.to_bytes()
    stream.write_all(dst, memoryview(raw))
    sealer = stream.SegmentEncryptor(
        dst, new_keys.body_key, new_header_.nonce_prefix, new_header_.segment_size
    )
    stream.decrypt_body(
        src, sealer, old_keys.body_key, header.nonce_prefix, header.segment_size, progress=progress
    )
    plain, body = sealer.finish()
    return EncryptResult(header=new_header_, plaintext_size=plain, package_size=len(raw) + body)
