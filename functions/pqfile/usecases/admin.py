"""Admin: operator commands (``pqfile keys``, ``access``, ``audit``) through a function, for
a deployed stack whose database sits in private subnets (docs/OPERATIONS.md, "Operator
commands on AWS").

Payload: ``{"command": "keys.status", "args": {...}, "identity_proof": {...}}``. The proof
is the one retrieve takes (pqfile.auth; docs/CONTRACTS.md, "Caller identity proofs"),
made for the canonical admin request (:func:`admin_request_sha256`: ``command`` and
``args`` only), so a proof made for one command (or for a retrieve) is refused for any
other. Order: the request's caps and canonical hash, the proof (one STS round trip,
nothing read before), the command and its arguments (whitelisted, strictly typed), the
operator rule (deny by default), then the command. Every request is audited
(``admin.command``: refused with its reason, or success/failure), with the verified
principal named in the row.

Who may: an ``operate`` access rule whose principal (pattern) matches the verified caller
(sql/migrations/0011). Operator commands act on the whole deployment (keys serve every
tenant), so the rule's tenant or document only records the scope it was granted for; any
matching ``operate`` rule admits. ``audit verify`` and ``audit tail`` need an ``operate``
rule too: 0011 knows no auditor operation, and an audit reader sees every actor and
document id, which is an operator's view (docs/KEYS.md, "Roles and grants").

Which database role runs a command: read-only commands (``keys.status``, ``access.list``,
``access.recipient_list``, ``audit.verify``, ``audit.tail``, ``audit.prove``,
``audit.report``, ``keys.rotate`` with ``dry_run``) as ``pqfile_auditor``;
changes as the function's own ``pqfile_admin_function`` (:data:`COMMANDS`). Once the
caller is authorized, the backend binds the verified principal to its admin session
(:meth:`OperatorBackend.begin`): from then on the database names that principal as the
actor of every audit row the request writes, the command's own rows included
(sql/migrations/0018; docs/KEYS.md, "The admin function's actor").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pqfile.auth import PROOF_FIELD, IdentityProofError, ProofRefusal
from pqfile.errors import InvalidEventError, PQFileError, TransientError
from pqfile.ports import AccessOperation, AccessRule, CallerIdentityVerifier, EventPublisher
from pqfile.usecases import admin_args as arg
from pqfile.usecases.admin_args import (
    MAX_PRINCIPAL,
    InvalidArgument,
)
from pqfile.usecases.notices import RevocationMode, announce, key_revoked

#: The audit operation of every admin request.
OP_ADMIN = "admin.command"
#: Audited when `keys rotate` starts (or fails to start) the rotate-keys workflow.
OP_WORKFLOW_STARTED = "key.rotation_workflow_started"
#: Top-level payload fields; anything else is refused.
PAYLOAD_FIELDS = frozenset(("command", "args", PROOF_FIELD))
#: The one answer to a caller without an operator rule.
NOT_ALLOWED_MESSAGE = "not allowed: this command needs an operate access rule"
MAX_TAIL = 1000

DbRole = Literal["admin", "auditor"]


class AdminRefusedError(PQFileError):
    """The verified caller has no ``operate`` rule (deny by default)."""


@dataclass(frozen=True)
class Command:
    """One whitelisted command: the database role it runs as and its arguments."""

    role: DbRole
    required: Mapping[str, Callable[[str, object], object]]
    optional: Mapping[str, Callable[[str, object], object]]


_RULE_ARGS: dict[str, Callable[[str, object], object]] = {
    "principal": arg.text(MAX_PRINCIPAL),
}
_RULE_OPTIONAL: dict[str, Callable[[str, object], object]] = {
    "tenant": arg.text(63),
    "document_id": arg.text(128),
    "operation": arg.choice(*(op.value for op in AccessOperation)),
}
_GRANT_RECIPIENT: dict[str, Callable[[str, object], object]] = {
    "recipient_public_key": arg.public_key_pem,
    "allow_weaker": arg.flag,
}
_POLICY: dict[str, Callable[[str, object], object]] = {
    "target": arg.int_range(1, 10_000),
    "floor": arg.int_range(0, 10_000),
    "max_age_days": arg.int_range(1, 3650),
}

_ROTATE_ARGS: dict[str, Callable[[str, object], object]] = {
    "key": arg.key_id,
    "to_suite": arg.choice("mlkem768", "xwing", "mlkem1024"),
    "allow_downgrade": arg.flag,
    **_POLICY,
}

#: Every command the admin function runs, the role it connects as, and its arguments.
COMMANDS: Mapping[str, Command] = {
    "keys.status": Command("auditor", {}, _POLICY),
    "keys.revoke": Command(
        "admin",
        {"key_id": arg.key_id, "reason": arg.text()},
        {
            "mode": arg.choice("pending", "now", "compromised", "shred"),
            "yes_destroy_documents": arg.flag,
        },
    ),
    "keys.request": Command(
        "admin",
        {"key_id": arg.key_id, "reason": arg.text()},
        {"kind": arg.choice("revoke", "compromise", "shred")},
    ),
    # The plan only (``--dry-run``), read-only.
    "keys.rotate": Command("auditor", {"dry_run": arg.choice(True)}, _ROTATE_ARGS),
    # Queue the plan and start rotate-keys (audited ``key.rotation_workflow_started``).
    "keys.rotate.start": Command("admin", {}, _ROTATE_ARGS),
    # One look at that execution and its runs, read-only (the CLI follows it with these).
    "keys.rotate.follow": Command(
        "auditor", {"execution_arn": arg.execution_arn}, {"run_ids": arg.run_ids}
    ),
    # With ``recipient_public_key``: the rule and the reader's key in one transaction.
    "access.grant": Command("admin", _RULE_ARGS, {**_RULE_OPTIONAL, **_GRANT_RECIPIENT}),
    "access.revoke": Command("admin", _RULE_ARGS, _RULE_OPTIONAL),
    "access.list": Command("auditor", {}, {}),
    # Readers' recipient keys for sealed retrieval (sql/migrations/0020).
    "access.recipient_add": Command(
        "admin",
        {"principal": arg.recipient_principal, "public_key": arg.public_key_pem},
        {"allow_weaker": arg.flag},
    ),
    "access.recipient_revoke": Command("admin", {"principal": arg.recipient_principal}, {}),
    "access.recipient_list": Command("auditor", {}, {"include_revoked": arg.flag}),
    "audit.verify": Command("auditor", {}, {"anchors": arg.anchors}),
    "audit.tail": Command("auditor", {}, {"limit": arg.int_range(0, MAX_TAIL)}),
    # A row's inclusion proof (pqfile audit prove): the row and sibling hashes only.
    "audit.prove": Command(
        "auditor", {"seq": arg.int_range(1, 2**63 - 1)}, {"tree_size": arg.int_range(1, 2**63 - 1)}
    ),
    "audit.report": Command("auditor", {"since": arg.moment, "until": arg.moment}, {}),
}


@dataclass(frozen=True)
class AdminRequest:
    command: str
    args: Mapping[str, object]

    @property
    def role(self) -> DbRole:
        return COMMANDS[self.command].role

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> AdminRequest:
        """Validate the command and its arguments (InvalidEventError naming the field)."""
        command = payload.get("command")
        if not isinstance(command, str) or command not in COMMANDS:
            raise InvalidEventError(f"unknown command (one of: {', '.join(sorted(COMMANDS))})")
        raw = payload.get("args", {})
        if not isinstance(raw, Mapping):
            raise InvalidEventError("args must be an object")
        spec = COMMANDS[command]
        known = spec.required.keys() | spec.optional.keys()
        unknown = sorted(str(n)[:64] for n in raw if n not in known)
        if unknown:
            raise InvalidEventError(f"unknown argument(s) of {command}: {', '.join(unknown[:5])}")
        args: dict[str, object] = {}
        for name, check in spec.required.items():
            if raw.get(name) is None:
                raise InvalidEventError(f"{command} needs args.{name}")
            args[name] = check(name, raw[name])
        for name, check in spec.optional.items():
            if raw.get(name) is not None:
                args[name] = check(name, raw[name])
        if command in ("access.grant", "access.revoke"):
            if (args.get("tenant") is None) == (args.get("document_id") is None):
                raise InvalidEventError(f"{command} needs args.tenant or args.document_id")
        if command == "access.grant" and "recipient_public_key" in args:
            if args.get("operation", AccessOperation.RETRIEVE.value) != "retrieve":
                raise InvalidArgument("args.recipient_public_key goes with a retrieve rule")
            arg.recipient_principal("principal", args["principal"])
        elif "allow_weaker" in args and command == "access.grant":
            raise InvalidArgument("args.allow_weaker goes with args.recipient_public_key")
        return cls(command, args)


def canonical_admin_request(payload: Mapping[str, Any]) -> bytes:
    """The bytes an admin proof's ``x-pqfile-request-sha256`` covers: ``{"args", "command"}``
    as JSON, keys sorted, no whitespace, UTF-8 (the scheme of pqfile.auth.canonical). A
    retrieve request never has these fields, so no proof serves both functions."""
    if not isinstance(payload, Mapping):
        raise InvalidEventError("the payload is not a JSON object")
    fields = {"command": payload.get("command"), "args": payload.get("args") or {}}
    try:
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)  # fmt: skip
    except (TypeError, ValueError):
        raise InvalidEventError("the request holds values JSON cannot carry") from None
    if len(text) > 16 * 1024:
        raise InvalidEventError("the request is larger than 16 KiB")
    return text.encode("utf-8")


def admin_request_sha256(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_admin_request(payload)).hexdigest()


def principal_matches(pattern: str, principal: str) -> bool:
    """``access_like_pattern`` of 0011 in Python: ``*`` is any characters, nothing else is
    a wildcard, the whole ARN must match."""
    if len(principal) > MAX_PRINCIPAL:
        return False
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, principal, flags=re.DOTALL) is not None


class OperatorBackend(Protocol):
    """What the admin function needs from the database (adapters/postgres/operator.py)."""

    def operate_rules(self) -> list[AccessRule]:
        """Every ``operate`` rule (read as pqfile_auditor)."""
        ...

    def begin(self, principal: str, request_id: str | None) -> None:
        """Bind the verified, authorized principal: the actor of every row from now on."""
        ...

    def end(self) -> None:
        """Drop the binding (the request is done)."""
        ...

    def run(self, request: AdminRequest, *, actor: str, request_id: str | None) -> dict[str, Any]:
        """Run one validated command as its role; the answer is JSON-ready."""
        ...

    def audit(
        self,
        outcome: str,
        *,
        actor: str | None,
        request_id: str | None,
        details: Mapping[str, Any],
        operation: str = OP_ADMIN,
    ) -> None:
        """Append one ``admin.command`` row (or ``key.rotation_workflow_started``)."""
        ...


class RotationWorkflow(Protocol):
    """The rotate-keys state machine (adapters/stepfunctions.StepFunctionsWorkflow)."""

    state_machine_arn: str

    def start(self, name: str, payload: dict[str, Any]) -> str: ...

    def describe(self, execution_arn: str) -> Any: ...


@dataclass(frozen=True)
class Admin:
    backend: OperatorBackend
    identity: CallerIdentityVerifier
    #: `PQFile Key Revoked` for ``keys.revoke`` with ``mode: now`` (as the direct path).
    events: EventPublisher | None = None
    #: rotate-keys, for ``keys.rotate.start`` / ``keys.rotate.follow``; None: refused.
    rotation: RotationWorkflow | None = None


def admin(a: Admin, payload: Any, *, request_id: str | None = None) -> dict[str, Any]:
    """Verify, validate, authorize, run, audit (module docstring). Refusals are audited and
    raised: IdentityProofError, InvalidEventError, AdminRefusedError."""
    try:
        if not isinstance(payload, Mapping):
            raise InvalidEventError("the payload is not a JSON object")
        unknown = sorted(str(n)[:64] for n in payload if n not in PAYLOAD_FIELDS)
        if unknown:
            raise InvalidEventError(f"unknown payload field(s): {', '.join(unknown[:5])}")
        request_sha256 = admin_request_sha256(payload)
        caller = a.identity.verify(payload.get(PROOF_FIELD), request_sha256=request_sha256)
    except IdentityProofError as exc:
        a.backend.audit("refused", actor=None, request_id=request_id,
                        details={"reason": exc.reason.value})  # fmt: skip
        if exc.reason is ProofRefusal.STS_UNAVAILABLE:
            raise TransientError("identity could not be verified: STS unavailable") from None
        raise
    except InvalidEventError as exc:
        refusal = {"reason": "invalid_request", "message": str(exc)[:200]}
        a.backend.audit("refused", actor=None, request_id=request_id, details=refusal)
        raise
    principal = caller.principal_arn
    details: dict[str, Any] = {**caller.audit_details(), "principal": principal}
    try:
        request = AdminRequest.from_payload(payload)
    except InvalidEventError as exc:
        a.backend.audit("refused", actor=principal, request_id=request_id,
                        details={**details, "reason": "invalid_request",
                                 "message": str(exc)[:200]})  # fmt: skip
        raise
    details["command"] = request.command
    rules = a.backend.operate_rules()
    if not any(
        r.operation == AccessOperation.OPERATE.value and principal_matches(r.principal, principal)
        for r in rules
    ):
        a.backend.audit("refused", actor=principal, request_id=request_id,
                        details={**details, "reason": "not_allowed"})  # fmt: skip
        raise AdminRefusedError(NOT_ALLOWED_MESSAGE)
    extra: dict[str, Any] = {}
    a.backend.begin(principal, request_id)
    try:
        try:
            result = _run(a, request, principal, request_id, extra)
        except PQFileError as exc:
            a.backend.audit("failure", actor=principal, request_id=request_id,
                            details={**details, "reason": type(exc).__name__,
                                     "db_role": request.role})  # fmt: skip
            raise
        a.backend.audit("success", actor=principal, request_id=request_id,
                        details={**details, "db_role": request.role})  # fmt: skip
    finally:
        a.backend.end()
    return {"command": request.command, "principal": principal, "result": result, **extra}


def _run(
    a: Admin, request: AdminRequest, principal: str, request_id: str | None,
    extra: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The command, and what it needs beyond the database: the workflow, the event."""
    if request.command.startswith("keys.rotate."):
        if a.rotation is None:
            raise PQFileError("this admin function has no rotate-keys state machine "
                              "(PQFILE_ROTATION_STATE_MACHINE)")  # fmt: skip
        if request.command == "keys.rotate.follow":
            return _follow(a, a.rotation, request, principal, request_id)
        return _start(a, a.rotation, request, principal, request_id)
    result = a.backend.run(request, actor=principal, request_id=request_id)
    if request.command == "keys.revoke" and request.args.get("mode") == "now":
        extra["events_not_delivered"] = _announce_revoked(a, result)
    return result


