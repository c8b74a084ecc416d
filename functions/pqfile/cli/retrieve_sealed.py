"""The reader's side of sealed delivery (`pqfile retrieve --identity ME.sec`, issue 18;
docs/OPERATIONS.md "Retrieval", "Sealed delivery: the reader's side").

The retrieve function answers ``"delivery": "sealed"`` with the stored package's header
re-wrapped to the reader's registered key (docs/FORMAT.md §8) and a presigned GET of the
stored package, whose body starts at ``body.offset``. Here the two are spliced and, with
the reader's secret key, verified and decrypted on the reader's machine:

- before any body byte is fetched: the header parses and is exactly as long as its own
  lengths say, names the suite the answer names, the answer's fingerprint is SHA-256 of the
  raw public key of ``--identity``, the header opens with it (key id, HPKE unwrap,
  commitment and MAC: FORMAT.md §10 steps 1-8), it binds the answered document id, and the
  body length is the one ``size`` implies (FORMAT.md §6);
- the body is one ranged GET, streamed: two segments in memory whatever the size, each
  segment authenticated before it reaches ``--out``, the final one as final;
- ``--out`` and ``--keep-sealed`` appear only once all of that passed
  (``envelope.write_atomically``), so an expired URL, a truncated body or a tampered header
  or body leaves no file.

``--range bytes=A-B`` (with ``--identity`` and ``--out``; never ``--keep-sealed``: a
partial package is not a package): the answer's ``range`` names the covering segments and
where they sit in the stored object; the client recomputes all of it from the range it
asked, the answer's ``size`` and the header's segment size, refuses an answer that says
otherwise, fetches only those bytes with one ranged GET (a server that ignores the Range
header is refused, never read whole), authenticates each segment with its index and last
flag (crypto/ranged.py ``decrypt_span``; the final segment as final when the range reaches
the end) and writes exactly the requested bytes, atomically.

``--keep-sealed`` without ``--identity`` checks the structure only (the header parses, its
suite, document id and body length agree with the answer, the body has exactly that many
bytes): nothing can be authenticated without the secret key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pqfile.cli._output import print_receipt, progress_bar
from pqfile.crypto import envelope, stream
from pqfile.crypto.kem import PublicKey, SecretKey
from pqfile.crypto.keyschedule import BodyKeys
from pqfile.crypto.ranged import decrypt_span, parse_byte_range, segment_span
from pqfile.errors import DecryptionError, MalformedPackageError, PQFileError
from pqfile.format.header import MAX_HEADER_SIZE, Header, parse_header

_CHUNK = 1024 * 1024


class SealedAnswerError(PQFileError):
    """The sealed answer is incomplete or contradicts itself: nothing fetched or written."""


class RecipientMismatchError(PQFileError):
    """The document was sealed to another key than the one given with --identity."""


def fingerprint_of(public: PublicKey) -> str:
    """A recipient key's fingerprint: SHA-256 of its raw public key, lower-case hex (as the
    database computes it, docs/KEYS.md "Recipient keys")."""
    return hashlib.sha256(public.raw).hexdigest()


@dataclass(frozen=True)
class SealedAnswer:
    """The fields of a sealed answer this client relies on, checked for type and range."""

    document_id: str
    size: int
    header_raw: bytes
    header: Header
    fingerprint: str
    suite: str
    url: str
    offset: int
    length: int
    expires_in: int | None

    @classmethod
    def parse(cls, answer: Mapping[str, Any]) -> SealedAnswer:
        recipient = answer.get("recipient")
        body = answer.get("body")
        if not isinstance(recipient, Mapping) or not isinstance(body, Mapping):
            raise SealedAnswerError("the sealed answer lacks its recipient or body")
        document_id = answer.get("document_id")
        size = answer.get("size")
        fingerprint = recipient.get("fingerprint")
        suite = recipient.get("suite")
        url = body.get("url")
        offset = body.get("offset")
        length = body.get("length")
        expires_in = body.get("expires_in")
        if not (isinstance(document_id, str) and isinstance(fingerprint, str)
                and isinstance(suite, str) and isinstance(url, str)):  # fmt: skip
            raise SealedAnswerError("the sealed answer lacks document_id, recipient or body url")
        for name, value in (("size", size), ("body.offset", offset), ("body.length", length)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SealedAnswerError(f"the sealed answer's {name} is not a byte count")
        assert isinstance(size, int) and isinstance(offset, int) and isinstance(length, int)
        encoded = answer.get("header_base64")
        if not isinstance(encoded, str) or len(encoded) > 4 * MAX_HEADER_SIZE:
            raise SealedAnswerError("the sealed answer carries no header_base64")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise SealedAnswerError("the sealed answer's header_base64 is not base64") from None
        header = parse_header(raw)  # limits and lengths, before any crypto (FORMAT.md §9)
        if len(raw) != header.size:
            raise MalformedPackageError(
                f"the sealed header is {len(raw)} bytes, its own lengths say {header.size}"
            )
        return cls(
            document_id=document_id,
            size=size,
            header_raw=raw,
            header=header,
            fingerprint=fingerprint.lower(),
            suite=suite,
            url=url,
            offset=offset,
            length=length,
            expires_in=expires_in if isinstance(expires_in, int) else None,
        )


@dataclass(frozen=True)
class SealedResult:
    plaintext_size: int | None  # None: not decrypted (--keep-sealed without --identity)
    sha256: str | None
    package_size: int
    verified: str  # what was checked, for the summary


def check_before_fetch(answer: SealedAnswer, identity: SecretKey | None) -> BodyKeys | None:
    """Everything that can be checked before the body is fetched (the module docstring);
    returns the body keys when ``identity`` opened the header."""
    header = answer.header
    if header.suite.value != answer.suite:
        raise SealedAnswerError(
            f"the sealed header is for suite {header.suite.value}, the answer says {answer.suite}"
        )
    keys: BodyKeys | None = None
    if identity is not None:
        public = identity.public_key()
        mine = fingerprint_of(public)
        if answer.fingerprint != mine:
            raise RecipientMismatchError(
                f"the document was sealed to the key with fingerprint {answer.fingerprint} "
                f"({answer.suite}), not to --identity ({mine}, {public.suite.value}): give the "
                "secret key of the public key you registered, or register this one "
                "(pqfile access recipient add)"
            )
        try:
            _, keys = envelope.open_header(header, identity)
        except DecryptionError:
            raise DecryptionError(
                "the sealed header is not authentic for --identity: nothing written"
            ) from None
    if header.document_id and header.document_id != answer.document_id.encode("utf-8"):
        raise SealedAnswerError("the sealed header binds another document than the answer names")
    expected = stream.body_size(answer.size, header.segment_size)
    if answer.length != expected:
        raise SealedAnswerError(
            f"the answer's body length {answer.length} does not fit a {answer.size}-byte "
            f"document in {header.segment_size}-byte segments ({expected})"
        )
    return keys


class _Hashing:
    """A sink that hashes and counts the verified plaintext, then passes it on (or not)."""

    def __init__(self, inner: Any | None) -> None:
        self._inner = inner
        self.digest = hashlib.sha256()
        self.count = 0

    def write(self, data: memoryview, /) -> int:
        self.digest.update(data)
        self.count += len(data)
        if self._inner is not None:
            stream.write_all(self._inner, data)
        return len(data)


class _Tee:
    """The body as it arrives: copied to the sealed package (if kept) and counted for the
    progress bar, then handed to the decryption."""

    def __init__(
        self, reader: Any, sealed: Any | None, advance: Callable[[int], None] | None
    ) -> None:
        self._reader = reader
        self._sealed = sealed
        self._advance = advance

    def readinto(self, buffer: memoryview, /) -> int:
        n = int(self._reader.readinto(buffer))
        if n:
            if self._sealed is not None:
                stream.write_all(self._sealed, buffer[:n])
            if self._advance is not None:
                self._advance(n)
        return n


def receive(
    answer: SealedAnswer,
    identity: SecretKey | None,
    *,
    out: str | Path | None,
    keep_sealed: str | Path | None,
    overwrite: bool = False,
) -> SealedResult:
    """Fetch the body of a sealed answer, splice it after the new header, verify and write
    ``out`` (the plaintext, needs ``identity``) and/or ``keep_sealed`` (the package)."""
    from pqfile.adapters.lambda_retrieve import open_range

    if out is None and keep_sealed is None:
        raise SealedAnswerError("nothing to write: --out and/or --keep-sealed")
    if out is not None and identity is None:
        raise SealedAnswerError("decrypting a sealed delivery needs --identity")
    keys = check_before_fetch(answer, identity)
    header = answer.header
    with contextlib.ExitStack() as files:
        plain = (
            files.enter_context(envelope.write_atomically(out, overwrite=overwrite))
            if out is not None
            else None
        )
        sealed = (
            files.enter_context(envelope.write_atomically(keep_sealed, overwrite=overwrite))
            if keep_sealed is not None
            else None
        )
        if sealed is not None:
            stream.write_all(sealed, memoryview(answer.header_raw))
        advance = files.enter_context(progress_bar(answer.length, "downloading"))
        reader = files.enter_context(open_range(answer.url, answer.offset, answer.length))
        body = _Tee(reader, sealed, advance)
        if keys is None:  # kept as it is: the reader checks the byte count
            view = memoryview(bytearray(min(_CHUNK, answer.length) or 1))
            while body.readinto(view):
                pass
            return SealedResult(None, None, header.size + reader.count,
                                "structure only (no --identity)")  # fmt: skip
        sink = _Hashing(plain)
        stream.decrypt_body(
            body, sink, keys.body_key, header.nonce_prefix, header.segment_size
        )  # every segment, the final one as final; DecryptionError otherwise
        if sink.count != answer.size or reader.count != answer.length:
            raise SealedAnswerError(
                f"the document has {sink.count} bytes, the answer says {answer.size}: "
                "nothing written"
            )
        return SealedResult(sink.count, sink.digest.hexdigest(), header.size + reader.count,
                            "header and every segment, with --identity")  # fmt: skip


@dataclass(frozen=True)
class RangedResult:
    """What a sealed ranged read wrote and what it fetched."""

    size: int  # plaintext bytes written: the range's length
    sha256: str
    content_range: str
    first_segment: int
    last_segment: int
    received: int  # body bytes fetched from the URL (the covering segments)


def _range_fields(answer: Mapping[str, Any]) -> tuple[str, str, int, int, int, int]:
    """The answer's ``range`` object: (requested, content_range, first, last, body_offset,
    body_length), checked for type."""
    section = answer.get("range")
    segments = section.get("segments") if isinstance(section, Mapping) else None
    if not isinstance(section, Mapping) or not isinstance(segments, Mapping):
        raise SealedAnswerError("the sealed answer carries no range for --range")
    requested, content_range = section.get("requested"), section.get("content_range")
    if not isinstance(requested, str) or not isinstance(content_range, str):
        raise SealedAnswerError("the sealed answer's range lacks requested or content_range")
    numbers = (segments.get("first"), segments.get("last"),
               section.get("body_offset"), section.get("body_length"))  # fmt: skip
    for value in numbers:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SealedAnswerError("the sealed answer's range holds a non-count")
    first, last, offset, length = (int(v) for v in numbers)  # type: ignore[arg-type]
    return requested, content_range, first, last, offset, length


class _Fetched:
    """``read`` over the ranged body, advancing the progress bar (None: no bar)."""

    def __init__(self, reader: Any, advance: Callable[[int], None] | None) -> None:
        self._reader = reader
        self._advance = advance

    def read(self, size: int, /) -> bytes:
        data = bytes(self._reader.read(size))
        if data and self._advance is not None:
            self._advance(len(data))
        return data


def receive_range(
    answer: SealedAnswer,
    body: Mapping[str, Any],
    identity: SecretKey,
    range_text: str,
    *,
    out: str | Path,
    overwrite: bool = False,
) -> RangedResult:
    """Fetch only the segments of a sealed answer that cover ``range_text``, authenticate
    and decrypt them, and write exactly the range's bytes to ``out`` (atomically)."""
    from pqfile.adapters.lambda_retrieve import open_range

    requested, content_range, first, last, offset, length = _range_fields(body)
    if requested != range_text:
        raise SealedAnswerError(
            f"the answer is for range {requested[:64]!r}, not the {range_text!r} asked"
        )
    keys = check_before_fetch(answer, identity)
    assert keys is not None
    header = answer.header
    # Recomputed here, never taken from the answer: the size is the one the body length
    # encodes (checked above), authenticated by the final segment when the range reaches it.
    wanted = parse_byte_range(range_text, answer.size)
    span = segment_span(wanted, header.segment_size)
    if (content_range, first, last, offset, length) != (
        wanted.content_range, span.first_segment, span.last_segment,
        answer.offset + span.body_offset, span.body_length,
    ):  # fmt: skip
        raise SealedAnswerError(
            f"the answer's range ({content_range[:80]}, segments {first}-{last}) is not what "
            f"{range_text} of a {answer.size}-byte document is ({wanted.content_range}, "
            f"segments {span.first_segment}-{span.last_segment}): nothing fetched"
        )
    with contextlib.ExitStack() as files:
        plain = files.enter_context(envelope.write_atomically(out, overwrite=overwrite))
        advance = files.enter_context(progress_bar(span.body_length, "downloading"))
        reader = files.enter_context(
            open_range(answer.url, offset, span.body_length, partial_only=True)
        )
        sink = _Hashing(plain)
        decrypt_span(_Fetched(reader, advance), sink, keys.body_key, header.nonce_prefix,
                     wanted, span)  # fmt: skip  (DecryptionError: nothing kept)
        if sink.count != wanted.length or reader.count != span.body_length:
            raise SealedAnswerError(
                f"the range has {sink.count} bytes, {wanted.length} were asked: nothing written"
            )
        return RangedResult(sink.count, sink.digest.hexdigest(), wanted.content_range,
                            span.first_segment, span.last_segment, reader.count)  # fmt: skip


