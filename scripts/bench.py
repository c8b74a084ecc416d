#!/usr/bin/env python3
"""PQFile benchmarks (``make bench``; ``make bench BENCH_ARGS="--quick --only crypto"``).

Sections:
  crypto    - this script: file encrypt/decrypt throughput and peak RSS for pqfile (CLI and
              library), plain ``cp``, the AWS Encryption SDK (streaming), ``age`` (where
              installed) and the seed's CBC design, on the same generated files; plus the
              20 MiB in-memory medians. Writes the "Crypto core" section of BENCHMARKS.md.
  suites    - this script: per KEM suite (xwing, mlkem768, mlkem1024) in one process: key
              generation, header wrap and unwrap, 20 MiB in memory; ratios to xwing from
              the same run. Writes the "Suites" section of BENCHMARKS.md.
  db        - scripts/bench_db.py ("Key pool and audit"), run if present.
  pipeline  - scripts/bench_pipeline.py ("Pipeline" and "Retrieve"), run if present.
  rewrap    - scripts/bench_rewrap.py ("Rewrap": documents/s, bytes moved per document).
  ingest    - scripts/bench_ingest_parallel.py ("Parallel ingest and ranged reads": the
              encrypt step sequential vs parallel on one document, a 1 MiB ranged read).
  cli       - scripts/bench_cli.py ("CLI latency and batch": 1 MiB against the interpreter's
              floor, 1,000 files of 100 KiB in batch mode against age in a shell loop).
  cold      - scripts/bench_cold_start.py ("Handler cold init": each handler's import and
              clients in fresh processes, as ratios to a bare boto3 client).
  load      - scripts/bench_load.py ("Load": 200 uploads at once on the local stack).
  sealed    - scripts/bench_sealed.py ("Sealed retrieval": the retrieve use case's CPU time
              and the S3 bytes it moves for a sealed delivery of 1 MiB and 200 MiB).

Every file measurement runs in its own child process; peak RSS is that child's
``ru_maxrss`` (``os.wait4``). Files are generated once into ``bench-data/`` (git-ignored)
and stay in the page cache (warm cache: dropping caches needs root privileges we do not
assume, and every tool reads and writes the same cached files without fsync).

The parent imports only the standard library; each child imports what it measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import filecmp
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "bench-data"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
SECTION_TITLE = "## Crypto core"
MiB = 1 << 20
GiB = 1 << 30

# Targets (issue 2, item 7).
TARGET_CP_RATIO = 1.5  # 1 GiB encrypt / decrypt time <= 1.5 x cp
TARGET_ESDK_RATIO = 10.0  # pqfile MB/s >= 10 x ESDK streaming MB/s
TARGET_RSS_MIB = 64.0  # peak RSS for the 1 GiB file
TARGET_INMEM_MS = 8.0  # 20 MiB encrypt_bytes / decrypt_bytes median

HEADER = """# Benchmarks

Measured by `make bench` (`scripts/bench.py`), which runs every section below in one go;
`--only crypto,db,pipeline` picks sections, `--quick` uses smaller files (and does not
rewrite this file unless `--write` is given). Each section is rewritten only by its own
script: "Crypto core" and "Suites" (`--only suites`, under a minute) by `scripts/bench.py`,
"Key pool and audit" by `scripts/bench_db.py`,
"Pipeline" and "Retrieve" by `scripts/bench_pipeline.py` (`--only retrieve` runs the
retrieve section alone, in about a minute), "CLI latency and batch" by
`scripts/bench_cli.py` (`--only cli`), "Handler cold init" by `scripts/bench_cold_start.py`
(`--only cold`), "Load" by `scripts/bench_load.py` (200 uploads at once, `--only load`),
"Sealed retrieval" by `scripts/bench_sealed.py` (`--only sealed`).
Figures are for the machine named in each
section; rerun them on yours.
"""


# ---------------------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------------------
@dataclass
class Run:
    wall: float  # seconds, measured by the parent around the child
    inner: float | None  # seconds reported by the child for the operation alone, if any
    maxrss_kib: int
    stdout: str


class ChildFailed(RuntimeError):
    pass


def run_child(argv: Sequence[str], env: dict[str, str] | None = None) -> Run:
    """Run one child, return wall time, its own timing (JSON on stdout) and peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise ChildFailed(
            f"{' '.join(argv[:3])}... exited {proc.returncode}: {stderr.strip()[-400:]}"
        )
    inner = None
    for line in stdout.splitlines()[::-1]:
        if line.startswith("{"):
            inner = json.loads(line).get("seconds")
            break
    return Run(wall=wall, inner=inner, maxrss_kib=usage.ru_maxrss, stdout=stdout)


