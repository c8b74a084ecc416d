"""S3: do not enforce bucket policies (as LocalStack does not by default).

moto 5.2.5 evaluates a bucket policy without the request's context and answers DENIED for
every Deny statement that has a Condition, whether or not the condition holds: the standard
TLS-only statement (`aws:SecureTransport` false -> Deny) would refuse every local request.
This makes `FakeBucket.get_permission` answer NEUTRAL, so moto's IAM-less default (allow)
applies. Bucket policies are checked on AWS and by the Terraform checks, not here.

Upstream-worthy: the moto bug is (conditions should be evaluated against the request, or
at least not assumed true); this patch is not a fix for it, only a local workaround. The
canary test `test_moto_still_denies_under_any_deny_statement_with_a_condition` says when
moto stops doing it.
"""

from __future__ import annotations

from typing import Any

from devstack.moto_patches._internals import Runtime, checking, parameters


def check() -> None:
    with checking(__name__) as expect:
        from moto.iam.access_control import PermissionResult
        from moto.s3.models import FakeBucket

        expect(
            parameters(FakeBucket.get_permission) == ["self", "action", "resource"]
            and hasattr(PermissionResult, "NEUTRAL"),
            "moto.s3.models.FakeBucket.get_permission(self, action, resource) or "
            "moto.iam.access_control.PermissionResult.NEUTRAL changed",
        )


def apply(runtime: Runtime) -> None:
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(self: Any, action: str, resource: str) -> Any:
        return PermissionResult.NEUTRAL

    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]
