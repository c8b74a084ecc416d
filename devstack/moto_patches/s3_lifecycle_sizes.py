"""S3: keep a lifecycle filter's `ObjectSizeGreaterThan` / `ObjectSizeLessThan`.

moto 5.2.5 drops both from the rules it stores. Terraform's aws provider sends
`<And><ObjectSizeGreaterThan>0` for every `filter { and { ... } }` and then waits (3 minutes,
then fails) until GetBucketLifecycleConfiguration returns exactly what it sent. This keeps
the sizes per rule ID next to moto's rules (`FakeBucket.set_lifecycle`) and adds them back
to the serialized GetBucketLifecycleConfiguration answer.

Upstream-worthy: yes. A plain gap in moto's S3 lifecycle model.
"""

from __future__ import annotations

import inspect
from typing import Any

from devstack.moto_patches._internals import Runtime, checking, parameters

_OBJECT_SIZE_FIELDS = ("ObjectSizeGreaterThan", "ObjectSizeLessThan")


def check() -> None:
    with checking(__name__) as expect:
        from moto.s3 import models as s3_models
        from moto.s3.models import FakeBucket
        from moto.s3.responses import S3Response

        expect(
            parameters(FakeBucket.set_lifecycle) == ["self", "rules"]
            and parameters(S3Response.get_bucket_lifecycle) == ["self"]
            and "self.serialized(ActionResult("
            in inspect.getsource(S3Response.get_bucket_lifecycle),
            "moto.s3 FakeBucket.set_lifecycle(self, rules) or S3Response.get_bucket_lifecycle "
            "(self) -> self.serialized(ActionResult(...)) changed",
        )
        expect(
            "ObjectSizeGreaterThan" not in inspect.getsource(s3_models),
            "moto.s3 now keeps lifecycle ObjectSizeGreaterThan: drop "
            "devstack.moto_patches.s3_lifecycle_sizes",
        )


def apply(runtime: Runtime) -> None:
    from moto.s3.models import FakeBucket
    from moto.s3.responses import S3Response

    original_set_lifecycle = FakeBucket.set_lifecycle
    original_get_bucket_lifecycle = S3Response.get_bucket_lifecycle

    def set_lifecycle(self: Any, rules: list[dict[str, Any]]) -> None:
        sizes: dict[tuple[str | None, str], dict[str, int]] = {}
        for rule in rules:
            rule_filter = rule.get("Filter") or {}
            for scope, holder in (("And", rule_filter.get("And") or {}), ("Filter", rule_filter)):
                kept = {k: int(holder[k]) for k in _OBJECT_SIZE_FIELDS if holder.get(k) is not None}
                if kept:
                    sizes[(rule.get("ID"), scope)] = kept
        original_set_lifecycle(self, rules)
        self.devstack_lifecycle_sizes = sizes

    def get_bucket_lifecycle(self: Any) -> Any:
        bucket = self.backend.get_bucket(self.bucket_name)
        sizes = getattr(bucket, "devstack_lifecycle_sizes", None)
        if sizes:
            original_serialized = self.serialized  # a response object serves one request

            def serialized(action_result: Any) -> Any:
                for rule in action_result.result.get("Rules", []):
                    for (rule_id, scope), kept in sizes.items():
                        if rule_id == rule.get("ID"):
                            rule_filter = rule.setdefault("Filter", {})
                            target = (
                                rule_filter.setdefault("And", {}) if scope == "And" else rule_filter
                            )
                            target.update(kept)
                return original_serialized(action_result)

            self.serialized = serialized
        return original_get_bucket_lifecycle(self)

    FakeBucket.set_lifecycle = set_lifecycle  # type: ignore[method-assign]
    S3Response.get_bucket_lifecycle = get_bucket_lifecycle  # type: ignore[method-assign]
