"""scripts/bench.py rewrites its "Crypto core" section of BENCHMARKS.md: the other sections
stay as they are and a paragraph after _benchutil.NOTES_MARKER (why a target still fails)
survives the rerun."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import bench
from _benchutil import NOTES_MARKER


def test_crypto_section_rewrite_keeps_notes_and_other_sections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(
        "# Benchmarks\n\nintro\n\n## Crypto core\n\nold table\n\n"
        f"{NOTES_MARKER}\nwhy encrypt is over the line\n\n## Suites\n\nsuites table\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(bench, "BENCHMARKS_MD", path)
    bench.write_section("new table")
    bench.write_section("newer table")
    text = path.read_text(encoding="utf-8")
    assert "old table" not in text and "new table\n" not in text
    assert text.index("newer table") < text.index(NOTES_MARKER)
    assert text.index(NOTES_MARKER) < text.index("why encrypt") < text.index("## Suites")
    assert text.count(NOTES_MARKER) == 1 and text.count("why encrypt") == 1
    assert text.startswith("# Benchmarks\n\nintro\n\n## Crypto core\n\nnewer table\n")
    assert text.endswith("## Suites\n\nsuites table\n")


def test_crypto_section_into_a_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "BENCHMARKS.md"
    monkeypatch.setattr(bench, "BENCHMARKS_MD", path)
    bench.write_section("table")
    text = path.read_text(encoding="utf-8")
    assert text.startswith(bench.HEADER) and text.endswith("## Crypto core\n\ntable\n")