def _start(
    a: Admin, workflow: RotationWorkflow, request: AdminRequest, principal: str,
    request_id: str | None,
) -> dict[str, Any]:  # fmt: skip
    """Queue as the direct path does (the backend), then start rotate-keys, audited either
    way under the principal (the direct path's ``key.rotation_workflow_started`` row)."""
    report = a.backend.run(request, actor=principal, request_id=request_id)
    details: dict[str, Any] = {"queued": report.get("queued", []),
                               "to_suite": report.get("to_suite"),
                               "state_machine": workflow.state_machine_arn}  # fmt: skip
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    name = f"pqfile-rotate-{stamp}-{uuid.uuid4().hex[:8]}"
    try:
        arn = workflow.start(name, {"requested_by": principal})
    except PQFileError as exc:
        a.backend.audit("failure", actor=principal, request_id=request_id,
                        operation=OP_WORKFLOW_STARTED,
                        details={**details, "error": str(exc)[:200]})  # fmt: skip
        raise
    a.backend.audit("success", actor=principal, request_id=arn, operation=OP_WORKFLOW_STARTED,
                    details=details)  # fmt: skip
    return {**report, "execution": {"arn": arn}}


def _follow(
    a: Admin, workflow: RotationWorkflow, request: AdminRequest, principal: str,
    request_id: str | None,
) -> dict[str, Any]:  # fmt: skip
    """An execution of this deployment's rotate-keys only, and the runs' rows."""
    arn = str(request.args["execution_arn"])
    prefix = workflow.state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":"
    if not arn.startswith(prefix):
        raise InvalidArgument("args.execution_arn is not an execution of rotate-keys")
    execution = workflow.describe(arn)
    runs = a.backend.run(request, actor=principal, request_id=request_id)
    return {"execution": {"arn": arn, "status": execution.status, "error": execution.error,
                          "done": bool(execution.done), "output": execution.output},
            **runs}  # fmt: skip


def _announce_revoked(a: Admin, result: Mapping[str, Any]) -> int:
    """`PQFile Key Revoked` for a revocation made at once; the undelivered count."""
    if a.events is None:
        return 0
    raw = result.get("revoked_at")
    try:
        at = dt.datetime.fromisoformat(str(raw)) if raw else None
    except ValueError:
        at = None
    suite = result.get("suite")
    event = key_revoked(key_id=str(result["key_id"]), mode=RevocationMode.NOW, at=at,
                        suite=None if suite is None else str(suite))  # fmt: skip
    return announce(a.events, event)
