"""CLI latency and batch mode (issue 15 item 2; the "CLI latency and batch" section of
BENCHMARKS.md).

1. `pqfile encrypt` / `decrypt` of 1 MiB, wall time of the whole process, against the
   `python -c pass` floor of the same interpreter, interleaved in one run (medians);
   target <= 2x the floor.
2. Batch mode: 1,000 files of 100 KiB, `pqfile encrypt --out-dir` and `decrypt --out-dir`
   (files/s), against age 1.1.1 in a shell loop (one process per file) when `age` is on
   PATH; target >= 2x age's files/s.

Run: `python scripts/bench_cli.py [--quick] [--no-write]` (also `make bench`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchutil import write_section

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
HEADING = "## CLI latency and batch"
TARGET_FLOOR_RATIO = 2.0
TARGET_AGE_RATIO = 2.0
KiB, MiB = 1024, 1024 * 1024


def _pqfile() -> list[str]:
    """The installed `pqfile` script beside this interpreter, else `python -m pqfile`."""
    script = Path(sys.executable).with_name("pqfile")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pqfile"]


# Children run as an installed program does: with byte-compiled modules. This machine's
# environment sets PYTHONDONTWRITEBYTECODE, which would make every run compile the package
# from source (~90 ms); the cache goes to a prefix folder inside the temporary directory.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _wall(argv: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - start


def latency(work: Path, runs: int) -> dict[str, float]:
    pq = _pqfile()
    src = work / "m1"
    src.write_bytes(os.urandom(MiB))
    pub, sec = work / "k.pub", work / "k.sec"
    subprocess.run([*pq, "keygen", "--public", pub, "--secret", sec], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    enc = [*pq, "encrypt", "-r", str(pub), "--in", str(src), "--out", str(work / "m1.pqf"), "-f"]
    dec = [*pq, "decrypt", "-i", str(sec), "--in", str(work / "m1.pqf"),
           "--out", str(work / "m1.out"), "-f"]  # fmt: skip
    floor = [sys.executable, "-c", "pass"]
    _wall(enc), _wall(dec), _wall(floor)  # warm the page cache and .pyc files
    times: dict[str, list[float]] = {"floor": [], "encrypt": [], "decrypt": []}
    for _ in range(runs):  # interleaved: load changes hit all three alike
        times["floor"].append(_wall(floor))
        times["encrypt"].append(_wall(enc))
        times["decrypt"].append(_wall(dec))
    return {k: statistics.median(v) for k, v in times.items()}


def batch(work: Path, count: int, size: int) -> dict[str, float | None]:
    pq = _pqfile()
    pub, sec = work / "k.pub", work / "k.sec"
    inputs = work / "in"
    inputs.mkdir()
    names = []
    for i in range(count):
        path = inputs / f"f{i:05d}.bin"
        path.write_bytes(os.urandom(size))
        names.append(str(path))
    out, back = work / "out", work / "back"
    out.mkdir()
    back.mkdir()
    result: dict[str, float | None] = {}
    start = time.perf_counter()
    subprocess.run([*pq, "encrypt", "-r", str(pub), "--out-dir", str(out), *names],
                   check=True, stdout=subprocess.DEVNULL, env=ENV)  # fmt: skip
    result["pqfile_encrypt"] = count / (time.perf_counter() - start)
    packages = sorted(str(p) for p in out.iterdir())
    start = time.perf_counter()
    subprocess.run([*pq, "decrypt", "-i", str(sec), "--out-dir", str(back), *packages],
                   check=True, stdout=subprocess.DEVNULL, env=ENV)  # fmt: skip
    result["pqfile_decrypt"] = count / (time.perf_counter() - start)
    for name in names[:20]:  # spot check: byte-identical round trip
        assert (back / (Path(name).name)).read_bytes() == Path(name).read_bytes()
    age, keygen = shutil.which("age"), shutil.which("age-keygen")
    result["age_encrypt"] = result["age_decrypt"] = None
    if age and keygen:
        key = work / "age.key"
        subprocess.run([keygen, "-o", str(key)], check=True, capture_output=True)
        match = re.search(r"public key: (age1\w+)", key.read_text())
        assert match
        aout, aback = work / "aout", work / "aback"
        aout.mkdir()
        aback.mkdir()
        loop_e = (f'for f in "{inputs}"/*; do "{age}" -e -r {match.group(1)} '
                  f'-o "{aout}/${{f##*/}}.age" "$f"; done')  # fmt: skip
        start = time.perf_counter()
        subprocess.run(["bash", "-c", loop_e], check=True)
        result["age_encrypt"] = count / (time.perf_counter() - start)
        loop_d = (f'for f in "{aout}"/*; do b=${{f##*/}}; "{age}" -d -i "{key}" '
                  f'-o "{aback}/${{b%.age}}" "$f"; done')  # fmt: skip
        start = time.perf_counter()
        subprocess.run(["bash", "-c", loop_d], check=True)
        result["age_decrypt"] = count / (time.perf_counter() - start)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, 200 files")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    args = parser.parse_args(argv)
    runs, count = (5, 200) if args.quick else (21, 1000)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="pqfile-bench-cli-") as tmp:
        work = Path(tmp)
        ENV["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        lat = latency(work, runs)
        bat = batch(work, count, 100 * KiB)
    load_after = os.getloadavg()[0]
    rows = []
    checks = []
    for op in ("encrypt", "decrypt"):
        ratio = lat[op] / lat["floor"]
        checks.append(ratio <= TARGET_FLOOR_RATIO)
        rows.append(f"| `pqfile {op}` 1 MiB | {lat[op] * 1000:.1f} ms | "
                    f"{lat['floor'] * 1000:.1f} ms | {ratio:.2f}x | <= {TARGET_FLOOR_RATIO:.0f}x | "
                    f"{'yes' if ratio <= TARGET_FLOOR_RATIO else 'no'} |")  # fmt: skip
    brows = []
    for op in ("encrypt", "decrypt"):
        ours, theirs = bat[f"pqfile_{op}"], bat[f"age_{op}"]
        assert ours is not None
        if theirs is None:
            brows.append(f"| {op} | {ours:.0f} | (age not on PATH) | - | >= 2x | - |")
            continue
        ratio = ours / theirs
        checks.append(ratio >= TARGET_AGE_RATIO)
        brows.append(f"| {op} | {ours:.0f} | {theirs:.0f} | {ratio:.2f}x | >= 2x | "
                     f"{'yes' if ratio >= TARGET_AGE_RATIO else 'no'} |")  # fmt: skip
    cores = len(os.sched_getaffinity(0))
    body = f"""Measured {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} by
