"""S3: GetBucketNotificationConfiguration reports `EventBridgeConfiguration` when it is on.

moto 5.2.5 stores `EventBridgeConfiguration` (and emits the events) but leaves it out of the
GetBucketNotificationConfiguration answer, so Terraform's
`aws_s3_bucket_notification { eventbridge = true }` shows a change on every plan. This adds
the empty `EventBridgeConfiguration` element to the serialized answer when the bucket's
notification configuration has it.

Upstream-worthy: yes. A plain gap in moto's S3 responses.
"""

from __future__ import annotations

import inspect
from typing import Any

from devstack.moto_patches._internals import Runtime, checking, parameters


def check() -> None:
    with checking(__name__) as expect:
        from moto.s3 import models as s3_models
        from moto.s3.responses import S3Response

        source = inspect.getsource(S3Response.get_bucket_notification)
        expect(
            parameters(S3Response.get_bucket_notification) == ["self"]
            and "self.serialized(ActionResult(" in source
            and "self.event_bridge" in inspect.getsource(s3_models.NotificationConfiguration),
            "moto.s3 S3Response.get_bucket_notification(self) or "
            "NotificationConfiguration.event_bridge changed",
        )
        expect(
            "EventBridgeConfiguration" not in source,
            "moto.s3 now reports EventBridgeConfiguration: drop "
            "devstack.moto_patches.s3_eventbridge_readback",
        )


def apply(runtime: Runtime) -> None:
    from moto.s3.responses import S3Response

    original = S3Response.get_bucket_notification

    def get_bucket_notification(self: Any) -> Any:
        configuration = self.backend.get_bucket_notification_configuration(self.bucket_name)
        if configuration is not None and configuration.event_bridge is not None:
            original_serialized = self.serialized  # a response object serves one request

            def serialized(action_result: Any) -> Any:
                result = getattr(action_result, "result", None)
                if isinstance(result, dict):
                    result["EventBridgeConfiguration"] = {}
                return original_serialized(action_result)

            self.serialized = serialized
        return original(self)

    S3Response.get_bucket_notification = get_bucket_notification  # type: ignore[method-assign]
