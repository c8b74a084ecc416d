"""Shared CLI output helpers: human text or ``--json``, and a progress bar on terminals.

Human output goes to stdout as aligned ``name: value`` lines; ``--json`` prints one JSON
document. Progress (rich) is drawn on stderr only when stderr is a terminal and the input
is large, so pipes and scripts see silence.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

PROGRESS_THRESHOLD = 32 * 1024 * 1024  # bytes; smaller inputs finish before a bar helps


def printable(text: str) -> str:
    """``text`` made safe for one line of a terminal: control characters and other
    non-printables escaped as ``repr`` does, and bytes that were not UTF-8 (which arrive in
    argv and file names as lone surrogates, PEP 383) shown as ``\\xNN``."""
    if text.isprintable():
        return text
    out = []
    for c in text:
        if c.isprintable():
            out.append(c)
        elif "\udc80" <= c <= "\udcff":
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        else:
            out.append(ascii(c)[1:-1])
    return "".join(out)


def print_json(obj: Any, stream: IO[str] | None = None) -> None:
    """One JSON document, keys sorted, on stdout (or ``stream``); non-ASCII is escaped."""
    import json  # here: the file commands start faster without it

    out = stream if stream is not None else sys.stdout
    out.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def print_fields(fields: Mapping[str, Any], stream: IO[str] | None = None) -> None:
    """Aligned ``name: value`` lines; nested mappings are indented one level. Values (file
    names, a package's context) are escaped with :func:`printable`: one field, one line."""
    out = stream if stream is not None else sys.stdout
    width = max((len(k) for k in fields), default=0)
    for key, value in fields.items():
        if isinstance(value, Mapping):
            out.write(f"{key + ':':<{width + 1}} {'(none)' if not value else ''}".rstrip() + "\n")
            for sub_key, sub_value in value.items():
                out.write(f"  {printable(str(sub_key))} = {printable(str(sub_value))}\n")
        else:
            out.write(f"{key + ':':<{width + 1}} {printable(str(value))}\n")


def human_size(n: int) -> str:
    """1536 -> '1.5 KiB (1536 bytes)'."""
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            return f"{value:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"  # pragma: no cover


def progress_wanted(total: int | None, *, stream: IO[str] | None = None) -> bool:
    out = stream if stream is not None else sys.stderr
    try:
        interactive = out.isatty()
    except (AttributeError, ValueError):
        return False
    return interactive and (total is None or total >= PROGRESS_THRESHOLD)


@contextmanager
def progress_bar(
    total: int | None, description: str, *, files: bool = False
) -> Iterator[Callable[[int], None] | None]:
    """Yields an ``advance(n)`` callback, or None when no bar should be drawn (stderr is not
    a terminal). ``n`` counts bytes (drawn only from PROGRESS_THRESHOLD on), or with
    ``files`` whole files (always drawn on a terminal)."""
    if not progress_wanted(None if files else total):
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    counts = (
        (MofNCompleteColumn(),)
        if files
        else (DownloadColumn(binary_units=True), TransferSpeedColumn())
    )
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        *counts,
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int) -> None:
            bar.update(task, advance=n)

        yield advance


def print_receipt(answer: Mapping[str, object]) -> None:
    """The retrieve answer's audit receipt, for people (stderr): the row to prove later."""
    receipt = answer.get("receipt")
    if isinstance(receipt, Mapping) and "audit_seq" in receipt:
        print(f"audit receipt: row {receipt['audit_seq']} (pqfile audit prove "
              f"{receipt['audit_seq']} once the next signed digest covers it)",
              file=sys.stderr)  # fmt: skip
