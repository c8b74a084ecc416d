"""`pqfile keygen | encrypt | decrypt | inspect`: local files (docs/FORMAT.md).

- Nothing is overwritten without ``--force``.
- A failed encrypt or decrypt leaves no output file: output goes to a temporary file next
  to the target and is renamed only at the end. Decrypting to stdout first decrypts into an
  anonymous temporary file and copies it out only after the final segment verified, so no
  unauthenticated plaintext ever reaches a pipe.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from pqfile.cli._output import human_size, print_fields, print_json, printable, progress_bar
from pqfile.crypto import envelope, keyfiles, stream
from pqfile.crypto.kem import DEFAULT_SUITE, Suite, generate
from pqfile.errors import LimitExceededError, PQFileError
from pqfile.format.header import MIN_SEGMENT_SIZE, Header

if TYPE_CHECKING:  # argparse is loaded only when a parser is built (cli/_fastargs.py)
    import argparse

# Decrypting to stdout spools this much in memory, then in an unlinked temporary file.
_SPOOL_IN_MEMORY = 8 * 1024 * 1024


class CommandError(PQFileError):
    """A refused command (existing output, unreadable file, ...): one line, exit 1."""


def register(subparsers: Any) -> None:
    keygen = subparsers.add_parser("keygen", help="generate a key pair as PEM files")
    keygen.add_argument(
        "--suite",
        choices=[s.value for s in Suite],
        default=DEFAULT_SUITE.value,
        help="KEM suite (default: xwing, the ML-KEM-768 + X25519 hybrid)",
    )
    keygen.add_argument("--public", required=True, metavar="PUB", help="public key file to write")
    keygen.add_argument(
        "--secret", required=True, metavar="SEC", help="secret key file to write (mode 0600)"
    )
    keygen.add_argument("--force", action="store_true", help="overwrite existing key files")
    keygen.add_argument("--json", action="store_true", help="machine-readable output")
    keygen.set_defaults(func=_keygen)

    enc = subparsers.add_parser("encrypt", help="encrypt a file to a public key")
    enc.add_argument("--recipient", "-r", required=True, metavar="PUB", help="public key file")
    enc.add_argument(
        "--context",
        "-c",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="encryption context entry (repeatable; bound to the package, not secret)",
    )
    enc.add_argument(
        "--document-id",
        metavar="ID",
        help="document id bound into the package (opaque bytes: the argument as given)",
    )
    enc.add_argument(
        "--segment-size",
        type=_size,
        default=envelope.DEFAULT_SEGMENT_SIZE,
        metavar="BYTES",
        help="plaintext bytes per segment, 1K..16M (default 1M)",
    )
    _io_options(enc)
    enc.add_argument("--json", action="store_true", help="print a JSON summary (needs --out)")
    enc.set_defaults(func=encrypt_command)

    dec = subparsers.add_parser("decrypt", help="decrypt a package with a secret key")
    dec.add_argument("--identity", "-i", required=True, metavar="SEC", help="secret key file")
    dec.add_argument(
        "--expect-context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fail unless the package's context is exactly these entries",
    )
    dec.add_argument(
        "--expect-document-id",
        metavar="ID",
        help="fail unless the package's document id is exactly this (compared as bytes)",
    )
    _io_options(dec)
    dec.add_argument("--json", action="store_true", help="print a JSON summary (needs --out)")
    dec.set_defaults(func=decrypt_command)

    insp = subparsers.add_parser("inspect", help="show a package's header (needs no key)")
    insp.add_argument("file", metavar="FILE")
    insp.add_argument("--json", action="store_true", help="machine-readable output")
    insp.set_defaults(func=_inspect)


def _io_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in", dest="input", metavar="IN", help="input file (default: stdin)")
    parser.add_argument("--out", "-o", metavar="OUT", help="output file (default: stdout)")
    parser.add_argument("--force", "-f", action="store_true", help="overwrite an existing --out")
    parser.add_argument(
        "--out-dir",
        metavar="DIR",
        help="batch mode: process every FILE on all cores, outputs in DIR (see docs)",
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="batch mode inputs (--out-dir)")


def _batch_wanted(args: argparse.Namespace) -> bool:
    if args.files and args.out_dir is None:
        raise CommandError("FILE arguments need --out-dir (or use --in/--out for one file)")
    return args.out_dir is not None


def parse_size(text: str) -> int:
    """``--segment-size``: bytes, or with a K/M (KiB, MiB) suffix; ValueError otherwise."""
    units = {"k": 1024, "m": 1024 * 1024}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    if t and t[-1] in units:
        return int(t[:-1]) * units[t[-1]]
    return int(t)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None


def _context_pairs(items: list[str], option: str) -> dict[str, str]:
    """KEY=VALUE entries; FORMAT.md §3 wants UTF-8, so argv bytes that are not (they arrive
    as lone surrogates) are refused here rather than failing in the encoder."""
    result: dict[str, str] = {}
    for item in items:
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise CommandError(
                f"{option} '{printable(item)}' is not valid UTF-8 (context keys and values must be)"
            ) from None
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"context entry {item!r} is not KEY=VALUE")
        if key in result:
            raise CommandError(f"context key {key!r} given twice")
        result[key] = value
    return result


def _document_id(arg: str | None) -> bytes | None:
    """FORMAT.md §2: opaque bytes, so the argument's own bytes, UTF-8 or not."""
    return None if arg is None else os.fsencode(arg)


