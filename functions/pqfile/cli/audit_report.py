"""`pqfile audit report`: who decrypted what and when, refusals, failures, key lifecycle,
pool health, chain and digest status, as HTML or JSON (docs/KEYS.md, "Audit report").

Direct database path (``--database-url``, as ``audit verify``): one read-only snapshot,
the whole chain verified, the period's rows reported. With ``--stack`` (or
``PQFILE_STACK``) the admin function builds the same model as ``pqfile_auditor`` (at most
1,000 rows listed per section there) and the page is rendered here. The HTML is one
self-contained file (pqfile.cli.report_html). ``--out`` must be absent, or an existing
regular file with ``--force``; the file appears whole or not at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

from pqfile.cli._admin_client import add_stack_options, run_admin, via_function
from pqfile.cli.audit_digests import add_digest_options
from pqfile.cli.audit_report_digests import digest_statuses
from pqfile.cli.db import add_database_option, open_database
from pqfile.errors import PQFileError
from pqfile.usecases.audit_report import AuditReport, parse_bound


class ReportError(PQFileError):
    """A report request that cannot be served (bounds, output file)."""


def register(sub: Any) -> None:
    report = sub.add_parser(
        "report", help="who decrypted what and when, refusals, key lifecycle, pool health"
    )
    add_database_option(report)
    add_stack_options(report)
    report.add_argument("--since", required=True, type=_bound(False), metavar="DATE",
                        help="start (YYYY-MM-DD or ISO 8601 date-time; UTC unless it says)")
    report.add_argument("--until", type=_bound(True), metavar="DATE",
                        help="end, excluded (a date includes that whole day; default: now)")
    report.add_argument("--format", choices=("html", "json"), default="html",
                        help="html (one self-contained file) or json (default html)")
    report.add_argument("--out", metavar="FILE", help="write here (default: standard output)")
    report.add_argument("--force", action="store_true", help="replace an existing --out file")
    report.add_argument("--json", action="store_true",
                        help="with --out: print a JSON summary of what was written")  # fmt: skip
    add_digest_options(report, required=False)
    report.set_defaults(func=_report)


def _bound(end: bool) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return parse_bound(text, end=end)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def build(args: argparse.Namespace) -> AuditReport:
    import datetime as dt

    from pqfile.adapters.postgres.audit_report import read_report

    until = args.until or dt.datetime.now(dt.UTC)
    if until <= args.since:
        raise ReportError("--until must be later than --since")
    digests = digest_statuses(args)  # None without --digests: "no digests configured"
    if via_function(args):
        answer = run_admin(args, "audit.report", {"since": args.since.isoformat(),
                                                   "until": until.isoformat()})  # fmt: skip
        try:
            report = AuditReport.from_dict(answer)
        except ValueError as exc:
            raise ReportError(f"the admin function's answer: {exc}") from None
        if digests is not None:
            report = dataclasses.replace(report, digests=list(digests))
        return report
    db = open_database(args)
    try:
        return read_report(db, since=args.since, until=until, digests=digests)
    finally:
        db.close()


def render(report: AuditReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.as_dict(), indent=2, sort_keys=True) + "\n"
    from pqfile.cli.report_html import render_html

    return render_html(report)


def _report(args: argparse.Namespace) -> int:
    if args.force and not args.out:
        raise ReportError("--force needs --out")
    if args.out:
        _check_out(args.out, args.force)  # before any database work
    report = build(args)
    text = render(report, args.format)
    if not args.out:
        sys.stdout.write(text)
        return 0 if report.chain.ok else 1
    _write(args.out, text.encode("utf-8"), args.force)
    summary = {"output": args.out, "format": args.format, "since": report.since,
               "until": report.until, "rows_in_period": report.rows_in_period,
               "decryptions": len(report.decryptions), "chain_ok": report.chain.ok}  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        c = report.chain
        chain = "chain verified" if c.ok else f"chain BROKEN at row {c.broken_seq}"
        print(f"wrote {args.out}: {report.rows_in_period} rows from {report.since} "
              f"to {report.until}; {chain}")  # fmt: skip
    return 0 if report.chain.ok else 1


def _check_out(path: str, force: bool) -> None:
    import os
    import stat

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ReportError(f"--out {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ReportError(f"refusing to write {path}: not a regular file")
    if not force:
        raise ReportError(f"refusing to overwrite {path} (use --force)")


def _write(path: str, data: bytes, force: bool) -> None:
    from pqfile.crypto.envelope import write_atomically

    try:
        with write_atomically(path, overwrite=force) as out:
            out.write(memoryview(data))
    except FileExistsError:
        raise ReportError(f"refusing to overwrite {path} (use --force)") from None
    except OSError as exc:
        raise ReportError(f"--out {path}: {exc.strerror or exc}") from None
