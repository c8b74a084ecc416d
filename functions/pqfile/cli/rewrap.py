"""`pqfile rewrap | reencrypt`: move a local package to another recipient (docs/FORMAT.md §8).

- ``rewrap`` keeps the body byte for byte and its key-schedule hash (header byte 55); it
  refuses a downgrade (mlkem768 < xwing < mlkem1024) unless ``--allow-downgrade``, and a
  SHA-256 package into the CNSA 2.0 suite (mlkem1024), which needs ``reencrypt``.
- ``reencrypt`` decrypts each verified segment and encrypts it again under a fresh data key
  and salt for the new recipient (the compromise path of key rotation).

Output goes to a temporary file renamed only at the end (or, without ``--out``, to a pipe
after the whole input verified); a refused or failed command leaves no output file.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from typing import Any

from pqfile.cli._output import human_size, print_fields, print_json, progress_bar
from pqfile.cli.files import (
    _SPOOL_IN_MEMORY,
    _check_new,
    _file_errors,
    _input,
    _io_options,
    _refuse_terminal,
)
from pqfile.crypto import envelope, keyfiles
from pqfile.format.header import Header, read_header_from


class _Prefixed:
    """``prefix`` then the rest of ``src``: the header already read, put back in front."""

    def __init__(self, prefix: bytes, src: envelope.BinarySource) -> None:
        self._prefix = memoryview(prefix)
        self._src = src

    def read(self, size: int = -1, /) -> bytes:
        if self._prefix:
            n = len(self._prefix) if size < 0 else min(size, len(self._prefix))
            head, self._prefix = bytes(self._prefix[:n]), self._prefix[n:]
            return head
        return self._src.read(size)


def register(subparsers: Any) -> None:
    for name, help_text in (
        ("rewrap", "move a package to another key: new header, same body (no plaintext)"),
        ("reencrypt", "decrypt and encrypt again for another key under a fresh data key"),
    ):
        p = subparsers.add_parser(name, help=help_text)
        p.add_argument(
            "--identity", "-i", required=True, metavar="SEC", help="the current secret key file"
        )
        p.add_argument(
            "--recipient", "-r", required=True, metavar="PUB", help="the new public key file"
        )
        p.add_argument(
            "--allow-downgrade",
            action="store_true",
            help="allow a lower-ranked suite (mlkem768 < xwing < mlkem1024)",
        )
        _io_options(p)
        p.add_argument("--json", action="store_true", help="print a JSON summary (needs --out)")
        p.set_defaults(func=_rewrap if name == "rewrap" else _reencrypt)


def _run(args: argparse.Namespace, what: str) -> tuple[Header, Header]:
    with _file_errors():
        identity = keyfiles.load_secret_key(args.identity)
        recipient = keyfiles.load_public_key(args.recipient)
        _refuse_terminal(args.out, "a binary package")
        if args.out is not None:
            _check_new(args.out, args.force)
        with _input(args.input) as (src, total), progress_bar(total, what) as advance:
            old_header, raw = read_header_from(src)  # for the report; parsed again below
            source = _Prefixed(raw, src)

            def move(dst: Any) -> Header:
                if args.command == "rewrap":
                    return envelope.rewrap_stream(
                        source, dst, identity, recipient, allow_downgrade=args.allow_downgrade
                    )
                return envelope.reencrypt_stream(
                    source,
                    dst,
                    identity,
                    recipient,
                    allow_downgrade=args.allow_downgrade,
                    progress=advance,
                ).header

            if args.out is not None:
                with envelope.write_atomically(args.out, overwrite=args.force) as out:
                    new_header = move(out)
            else:
                # Nothing reaches the pipe before the whole package was moved.
                with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
                    new_header = move(spool)
                    spool.seek(0)
                    shutil.copyfileobj(spool, sys.stdout.buffer, 1024 * 1024)
                    sys.stdout.buffer.flush()
    return old_header, new_header


def _report(args: argparse.Namespace, old: Header, new: Header) -> int:
    if args.out is None:
        return 0
    summary = {
        **envelope.describe(new),
        "from_suite": old.suite.value,
        "from_key_id": old.key_id,
        "output": args.out,
    }
    if args.json:
        print_json(summary)
    else:
        print_fields(
            {
                args.command: f"{args.input or 'stdin'} -> {args.out}",
                "suite": f"{old.suite.value} -> {new.suite.value}",
                "key id": f"{old.key_id} -> {new.key_id}",
                "kdf": new.kdf.label,
                "header size": human_size(new.size),
            }
        )
    return 0


def _rewrap(args: argparse.Namespace) -> int:
    old, new = _run(args, "rewrapping")
    return _report(args, old, new)


def _reencrypt(args: argparse.Namespace) -> int:
    old, new = _run(args, "re-encrypting")
    return _report(args, old, new)
