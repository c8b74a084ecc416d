"""Handler cold init (issue 15 item 1; the "Handler cold init" section of BENCHMARKS.md).

For every module in pqfile/handlers, in a fresh process each time: the CPU time (user +
system, from the child's rusage; the wall time on a shared 2-core machine mostly measures
the other tenants) of the whole child (interpreter start included, as Lambda's Init
Duration; it ends with os._exit(0), since the interpreter's teardown is no part of Init)
that imports the
handler module and creates its S3 and KMS clients (pqfile.adapters.aws, as the adapters
do), as deployed: tracing on (no AWS_ENDPOINT_URL), the environment of docs/CONTRACTS.md,
in a plain venv with the code and its dependencies on path entries (as the zip and the
layer are on Lambda; the development venv's editable finder would add its own imports to
every child, the baseline's included). The baseline child runs `import boto3` plus one
client. In every round each handler's children run right after a baseline child of their
own; a ratio is the median over the rounds of child / that baseline (a pair shares the
other tenants' load of the moment); the target is <= 1.2x for every handler.

A second figure per handler, "first call", adds what the first invocation loads before
the use case runs (the use case's modules, which handlers import in their body, and the
Powertools logger, metrics and tracer with the X-Ray SDK): it is not in the target (it
happens once per environment, after init; a SnapStart function does it before its
snapshot) and is shown so nothing hides.

`--before DIR` (the `functions` folder of an earlier checkout, e.g. from `git archive`)
adds each handler's init with that code first on PYTHONPATH to the same interleaved
rounds, for a before/after ratio measured in one run.

Run: `python scripts/bench_cold_start.py [--quick] [--no-write] [--before DIR]` (also
`make bench`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchutil import plain_venv, write_section

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
HEADING = "## Handler cold init"
TARGET = 1.2

# Every child ends with os._exit(0) once its init is done: Lambda's Init Duration ends
# there, and the interpreter's teardown (80-150 ms of CPU here, growing with the modules
# loaded) is not part of a cold start.
END = "import os\nos._exit(0)\n"
BASELINE = "import boto3\nboto3.session.Session().client('s3', region_name='eu-west-1')\n" + END
HANDLER = (
    "import importlib\n"
    "importlib.import_module('pqfile.handlers.{name}')\n"
    "from pqfile.adapters.aws import client\n"
    "client('s3')\n"
    "client('kms')\n"
)
# The first invocation also imports the handler's use case (named by _runtime.preload; the
# runtime's SnapStart library, faked here, hands us the hook that imports it).
FIRST_CALL = (
    "import sys, types\n"
    "hooks = types.ModuleType('snapshot_restore_py')\n"
    "hooks.before = []\n"
    "hooks.register_before_snapshot = hooks.before.append\n"
    "hooks.register_after_restore = lambda hook: None\n"
    "sys.modules['snapshot_restore_py'] = hooks\n"
) + HANDLER + (
    "for hook in hooks.before:\n"
    "    hook()\n"
    "from pqfile.handlers import _runtime\n"
    "_runtime.prepare()\n"
)


WHERE_INIT_GOES = """What a handler module loads at import (Lambda's Init):
`pqfile.handlers._runtime` and `pqfile.wiring`, neither of which imports settings, ports,
use cases, adapters, pyca, Powertools or the X-Ray SDK
(`tests/unit/test_handler_lazy_imports.py` pins it). Its use case is imported in the
handler's body on the first invocation (a SnapStart function imports it before its
snapshot: docs/OPERATIONS.md, "SnapStart"). What the init column still holds above the
baseline: the second (KMS) client (about 12 ms), the handler's own modules with `wiring` and
`_runtime` (about 7 ms) and, since `pqfile.config` became a package whose modules load on
first use, only its constants and `AwsSettings` (about 1-2 ms, against about 16-25 ms when
the client factory loaded all fifteen settings dataclasses, the variable registry and the
pool policy); `python -X importtime`, in-process `time.process_time`. The first call moves
the import of the use case (pyca, ports, use cases) and of Powertools and the X-Ray SDK
(about 60 to 150 ms here) after init; it is not removed."""

BEFORE_NOTE = """ "Before" columns: the
same init with the earlier code given by `--before`, in the same interleaved rounds."""


def handlers() -> list[str]:
    folder = ROOT / "functions" / "pqfile" / "handlers"
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def deployed_env(cache: Path) -> dict[str, str]:
    """As terraform/lambda.tf sets it on AWS (tracing on: no endpoint), with dummy
    credentials (nothing is called) and byte-compiled modules, as in the zip."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "PQFILE_", "POWERTOOLS_"))
           and k != "PYTHONDONTWRITEBYTECODE"}  # fmt: skip
    env.update(
        AWS_REGION="eu-west-1",
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_LAMBDA_FUNCTION_NAME="pqfile-bench",
        # Set by Lambda in every function: the X-Ray SDK then samples locally (Lambda made
        # the decision) instead of building a botocore client for the daemon's centralized
        # sampling, which would add 100-300 ms to the first call that Lambda never pays.
        LAMBDA_TASK_ROOT=str(ROOT / "functions"),
        AWS_XRAY_DAEMON_ADDRESS="127.0.0.1:2000",
        AWS_XRAY_CONTEXT_MISSING="IGNORE_ERROR",
        POWERTOOLS_SERVICE_NAME="pqfile",
        POWERTOOLS_METRICS_NAMESPACE="PQFile",
        PQFILE_ENCRYPTED_BUCKET="bench-encrypted",
        PQFILE_KMS_KEY_ID="alias/bench",
        PQFILE_DATABASE_URL="postgresql://bench@127.0.0.1:1/pqfile?sslmode=disable",
        PYTHONPYCACHEPREFIX=str(cache),
    )
    return env