def _self(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", *args]


def _timed(fn: Callable[[], object]) -> None:
    start = time.perf_counter()
    fn()
    print(json.dumps({"seconds": time.perf_counter() - start}))


def _pqfile_api() -> object:
    """The module exposing encrypt_stream / decrypt_stream / encrypt_bytes / decrypt_bytes."""
    import importlib

    for name in ("pqfile.crypto", "pqfile.crypto.envelope"):
        module = importlib.import_module(name)
        if hasattr(module, "encrypt_stream") and hasattr(module, "decrypt_bytes"):
            return module
    raise SystemExit("pqfile streaming API not found (pqfile.crypto[.envelope])")


def _pqfile_keys() -> tuple[object, object]:
    from pqfile.crypto import kem

    suite = kem.Suite.from_name(os.environ["BENCH_PQFILE_SUITE"])
    sk = kem.secret_key_from_seed(suite, bytes.fromhex(os.environ["BENCH_PQFILE_SEED"]))
    return sk, sk.public_key()


def _esdk() -> tuple[object, object]:
    import aws_encryption_sdk
    from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
    from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
    from aws_cryptographic_material_providers.mpl.models import (
        AesWrappingAlg,
        CreateRawAesKeyringInput,
    )
    from aws_encryption_sdk import CommitmentPolicy

    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
    keyring = mpl.create_raw_aes_keyring(
        input=CreateRawAesKeyringInput(
            key_namespace="pqfile-bench",
            key_name="raw-aes",
            wrapping_key=bytes.fromhex(os.environ["BENCH_ESDK_KEY"]),
            wrapping_alg=AesWrappingAlg.ALG_AES256_GCM_IV12_TAG16,
        )
    )
    return client, keyring


def child_main(kind: str, args: list[str]) -> None:
    """Entry point of the measurement children (``bench.py --child KIND ...``)."""
    if kind == "pqfile-encrypt":
        api = _pqfile_api()
        _, pub = _pqfile_keys()
        src, dst = args

        def enc() -> None:
            with open(src, "rb") as fin, open(dst, "wb") as fout:
                api.encrypt_stream(fin, fout, pub)  # type: ignore[attr-defined]

        _timed(enc)
    elif kind == "pqfile-decrypt":
        api = _pqfile_api()
        sk, _ = _pqfile_keys()
        src, dst = args

        def dec() -> None:
            # decrypt_stream into a plain file, like encrypt_stream: no fsync, as for cp.
            # (decrypt_to_path and the CLI also fsync; the CLI rows measure that path.)
            with open(src, "rb") as fin, open(dst, "wb") as fout:
                api.decrypt_stream(fin, fout, sk)  # type: ignore[attr-defined]

        _timed(dec)
    elif kind in ("esdk-encrypt", "esdk-decrypt"):
        client, keyring = _esdk()
        src, dst = args
        mode = "e" if kind == "esdk-encrypt" else "d"

        def run() -> None:
            with open(src, "rb") as fin, open(dst, "wb") as fout:
                with client.stream(mode=mode, source=fin, keyring=keyring) as s:  # type: ignore[attr-defined]
                    for chunk in s:
                        fout.write(chunk)

        _timed(run)
    elif kind in ("seed-encrypt", "seed-decrypt"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import seed_design

        src, dst = args

        def run() -> None:
            data = Path(src).read_bytes()
            if kind == "seed-encrypt":
                out = seed_design.encrypt(bytes.fromhex(os.environ["BENCH_SEED_PUB"]), data)
            else:
                out = seed_design.decrypt(bytes.fromhex(os.environ["BENCH_SEED_SECRET"]), data)
            Path(dst).write_bytes(out)

        _timed(run)
    elif kind == "inmem":
        inmem_child(int(args[0]), int(args[1]))
    elif kind == "suites":
        suites_child(int(args[0]), int(args[1]), int(args[2]))
    else:
        raise SystemExit(f"unknown child kind {kind}")


def inmem_child(size: int, runs: int) -> None:
    """Median in-memory encrypt/decrypt for pqfile and the seed design (JSON on stdout)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import seed_design

    data = os.urandom(size)
    result: dict[str, object] = {"size": size, "runs": runs}

    def measure(fn: Callable[[], object]) -> list[float]:
        for _ in range(2):
            fn()  # warm-up
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return times

    try:
        api = _pqfile_api()
        sk, pub = _pqfile_keys()
        package = api.encrypt_bytes(data, pub)  # type: ignore[attr-defined]
        assert api.decrypt_bytes(package, sk) == data  # type: ignore[attr-defined]
        result["pqfile_encrypt"] = measure(lambda: api.encrypt_bytes(data, pub))  # type: ignore[attr-defined]
        result["pqfile_decrypt"] = measure(lambda: api.decrypt_bytes(package, sk))  # type: ignore[attr-defined]
    except (ImportError, SystemExit, AttributeError) as exc:
        result["pqfile_error"] = str(exc)
    pub_s, sec_s = seed_design.generate()
    blob = seed_design.encrypt(pub_s, data)
    assert seed_design.decrypt(sec_s, blob) == data
    result["seed_encrypt"] = measure(lambda: seed_design.encrypt(pub_s, data))
    result["seed_decrypt"] = measure(lambda: seed_design.decrypt(sec_s, blob))
    print(json.dumps(result))


def suites_child(size: int, runs: int, key_runs: int) -> None:
    """Per suite, in this one process (JSON on stdout): keygen, wrap, unwrap, in memory.

    keygen = ``generate`` + ``public_key()`` (the seed expanded, the public key derived);
    wrap = a package header sealed to a public key (``_seal_header``: key schedule, HPKE
    seal of the data key, header MAC); unwrap = ``open_header`` with the secret key (key id
    check, HPKE open, key schedule, commitment and MAC), i.e. what precedes the body.
    """
    from pqfile.crypto import envelope, kem

    data = os.urandom(size)
    result: dict[str, object] = {"size": size, "runs": runs, "key_runs": key_runs}

    def measure(fn: Callable[[], object], n: int) -> list[float]:
        for _ in range(2):
            fn()  # warm-up
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return times

    for suite in kem.Suite:
        sk = kem.generate(suite)
        pub = sk.public_key()
        rnd = envelope.Randomness.fresh()

        def seal(pub: kem.PublicKey = pub, rnd: envelope.Randomness = rnd) -> envelope.Header:
            return envelope._seal_header(
                pub, context={}, document_id=None, segment_size=1 << 20, randomness=rnd
            )[0]

        header = seal()
        package = envelope.encrypt_bytes(data, pub)
        assert envelope.decrypt_bytes(package, sk) == data
        result[suite.value] = {
            "kdf": header.kdf.label,
            "header_size": header.size,
            "keygen": measure(lambda s=suite: kem.generate(s).public_key(), key_runs),
            "wrap": measure(seal, key_runs),
            "unwrap": measure(lambda h=header, k=sk: envelope.open_header(h, k), key_runs),
            "encrypt": measure(lambda p=pub: envelope.encrypt_bytes(data, p), runs),
            "decrypt": measure(lambda b=package, k=sk: envelope.decrypt_bytes(b, k), runs),
        }
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------
# The crypto section
# ---------------------------------------------------------------------------------------
@dataclass
class Row:
    size: int
    tool: str
    op: str  # encrypt | decrypt | copy
    seconds: float | None = None
    rss_mib: float | None = None
    runs: int = 0
    timing: str = "wall"  # wall (whole child) | in-process (operation only)
    note: str = ""
    durable: bool = False  # output fsync'd before the child exits

    @property
    def mb_s(self) -> float | None:
        return None if not self.seconds else self.size / MiB / self.seconds


@dataclass
class Tool:
    name: str
    encrypt: Callable[[Path, Path], Run] | None
    decrypt: Callable[[Path, Path], Run] | None
    timing: str
    unavailable: str = ""
    max_size: int | None = None
    runs_scale: float = 1.0
    durable: bool = False
    env: dict[str, str] = field(default_factory=dict)


def size_label(size: int) -> str:
    return f"{size // GiB} GiB" if size >= GiB and size % GiB == 0 else f"{size // MiB} MiB"


def make_file(size: int) -> Path:
    DATA_DIR.mkdir(exist_ok=True)
    path = DATA_DIR / f"plain-{size_label(size).replace(' ', '')}.bin"
    if path.exists() and path.stat().st_size == size:
        return path
    tmp = path.with_suffix(".tmp")
    chunk = 8 * MiB
    with tmp.open("wb") as fh:
        left = size
        while left:
            n = min(chunk, left)
            fh.write(os.urandom(n))
            left -= n
    tmp.replace(path)
    return path


def _pqfile_cli() -> tuple[list[str] | None, str]:
    exe = shutil.which("pqfile", path=str(Path(sys.executable).parent)) or shutil.which("pqfile")
    base = [exe] if exe else [sys.executable, "-m", "pqfile"]
    try:
        help_enc = subprocess.run(
            [*base, "encrypt", "--help"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"pqfile CLI not runnable: {exc}"
    if help_enc.returncode != 0:
        return None, "`pqfile encrypt` not available yet"
    return base, ""


def _cli_option(base: list[str], command: str, candidates: Sequence[str]) -> str | None:
    text = subprocess.run(
        [*base, command, "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    for option in candidates:
        if re.search(rf"(^|[\s,\[]){re.escape(option)}\b", text):
            return option
    return None


def build_tools(workdir: Path, suite: str) -> tuple[list[Tool], dict[str, str]]:
    seed_hex = os.urandom(32 if suite == "xwing" else 64).hex()
    env = dict(os.environ)
    env.update(
        BENCH_PQFILE_SUITE=suite,
        BENCH_PQFILE_SEED=seed_hex,
        BENCH_ESDK_KEY=os.urandom(32).hex(),
    )
    info: dict[str, str] = {}
    # seed design keys (derived in a child so the parent stays stdlib-only)
    keys = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import seed_design;"
            "p, s = seed_design.generate(); print(p.hex()); print(s.hex())",
            str(Path(__file__).resolve().parent),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    env.update(BENCH_SEED_PUB=keys[0], BENCH_SEED_SECRET=keys[1])

    def child(kind: str) -> Callable[[Path, Path], Run]:
        return lambda src, dst: run_child(_self(kind, str(src), str(dst)), env)

    tools: list[Tool] = []

    # pqfile CLI
    cli, why = _pqfile_cli()
    if cli is not None:
        try:
            cli_tool = _cli_tool(cli, workdir, suite, env)
            tools.append(cli_tool)
        except (ChildFailed, OSError, subprocess.SubprocessError, RuntimeError) as exc:
            tools.append(Tool("pqfile CLI", None, None, "wall", unavailable=str(exc)[:200]))
    else:
        tools.append(Tool("pqfile CLI", None, None, "wall", unavailable=why))

    # pqfile library (streaming API)
    probe = subprocess.run(
        [sys.executable, "-c", "import pqfile.crypto.envelope"], capture_output=True, text=True
    )
    if probe.returncode == 0:
        tools.append(
            Tool("pqfile library", child("pqfile-encrypt"), child("pqfile-decrypt"), "in-process")
        )
    else:
        tools.append(
            Tool("pqfile library", None, None, "in-process", unavailable="API not importable")
        )

    # AWS Encryption SDK
    probe = subprocess.run(
        [sys.executable, "-c", "import aws_encryption_sdk, aws_cryptographic_material_providers"],
        capture_output=True,
        text=True,
    )
    if probe.returncode == 0:
        tools.append(
            Tool(
                "AWS Encryption SDK",
                child("esdk-encrypt"),
                child("esdk-decrypt"),
                "in-process",
                runs_scale=0.34,
            )
        )
        info["esdk"] = _version("aws-encryption-sdk")
    else:
        tools.append(
            Tool(
                "AWS Encryption SDK",
                None,
                None,
                "in-process",
                unavailable="not installed (pip install -c constraints.txt -e '.[bench]')",
            )
        )

    # age
    age = shutil.which("age")
    keygen = shutil.which("age-keygen")
    if age and keygen:
        key_file = workdir / "age-key.txt"
        key_file.unlink(missing_ok=True)
        subprocess.run([keygen, "-o", str(key_file)], check=True, capture_output=True)
        recipient = re.search(r"public key: (age1\w+)", key_file.read_text())
        assert recipient, "age-keygen wrote no public key"
        r = recipient.group(1)
        tools.append(
            Tool(
                "age",
                lambda s, d: run_child([age, "-e", "-r", r, "-o", str(d), str(s)]),
                lambda s, d: run_child([age, "-d", "-i", str(key_file), "-o", str(d), str(s)]),
                "wall",
            )
        )
        info["age"] = subprocess.run(
            [age, "--version"], capture_output=True, text=True
        ).stdout.strip()
    else:
        tools.append(Tool("age", None, None, "wall", unavailable="not installed"))

    # the seed's design: whole file in memory, CBC; 20 MiB-class files only
    tools.append(
        Tool(
            "seed design (CBC, in memory)",
            child("seed-encrypt"),
            child("seed-decrypt"),
            "in-process",
            max_size=64 * MiB,
        )
    )
    return tools, info


# The CLI as docs/CONTRACTS.md and `pqfile --help` define it; checked before use.
_CLI_OPTIONS = {
    "keygen": ("--suite", "--public", "--secret", "--force"),
    "encrypt": ("--recipient", "--in", "--out", "--force"),
    "decrypt": ("--identity", "--in", "--out", "--force"),
}


def _cli_tool(base: list[str], workdir: Path, suite: str, env: dict[str, str]) -> Tool:
    """pqfile CLI: a key pair from `pqfile keygen`, then `pqfile encrypt/decrypt`."""
    for command, options in _CLI_OPTIONS.items():
        missing = [o for o in options if _cli_option(base, command, (o,)) is None]
        if missing:
            raise RuntimeError(f"`pqfile {command}` lacks {', '.join(missing)}")
    keydir = workdir / "pqfile-keys"
    shutil.rmtree(keydir, ignore_errors=True)
    keydir.mkdir()
    pub, sec = keydir / "bench.pub", keydir / "bench.key"
    run_child([*base, "keygen", "--suite", suite, "--public", str(pub), "--secret", str(sec)], env)

    def enc(s: Path, d: Path) -> Run:
        argv = [*base, "encrypt", "--recipient", str(pub), "--in", str(s), "--out", str(d)]
        return run_child([*argv, "--force"], env)

    def dec(s: Path, d: Path) -> Run:
        argv = [*base, "decrypt", "--identity", str(sec), "--in", str(s), "--out", str(d)]
        return run_child([*argv, "--force"], env)

    # The CLI writes atomically (temporary file, rename) but does not fsync, like cp.
    return Tool("pqfile CLI", enc, dec, "wall")


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _cp_runner(cp: str) -> Callable[[Path, Path], Run]:
    return lambda s, d: run_child([cp, str(s), str(d)])


CP_FSYNC = "cp + fsync"
DD_COPY = "dd bs=1M (user-space copy)"


def _dd_runner(dd: str) -> Callable[[Path, Path], Run]:
    return lambda s, d: run_child([dd, f"if={s}", f"of={d}", "bs=1M", "status=none"])


def _cp_fsync_runner(cp: str) -> Callable[[Path, Path], Run]:
    # coreutils `sync FILE` fsyncs that one file
    script = 'cp "$1" "$2" && sync "$2"'
    return lambda s, d: run_child(["/bin/sh", "-c", script, "sh", str(s), str(d)])


def _log_line(size: int, tool: str, op: str, seconds: float, rss_mib: float) -> str:
    mb_s = size / MiB / seconds
    return (
        f"  {size_label(size):>7} {tool:<30} {op:<7} {seconds:8.3f} s "
        f"{mb_s:8.0f} MB/s {rss_mib:7.1f} MiB"
    )


def _one(fn: Callable[[Path, Path], Run], src: Path, dst: Path, timing: str) -> tuple[float, int]:
    dst.unlink(missing_ok=True)
    # Untimed: flush what earlier measurements left dirty, so no tool pays for another's
    # writeback (the kernel throttles writers while a previous 1 GiB is being written out).
    os.sync()
    r = fn(src, dst)
    t = r.inner if (timing == "in-process" and r.inner is not None) else r.wall
    return t, r.maxrss_kib


def bench_files(
    sizes: list[int], suite: str, log: Callable[[str], None]
) -> tuple[list[Row], dict[str, str]]:
    """Rounds interleave every tool (cp, cp + fsync, dd, then each tool) so that all of
    them see the same background load; each figure is the median over the rounds."""
    workdir = DATA_DIR
    workdir.mkdir(exist_ok=True)
    tools, info = build_tools(workdir, suite)
    rows: list[Row] = []
    cp = shutil.which("cp") or "cp"
    floors: list[tuple[str, Callable[[Path, Path], Run], bool, str]] = [
        ("cp", _cp_runner(cp), False, ""),
        (CP_FSYNC, _cp_fsync_runner(cp), True, ""),
    ]
    dd = shutil.which("dd")
    if dd:
        floors.append((DD_COPY, _dd_runner(dd), False, "information only"))
    enc_path = workdir / "out.enc"
    dec_path = workdir / "out.dec"
    for size in sizes:
        src = make_file(size)
        runs = 5
        active: list[Tool] = []
        for tool in tools:
            if tool.unavailable or tool.encrypt is None or tool.decrypt is None:
                rows.append(Row(size, tool.name, "encrypt", note=f"skipped: {tool.unavailable}"))
            elif tool.max_size is not None and size > tool.max_size:
                note = "not run at this size (whole file in memory)"
                rows.append(Row(size, tool.name, "encrypt", note=note))
            else:
                active.append(tool)
        samples: dict[tuple[str, str], list[tuple[float, int]]] = {}
        notes: dict[str, str] = {}
        _one(floors[0][1], src, dec_path, "wall")  # warm the page cache with the source
        for i in range(runs):
            for name, fn, _, _ in floors:
                samples.setdefault((name, "copy"), []).append(_one(fn, src, dec_path, "wall"))
            for tool in active:
                if tool.name in notes and notes[tool.name].startswith("failed"):
                    continue
                if i >= max(1, round(runs * tool.runs_scale)):
                    continue
                try:
                    e = _one(tool.encrypt, src, enc_path, tool.timing)  # type: ignore[arg-type]
                    d = _one(tool.decrypt, enc_path, dec_path, tool.timing)  # type: ignore[arg-type]
                except ChildFailed as exc:
                    notes[tool.name] = f"failed: {exc}"[:300]
                    log(f"  {size_label(size):>7} {tool.name}: FAILED {exc}")
                    continue
                if i == 0:
                    same = filecmp.cmp(src, dec_path, shallow=False)
                    notes[tool.name] = "" if same else "ROUND TRIP MISMATCH"
                samples.setdefault((tool.name, "encrypt"), []).append(e)
                samples.setdefault((tool.name, "decrypt"), []).append(d)
            enc_path.unlink(missing_ok=True)
            dec_path.unlink(missing_ok=True)

        def add(
            name: str,
            op: str,
            timing: str,
            note: str,
            durable: bool,
            samples: dict[tuple[str, str], list[tuple[float, int]]] = samples,
            size: int = size,
        ) -> None:
            got = samples.get((name, op))
            if not got:
                rows.append(Row(size, name, op, note=note))
                return
            t = statistics.median(x[0] for x in got)
            rss = max(x[1] for x in got) / 1024
            rows.append(Row(size, name, op, t, rss, len(got), timing, note, durable))
            log(_log_line(size, name, op, t, rss) + (f" {note}" if note else ""))

        for name, _, durable, note in floors:
            add(name, "copy", "wall", note, durable)
        for tool in active:
            note = notes.get(tool.name, "")
            add(tool.name, "encrypt", tool.timing, note, tool.durable)
            if (tool.name, "decrypt") in samples:
                add(tool.name, "decrypt", tool.timing, note, tool.durable)
    return rows, info


def bench_inmem(size: int, runs: int, suite: str) -> dict[str, object]:
    env = dict(os.environ)
    env.update(
        BENCH_PQFILE_SUITE=suite,
        BENCH_PQFILE_SEED=os.urandom(32 if suite == "xwing" else 64).hex(),
    )
    r = run_child(_self("inmem", str(size), str(runs)), env)
    line = next(x for x in r.stdout.splitlines()[::-1] if x.startswith("{"))
    result: dict[str, object] = json.loads(line)
    return result


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
def _md_row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _find(rows: list[Row], size: int, tool: str, op: str) -> Row | None:
    for r in rows:
        if r.size == size and r.tool == tool and r.op == op and r.seconds:
            return r
    return None


def build_report(
    rows: list[Row],
    inmem: dict[str, object],
    sizes: list[int],
    suite: str,
    info: dict[str, str],
    quick: bool,
    command: str,
) -> tuple[str, list[tuple[str, bool | None, str]]]:
    lines: list[str] = []
    checks: list[tuple[str, bool | None, str]] = []
    big = max(sizes)
    lines.append(
        _md_row(
            "file",
            "tool",
            "operation",
            "runs",
            "time (s)",
            "MB/s",
            "peak RSS (MiB)",
            "x cp time",
            "pqfile / ESDK MB/s",
            "note",
        )
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        for r in [x for x in rows if x.size == size]:
            cp = _find(rows, size, CP_FSYNC if r.durable else "cp", "copy")
            x_cp = r.seconds / cp.seconds if (cp and r.seconds and r.op != "copy") else None
            esdk = _find(rows, size, "AWS Encryption SDK", r.op)
            x_esdk = (
                r.mb_s / esdk.mb_s
                if (esdk and r.mb_s and esdk.mb_s and r.tool.startswith("pqfile"))
                else None
            )
            timing = "" if r.timing == "wall" else " (in-process timing)"
            lines.append(
                _md_row(
                    size_label(size),
                    r.tool + timing,
                    r.op,
                    str(r.runs or "-"),
                    _fmt(r.seconds, ".3f"),
                    _fmt(r.mb_s, ".0f"),
                    _fmt(r.rss_mib, ".1f"),
                    _fmt(x_cp, ".2f"),
                    _fmt(x_esdk, ".1f"),
                    r.note,
                )
            )

    # targets on the largest file; durable rows (fsync) are held against cp + fsync
    for tool in ("pqfile CLI", "pqfile library"):
        for op in ("encrypt", "decrypt"):
            r = _find(rows, big, tool, op)
            floor_name = CP_FSYNC if (r is not None and r.durable) else "cp"
            cp = _find(rows, big, floor_name, "copy")
            t_name = f"{size_label(big)} {tool} {op} <= {TARGET_CP_RATIO}x {floor_name} time"
            m_name = f"{size_label(big)} {tool} {op} peak RSS <= {TARGET_RSS_MIB:.0f} MiB"
            if r is None or cp is None or not r.seconds or not cp.seconds:
                checks.append((t_name, None, "not measured"))
                checks.append((m_name, None, "not measured"))
                continue
            ratio = r.seconds / cp.seconds
            measured = f"{ratio:.2f}x ({r.seconds:.3f} s vs {floor_name} {cp.seconds:.3f} s)"
            checks.append((t_name, ratio <= TARGET_CP_RATIO, measured))
            rss = r.rss_mib or 0.0
            checks.append((m_name, rss <= TARGET_RSS_MIB, f"{rss:.1f} MiB"))
    for op in ("encrypt", "decrypt"):
        r = _find(rows, big, "pqfile library", op)
        e = _find(rows, big, "AWS Encryption SDK", op)
        esdk_target = (
            f"{size_label(big)} pqfile library {op} >= {TARGET_ESDK_RATIO:.0f}x ESDK streaming MB/s"
        )
        if r and e and r.mb_s and e.mb_s:
            ratio = r.mb_s / e.mb_s
            checks.append(
                (
                    esdk_target,
                    ratio >= TARGET_ESDK_RATIO,
                    f"{ratio:.1f}x ({r.mb_s:.0f} vs {e.mb_s:.0f} MB/s)",
                )
            )
        else:
            checks.append(
                (
                    esdk_target,
                    None,
                    "not measured",
                )
            )

    size = int(inmem.get("size", 0))  # type: ignore[call-overload]
    lines.append("")
    lines.append(
        f"In memory, {size_label(size)}, median of {inmem.get('runs')} runs "
        "after 2 warm-up runs (one process):"
    )
    lines.append("")
    lines.append(
        _md_row(
            "implementation",
            "encrypt median (ms)",
            "decrypt median (ms)",
            "encrypt min / max (ms)",
            "decrypt min / max (ms)",
        )
    )
    lines.append("|---|---|---|---|---|")
    for label, key in (
        ("pqfile encrypt_bytes / decrypt_bytes", "pqfile"),
        ("seed design (ML-KEM + SHA-256 + AES-256-CBC/PKCS7)", "seed"),
    ):
        e = inmem.get(f"{key}_encrypt")
        d = inmem.get(f"{key}_decrypt")
        if isinstance(e, list) and isinstance(d, list):
            lines.append(
                _md_row(
                    label,
                    f"{statistics.median(e) * 1e3:.2f}",
                    f"{statistics.median(d) * 1e3:.2f}",
                    f"{min(e) * 1e3:.2f} / {max(e) * 1e3:.2f}",
                    f"{min(d) * 1e3:.2f} / {max(d) * 1e3:.2f}",
                )
            )
        else:
            lines.append(f"| {label} | - | - | - | {inmem.get(key + '_error', 'not measured')} |")
    for op in ("encrypt", "decrypt"):
        v = inmem.get(f"pqfile_{op}")
        name = f"{size_label(size)} in-memory pqfile {op} median <= {TARGET_INMEM_MS:.0f} ms"
        if isinstance(v, list):
            med = statistics.median(v) * 1e3
            seed_v = inmem.get(f"seed_{op}")
            vs = (
                f" (seed design {statistics.median(seed_v) * 1e3:.1f} ms)"
                if isinstance(seed_v, list)
                else ""
            )
            checks.append((name, med <= TARGET_INMEM_MS, f"{med:.2f} ms{vs}"))
        else:
            checks.append((name, None, "not measured"))

    lines.append("")
    lines.append("Targets:")
    lines.append("")
    lines.append("| target | result | measured |")
    lines.append("|---|---|---|")
    for name, ok, measured in checks:
        verdict = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        lines.append(f"| {name} | {verdict} | {measured} |")
    return "\n".join(lines), checks


SUITES_TITLE = "## Suites"
SUITE_OPS = (
    ("keygen", "key generation (seed, public key)", "us"),
    ("wrap", "wrap: header sealed to a public key", "us"),
    ("unwrap", "unwrap: header opened with the secret key", "us"),
    ("encrypt", "20 MiB encrypt_bytes", "ms"),
    ("decrypt", "20 MiB decrypt_bytes", "ms"),
)


def suites_report(result: dict[str, object]) -> str:
    """Medians per suite and operation, with the ratio to xwing measured in the same run."""
    names = [n for n in ("xwing", "mlkem768", "mlkem1024") if isinstance(result.get(n), dict)]
    per: dict[str, dict[str, object]] = {n: result[n] for n in names}  # type: ignore[misc]
    head = ["operation"] + [f"{n} ({per[n]['kdf']})" for n in names]
    head += [f"{n} / xwing" for n in names if n != "xwing"]
    lines = [_md_row(*head), "|" + "---|" * len(head)]
    for key, label, unit in SUITE_OPS:
        scale = 1e6 if unit == "us" else 1e3
        med = {n: statistics.median(per[n][key]) for n in names}  # type: ignore[arg-type]
        cells = [f"{label} (median, {'µs' if unit == 'us' else 'ms'})"]
        cells += [f"{med[n] * scale:.{0 if unit == 'us' else 2}f}" for n in names]
        cells += [f"{med[n] / med['xwing']:.2f}x" for n in names if n != "xwing"]
        lines.append(_md_row(*cells))
    sizes = ", ".join(f"{n} {per[n]['header_size']} bytes" for n in names)
    lines.append("")
    lines.append(f"Header size (no context, no document id): {sizes}.")
    return "\n".join(lines)


def suites_section(args: argparse.Namespace, command: str) -> bool:
    size, key_runs = 20 * MiB, 50 if args.quick else 300
    load_before = os.getloadavg()[0]
    print(f"suites: keygen/wrap/unwrap x {key_runs}, {size_label(size)} in memory x {args.runs}")
    r = run_child(_self("suites", str(size), str(args.runs), str(key_runs)))
    line = next(x for x in r.stdout.splitlines()[::-1] if x.startswith("{"))
    table = suites_report(json.loads(line))
    print()
    print(table)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(
        [
            f"Command: `{command}` ({when}).",
            "",
            f"Machine: {machine_info('xwing, mlkem768 and mlkem1024', {})}.",
            "",
            "All suites are measured in one child process, one after the other, so the ratios "
            f"to xwing come from the same run; {key_runs} runs of each key operation and "
            f"{args.runs} of each 20 MiB operation, after 2 warm-up runs, medians. Key "
            "generation derives the public key from a fresh seed; wrap seals a package header "
            "(key schedule, HPKE seal of the data key, header MAC); unwrap opens one (key id, "
            "HPKE open, key schedule, commitment, MAC): the per-package cost before the body. "
            "The 20 MiB rows are `encrypt_bytes` / `decrypt_bytes` with 1 MiB segments. "
            f"Load average (1 min) {load_before:.2f} before and {os.getloadavg()[0]:.2f} after "
            "(2 shared cores: figures vary between runs, ratios less so).",
            "",
            table,
            "",
        ]
    )
    if args.quick:
        body = "**Quick run: not the reference figures.**\n\n" + body
    if not args.no_write and (args.write or not args.quick):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _benchutil import write_section as write_named_section

        write_named_section(BENCHMARKS_MD, SUITES_TITLE, body)
        print(f"\nwrote the '{SUITES_TITLE[3:]}' section of {BENCHMARKS_MD.relative_to(ROOT)}")
    return True


def machine_info(suite: str, info: dict[str, str]) -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    crypto = subprocess.run(
        [
            sys.executable,
            "-c",
            "import cryptography; from cryptography.hazmat.backends.openssl import backend;"
            "print(cryptography.__version__, backend.openssl_version_text())",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    parts = [
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu})",
        f"Python {platform.python_version()}, pyca/cryptography {crypto}",
        f"pqfile suite {suite}",
    ]
    if "esdk" in info:
        parts.append(
            f"aws-encryption-sdk {info['esdk']} (raw AES keyring, default suite, streaming)"
        )
    if "age" in info:
        parts.append(f"age {info['age']}")
    return "; ".join(parts)


def write_section(body: str) -> None:
    """Rewrite this section of BENCHMARKS.md (created with its header if missing); notes
    after ``_benchutil.NOTES_MARKER`` in the old section are kept."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _benchutil import write_section as write_named_section

    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text(HEADER)
    write_named_section(BENCHMARKS_MD, SECTION_TITLE, body)


def crypto_section(args: argparse.Namespace, command: str) -> bool:
    sizes = [4 * MiB, 64 * MiB] if args.quick else [20 * MiB, GiB]
    load_before = os.getloadavg()[0]
    print(f"crypto: files {', '.join(size_label(s) for s in sizes)} in {DATA_DIR}")
    rows, info = bench_files(sizes, args.suite, print)
    inmem_size = 20 * MiB
    print(f"crypto: {size_label(inmem_size)} in memory, {args.runs} runs")
    inmem = bench_inmem(inmem_size, args.runs, args.suite)
    table, checks = build_report(rows, inmem, sizes, args.suite, info, args.quick, command)
    print()
    print(table)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(
        [
            f"Command: `{command}` ({when}).",
            "",
            f"Machine: {machine_info(args.suite, info)}.",
            "",
            "Conditions: warm page cache (the input files are generated once into the "
            "git-ignored `bench-data/` and stay cached; dropping caches needs root and is not "
            "attempted). Each file measurement runs in its own child process; peak RSS is that "
            'child\'s `ru_maxrss`. "wall" rows time the whole child (process start included: '
            '`cp`, `age`, the pqfile CLI); "in-process" rows time the operation inside the '
            "child (the pqfile library's `encrypt_stream` / `decrypt_stream` into plain files, "
            "the ESDK's `stream()`, the seed design's read-encrypt-write). The pqfile CLI writes "
            "its output atomically (temporary file, rename) without fsync, like `cp`, so every "
            "row is compared with plain `cp` (`cp + fsync` is shown for reference). Before each "
            "measurement the script calls sync(2), untimed, so no tool pays for the writeback "
            "of an earlier one's output. Ratios are "
            "computed within this same run. `cp` (coreutils 9.1 on ext4) copies in the kernel "
            "with `copy_file_range`, never through user space: a floor no encrypting tool can "
            "reach by construction; `dd bs=1M` (read/write through a user-space buffer) is "
            "shown for comparison only. "
            f"Load average (1 min) {load_before:.2f} before and {os.getloadavg()[0]:.2f} after "
            "the run: the machine is shared (2 cores), so figures vary between runs. ",
            "The seed design runs only on the small file (it holds the whole file in memory).",
            "",
            table,
            "",
        ]
    )
    if args.quick:
        body = "**Quick run (small files): not the reference figures.**\n\n" + body
    if not args.no_write and (args.write or not args.quick):
        write_section(body)
        print(f"\nwrote the '{SECTION_TITLE[3:]}' section of {BENCHMARKS_MD.relative_to(ROOT)}")
    return all(ok is not False for _, ok, _ in checks)


def run_other(script: str, quick: bool, write: bool) -> bool | None:
    """Run another section's script; None when it is not there."""
    path = ROOT / "scripts" / script
    if not path.exists():
        print(f"{script}: not present, skipped")
        return None
    argv = [sys.executable, str(path)]
    helptext = subprocess.run([*argv, "--help"], capture_output=True, text=True).stdout
    if quick and "--quick" in helptext:
        argv.append("--quick")
    if quick and not write and "--no-write" in helptext:
        argv.append("--no-write")
    print(f"\nrunning {' '.join(argv[1:])}", flush=True)
    return subprocess.run(argv, cwd=ROOT).returncode == 0


SECTIONS = (
    "crypto", "suites", "db", "pipeline", "rewrap", "ingest", "cli", "cold", "load", "sealed",
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        child_main(argv[1], argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help="comma-separated: " + ",".join(SECTIONS)
    )
    parser.add_argument(
        "--quick", action="store_true", help="small files (4 MiB, 64 MiB); no BENCHMARKS.md rewrite"
    )
    parser.add_argument(
        "--write", action="store_true", help="rewrite BENCHMARKS.md even with --quick"
    )
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="print the crypto and suites sections, leave BENCHMARKS.md",
    )
    parser.add_argument("--runs", type=int, default=30, help="in-memory runs (default 30)")
    parser.add_argument(
        "--suite",
        default="xwing",
        choices=["xwing", "mlkem768", "mlkem1024"],
        help="the suite of the crypto section's file rows (the suites section runs all)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    if os.environ.get("MAKELEVEL"):  # run by `make bench`
        command = "make bench" + (f' BENCH_ARGS="{" ".join(argv)}"' if argv else "")
    else:
        command = "python scripts/bench.py" + (" " + " ".join(argv) if argv else "")
    summary: list[str] = []
    ok = True
    if "crypto" in only:
        met = crypto_section(args, command)
        summary.append(f"crypto core: {'all targets met' if met else 'some targets NOT met'}")
        ok = ok and met
    if "suites" in only:
        suites_section(args, command)
        summary.append("suites: measured (no targets; ratios to xwing)")
    others = (("db", "bench_db.py"), ("pipeline", "bench_pipeline.py"),
              ("rewrap", "bench_rewrap.py"), ("ingest", "bench_ingest_parallel.py"),
              ("cli", "bench_cli.py"), ("cold", "bench_cold_start.py"),
              ("load", "bench_load.py"), ("sealed", "bench_sealed.py"))  # fmt: skip
    for section, script in others:
        if section in only:
            result = run_other(script, args.quick, args.write)
            state = {None: "not present", True: "exit 0", False: "FAILED (non-zero exit)"}
            summary.append(f"{script}: {state[result]} (its own table says which targets it met)")
            ok = ok and result is not False
    print("\nsummary:\n  " + "\n  ".join(summary))
    return 1 if (args.strict and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
