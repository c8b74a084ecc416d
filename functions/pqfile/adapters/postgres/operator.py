"""The admin function's database side (pqfile.usecases.admin.OperatorBackend): each
command on the connection of the role it needs, ``pqfile_admin_function`` for changes and
the function's own audit rows, ``pqfile_auditor`` for reads (docs/KEYS.md, "Roles and
grants", "The admin function's actor"). Before acting for a verified principal the admin
session binds it (``admin_begin``, migration 0018): the database then names it as the
actor of every audit row the session writes. The answers are the JSON the direct CLI path
prints with ``--json`` (pqfile.cli.keys, access, audit).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pqfile.adapters.kms import UnconfiguredSeedProtector
from pqfile.adapters.postgres.access import (
    PostgresAccessRules,
    PostgresRecipientKeys,
    recipient_change_dict,
    recipient_entry_dict,
)
from pqfile.adapters.postgres.audit import PostgresAuditLog
from pqfile.adapters.postgres.connection import Database
from pqfile.adapters.postgres.keystore import PostgresKeyStore
from pqfile.config import ShredSettings
from pqfile.errors import PQFileError
from pqfile.keys.audit_chain import (
    MAX_REQUEST_ID_CHARS,
    bounded_details,
    bounded_text,
    canonical_details,
)
from pqfile.keys.model import KeyStatus, RequestKind
from pqfile.keys.policy import PoolPolicy
from pqfile.keys.rotation_runs import check_suite_move
from pqfile.ports import AccessOperation, AccessRule
from pqfile.usecases.admin import OP_ADMIN, AdminRequest

DEFAULT_POLICY = PoolPolicy()


def json_ready(value: Any) -> Any:
    """What ``print_json`` would print, as JSON values (datetimes and the like as str)."""
    return json.loads(json.dumps(value, default=str))  # keeps the order the CLI prints


def json_object(value: Any) -> dict[str, Any]:
    result = json_ready(value)
    assert isinstance(result, dict)
    return result


def rule_dict(r: AccessRule) -> dict[str, Any]:
    """One access rule as ``pqfile access list --json`` prints it."""
    return {"rule_id": r.rule_id, "principal": r.principal, "tenant": r.tenant,
            "document_id": r.document_id, "operation": r.operation,
            "created_by": r.created_by, "created_at": r.created_at.isoformat()}  # fmt: skip


def policy_from(args: Mapping[str, Any], base: PoolPolicy = DEFAULT_POLICY) -> PoolPolicy:
    """The deployment's pool policy (``base``), with what the request overrides."""
    target = int(args.get("target", base.target_active))
    return dataclasses.replace(
        base,
        target_active=target,
        floor_active=min(int(args.get("floor", base.floor_active)), target),
        max_age=dt.timedelta(days=float(args["max_age_days"])) if "max_age_days" in args
        else base.max_age,
    )  # fmt: skip


_AUDIT_SQL = (
    "SELECT admin_audit(:operation, :outcome, :principal, :key_id, :request_id, :details)"
)


