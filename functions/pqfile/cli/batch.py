"""Batch mode: `pqfile encrypt --recipient PUB --out-dir DIR FILE...` and
`pqfile decrypt --identity SEC --out-dir DIR FILE...`.

- Every core works: the files are spread over a process pool (forked after the key is
  loaded, so each worker starts at once; OpenSSL and ``os.urandom`` reseed after a fork,
  see tests/unit/test_fork_restore.py).
- Each output is written atomically (temporary file, rename), exactly as a single-file
  ``--out``; a failed file leaves nothing in DIR and does not stop the others.
- The answer: one line per failed file on stderr, a summary on stdout (or one JSON document
  with ``--json``), exit 1 if any file failed. A progress bar (files) on a terminal.

Output names: encrypt writes ``DIR/<name>.pqf``; decrypt writes ``DIR/<name>`` without its
``.pqf`` suffix, or ``DIR/<name>.decrypted`` when it has none. Two inputs with the same
output name are refused for the second one (nothing is overwritten in one run).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

from pqfile.errors import PQFileError

Mode = Literal["encrypt", "decrypt"]
SUFFIX = ".pqf"
DECRYPTED_SUFFIX = ".decrypted"
# Files per task sent to a worker: fewer round trips than one file each, and still enough
# tasks to keep every core busy to the end.
_CHUNK = 16
# Files up to this size are read whole and processed in memory (per worker at a time).
_IN_MEMORY = 8 * 1024 * 1024


@dataclass(frozen=True)
class Job:
    """What every file of one batch shares (the key is loaded once per process)."""

    mode: Mode
    key_path: str
    out_dir: str
    force: bool
    context: Mapping[str, str] | None = None
    segment_size: int | None = None
    expected_context: Mapping[str, str] | None = None
    expected_document_id: bytes | None = None


# The loaded key of this process: set by the parent before the pool forks, or by the
# worker initializer where processes are spawned.
_KEY: Any = None


def _load_key(job: Job) -> Any:
    from pqfile.crypto import keyfiles

    global _KEY
    if _KEY is None:
        if job.mode == "encrypt":
            _KEY = keyfiles.load_public_key(job.key_path)
        else:
            _KEY = keyfiles.load_secret_key(job.key_path)
    return _KEY


def output_name(mode: Mode, path: str) -> str:
    """The file name (no directory) a batch writes for input ``path``."""
    name = os.path.basename(path.rstrip(os.sep)) or path
    if mode == "encrypt":
        return name + SUFFIX
    if name.endswith(SUFFIX) and len(name) > len(SUFFIX):
        return name[: -len(SUFFIX)]
    return name + DECRYPTED_SUFFIX


def _one(job: Job, path: str, target: str) -> dict[str, Any]:
    """Encrypt or decrypt one file; never raises for a refused file (its error is the
    answer). The output appears only when complete."""
    from pqfile.cli.files import CommandError, _check_new, _file_errors

    result: dict[str, Any] = {"input": path, "output": target}
    try:
        key = _load_key(job)
        with _file_errors():
            _check_new(target, job.force)
            with open(path, "rb") as src:
                st = os.fstat(src.fileno())
                if (
                    stat.S_ISREG(st.st_mode) and st.st_size <= _IN_MEMORY
                ):  # one read, one write: no per-file buffers or threads
                    _in_memory(job, key, src.read(), target, result)
                else:
                    _streamed(job, key, src, target, result)
    except (PQFileError, CommandError) as exc:
        result["error"] = str(exc)
    result["ok"] = "error" not in result
    return result


def _in_memory(job: Job, key: Any, data: bytes, target: str, result: dict[str, Any]) -> None:
    """A small file: encrypt_bytes / decrypt_bytes (the whole package verified before the
    output file is even created), then one atomic write."""
    from pqfile.crypto import envelope

    if job.mode == "encrypt":
        out = envelope.encrypt_bytes(
            data,
            key,
            context=job.context,
            segment_size=job.segment_size or envelope.DEFAULT_SEGMENT_SIZE,
        )
        result["plaintext_size"] = len(data)
        result["package_size"] = len(out)
        result["key_id"] = key.key_id
    else:
        header = envelope.read_header(data)
        out = envelope.decrypt_bytes(
            data,
            key,
            expected_context=job.expected_context,
            expected_document_id=job.expected_document_id,
        )
        result["plaintext_size"] = len(out)
        result["key_id"] = header.key_id
    with envelope.write_atomically(target, overwrite=job.force) as dst:
        dst.write(memoryview(out))


def _streamed(job: Job, key: Any, src: Any, target: str, result: dict[str, Any]) -> None:
    """A large file: constant memory, the output renamed into place only when complete."""
    from pqfile.crypto import envelope

    if job.mode == "encrypt":
        with envelope.write_atomically(target, overwrite=job.force) as out:
            enc = envelope.encrypt_stream(
                src,
                out,
                key,
                context=job.context,
                segment_size=job.segment_size or envelope.DEFAULT_SEGMENT_SIZE,
            )
        result["plaintext_size"] = enc.plaintext_size
        result["package_size"] = enc.package_size
        result["key_id"] = enc.key_id
    else:
        dec = envelope.decrypt_to_path(
            src,
            target,
            key,
            overwrite=job.force,
            expected_context=job.expected_context,
            expected_document_id=job.expected_document_id,
        )
        result["plaintext_size"] = dec.plaintext_size
        result["key_id"] = dec.header.key_id


def _chunk(job: Job, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    return [_one(job, path, target) for path, target in pairs]


def _init_worker(job: Job) -> None:
    _load_key(job)


def plan(
    mode: Mode, files: Sequence[str], out_dir: str
) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """(input, output path) pairs to run, and the inputs refused before any work: the
    second input with an output name already taken in this run."""
    taken: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    refused: list[dict[str, Any]] = []
    for path in files:
        target = os.path.join(out_dir, output_name(mode, path))
        if target in taken:
            refused.append(
                {
                    "input": path,
                    "output": target,
                    "ok": False,
                    "error": f"same output name as {taken[target]}",
                }
            )
            continue
        taken[target] = path
        pairs.append((path, target))
    return pairs, refused


def workers_for(count: int) -> int:
    """Every core this process may use, never more processes than tasks."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    tasks = (count + _CHUNK - 1) // _CHUNK
    return max(1, min(cores, tasks))


