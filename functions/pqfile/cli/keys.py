"""`pqfile keys status|refill|queue-rotation|revoke|expire|request`: the key pool
(docs/KEYS.md).

Which database role may do what (docs/KEYS.md, "Roles and grants"): ``status`` reads (the
operator or the auditor); ``refill`` and ``queue-rotation`` are the maintain function's
(run them as ``pqfile_maintain`` or the owner, with the KMS seed key and the attestation key
configured); ``revoke``, ``expire`` and ``request`` are an operator's (``pqfile_operator``).
The name in ``PQFILE_ACTOR`` is only a claim, kept as ``claimed_by``: the database records
the connected user as the actor.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import TYPE_CHECKING, Any

from pqfile.cli.db import actor, add_database_option, command_group, open_database, print_json
from pqfile.crypto.kem import Suite
from pqfile.keys.model import RequestKind
from pqfile.keys.policy import PoolPolicy

if TYPE_CHECKING:
    from pqfile.adapters.postgres.connection import Database
    from pqfile.keys.pool import KeyPool

#: The domain's pool defaults (keys/policy.py), the options' defaults.
DEFAULT_POLICY = PoolPolicy()
SUITES = [suite.value for suite in Suite]


def register(subparsers: Any) -> None:
    sub = command_group(subparsers, "keys", "the key pool")

    status = sub.add_parser("status", help="counts per suite and status, age, usage spread")
    add_database_option(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    _policy_options(status)
    status.set_defaults(func=_status)

    refill = sub.add_parser(
        "refill", help="queue due keys for rotation, then top each suite up to the target"
    )
    add_database_option(refill)
    refill.add_argument(
        "--suite",
        choices=[*SUITES, "all"],
        default="all",
        help="which suite to refill (default: all)",
    )
    _policy_options(refill)
    refill.set_defaults(func=_refill)

    revoke = sub.add_parser(
        "revoke", help="revoke a key now (operator): it never encrypts or decrypts again"
    )
    add_database_option(revoke)
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.add_argument("--reason", required=True, help="why (kept in the key and audit rows)")
    revoke.set_defaults(func=_revoke)

    expire = sub.add_parser("expire", help="expire a key now (operator): decrypt only")
    add_database_option(expire)
    expire.add_argument("key_id", metavar="KEY_ID")
    expire.set_defaults(func=_expire)

    request = sub.add_parser(
        "request",
        help="record a pending request (operator): the key stops encrypting, rotate-keys "
        "moves its documents and completes a revocation",
    )
    add_database_option(request)
    request.add_argument("key_id", metavar="KEY_ID")
    request.add_argument(
        "--kind", choices=[k.value for k in RequestKind], default=RequestKind.REVOKE.value
    )
    request.add_argument("--reason", required=True, help="why (kept in the request and audit)")
    request.set_defaults(func=_request)

    queue = sub.add_parser("queue-rotation", help="queue keys past their age or usage caps")
    add_database_option(queue)
    _policy_options(queue)
    queue.set_defaults(func=_queue)


def _policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target", type=int, default=DEFAULT_POLICY.target_active, help="active keys per suite"
    )
    parser.add_argument(
        "--floor", type=int, default=DEFAULT_POLICY.floor_active, help="refill when below this"
    )
    parser.add_argument(
        "--max-age-days", type=float, default=_days(DEFAULT_POLICY.max_age), help="rotate after"
    )


def _days(age: dt.timedelta) -> float:
    return age.total_seconds() / 86400


def _store(db: Database, args: argparse.Namespace) -> KeyPool:
    from pqfile.adapters.postgres.keystore import PostgresKeyStore

    target = getattr(args, "target", DEFAULT_POLICY.target_active)
    policy = PoolPolicy(
        target_active=target,
        floor_active=min(getattr(args, "floor", DEFAULT_POLICY.floor_active), target),
        max_age=dt.timedelta(days=getattr(args, "max_age_days", _days(DEFAULT_POLICY.max_age))),
    )
    return PostgresKeyStore(
        db, _LazyProtector(), attestor=_LazyAttestor(), policy=policy, actor=actor()
    )


class _LazyAttestor:
    """Builds the KMS client only when a command really attests or verifies a key."""

    def __init__(self) -> None:
        self._inner: Any = None

    def _get(self) -> Any:
        if self._inner is None:
            from pqfile.adapters.aws import kms_client
            from pqfile.adapters.kms_mac import KmsKeyAttestor
            from pqfile.config import KmsSettings

            self._inner = KmsKeyAttestor(
                kms_client(), KmsSettings.from_env().attestation_key_id or ""
            )
        return self._inner

    def generate(self, message: bytes) -> bytes:
        result: bytes = self._get().generate(message)
        return result

    def verify(self, message: bytes, mac: bytes) -> bool:
        return bool(self._get().verify(message, mac))


class _LazyProtector:
    """Builds the KMS client only when a command really wraps or unwraps a seed."""

    def __init__(self) -> None:
        self._inner: Any = None

    def _get(self) -> Any:
        if self._inner is None:
            from pqfile.adapters.kms import KmsSeedProtector

            self._inner = KmsSeedProtector.from_env()
        return self._inner

    def wrap(self, seed: bytes, context: Any) -> tuple[bytes, str]:
        result: tuple[bytes, str] = self._get().wrap(seed, context)
        return result

    def unwrap(self, wrapped: bytes, context: Any) -> bytes:
        result: bytes = self._get().unwrap(wrapped, context)
        return result


def _status(args: argparse.Namespace) -> int:
    db = open_database(args)
    try:
        summary = _store(db, args).status_summary()
    finally:
        db.close()
    if args.json:
        print_json(summary)
        return 0
    print(
        f"{'suite':<10} {'active':>7} {'queued':>7} {'expired':>8} {'revoked':>8} "
        f"{'oldest active':>14} {'usage min/max':>14} {'max/min':>8}"
    )
    for suite, entry in summary["suites"].items():
        counts = entry["counts"]
        age = entry["oldest_active_age_seconds"]
        age_text = "-" if age is None else _age(age)
        usage = entry["usage"]
        ratio = "-" if usage["max_over_min"] is None else f"{usage['max_over_min']:.2f}"
        flag = "  (below floor)" if entry["below_floor"] else ""
        print(
            f"{suite:<10} {counts['active']:>7} {counts['rotation_queued']:>7} "
            f"{counts['expired']:>8} {counts['revoked']:>8} {age_text:>14} "
            f"{usage['min']:>6}/{usage['max']:<7} {ratio:>8}{flag}"
        )
    runs = summary.get("rotations")
    if runs is not None:
        print("rotation runs: " + ", ".join(f"{name} {count}" for name, count in runs.items()))
    return 0


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _refill(args: argparse.Namespace) -> int:
    suites = SUITES if args.suite == "all" else [args.suite]
    db = open_database(args)
    try:
        store = _store(db, args)
        for key_id, reason in store.queue_due_for_rotation():
            print(f"queued {key_id} for rotation ({reason})")
        for suite in suites:
            created = store.refill(suite)
            print(f"{suite}: created {len(created)} key(s)")
    finally:
        db.close()
    return 0


def _queue(args: argparse.Namespace) -> int:
    db = open_database(args)
    try:
        queued = _store(db, args).queue_due_for_rotation()
    finally:
        db.close()
    for key_id, reason in queued:
        print(f"queued {key_id} for rotation ({reason})")
    print(f"{len(queued)} key(s) queued")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    db = open_database(args)
    try:
        record = _store(db, args).revoke(args.key_id, args.reason)
    finally:
        db.close()
    print(f"revoked {record.key_id} ({record.suite}) at {record.revoked_at}")
    return 0


def _expire(args: argparse.Namespace) -> int:
    db = open_database(args)
    try:
        record = _store(db, args).expire(args.key_id)
    finally:
        db.close()
    print(f"expired {record.key_id} ({record.suite}) at {record.expired_at}")
    return 0


def _request(args: argparse.Namespace) -> int:
    db = open_database(args)
    try:
        request_id = _store(db, args).request(args.key_id, args.kind, args.reason)
    finally:
        db.close()
    print(f"request {request_id}: {args.kind} {args.key_id} (pending; the key no longer encrypts)")
    return 0