`python scripts/bench_cli.py{" --quick" if args.quick else ""}` (also in `make bench`);
{cores} cores, Python {sys.version.split()[0]}; load average (1 min) {load_before:.2f}
before and {load_after:.2f} after (the machine is shared: figures vary between runs, the
ratios, measured interleaved in one run, less so).

Latency: wall time of the whole process (start, imports, key file, 1 MiB, atomic output;
modules byte-compiled, as installed),
median of {runs} runs interleaved with the floor `python -c pass` of the same interpreter.
The file commands import only `pqfile.cli.files` and the crypto core (no boto3, pg8000,
rich or service modules;
`tests/unit/test_cli_batch.py::test_file_commands_import_no_service_modules` checks it).

| command | wall | floor | ratio | target | met |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Batch: {count} files of 100 KiB (random), `pqfile encrypt -r PUB --out-dir DIR FILE...`
and `pqfile decrypt -i SEC --out-dir DIR FILE...` (a process pool on every core, atomic
per-file outputs), against age in a bash loop, one process per file, files/s:

| operation | pqfile files/s | age files/s | ratio | target | met |
|---|---|---|---|---|---|
{chr(10).join(brows)}
"""
    print(body)
    if not args.no_write:
        write_section(BENCHMARKS_MD, HEADING, body)
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
