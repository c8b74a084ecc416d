"""The changes the emulator makes to moto, one module per patch, and their registry.

Every module has a docstring (what it changes, why, and whether the moto gap or bug behind it
is worth fixing upstream), `check()` and `apply(runtime)`:

- `check()` raises `MotoInternalChanged`, naming the internal, when a moto internal the patch
  replaces or relies on no longer looks as it did in the pinned moto (`MOTO_VERSION`);
- `apply(runtime)` patches moto in this process. Only the emulator's server process calls it
  (`devstack.emulator.apply_patches`), never a test process.

`ALL` lists them in the order they are applied; `apply_all()` checks every one first and
applies nothing if any check fails. The canary test (tests/integration/
test_emulator_canary.py) runs each `check()` on its own.
"""

from __future__ import annotations

from typing import Protocol

from devstack.moto_patches import (
    events_targets,
    kms_mldsa,
    kms_rotation_period,
    lambda_async,
    lambda_config,
    lambda_create_replay,
    lambda_handlers,
    s3_bucket_policies,
    s3_eventbridge_readback,
    s3_lifecycle_sizes,
    s3_presign_expiry,
    s3_ranged_get,
    stepfunctions_api,
    stepfunctions_execution,
    stepfunctions_map_stop,
)
from devstack.moto_patches._internals import MOTO_VERSION, MotoInternalChanged, Runtime

__all__ = [
    "ALL",
    "MOTO_VERSION",
    "MotoInternalChanged",
    "MotoPatch",
    "Runtime",
    "apply_all",
    "name_of",
    "problems",
]


class MotoPatch(Protocol):
    """What every module in this package provides."""

    __name__: str

    def check(self) -> None: ...

    def apply(self, runtime: Runtime) -> None: ...


ALL: tuple[MotoPatch, ...] = (
    lambda_handlers,
    lambda_async,
    lambda_config,
    lambda_create_replay,
    kms_rotation_period,
    kms_mldsa,
    s3_eventbridge_readback,
    stepfunctions_api,
    stepfunctions_execution,
    stepfunctions_map_stop,
    events_targets,
    s3_bucket_policies,
    s3_lifecycle_sizes,
    s3_ranged_get,
    s3_presign_expiry,
)


def name_of(patch: MotoPatch) -> str:
    """The patch's short name (its module name within the package)."""
    return patch.__name__.rsplit(".", 1)[-1]


def problems() -> list[str]:
    """One message per moto internal that some patch needs and that is missing or changed."""
    found: list[str] = []
    for patch in ALL:
        try:
            patch.check()
        except MotoInternalChanged as exc:
            found.extend(f"{name_of(patch)}: {problem}" for problem in exc.problems)
    return found


def apply_all(runtime: Runtime) -> None:
    """Check every patch, then apply them all in order; apply none if any check fails."""
    found = problems()
    if found:
        raise RuntimeError(
            "The pinned moto changed internals devstack.moto_patches patches:\n  "
            + "\n  ".join(found)
        )
    for patch in ALL:
        patch.apply(runtime)
