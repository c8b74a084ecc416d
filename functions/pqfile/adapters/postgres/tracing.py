"""X-Ray subsegments for database calls (split from adapters/postgres/connection.py).

pg8000 is not patched by the X-Ray SDK: each statement gets a subsegment here, named for
the statement (``SELECT audit_append``, ``UPDATE documents``, ``COMMIT``), with no SQL
text and no parameter (docs/OPERATIONS.md, "Tracing"). Free until tracing is in use: the
SDK is never imported here; a statement is traced only when something else (Powertools'
Tracer on a traced invocation) has loaded it and this thread's trace is sampled.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["statement_name", "traced"]


def _sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a pg8000 error, or ""."""
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return str(info.get("C", ""))


_XRAY_MODULE = "aws_xray_sdk.core"
_SELECT_CALL = re.compile(r"SELECT\s+(?:\*\s+FROM\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*\(", re.I)
_TARGET = re.compile(r"\b(?:FROM|INTO|UPDATE|TABLE|JOIN)\s+([A-Za-z_][A-Za-z0-9_.]*)", re.I)
_SCRIPT_VERBS = frozenset(("BEGIN", "COMMIT", "ROLLBACK", "SET", "SAVEPOINT", "RELEASE"))


def statement_name(sql: str, *, script: bool = False) -> str:
    """A subsegment name for ``sql``: its verb and the function it calls or the first table
    it names; never a literal or a parameter (only identifiers are taken)."""
    words = sql.split(None, 1)
    verb = words[0].upper() if words and words[0].isalpha() else ""
    if script:
        return verb if verb in _SCRIPT_VERBS else "SQL script"
    if verb == "SELECT":
        call = _SELECT_CALL.match(sql.lstrip())
        if call:
            return f"SELECT {call.group(1)}"[:100]
    target = _TARGET.search(sql)
    name = f"{verb or 'SQL'} {target.group(1)}" if target else (verb or "SQL")
    return name[:100]


def _sampled_recorder() -> Any | None:
    """The X-Ray recorder if this thread is recording a sampled trace, else None."""
    core = sys.modules.get(_XRAY_MODULE)
    if core is None:
        return None  # nothing has loaded the SDK: tracing is off, and stays free
    recorder = core.xray_recorder
    context = recorder.context
    # Outside Lambda the default context holds the entities itself; asking it for a missing
    # one would trigger its context-missing strategy (an error log or an exception).
    if type(context).__name__ != "LambdaContext" and not getattr(
        getattr(context, "_local", None), "entities", None
    ):
        return None
    return recorder if recorder.is_sampled() else None


@contextlib.contextmanager
def traced(name: str, user: str | None = None) -> Iterator[None]:
    """A ``remote`` subsegment around one database call when a sampled trace is open. A
    failure marks it (fault, with the SQLSTATE as an annotation), never with the error's
    text: PostgreSQL's messages may quote row values."""
    recorder = _sampled_recorder()
    if recorder is None:
        yield
        return
    subsegment = recorder.begin_subsegment(name, "remote")
    if subsegment is not None:
        sql: dict[str, str] = {"database_type": "PostgreSQL", "driver_version": "pg8000"}
        if user:
            sql["user"] = user
        subsegment.set_sql(sql)
    try:
        yield
    except BaseException as exc:
        if subsegment is not None:
            subsegment.add_fault_flag()
            code = _sqlstate(exc)
            if code:
                subsegment.put_annotation("sqlstate", code)
        raise
    finally:
        if subsegment is not None:
            recorder.end_subsegment()
