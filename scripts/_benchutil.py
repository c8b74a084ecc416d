"""Shared by the scripts/bench_*.py benchmarks (run as scripts: this folder is on
sys.path)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

#: The role the benchmark stacks' functions and state machines run as (the emulator does not
#: enforce IAM; Terraform's roles are checked by tests/terraform).
_TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
    "Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
    "Action": "sts:AssumeRole"}]}  # fmt: skip


#: In a section, what follows this line is written by people and kept when the benchmark
#: rewrites the section above it.
NOTES_MARKER = "<!-- notes below are kept when the section is rewritten -->"


def plain_venv(work: Path, name: str = "installed") -> Path:
    """A virtual environment under ``work`` in which ``functions/`` and this venv's
    dependencies are plain path entries, as a wheel install or a Lambda zip plus layer give
    them: no editable-install finder runs at interpreter start (the development venv's
    imports pathlib, re and urllib before anything else). Returns its ``python``."""
    venv = work / name
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    functions = Path(__file__).resolve().parents[1] / "functions"
    ours = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "pqfile-bench.pth").write_text(f"{functions}\n{ours}\n")
    return python


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace the ``heading`` section of a BENCHMARKS.md (up to the next ``## ``), or
    append it; the file is created with a ``# Benchmarks`` title if it is missing. Notes
    after :data:`NOTES_MARKER` in the old section are kept after the new body."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    section = f"{heading}\n\n{body.strip()}\n"
    if heading in text:
        before, rest = text.split(heading, 1)
        nxt = rest.find("\n## ")
        after = rest[nxt + 1 :] if nxt >= 0 else ""
        old = rest[: nxt + 1] if nxt >= 0 else rest
        if NOTES_MARKER in old:
            section += "\n" + NOTES_MARKER + old.split(NOTES_MARKER, 1)[1].rstrip() + "\n"
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def compute_by_step(stack: Any, execution_arn: str, steps: Collection[str]) -> dict[str, float]:
    """``compute_ms`` of each Task in ``steps``, from the Lambda results recorded in the
    execution's history (the functions report it in their answers)."""
    out: dict[str, float] = {}
    current = None
    for ev in stack.history(execution_arn):
        entered = ev.get("stateEnteredEventDetails")
        if entered:
            current = entered["name"]
        details = ev.get("taskSucceededEventDetails") or ev.get(
            "lambdaFunctionSucceededEventDetails"
        )
        if details and current in steps:
            try:
                result = json.loads(details.get("output") or "{}")
            except ValueError:
                continue
            payload = result.get("Payload", result)
            if isinstance(payload, dict) and "compute_ms" in payload:
                out[current] = float(payload["compute_ms"])
    return out


@contextlib.contextmanager
def bench_services(name: str) -> Iterator[tuple[Path, Any, Any]]:
    """A work folder, a throwaway migrated PostgreSQL and a private emulator, for one
    benchmark run: ``(work, pg, emulator)``; everything is stopped, and the big input files
    (``big-*.bin``) are removed, on the way out."""
    from devstack.emulator import REPO_ROOT, start_emulator
    from devstack.postgres import start_postgres

    from pqfile.adapters.postgres import Database, migrate

    work = Path(tempfile.mkdtemp(prefix=f"pqfile-bench-{name}-"))
    pg = start_postgres(Path("/tmp") / f"pqb-{name}-{os.getpid()}")
    try:
        emulator = start_emulator(
            code_paths=[REPO_ROOT / "functions"], log_path=work / "emulator.log"
        )
    except BaseException:
        pg.stop()
        raise
    try:
        db = Database.from_url(pg.url)
        migrate(db)
        db.close()
        yield work, pg, emulator
    finally:
        emulator.stop()
        pg.stop()
        for big in work.glob("big-*.bin"):
            big.unlink()


def bench_role(emulator: Any) -> str:
    """The ARN of an IAM role Lambda and Step Functions may assume, on the emulator."""
    role = emulator.client("iam").create_role(
        RoleName="bench", AssumeRolePolicyDocument=json.dumps(_TRUST)
    )
    return str(role["Role"]["Arn"])


class _CountingBody:
    """A GetObject body that counts what is read from it."""

    def __init__(self, body: Any, counter: CountingS3) -> None:
        self._body, self._counter = body, counter

    def read(self, *args: Any) -> bytes:
        data: bytes = self._body.read(*args)
        self._counter.consumed += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)


class CountingS3:
    """An S3 client that counts the object bytes moved through this process: ``received``
    (the ContentLength of every GetObject: what S3 sends), ``consumed`` (what was read from
    those bodies), ``written`` (PutObject and UploadPart bodies), and the calls (``gets``,
    ``writes``: every call that creates or changes an object)."""

    WRITES = ("put_object", "create_multipart_upload", "upload_part", "copy_object",
              "upload_part_copy", "complete_multipart_upload")  # fmt: skip

    def __init__(self, client: Any) -> None:
        self._client = client
        self.reset()

    def reset(self) -> None:
        self.received = self.consumed = self.written = self.gets = self.writes = 0

    def get_object(self, **kwargs: Any) -> Any:
        resp = self._client.get_object(**kwargs)
        self.received += int(resp["ContentLength"])
        self.gets += 1
        resp["Body"] = _CountingBody(resp["Body"], self)
        return resp

    def put_object(self, **kwargs: Any) -> Any:
        self.writes += 1
        self.written += len(kwargs.get("Body") or b"")
        return self._client.put_object(**kwargs)

    def upload_part(self, **kwargs: Any) -> Any:
        self.writes += 1
        self.written += len(kwargs.get("Body") or b"")
        return self._client.upload_part(**kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in self.WRITES:
            self.writes += 1
        return getattr(self._client, name)
