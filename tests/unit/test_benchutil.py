"""scripts/_benchutil.write_section: a benchmark rewrites its own section of BENCHMARKS.md and
nothing else; hand-written notes after the marker survive the rewrite."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from _benchutil import NOTES_MARKER, write_section


def test_rewrite_replaces_only_its_section(tmp_path: Path) -> None:
    path = tmp_path / "B.md"
    path.write_text("# Benchmarks\n\n## A\n\nold a\n\n## B\n\nold b\n", encoding="utf-8")
    write_section(path, "## A", "new a")
    assert path.read_text(encoding="utf-8") == "# Benchmarks\n\n## A\n\nnew a\n\n## B\n\nold b\n"


def test_notes_after_the_marker_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "B.md"
    path.write_text(
        f"# Benchmarks\n\n## A\n\nold a\n\n{NOTES_MARKER}\nhand-written note\n\n## B\n\nb\n",
        encoding="utf-8",
    )
    write_section(path, "## A", "new a")
    text = path.read_text(encoding="utf-8")
    assert "old a" not in text
    assert text.index("new a") < text.index(NOTES_MARKER) < text.index("hand-written note")
    assert text.index("hand-written note") < text.index("## B")
    write_section(path, "## A", "newer a")  # twice: one marker, one note
    text = path.read_text(encoding="utf-8")
    assert text.count(NOTES_MARKER) == 1 and text.count("hand-written note") == 1


def test_a_missing_section_is_appended(tmp_path: Path) -> None:
    path = tmp_path / "B.md"
    write_section(path, "## C", "c")
    assert path.read_text(encoding="utf-8") == "# Benchmarks\n\n## C\n\nc\n"
