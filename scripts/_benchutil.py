"""Shared by scripts/bench_db.py and scripts/bench_pipeline.py (run as scripts: this folder
is on sys.path)."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace the ``heading`` section of a BENCHMARKS.md (up to the next ``## ``), or
    append it; the file is created with a ``# Benchmarks`` title if it is missing."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    section = f"{heading}\n\n{body.strip()}\n"
    if heading in text:
        before, rest = text.split(heading, 1)
        nxt = rest.find("\n## ")
        after = rest[nxt + 1 :] if nxt >= 0 else ""
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text, encoding="utf-8")
