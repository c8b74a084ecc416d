"""The user's tour cannot drift from the command line: every `pqfile` command in the shell
blocks of docs/OPERATIONS.md "From a user's seat" and "Following a document", and in the
README's "Who reads what", parses with the real argument parser (argparse only: nothing
runs). Placeholders such as ``<uploads bucket>`` become one word; ``[--flag value]``
brackets are dropped, so the optional flags parse too."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pqfile.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]

#: (file, section heading) whose ```sh blocks make up the tour.
TOUR = (
    ("docs/OPERATIONS.md", "## From a user's seat"),
    ("docs/OPERATIONS.md", "## Following a document"),
    ("README.md", "## Who reads what"),
)


def _section(path: str, heading: str) -> str:
    text = (ROOT / path).read_text(encoding="utf-8")
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end >= 0 else len(text)]


def _shell_lines(section: str) -> list[str]:
    """Each shell command of the ```sh blocks, continuations joined, comments removed."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        pending = ""
        for raw in block.splitlines():
            line = pending + raw
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1] + " "
                continue
            pending = ""
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line)
    return lines


def _placeholders_as_words(line: str) -> str:
    """``<uploads bucket>`` -> ``<uploads-bucket>`` (one shell word); ``[--x y]`` -> ``--x y``."""
    line = re.sub(r"<[^<>]+>", lambda m: m.group(0).replace(" ", "-"), line)
    return re.sub(r"\[(--[^\[\]]+)\]", r"\1", line)


def _pqfile_commands(line: str) -> list[list[str]]:
    """The argv of each `pqfile` command in a shell line: the line itself, or ``$(pqfile ...)``
    inside another command's arguments."""
    line = _placeholders_as_words(line)
    found = re.findall(r"\$\((pqfile [^)]*)\)", line)
    outer = re.sub(r"\"?\$\(pqfile [^)]*\)\"?", "PROOF", line)
    words = shlex.split(outer, comments=True)
    if words and words[0] == "pqfile":
        found.insert(0, shlex.join(words))
    return [shlex.split(f) for f in found]


def _tour_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for path, heading in TOUR:
        for line in _shell_lines(_section(path, heading)):
            for argv in _pqfile_commands(line):
                commands.append((f"{path}: {line.strip()}", argv[1:]))
    return commands


TOUR_COMMANDS = _tour_commands()


def test_the_tour_has_its_steps() -> None:
    """A reader key (keygen, registered), grant, upload, follow (status, list), retrieve
    (by id and by source, sealed to the reader's key), rotate, audit."""
    argvs = [argv for _, argv in TOUR_COMMANDS]
    steps = (["keygen"], ["access", "grant"], ["access", "recipient", "add"], ["upload"],
             ["documents", "status"], ["documents", "list"], ["retrieve"], ["keys", "rotate"],
             ["audit", "verify"])  # fmt: skip
    for step in steps:
        assert any(argv[: len(step)] == step for argv in argvs), f"no `pqfile {' '.join(step)}`"
    assert any("--source" in argv for argv in argvs if argv[0] == "retrieve")
    seat = _section("docs/OPERATIONS.md", "## From a user's seat")
    retrieves = [argv[1:] for line in _shell_lines(seat) for argv in _pqfile_commands(line)
                 if argv[1] == "retrieve"]  # fmt: skip
    assert retrieves and all("--identity" in argv for argv in retrieves), (
        "the user's tour retrieves sealed (issue 18)"
    )


@pytest.mark.parametrize(("where", "argv"), TOUR_COMMANDS, ids=[w for w, _ in TOUR_COMMANDS])
def test_each_tour_command_parses(where: str, argv: list[str]) -> None:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage error
        pytest.fail(f"{where}: does not parse (exit {exc.code})")
    assert getattr(args, "func", None) is not None, f"{where}: names no command"


def test_a_drifted_command_is_caught() -> None:
    """The check itself can fail: a flag the parser does not know."""
    (argv,) = _pqfile_commands("pqfile upload report.pdf --wiat  # typo")
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv[1:])
    assert _pqfile_commands(
        'aws lambda invoke --payload "$(pqfile auth proof --operation status --json)" o.json'
    ) == [["pqfile", "auth", "proof", "--operation", "status", "--json"]]
    assert _pqfile_commands("pqfile retrieve --source s3://<uploads bucket>/k --out f") == [
        ["pqfile", "retrieve", "--source", "s3://<uploads-bucket>/k", "--out", "f"]
    ]