@contextlib.contextmanager
def _file_errors() -> Iterator[None]:
    """OS errors become one readable line (exit 1) instead of a traceback."""
    try:
        yield
    except FileExistsError as exc:
        name = _shown(exc.filename) if exc.filename else str(exc)
        if exc.strerror == envelope.NOT_A_REGULAR_FILE:  # it changed after _check_new
            raise CommandError(f"refusing to replace {name}: not a regular file") from None
        raise CommandError(f"refusing to overwrite {name} (use --force)") from None
    except OSError as exc:
        where = f": {_shown(exc.filename)}" if exc.filename else ""
        raise CommandError(f"{printable(exc.strerror or str(exc))}{where}") from None


def _shown(path: object) -> str:
    return printable(os.fsdecode(path) if isinstance(path, str | bytes) else str(path))


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _check_new(path: str, force: bool) -> None:
    """An output may be absent, or (with --force) an existing regular file; nothing else.

    Replacing a directory entry that is a device, FIFO, socket or symlink (``--out
    /dev/null --force`` as root) or renaming onto a directory is refused even with --force.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "not a file")
        raise CommandError(
            f"refusing to write {_shown(path)}: it is {kind} (--force replaces regular files only)"
        )
    if not force:
        raise CommandError(f"refusing to overwrite {_shown(path)} (use --force)")


@contextlib.contextmanager
def _input(path: str | None) -> Iterator[tuple[envelope.BinarySource, int | None]]:
    """(binary input, its size if known)."""
    if path is None or path == "-":
        yield cast(envelope.BinarySource, sys.stdin.buffer), None
        return
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        yield f, st.st_size if stat.S_ISREG(st.st_mode) else None


# --- keygen ---------------------------------------------------------------------------------


def _keygen(args: argparse.Namespace) -> int:
    suite = Suite.from_name(args.suite)
    with _file_errors():
        if os.path.abspath(args.public) == os.path.abspath(args.secret):
            raise CommandError("--public and --secret must be different files")
        _check_new(args.public, args.force)
        _check_new(args.secret, args.force)
        secret = generate(suite)
        public = secret.public_key()
        secret_existed = os.path.lexists(args.secret)
        keyfiles.write_secret_key(args.secret, secret, overwrite=args.force)
        try:
            keyfiles.write_public_key(args.public, public, overwrite=args.force)
        except BaseException:
            if not secret_existed:  # no half a key pair: the secret alone goes too
                with contextlib.suppress(OSError):
                    os.unlink(args.secret)
            raise
    info = {
        "suite": suite.value,
        "key_id": public.key_id,
        "public": args.public,
        "secret": args.secret,
    }
    if args.json:
        print_json(info)
    else:
        print_fields(info)
    return 0


# --- encrypt / decrypt ----------------------------------------------------------------------


def _refuse_terminal(out: str | None, what: str) -> None:
    if out is None and sys.stdout.isatty():
        raise CommandError(f"refusing to write {what} to a terminal; use --out or a pipe")


def encrypt_command(args: argparse.Namespace) -> int:
    context = _context_pairs(args.context, "--context")
    if args.segment_size < MIN_SEGMENT_SIZE:
        raise LimitExceededError(f"segment size must be at least {MIN_SEGMENT_SIZE} bytes")
    if _batch_wanted(args):
        from pqfile.cli import batch

        if args.document_id is not None:
            raise CommandError("--document-id names one document; not with --out-dir")
        job = batch.Job(
            "encrypt",
            args.recipient,
            args.out_dir,
            args.force,
            context=context,
            segment_size=args.segment_size,
        )
        return batch.command(args, "encrypt", job)
    with _file_errors():
        recipient = keyfiles.load_public_key(args.recipient)
        _refuse_terminal(args.out, "a binary package")
        if args.out is not None:
            _check_new(args.out, args.force)
        with _input(args.input) as (src, total), progress_bar(total, "encrypting") as advance:
            kwargs: dict[str, Any] = {
                "context": context,
                "document_id": _document_id(args.document_id),
                "segment_size": args.segment_size,
                "progress": advance,
            }
            if args.out is None:
                result = envelope.encrypt_stream(src, sys.stdout.buffer, recipient, **kwargs)
                sys.stdout.buffer.flush()
            else:
                with envelope.write_atomically(args.out, overwrite=args.force) as out:
                    result = envelope.encrypt_stream(src, out, recipient, **kwargs)
    if args.out is not None:
        summary = {
            **envelope.describe(result.header),
            "plaintext_size": result.plaintext_size,
            "package_size": result.package_size,
            "output": args.out,
        }
        if args.json:
            print_json(summary)
        else:
            print_fields(
                {
                    "encrypted": f"{args.input or 'stdin'} -> {args.out}",
                    "suite": result.header.suite.value,
                    "key id": result.key_id,
                    "plaintext size": human_size(result.plaintext_size),
                    "package size": human_size(result.package_size),
                }
            )
    return 0


def decrypt_command(args: argparse.Namespace) -> int:
    expected = (
        _context_pairs(args.expect_context, "--expect-context") if args.expect_context else None
    )
    expected_id = _document_id(args.expect_document_id)
    if _batch_wanted(args):
        from pqfile.cli import batch

        job = batch.Job(
            "decrypt",
            args.identity,
            args.out_dir,
            args.force,
            expected_context=expected,
            expected_document_id=expected_id,
        )
        return batch.command(args, "decrypt", job)
    with _file_errors():
        identity = keyfiles.load_secret_key(args.identity)
        _refuse_terminal(args.out, "decrypted data")
        if args.out is not None:
            _check_new(args.out, args.force)
        with _input(args.input) as (src, total), progress_bar(total, "decrypting") as advance:
            if args.out is not None:
                result = envelope.decrypt_to_path(
                    src,
                    args.out,
                    identity,
                    overwrite=args.force,
                    expected_context=expected,
                    expected_document_id=expected_id,
                    progress=advance,
                )
            else:
                # Verify everything before the first byte reaches stdout.
                import shutil
                import tempfile

                with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
                    result = envelope.decrypt_stream(
                        src,
                        spool,
                        identity,
                        expected_context=expected,
                        expected_document_id=expected_id,
                        progress=advance,
                    )
                    spool.seek(0)
                    shutil.copyfileobj(spool, sys.stdout.buffer, 1024 * 1024)
                    sys.stdout.buffer.flush()
    if args.out is not None and args.json:
        print_json(
            {
                **envelope.describe(result.header),
                "plaintext_size": result.plaintext_size,
                "output": args.out,
            }
        )
    return 0


# --- inspect --------------------------------------------------------------------------------


def inspect_summary(header: Header, package_size: int | None) -> dict[str, Any]:
    """What ``pqfile inspect`` shows; sizes derived from the package length when known."""
    summary: dict[str, Any] = envelope.describe(header)
    summary["package_size"] = package_size
    if package_size is not None:
        try:
            plain = stream.plaintext_size(package_size - header.size, header.segment_size)
        except PQFileError:
            summary["plaintext_size"] = None
            summary["segments"] = None
            summary["note"] = "body length is impossible for this segment size (truncated?)"
        else:
            summary["plaintext_size"] = plain
            summary["segments"] = stream.segment_count(plain, header.segment_size)
    return summary


def _inspect(args: argparse.Namespace) -> int:
    with _file_errors(), open(args.file, "rb") as f:
        header = envelope.read_header(f)
        st = os.fstat(f.fileno())
        size = st.st_size if stat.S_ISREG(st.st_mode) else None
    summary = inspect_summary(header, size)
    if args.json:
        print_json(summary)
        return 0
    human: dict[str, Any] = {
        "format": f"PQF v{summary['version']}",
        "suite": f"{summary['suite']} ({summary['suite_id']})",
        "kdf": f"{summary['kdf']} ({summary['kdf_id']})",
        "key id": summary["key_id"],
        "document id": summary["document_id"] or "(none)",
        "context": summary["context"],
        "segment size": human_size(header.segment_size),
        "header size": human_size(header.size),
    }
    if size is not None:
        human["package size"] = human_size(size)
        plain = summary.get("plaintext_size")
        human["plaintext size"] = human_size(plain) if plain is not None else summary["note"]
        if plain is not None:
            human["segments"] = summary["segments"]
    print_fields(human)
    return 0