def run(
    job: Job, pairs: Sequence[tuple[str, str]], advance: Callable[[int], None] | None
) -> list[dict[str, Any]]:
    """Run every pair; results in input order."""
    _load_key(job)  # a bad key file is one error for the whole batch, before any work
    workers = workers_for(len(pairs))
    chunks = [list(pairs[i : i + _CHUNK]) for i in range(0, len(pairs), _CHUNK)]
    if workers == 1:
        results: list[dict[str, Any]] = []
        for chunk in chunks:
            results.extend(_chunk(job, chunk))
            if advance is not None:
                advance(len(chunk))
        return results
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    ordered: list[list[dict[str, Any]] | None] = [None] * len(chunks)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(job,)
    ) as pool:
        futures: dict[Future[list[dict[str, Any]]], int] = {
            pool.submit(_chunk, job, chunk): i for i, chunk in enumerate(chunks)
        }
        try:
            from concurrent.futures import as_completed

            for future in as_completed(futures):
                ordered[futures[future]] = future.result()
                if advance is not None:
                    advance(len(chunks[futures[future]]))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [r for chunk in ordered if chunk is not None for r in chunk]


def _file_progress(
    total: int, description: str
) -> AbstractContextManager[Callable[[int], None] | None]:
    """A bar counting files, on stderr when it is a terminal; silence otherwise."""
    from pqfile.cli._output import progress_bar

    return progress_bar(total, description, files=True)


def command(args: argparse.Namespace, mode: Mode, job: Job) -> int:
    """The batch command: validate, run, report; exit 0 only if every file succeeded."""
    from pqfile.cli._output import print_json, printable
    from pqfile.cli.files import CommandError, _file_errors, _shown

    if args.input is not None or args.out is not None:
        raise CommandError("--out-dir takes FILE arguments; --in and --out are for one file")
    if not args.files:
        raise CommandError("--out-dir needs at least one FILE")
    if not os.path.isdir(args.out_dir):
        raise CommandError(f"--out-dir {_shown(args.out_dir)} is not a directory")
    pairs, refused = plan(mode, args.files, args.out_dir)
    with _file_errors():
        _load_key(job)
    verb = "encrypting" if mode == "encrypt" else "decrypting"
    with _file_progress(len(pairs), verb) as advance:
        results = run(job, pairs, advance)
    everything = results + refused
    failed = [r for r in everything if not r["ok"]]
    summary = {
        "operation": mode,
        "out_dir": args.out_dir,
        "files": everything,
        "succeeded": len(everything) - len(failed),
        "failed": len(failed),
    }
    if args.json:
        print_json(summary)
    else:
        for r in failed:
            print(
                f"pqfile: error: {printable(r['input'])}: {printable(r['error'])}", file=sys.stderr
            )
        done = "encrypted" if mode == "encrypt" else "decrypted"
        print(
            f"{done} {summary['succeeded']} of {len(everything)} files into "
            f"{printable(args.out_dir)}" + (f" ({len(failed)} failed)" if failed else "")
        )
    return 1 if failed else 0