class PostgresOperatorBackend:
    """Two connection handles, opened on first use: the admin role's and the auditor's."""

    def __init__(
        self, admin: Callable[[], Database], auditor: Callable[[], Database],
        policy: PoolPolicy = DEFAULT_POLICY, kept_suites: Sequence[str] | None = None,
    ) -> None:  # fmt: skip
        self._open = {"admin": admin, "auditor": auditor}
        #: The deployment's pool policy (PQFILE_POOL_*): `keys status` judges its floor.
        self.policy = policy
        #: The suites the deployment keeps at its target (PoolSettings.suites).
        self.kept_suites = kept_suites
        self._dbs: dict[str, Database] = {}

    def _db(self, role: str) -> Database:
        if role not in self._dbs:
            self._dbs[role] = self._open[role]()
        return self._dbs[role]

    def operate_rules(self) -> list[AccessRule]:
        rules = PostgresAccessRules(self._db("auditor")).list()
        return [r for r in rules if r.operation == AccessOperation.OPERATE.value]

    def begin(self, principal: str, request_id: str | None) -> None:
        self._db("admin").run("SELECT admin_begin(:p, :r)", p=principal,
                              r=bounded_text(request_id, MAX_REQUEST_ID_CHARS))  # fmt: skip

    def end(self) -> None:
        self._db("admin").run("SELECT admin_end()")

    def audit(
        self, outcome: str, *, actor: str | None, request_id: str | None,
        details: Mapping[str, Any], operation: str = OP_ADMIN,
    ) -> None:  # fmt: skip
        # Refused: the principal (or None before a proof was verified); otherwise the
        # principal bound by begin(), which the database checks.
        self._db("admin").run(
            _AUDIT_SQL, operation=operation, outcome=outcome,
            principal=None if actor is None else actor[:1000], key_id=None,
            request_id=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
            details=canonical_details(bounded_details(dict(details))),
        )  # fmt: skip

    def run(self, request: AdminRequest, *, actor: str, request_id: str | None) -> dict[str, Any]:
        db = self._db(request.role)
        args = request.args
        name = request.command
        if name == "keys.status":
            store = self._store(db, args, actor)
            return json_object(store.status_summary(kept_suites=self.kept_suites))
        if name == "keys.rotate":
            return json_object(self._rotate_plan(db, args, actor))
        if name == "keys.rotate.start":
            return json_object(self._rotate_start(db, args, actor, request_id))
        if name == "keys.rotate.follow":
            from pqfile.adapters.postgres.keys import rotation_overview

            ids = sorted({int(i) for i in args.get("run_ids", [])})  # type: ignore[attr-defined]
            return json_object({"open_runs": rotation_overview(db),
                                "runs": rotation_overview(db, ids) if ids else []})  # fmt: skip
        if name == "keys.revoke":
            return json_object(self._revoke(db, args, actor, request_id))
        if name == "keys.request":
            kind = str(args.get("kind", RequestKind.REVOKE.value))
            rid = self._store(db, args, actor).request(
                str(args["key_id"]), kind, str(args["reason"]), request_id=request_id
            )
            return {"request": rid, "key_id": args["key_id"], "kind": kind, "status": "pending"}
        if name == "access.list":
            return {"rules": [rule_dict(r) for r in PostgresAccessRules(db).list()]}
        if name.startswith("access.recipient_") or "recipient_public_key" in args:
            return self._recipients(db, args, name, actor, request_id)
        if name in ("access.grant", "access.revoke"):
            rules = PostgresAccessRules(db)
            change = rules.grant if name == "access.grant" else rules.revoke
            operation = str(args.get("operation", AccessOperation.RETRIEVE.value))
            rule_id = change(
                str(args["principal"]),
                tenant=_opt(args, "tenant"),
                document_id=_opt(args, "document_id"),
                operation=AccessOperation(operation),
                actor=actor,
                request_id=request_id,
            )
            return {"rule_id": rule_id,
                    "result": "granted" if name == "access.grant" else "revoked",
                    "principal": args["principal"], "tenant": _opt(args, "tenant"),
                    "document_id": _opt(args, "document_id"), "operation": operation}  # fmt: skip
        if name == "audit.verify":
            anchors = {}
            for item in args.get("anchors", []):  # type: ignore[attr-defined]
                seq, _, digest = str(item).partition(":")
                anchors[int(seq)] = bytes.fromhex(digest)
            return json_object(PostgresAuditLog(db).verify_chain(anchors=anchors).as_dict())
        if name == "audit.tail":
            limit = int(args.get("limit", 20))  # type: ignore[call-overload]
            return {"rows": json_ready(list(PostgresAuditLog(db).tail(limit)))}
        if name == "audit.prove":
            row_seq, size = args["seq"], args.get("tree_size")  # ints (admin.COMMANDS checks)
            assert isinstance(row_seq, int) and (size is None or isinstance(size, int))
            receipt = PostgresAuditLog(db).inclusion(row_seq, size)
            return json_object(receipt.as_dict())
        if name == "audit.report":
            from pqfile.adapters.postgres.audit_report import ADMIN_MAX_LISTED, read_report
            from pqfile.usecases.audit_report import parse_bound

            return read_report(db, since=parse_bound(str(args["since"])),
                               until=parse_bound(str(args["until"])),
                               max_listed=ADMIN_MAX_LISTED).as_dict()  # fmt: skip
        raise PQFileError(f"no handler for {name}")  # unreachable: COMMANDS is the whitelist

    def _recipients(
        self, db: Database, args: Mapping[str, Any], name: str, actor: str,
        request_id: str | None,
    ) -> dict[str, Any]:  # fmt: skip
        """Readers' recipient keys (0020): the answers `pqfile access recipient ...` and
        `access grant --recipient` print with --json on the direct path."""
        from pqfile.usecases.recipients import recipient_key_from_pem

        keys = PostgresRecipientKeys(db)
        principal = str(args.get("principal", ""))
        if name == "access.recipient_list":
            listed = keys.list(include_revoked=bool(args.get("include_revoked", False)))
            return {"recipients": [recipient_entry_dict(e) for e in listed]}
        if name == "access.recipient_revoke":
            recipient_id = keys.revoke(principal, actor=actor, request_id=request_id)
            return {"recipient_id": recipient_id, "result": "revoked", "principal": principal}
        allow_weaker = bool(args.get("allow_weaker", False))
        if name == "access.recipient_add":
            key = recipient_key_from_pem(str(args["public_key"]))
            change = keys.register(principal, key, allow_weaker=allow_weaker, actor=actor,
                                   request_id=request_id)  # fmt: skip
            return recipient_change_dict(change)
        # access.grant with the reader's key: both in one transaction
        key = recipient_key_from_pem(str(args["recipient_public_key"]))
        rule_id, change = keys.grant_with_key(
            principal, key, tenant=_opt(args, "tenant"), document_id=_opt(args, "document_id"),
            allow_weaker=allow_weaker, actor=actor, request_id=request_id,
        )  # fmt: skip
        return {"rule_id": rule_id, "result": "granted", "principal": principal,
                "tenant": _opt(args, "tenant"), "document_id": _opt(args, "document_id"),
                "operation": AccessOperation.RETRIEVE.value,
                "recipient": recipient_change_dict(change)}  # fmt: skip

    def _store(self, db: Database, args: Mapping[str, Any], actor: str) -> PostgresKeyStore:
        # No KMS: none of the admin commands wraps, unwraps or attests a seed.
        return PostgresKeyStore(db, UnconfiguredSeedProtector(), attestor=None,
                                policy=policy_from(args, self.policy), actor=actor)  # fmt: skip

    def _rotate_start(
        self, db: Database, args: Mapping[str, Any], actor: str, request_id: str | None
    ) -> dict[str, Any]:
        """Queue the plan as `pqfile keys rotate` does (rotation_queue, then the run's
        target); the workflow is started by the use case."""
        from pqfile.adapters.postgres.keys import PostgresKeyRepository, rotation_overview

        report = self._rotate_plan(db, args, actor)
        to_suite = report["to_suite"]
        keys = PostgresKeyRepository(db)
        run_ids = {int(r["rotation_id"]) for r in report["open_runs"]}
        for item in report["queue"]:
            run_id = keys.queue_rotation_now(item["key_id"], item["reason"], to_suite=to_suite,
                                             actor=actor, request_id=request_id)  # fmt: skip
            run_ids.add(run_id)
            if to_suite and rotation_overview(db, [run_id])[0]["status"] == "queued":
                keys.set_rotation_target(run_id, to_suite,
                                         allow_downgrade=report["allow_downgrade"],
                                         actor=actor, request_id=request_id)  # fmt: skip
        return {**report, "dry_run": False, "queued": [i["key_id"] for i in report["queue"]],
                "run_ids": sorted(run_ids)}  # fmt: skip

    def _rotate_plan(self, db: Database, args: Mapping[str, Any], actor: str) -> dict[str, Any]:
        from pqfile.adapters.postgres.keys import rotation_overview

        store = self._store(db, args, actor)
        to_suite = _opt(args, "to_suite")
        allow = bool(args.get("allow_downgrade", False))
        if allow and not to_suite:
            raise PQFileError("--allow-downgrade needs --to-suite")
        now = store.storage.keys.now()
        if args.get("key"):
            key = store.get_key(str(args["key"]))
            if key.status not in (KeyStatus.ACTIVE, KeyStatus.ROTATION_QUEUED):
                raise PQFileError(f"key {key.key_id} is {key.status.value}: nothing to rotate")
            reason = store.policy.rotation_reason(key, now)
            plan = [{"key_id": key.key_id, "suite": key.suite,
                     "reason": reason.value if reason else "operator"}]  # fmt: skip
        else:
            due = store.policy.due_for_rotation(store.list_keys(status=KeyStatus.ACTIVE), now)
            plan = [{"key_id": k.key_id, "suite": k.suite, "reason": r.value} for k, r in due]
        if to_suite:
            for item in plan:
                check_suite_move(item["suite"], to_suite, allow_downgrade=allow)
        pending = store.storage.keys.pending_requests()

        def of(kind: RequestKind) -> list[dict[str, Any]]:
            return [{"request": r.request_id, "key_id": r.key_id, "reason": r.reason}
                    for r in pending if r.kind == kind.value]  # fmt: skip

        return {"dry_run": True, "to_suite": to_suite, "allow_downgrade": allow,
                "queue": plan, "open_runs": rotation_overview(db),
                "pending_shreds": of(RequestKind.SHRED),
                "pending_compromises": of(RequestKind.COMPROMISE)}  # fmt: skip

    def _revoke(
        self, db: Database, args: Mapping[str, Any], actor: str, request_id: str | None
    ) -> dict[str, Any]:
        from pqfile.adapters.postgres.documents import list_documents

        store = self._store(db, args, actor)
        key_id, reason = str(args["key_id"]), str(args["reason"])
        mode = str(args.get("mode", "pending"))
        if args.get("yes_destroy_documents") and mode != "shred":
            raise PQFileError("--yes-destroy-documents confirms --shred only")
        if mode == "now":
            record = store.revoke(key_id, reason, request_id=request_id)
            return {"key_id": record.key_id, "suite": record.suite,
                    "status": record.status.value, "revoked_at": record.revoked_at}  # fmt: skip
        if mode == "shred":
            key = store.get_key(key_id)
            doomed = [d for d in list_documents(db, key_id=key.key_id, limit=1_000_000)
                      if d.status in ("stored", "encrypted")]  # fmt: skip
            if not args.get("yes_destroy_documents"):
                # The same refusal as the CLI's: nothing recorded without the confirmation.
                raise PQFileError(
                    f"--shred destroys key {key.key_id} and its {len(doomed)} document(s) "
                    "for good: add --yes-destroy-documents"
                )
            request = store.request(key.key_id, RequestKind.SHRED, reason,
                                    request_id=request_id)  # fmt: skip
            retention = ShredSettings.from_env().backup_retention_days
            complete = store.storage.keys.now() + dt.timedelta(days=retention)
            return {"request": request, "key_id": key.key_id, "kind": "shred",
                    "status": "pending",
                    "documents_to_lose": [{"document_id": d.document_id, "tenant": d.tenant}
                                          for d in doomed],
                    "backup_retention_days": retention,
                    "complete_at_earliest": complete.isoformat()}  # fmt: skip
        kind = RequestKind.COMPROMISE if mode == "compromised" else RequestKind.REVOKE
        request = store.request(key_id, kind, reason, request_id=request_id)
        left = len(store.documents_on_key(key_id, limit=1_000_000))
        compromise = kind is RequestKind.COMPROMISE
        counted = "documents_to_reencrypt" if compromise else "documents_to_rewrap"
        return {"request": request, "key_id": key_id, "kind": kind.value, "status": "pending",
                counted: left}  # fmt: skip


def _opt(args: Mapping[str, Any], name: str) -> str | None:
    value = args.get(name)
    return None if value is None else str(value)