def cpu(python: Path, code: str, env: dict[str, str]) -> float:
    """The child's CPU time (user + system), from its own rusage: on a shared machine the
    wall time mostly measures the other tenants; init is CPU-bound (imports, models)."""
    proc = subprocess.Popen([str(python), "-c", code], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args)
    return usage.ru_utime + usage.ru_stime


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 9")
    parser.add_argument("--rounds", type=int, help="rounds (fresh processes per figure)")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    parser.add_argument("--before", type=Path, help="an earlier checkout's functions folder")
    args = parser.parse_args(argv)
    before = args.before.resolve() if args.before else None
    rounds = args.rounds or (3 if args.quick else 9)
    names = handlers()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="pqfile-bench-cold-") as tmp:
        python = plain_venv(Path(tmp))  # as a zip and a layer: no editable finder
        env = deployed_env(Path(tmp) / "pycache")
        old_env = env
        if before is not None:
            old_env = {**env, "PYTHONPATH": str(before),
                       "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache-before")}  # fmt: skip
        codes: dict[str, tuple[str, dict[str, str]]] = {"(baseline)": (BASELINE, env)}
        for name in names:
            codes[name] = (HANDLER.format(name=name) + END, env)
            codes[name + " first call"] = (FIRST_CALL.format(name=name) + END, env)
            if before is not None:
                codes[name + " before"] = (HANDLER.format(name=name) + END, old_env)
        for code, code_env in codes.values():  # compile every module once, untimed
            cpu(python, code, code_env)
        times: dict[str, list[float]] = {k: [] for k in codes}
        # Each figure is divided by the baseline measured just before it, in the same round:
        # the other tenants' load changes over seconds, and a pair taken together shares it.
        pairs: dict[str, list[float]] = {k: [] for k in codes if k != "(baseline)"}
        for _ in range(rounds):
            for name in names:
                baseline = cpu(python, BASELINE, env)
                times["(baseline)"].append(baseline)
                for key in (k for k in pairs if k == name or k.startswith(name + " ")):
                    code, code_env = codes[key]
                    times[key].append(cpu(python, code, code_env))
                    pairs[key].append(times[key][-1] / baseline)
    load_after = os.getloadavg()[0]
    med = {k: statistics.median(v) for k, v in times.items()}
    paired = {k: statistics.median(v) for k, v in pairs.items()}
    base = med["(baseline)"]
    rows, met = [], True
    for name in names:
        ratio = paired[name]
        met = met and ratio <= TARGET
        first = med[name + " first call"]
        old = med.get(name + " before")
        was = f" | {old * 1000:.0f} ms | {paired[name + ' before']:.2f}x" if old else ""
        rows.append(f"| {name} | {med[name] * 1000:.0f} ms | {ratio:.2f}x | "
                    f"{'yes' if ratio <= TARGET else 'no'} | {first * 1000:.0f} ms | "
                    f"{paired[name + ' first call']:.2f}x{was} |")  # fmt: skip
    ratios = [paired[name] for name in names]
    low, high = min(ratios), max(ratios)
    flags = (" --quick" if args.quick else "") + (f" --rounds {args.rounds}" if args.rounds else "")
    flags += " --before DIR" if before else ""
    head_before = " init, before | ratio, before |" if before else ""
    body = f"""Measured {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} by
`python scripts/bench_cold_start.py{flags}` (also in `make
bench`); {len(os.sched_getaffinity(0))} cores, Python {sys.version.split()[0]}; load average
(1 min) {load_before:.2f} before and {load_after:.2f} after (a shared machine: absolute
figures vary a lot between runs; the ratios come from pairs taken together in one run).

Each time is the median CPU time (user + system, the child's rusage; wall time here
measures the other tenants as much) of {rounds} fresh processes (interpreter start included;
each child ends with `os._exit(0)` once init is done, as Lambda's Init Duration ends there:
the interpreter's teardown, 80-150 ms of CPU here and more for more modules, is not part of
a cold start; runs before 2026-11-30 03:00 UTC included it) with the deployed environment
(tracing on, no endpoint, dummy credentials, modules byte-compiled) in a plain venv where
the code and its dependencies are path entries, as a Lambda zip and layer provide them (no
editable-install finder at start; runs before 2026-11-30 05:00 UTC used the development
venv). Init = import the handler module and create its S3 and KMS clients. Baseline =
`import boto3` plus one S3 client: {base * 1000:.0f} ms. Each ratio is the median over the
rounds of a child's time divided by the baseline child run just before it in the same round
(each handler has its own baseline child every round; before 2026-11-30 05:00 UTC the
ratios were of medians). "First call" adds what
the first invocation loads once: the handler's use case (imported in the handler's body;
`_runtime.preload` names it) and `_runtime.prepare()` (Powertools logger, metrics and the
X-Ray tracer); it is shown, not targeted.{BEFORE_NOTE if before else ""}

| handler | init | ratio | <= {TARGET}x | init + first call | ratio |{head_before}
|---|---|---|---|---|---|{"---|---|" if before else ""}
{chr(10).join(rows)}

**Target 1 ({TARGET}x for every handler, in one run): {"met" if met else "not met"}**;
init ratios {low:.2f}x to {high:.2f}x. {WHERE_INIT_GOES}
"""
    print(body)
    if not args.no_write:
        write_section(BENCHMARKS_MD, HEADING, body)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
