"""S3 as the shred's PackageVersions port: every version of one package object
(ListObjectVersions), a ranged GET of one version, DeleteObject with its VersionId.

On AWS the encrypted bucket denies deletion under ``encrypted/`` to every principal but the
shred function's role (terraform/s3.tf, "DenyPackageDeletionButShred").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pqfile.adapters.aws import LazyS3
from pqfile.adapters.s3 import s3_errors
from pqfile.ports import PackageVersion

if TYPE_CHECKING:
    pass


class S3PackageVersions(LazyS3):
    """The shred's PackageVersions port."""

    def list_versions(self, bucket: str, key: str) -> list[PackageVersion]:
        """Versions and delete markers of exactly ``key`` (the prefix also matches longer
        keys: those are filtered out)."""
        found: list[PackageVersion] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key}
        with s3_errors(f"list versions of s3://{bucket}/{key}"):
            while True:
                page = self.s3.list_object_versions(**kwargs)
                for v in page.get("Versions", []):
                    if v.get("Key") == key:
                        found.append(PackageVersion(str(v["VersionId"])))
                for m in page.get("DeleteMarkers", []):
                    if m.get("Key") == key:
                        found.append(PackageVersion(str(m["VersionId"]), delete_marker=True))
                if not page.get("IsTruncated"):
                    return found
                kwargs["KeyMarker"] = page.get("NextKeyMarker")
                kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")

    def read_prefix(self, bucket: str, key: str, version_id: str, length: int) -> bytes:
        with s3_errors(f"read s3://{bucket}/{key}"):
            resp = self.s3.get_object(
                Bucket=bucket, Key=key, VersionId=version_id, Range=f"bytes=0-{length - 1}"
            )
            data: bytes = resp["Body"].read()
        return data[:length]

    def delete_version(self, bucket: str, key: str, version_id: str) -> None:
        """Delete one version for good (idempotent: S3 answers 204 for one already gone)."""
        with s3_errors(f"delete s3://{bucket}/{key}"):
            self.s3.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
