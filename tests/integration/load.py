"""Many uploads at once on a pipeline stack (tests/integration/pipeline_stack.py): the
driver shared by tests/integration/test_load.py and scripts/bench_load.py.

``run_load`` puts ``count`` documents under one fresh tenant folder, ``in_flight`` PutObject
calls at a time, waits (bounded) until each is stored or its execution ended, and reads what
is left behind: executions by status, plaintext versions left under the folder, packages per
document, documents per upload, audit rows per document and rows outside any document
(the stray ``key.pool_maintained`` rows of issue 16), and the audit chain verified as
pqfile_auditor. ``schedule_probe`` puts a schedule rule in front of a Pass state machine,
as Terraform's rotate-keys schedule is: any execution of it during the load is an event
delivered to a schedule rule, which AWS never does.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.fixtures.postgres import AUDITOR, role_url
from tests.integration.pipeline_stack import PipelineStack

#: The audit rows one stored upload writes, by (operation, outcome).
EXPECTED_ROWS_PER_DOCUMENT = {("document.encrypt", "success"): 1}


@dataclass
class ScheduleProbe:
    """A scheduled rule (``rate(1 hour)``, no event pattern) targeting a Pass machine."""

    stack: PipelineStack
    rule: str
    state_machine_arn: str

    def executions(self) -> int:
        sfn = self.stack.client("stepfunctions")
        pages = sfn.get_paginator("list_executions").paginate(
            stateMachineArn=self.state_machine_arn
        )
        return sum(len(p["executions"]) for p in pages)

    def remove(self) -> None:
        events = self.stack.client("events")
        events.remove_targets(Rule=self.rule, Ids=["rotate"])
        events.delete_rule(Name=self.rule)


def schedule_probe(stack: PipelineStack, role_arn: str) -> ScheduleProbe:
    suffix = uuid.uuid4().hex[:8]
    definition = {"StartAt": "Nothing", "States": {"Nothing": {"Type": "Pass", "End": True}}}
    arn = stack.client("stepfunctions").create_state_machine(
        name=f"pqfile-rotate-keys-probe-{suffix}",
        definition=json.dumps(definition),
        roleArn=role_arn,
    )["stateMachineArn"]
    rule = f"pqfile-rotate-keys-schedule-{suffix}"
    events = stack.client("events")
    events.put_rule(Name=rule, ScheduleExpression="rate(1 hour)", State="ENABLED")
    events.put_targets(Rule=rule, Targets=[{"Id": "rotate", "Arn": arn, "RoleArn": role_arn}])
    return ScheduleProbe(stack, rule, arn)


@dataclass
class LoadResult:
    count: int
    in_flight: int
    size: int
    seconds: float
    stored: int
    latencies_s: list[float]
    executions: Counter[str]
    plaintext_left: int
    duplicate_packages: int
    duplicate_documents: int
    rows_per_document: Counter[tuple[tuple[str, str], ...]]
    rows_outside_documents: Counter[tuple[str, str]]
    chain_ok: bool
    chain_rows: int
    missing: list[str] = field(default_factory=list)
    #: From the first PutObject to the last document stored (the run's ``seconds`` also
    #: waits, up to the timeout, for documents that never get stored).
    drain_s: float = 0.0

    @property
    def documents_per_s(self) -> float:
        """Documents stored per second, from the first PutObject to the last one stored."""
        span = self.drain_s or self.seconds
        return self.stored / span if span else 0.0

    @property
    def failed_executions(self) -> int:
        return sum(n for s, n in self.executions.items() if s != "SUCCEEDED")

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "in_flight": self.in_flight,
            "size": self.size,
            "seconds": round(self.seconds, 2),
            "drain_s": round(self.drain_s, 2),
            "stored": self.stored,
            "documents_per_s": round(self.documents_per_s, 2),
            "latency_p50_s": round(self.percentile(0.5), 2),
            "latency_p95_s": round(self.percentile(0.95), 2),
            "executions": dict(self.executions),
            "plaintext_left": self.plaintext_left,
            "duplicate_packages": self.duplicate_packages,
            "duplicate_documents": self.duplicate_documents,
            "rows_per_document": {
                " + ".join(f"{o}/{r}" for o, r in k) or "(none)": n
                for k, n in self.rows_per_document.items()
            },
            "rows_outside_documents": {
                f"{o}/{r}": n for (o, r), n in self.rows_outside_documents.items()
            },
            "chain_ok": self.chain_ok,
            "chain_rows": self.chain_rows,
            "missing": self.missing[:10],
        }


def run_load(
    stack: PipelineStack,
    *,
    count: int = 200,
    in_flight: int = 16,
    size: int = 64 * 1024,
    timeout: float = 600.0,
) -> LoadResult:
    """``count`` uploads of ``size`` random bytes, ``in_flight`` at a time; bounded by
    ``timeout`` seconds in all (documents not stored by then are reported missing)."""
    tenant = f"load{uuid.uuid4().hex[:8]}"
    prefix = f"uploads/{tenant}/"
    s3 = stack.client("s3")
    seq_before = _audit_seq(stack)
    started_at: dict[str, float] = {}

    def put(i: int) -> str:
        key = f"{prefix}doc-{i:05d}.bin"
        started_at[key] = time.time()
        s3.put_object(Bucket=stack.uploads, Key=key, Body=os.urandom(size))
        return key

    t0 = time.monotonic()
    deadline = t0 + timeout
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        keys = list(pool.map(put, range(count)))
    stored_at: dict[str, float] = {}
    ended: set[str] = set()
    while time.monotonic() < deadline:
        for key, at in _stored(stack, prefix).items():
            stored_at.setdefault(key, at)
        if len(stored_at) >= count:
            break
        ended = _failed_sources(stack, prefix)
        if len(stored_at) + len(ended - set(stored_at)) >= count:
            break
        time.sleep(0.25)
    seconds = time.monotonic() - t0
    # Executions finish after StoreDocument (the audit step): wait for them, still bounded.
    executions = _executions(stack, prefix, count, deadline)

    latencies = [stored_at[k] - started_at[k] for k in keys if k in stored_at]
    documents = stack.sql(
        "SELECT document_id, source_key FROM documents WHERE source_key LIKE :p",
        p=prefix + "%",
    )
    per_source = Counter(str(r[1]) for r in documents)
    doc_ids = {str(r[0]) for r in documents}
    package_keys = {
        str(r[0])
        for r in stack.sql(
            "SELECT encrypted_key FROM documents WHERE source_key LIKE :p", p=prefix + "%"
        )
        if r[0]
    }
    packages = Counter(
        v["Key"]
        for v in _all_versions(stack, stack.encrypted, "encrypted/")
        if v["Key"] in package_keys
    )
    audit = stack.sql(
        "SELECT document_id, operation, outcome FROM access_logs WHERE seq > :s ORDER BY seq",
        s=seq_before,
    )
    by_doc: dict[str, list[tuple[str, str]]] = {d: [] for d in doc_ids}
    outside: Counter[tuple[str, str]] = Counter()
    for document_id, operation, outcome in audit:
        if document_id in by_doc:
            by_doc[str(document_id)].append((str(operation), str(outcome)))
        else:
            outside[(str(operation), str(outcome))] += 1
    rows_per_document: Counter[tuple[tuple[str, str], ...]] = Counter(
        tuple(sorted(v)) for v in by_doc.values()
    )
    chain = _verify_chain(stack)
    return LoadResult(
        count=count,
        in_flight=in_flight,
        size=size,
        seconds=seconds,
        stored=len(stored_at),
        latencies_s=latencies,
        executions=executions,
        plaintext_left=len(_all_versions(stack, stack.uploads, prefix)),
        duplicate_packages=sum(n - 1 for n in packages.values() if n > 1),
        duplicate_documents=sum(n - 1 for n in per_source.values() if n > 1),
        rows_per_document=rows_per_document,
        rows_outside_documents=outside,
        chain_ok=bool(chain["ok"]),
        chain_rows=int(chain.get("rows", 0) or 0),
        missing=sorted(set(keys) - set(stored_at)),
        drain_s=(max(stored_at.values()) - min(started_at.values())) if stored_at else 0.0,
    )


def summary_line(result: LoadResult) -> str:
    return (
        f"{result.stored}/{result.count} stored, the last {result.drain_s:.1f} s after the "
        f"first upload (run {result.seconds:.1f} s) "
        f"({result.documents_per_s:.2f} documents/s); upload-to-stored p50 "
        f"{result.percentile(0.5):.2f} s, p95 {result.percentile(0.95):.2f} s; executions "
        f"{dict(result.executions)}; plaintext left {result.plaintext_left}; duplicate "
        f"packages {result.duplicate_packages}; audit rows per document "
        f"{dict(result.as_dict()['rows_per_document'])}; outside documents "
        f"{dict(result.as_dict()['rows_outside_documents'])}; chain "
        f"{'OK' if result.chain_ok else 'BROKEN'} over {result.chain_rows} rows"
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- reads ------------------------------------------------------------------------------------


def _audit_seq(stack: PipelineStack) -> int:
    rows = stack.sql("SELECT coalesce(max(seq), 0) FROM access_logs")
    return int(rows[0][0])


def _stored(stack: PipelineStack, prefix: str) -> dict[str, float]:
    rows = stack.sql(
        "SELECT source_key, EXTRACT(EPOCH FROM stored_at) FROM documents "
        "WHERE source_key LIKE :p AND status = 'stored' AND stored_at IS NOT NULL",
        p=prefix + "%",
    )
    return {str(k): float(at) for k, at in rows}


def _failed_sources(stack: PipelineStack, prefix: str) -> set[str]:
    rows = stack.sql(
        "SELECT source_key FROM documents WHERE source_key LIKE :p AND status = 'failed'",
        p=prefix + "%",
    )
    return {str(r[0]) for r in rows}


def _executions(stack: PipelineStack, prefix: str, count: int, deadline: float) -> Counter[str]:
    """Statuses of the ingest executions started for uploads under ``prefix``."""
    sfn = stack.client("stepfunctions")
    while True:
        statuses: Counter[str] = Counter()
        pages = sfn.get_paginator("list_executions").paginate(
            stateMachineArn=stack.state_machine_arn
        )
        for page in pages:
            for e in page["executions"]:
                desc = sfn.describe_execution(executionArn=e["executionArn"])
                obj = json.loads(desc.get("input") or "{}").get("detail", {}).get("object", {})
                if str(obj.get("key", "")).startswith(prefix):
                    statuses[str(desc["status"])] += 1
        if statuses.get("RUNNING", 0) == 0 and sum(statuses.values()) >= count:
            return statuses
        if time.monotonic() > deadline:
            return statuses
        time.sleep(0.5)


def _all_versions(stack: PipelineStack, bucket: str, prefix: str) -> list[dict[str, Any]]:
    s3 = stack.client("s3")
    out: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        out += [v for v in page.get("Versions", []) if v["Key"].startswith(prefix)]
    return out


def _verify_chain(stack: PipelineStack) -> dict[str, Any]:
    from pqfile.adapters.postgres import Database, PostgresAuditLog

    db = Database.from_url(role_url(stack.db_url, AUDITOR))
    try:
        return dict(PostgresAuditLog(db).verify_chain().as_dict())
    finally:
        db.close()
