"""The common forms of `pqfile encrypt` and `pqfile decrypt`, parsed without argparse.

argparse, and the gettext, locale and shutil it loads to build the sub-parsers, cost a
one-file command about 6 ms, a fifth of ``python -c pass`` (issue 15). :func:`parse`
accepts only unambiguous spellings of the options that ``cli.files.register`` defines
(``--name VALUE``, ``--name=VALUE``, ``-x VALUE``, flags) and returns the namespace argparse
would build for them; for anything else (help, a usage error, abbreviations, bundled short
options, batch-mode FILE arguments, a value that looks like an option, ``--``) it returns
None and the caller lets argparse parse, so every message and every error is argparse's.
``tests/unit/test_cli_fastargs.py`` holds the two parsers to the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace

# option spelling -> (dest, kind); kind: "value" (last one wins), "append", "flag"
_Spec = dict[str, tuple[str, str]]

_IO: _Spec = {
    "--in": ("input", "value"),
    "--out": ("out", "value"),
    "-o": ("out", "value"),
    "--force": ("force", "flag"),
    "-f": ("force", "flag"),
    "--out-dir": ("out_dir", "value"),
    "--json": ("json", "flag"),
}
_SPECS: dict[str, _Spec] = {
    "encrypt": {
        "--recipient": ("recipient", "value"),
        "-r": ("recipient", "value"),
        "--context": ("context", "append"),
        "-c": ("context", "append"),
        "--document-id": ("document_id", "value"),
        "--segment-size": ("segment_size", "value"),
        **_IO,
    },
    "decrypt": {
        "--identity": ("identity", "value"),
        "-i": ("identity", "value"),
        "--expect-context": ("expect_context", "append"),
        "--expect-document-id": ("expect_document_id", "value"),
        **_IO,
    },
}
_REQUIRED = {"encrypt": "recipient", "decrypt": "identity"}


def _defaults(command: str) -> dict[str, object]:
    from pqfile.crypto.envelope import DEFAULT_SEGMENT_SIZE

    common: dict[str, object] = {
        "command": command,
        "input": None,
        "out": None,
        "force": False,
        "out_dir": None,
        "files": [],
        "json": False,
    }
    if command == "encrypt":
        return {**common, "recipient": None, "context": [], "document_id": None,
                "segment_size": DEFAULT_SEGMENT_SIZE}  # fmt: skip
    return {**common, "identity": None, "expect_context": [], "expect_document_id": None}


def parse(argv: Sequence[str]) -> SimpleNamespace | None:
    """The namespace for ``argv`` (its first item the command), or None to use argparse."""
    if not argv or argv[0] not in _SPECS:
        return None
    command = argv[0]
    spec = _SPECS[command]
    values = _defaults(command)
    appended: dict[str, list[str]] = {}
    i = 1
    while i < len(argv):
        arg = argv[i]
        name, eq, attached = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name not in spec:
            return None  # a positional, --help, an abbreviation, -fo, --: argparse decides
        dest, kind = spec[name]
        if kind == "flag":
            if eq:
                return None
            values[dest] = True
            i += 1
            continue
        if eq:
            value = attached
            i += 1
        else:
            if i + 1 >= len(argv):
                return None
            value = argv[i + 1]
            if value.startswith("-") and value != "-":
                return None  # argparse reads it as an option (or a negative number)
            i += 2
        if kind == "append":
            appended.setdefault(dest, []).append(value)
        else:
            values[dest] = value
    values.update(appended)
    if values[_REQUIRED[command]] is None or values["out_dir"] is not None:
        return None  # a usage error, or batch mode
    from pqfile.cli import files

    if command == "encrypt" and isinstance(values["segment_size"], str):
        try:
            values["segment_size"] = files.parse_size(values["segment_size"])
        except ValueError:
            return None
    func: Callable[..., int] = (
        files.encrypt_command if command == "encrypt" else files.decrypt_command
    )
    values["func"] = func
    return SimpleNamespace(**values)
