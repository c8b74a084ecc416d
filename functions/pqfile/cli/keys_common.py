"""What the `pqfile keys` commands share: the pool policy options (the deployment's policy
unless overridden), the key store on a direct connection, the lazy KMS clients."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from pqfile.cli.db import actor
from pqfile.config import ConfigurationError, PoolSettings
from pqfile.keys.policy import PoolPolicy

if TYPE_CHECKING:
    from pqfile.adapters.postgres.connection import Database
    from pqfile.keys.pool import KeyPool

#: The stack output holding the deployment's pool policy (terraform/outputs.tf).
POLICY_OUTPUT = "key_pool_policy"


def policy_options(parser: argparse.ArgumentParser) -> None:
    """``--target``, ``--floor``, ``--max-age-days``: unset, the deployment's own."""
    parser.add_argument("--target", type=int, help="active keys per suite (default: the "
                        "deployment's PQFILE_POOL_TARGET)")  # fmt: skip
    parser.add_argument("--floor", type=int, help="refill when below this (default: the "
                        "deployment's PQFILE_POOL_FLOOR)")  # fmt: skip
    parser.add_argument("--max-age-days", type=float, help="rotate after (default: the "
                        "deployment's PQFILE_KEY_MAX_AGE_DAYS)")  # fmt: skip


def days(age: dt.timedelta) -> float:
    return age.total_seconds() / 86400


def deployment_policy(args: argparse.Namespace) -> PoolPolicy:
    """The policy the deployment's functions run with: the stack's ``key_pool_policy``
    output (the local stack's state file, or ``--stack``), else ``PQFILE_POOL_*``, else
    the domain's defaults (keys/policy.py)."""
    from pqfile.cli import _stack

    base = PoolSettings.from_env().policy
    try:
        stack = _stack.discover(args, required=False)
    except ConfigurationError:
        return base
    out = stack.outputs.get(POLICY_OUTPUT)
    if not isinstance(out, dict):
        return base
    try:
        target = int(out.get("target", base.target_active))
        return dataclasses.replace(
            base,
            target_active=target,
            floor_active=min(int(out.get("floor", base.floor_active)), target),
            max_age=dt.timedelta(days=float(out.get("max_age_days", days(base.max_age)))),
        )
    except (TypeError, ValueError):
        raise ConfigurationError(f"the stack's output {POLICY_OUTPUT!r} is malformed") from None


def deployment_suites(args: argparse.Namespace) -> list[str] | None:
    """The suites the deployment keeps at its target: the stack's ``key_pool_policy``
    output (``suites``), else None (unknown: every suite is judged against the floor)."""
    from pqfile.cli import _stack

    try:
        stack = _stack.discover(args, required=False)
        out = stack.outputs.get(POLICY_OUTPUT)
    except ConfigurationError:
        out = None
    if isinstance(out, dict) and isinstance(out.get("suites"), list):
        return [str(s) for s in out["suites"]]
    return None


def policy(args: argparse.Namespace) -> PoolPolicy:
    """The deployment's policy with the options given on the command line."""
    base = deployment_policy(args)
    target = base.target_active if getattr(args, "target", None) is None else args.target
    floor = base.floor_active if getattr(args, "floor", None) is None else args.floor
    age = getattr(args, "max_age_days", None)
    return dataclasses.replace(
        base, target_active=target, floor_active=min(floor, target),
        max_age=base.max_age if age is None else dt.timedelta(days=age),
    )  # fmt: skip


def policy_args(args: argparse.Namespace) -> dict[str, Any]:
    """The options given, as the admin function takes them (whole days); the function
    fills in the deployment's policy for the rest."""
    age = getattr(args, "max_age_days", None)
    if age is not None and age != int(age):
        raise ConfigurationError("--max-age-days must be whole days with --stack")
    return {"target": getattr(args, "target", None), "floor": getattr(args, "floor", None),
            "max_age_days": None if age is None else int(age)}  # fmt: skip


def store(db: Database, args: argparse.Namespace) -> KeyPool:
    from pqfile.adapters.postgres.keystore import PostgresKeyStore

    return PostgresKeyStore(
        db, LazyProtector(), attestor=LazyAttestor(), policy=policy(args), actor=actor()
    )


class LazyAttestor:
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


class LazyProtector:
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
