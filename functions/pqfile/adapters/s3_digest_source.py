"""Reading every signed tree head under an S3 prefix, for ``pqfile audit verify --digests
s3://bucket/prefix`` and ``pqfile audit prove`` (docs/KEYS.md, "Signed tree heads").
Read-only: ListObjectsV2 and GetObject on the digest bucket."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pqfile.adapters.aws import LazyS3
from pqfile.adapters.s3 import s3_errors
from pqfile.errors import AuditDigestError
from pqfile.keys.audit_digest import MAX_DIGEST_JSON

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Ten years of hourly digests; beyond that, verify a narrower prefix.
MAX_DIGEST_OBJECTS = 100_000


class S3DigestSource(LazyS3):
    def __init__(self, client: S3Client | None = None) -> None:
        super().__init__(client)

    def read_all(self, bucket: str, prefix: str) -> list[tuple[str, bytes]]:
        """``(s3://bucket/key, body)`` of every ``*.json`` object under ``prefix``."""
        out: list[tuple[str, bytes]] = []
        with s3_errors(f"s3://{bucket}/{prefix}"):
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            keys = [
                obj["Key"]
                for page in pages
                for obj in page.get("Contents", [])
                if obj["Key"].endswith(".json")
            ]
        if len(keys) > MAX_DIGEST_OBJECTS:
            raise AuditDigestError(f"more than {MAX_DIGEST_OBJECTS} digests under the prefix")
        for key in sorted(keys):
            with s3_errors(f"s3://{bucket}/{key}"):
                body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
                data = body.read(MAX_DIGEST_JSON + 1)
                body.close()
            out.append((f"s3://{bucket}/{key}", data))
        return out
