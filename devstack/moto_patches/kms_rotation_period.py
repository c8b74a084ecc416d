"""KMS: keep EnableKeyRotation's `RotationPeriodInDays` and report it, as KMS does.

moto 5.2.5 ignores the period and GetKeyRotationStatus reports neither it nor the `KeyId`,
so Terraform's `rotation_period_in_days` shows a change on every plan. This keeps the
period on the key (default 365 days, KMS's own) and adds both to the status.

Upstream-worthy: yes. A plain gap in moto's KMS responses.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from devstack.moto_patches._internals import Runtime, checking, parameters


def check() -> None:
    with checking(__name__) as expect:
        from moto.kms import models as kms_models
        from moto.kms.responses import KmsResponse

        expect(
            parameters(KmsResponse.enable_key_rotation) == ["self"]
            and parameters(KmsResponse.get_key_rotation_status) == ["self"]
            and callable(getattr(kms_models.KmsBackend, "get_key_id", None)),
            "moto.kms KmsResponse.enable_key_rotation / get_key_rotation_status or "
            "KmsBackend.get_key_id changed",
        )
        expect(
            "RotationPeriodInDays" not in inspect.getsource(KmsResponse),
            "moto.kms now handles RotationPeriodInDays: drop "
            "devstack.moto_patches.kms_rotation_period",
        )


def apply(runtime: Runtime) -> None:
    from moto.kms.responses import KmsResponse

    original_enable = KmsResponse.enable_key_rotation
    original_status = KmsResponse.get_key_rotation_status

    def key_of(self: Any) -> Any:
        backend = self.kms_backend
        return backend.keys[backend.get_key_id(self._get_param("KeyId"))]

    def enable_key_rotation(self: Any) -> str:
        result: str = original_enable(self)
        period = self._get_param("RotationPeriodInDays")
        key_of(self).devstack_rotation_period = int(period) if period else 365
        return result

    def get_key_rotation_status(self: Any) -> str:
        status = json.loads(original_status(self))
        key = key_of(self)
        status["KeyId"] = key.id
        if status.get("KeyRotationEnabled"):
            status["RotationPeriodInDays"] = getattr(key, "devstack_rotation_period", 365)
        return json.dumps(status)

    KmsResponse.enable_key_rotation = enable_key_rotation  # type: ignore[method-assign]
    KmsResponse.get_key_rotation_status = get_key_rotation_status  # type: ignore[method-assign]