def _write_range(args: Any, body: Mapping[str, Any], identity: SecretKey | None) -> int:
    """`pqfile retrieve --identity ME.sec --range R --out F` after a sealed answer."""
    import sys

    from pqfile.cli._output import human_size
    from pqfile.cli.files import _file_errors

    if identity is None or args.out is None:
        raise SealedAnswerError(
            "the function answered with sealed delivery (a recipient key is registered for "
            "you): a range is decrypted here, retrieve with --identity YOUR.sec --out FILE"
        )
    answer = SealedAnswer.parse(body)
    with _file_errors():
        result = receive_range(answer, body, identity, str(args.range), out=args.out,
                               overwrite=args.force)  # fmt: skip
    summary = {
        "document_id": answer.document_id,
        "delivery": "sealed",
        "range": result.content_range,
        "size": result.size,
        "document_size": answer.size,
        "sha256": result.sha256,
        "content_type": body.get("content_type"),
        "out": str(args.out),
        "segments": {"first": result.first_segment, "last": result.last_segment},
        "received": result.received,
        "recipient": {
            "fingerprint": answer.fingerprint,
            "suite": answer.suite,
            "key_id": answer.header.key_id,
        },
        "verified": "header and every covering segment, with --identity",
        "receipt": body.get("receipt"),
    }
    if args.json:
        import json

        print(json.dumps(summary, sort_keys=True))
        return 0
    print(f"wrote {args.out}: {result.content_range} ({human_size(result.size)}), sha256 "
          f"{result.sha256} (decrypted here: segments {result.first_segment}-"
          f"{result.last_segment} verified, {human_size(result.received)} fetched)",
          file=sys.stderr)  # fmt: skip
    print_receipt(body)
    return 0


