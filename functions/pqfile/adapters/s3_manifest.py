"""S3 as the rotation's ManifestStore port: one JSON array per batch, the input of the
rotate-keys workflow's distributed Map (its ItemReader, ``ReaderConfig.InputType: JSON``).

A manifest names documents and keys, never their content; it lives under
``rotation-manifests/`` in the encrypted bucket (SSE-KMS by the bucket's default) and a
lifecycle rule expires it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pqfile.adapters.aws import LazyS3
from pqfile.adapters.s3 import s3_errors
from pqfile.ports import ObjectInfo

if TYPE_CHECKING:
    pass

MANIFEST_CONTENT_TYPE = "application/json"


class S3ManifestStore(LazyS3):
    """ports.ManifestStore on S3."""

    def write_manifest(
        self, bucket: str, key: str, items: Sequence[Mapping[str, Any]]
    ) -> ObjectInfo:
        body = json.dumps(list(items), separators=(",", ":")).encode()
        with s3_errors(f"write s3://{bucket}/{key}"):
            resp = self.s3.put_object(
                Bucket=bucket, Key=key, Body=body, ContentType=MANIFEST_CONTENT_TYPE
            )
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=len(body),
            etag=str(resp.get("ETag", "")).strip('"'),
            version_id=resp.get("VersionId"),
            content_type=MANIFEST_CONTENT_TYPE,
        )
