"""S3 as ports.DigestStore: the audit digests' write-once bucket (docs/OPERATIONS.md, "Audit
digests"). Terraform gives the bucket versioning and S3 Object Lock with a default
retention (COMPLIANCE in prod, GOVERNANCE in dev and locally), so every object written here
is retained by the bucket default; this adapter never deletes and never overwrites: a write
is conditional (``If-None-Match: *``) and the function's role has no s3:DeleteObject.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from pqfile.adapters.aws import LazyS3
from pqfile.adapters.s3 import s3_errors
from pqfile.keys.audit_digest import MAX_DIGEST_JSON, OBJECT_PREFIX, SignedDigest

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DIGEST_CONTENT_TYPE = "application/json"
_DIGEST_KEY = re.compile(re.escape(OBJECT_PREFIX) + r"[0-9]{20}\.json")


class S3DigestStore(LazyS3):
    """ports.DigestStore on one bucket."""

    def __init__(self, bucket: str, client: S3Client | None = None) -> None:
        super().__init__(client)
        self._bucket = bucket

    @property
    def bucket(self) -> str:
        return self._bucket

    def latest_key(self) -> str | None:
        """The digest key with the largest tree size (keys sort by size: 20 digits)."""
        latest: str | None = None
        token: str | None = None
        while True:
            kwargs = {"ContinuationToken": token} if token else {}
            with s3_errors(f"list s3://{self._bucket}/{OBJECT_PREFIX}"):
                page = self.s3.list_objects_v2(
                    Bucket=self._bucket,
                    Prefix=OBJECT_PREFIX,
                    **kwargs,  # type: ignore[arg-type]
                )
            for item in page.get("Contents", []):
                key = str(item.get("Key", ""))
                if _DIGEST_KEY.fullmatch(key) and (latest is None or key > latest):
                    latest = key
            if not page.get("IsTruncated"):
                return latest
            token = page.get("NextContinuationToken")

    def read(self, key: str) -> SignedDigest:
        with s3_errors(f"read s3://{self._bucket}/{key}"):
            response = self.s3.get_object(Bucket=self._bucket, Key=key)
            body = response["Body"].read(MAX_DIGEST_JSON + 1)
        return SignedDigest.from_json(body)

    def latest(self) -> SignedDigest | None:
        key = self.latest_key()
        return None if key is None else self.read(key)

    def put_new(self, key: str, body: bytes) -> bool:
        with s3_errors(f"write s3://{self._bucket}/{key}"):
            try:
                self.s3.put_object(
                    Bucket=self._bucket,
                    Key=key,
                    Body=body,
                    ContentType=DIGEST_CONTENT_TYPE,
                    IfNoneMatch="*",
                    ChecksumAlgorithm="SHA256",  # Object Lock writes need a checksum
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                    return False
                raise
        return True