def write_sealed(args: Any, body: Mapping[str, Any], identity: SecretKey | None) -> int:
    """`pqfile retrieve` after a sealed answer: receive it, then print the summary."""
    import sys

    from pqfile.cli._output import human_size
    from pqfile.cli.files import _file_errors

    if body.get("delivery") != "sealed":
        raise SealedAnswerError(
            f"asked for sealed delivery, the function answered {str(body.get('delivery'))[:20]!r}"
        )
    if getattr(args, "range", None) is not None:
        return _write_range(args, body, identity)
    if identity is None and args.keep_sealed is None:
        raise SealedAnswerError(
            "the function answered with sealed delivery (a recipient key is registered for "
            "you): retrieve with --identity YOUR.sec, or --keep-sealed OUT.pqf"
        )
    answer = SealedAnswer.parse(body)
    with _file_errors():
        result = receive(answer, identity, out=args.out, keep_sealed=args.keep_sealed,
                         overwrite=args.force)  # fmt: skip
    summary = {
        "document_id": answer.document_id,
        "delivery": "sealed",
        "size": answer.size,
        "sha256": result.sha256,
        "content_type": body.get("content_type"),
        "out": None if args.out is None else str(args.out),
        "sealed": None if args.keep_sealed is None else str(args.keep_sealed),
        "sealed_size": result.package_size,
        "recipient": {
            "fingerprint": answer.fingerprint,
            "suite": answer.suite,
            "key_id": answer.header.key_id,
        },
        "verified": result.verified,
        "receipt": body.get("receipt"),  # the outcome audit row (pqfile audit prove SEQ)
    }
    if args.json:
        import json

        print(json.dumps(summary, sort_keys=True))
        return 0
    if args.out is not None:
        print(f"wrote {args.out}: {human_size(answer.size)}, sha256 {result.sha256} "
              "(decrypted here: every segment verified)", file=sys.stderr)  # fmt: skip
    if args.keep_sealed is not None:
        print(f"kept {args.keep_sealed}: {human_size(result.package_size)}, sealed to key "
              f"{answer.header.key_id} ({answer.suite}); checked: {result.verified}",
              file=sys.stderr)  # fmt: skip
    print_receipt(body)
    return 0
