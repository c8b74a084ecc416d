"""devstack.moto_patches.s3_ranged_get: a ranged GetObject on the emulator answers exactly
what S3 answers (206, the bytes, Content-Range), for every single-range form, a versioned
object and a multipart one; the unsatisfiable and multi-range cases keep moto's answers."""

from __future__ import annotations

import os

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration


def test_ranged_gets_answer_like_s3(aws_emulator) -> None:
    s3 = aws_emulator.client("s3")
    bucket = "ranges-" + os.urandom(4).hex()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    data = os.urandom(3 * 1024 * 1024 + 7)
    first = s3.put_object(Bucket=bucket, Key="k", Body=data)
    s3.put_object(Bucket=bucket, Key="k", Body=b"newer")  # the range reads the pinned version
    size = len(data)
    for spec, lo, hi in (("bytes=0-0", 0, 0), ("bytes=5-1048580", 5, 1048580),
                         ("bytes=3000000-", 3000000, size - 1), ("bytes=-10", size - 10, size - 1),
                         ("bytes=10-99999999", 10, size - 1)):  # fmt: skip
        resp = s3.get_object(Bucket=bucket, Key="k", VersionId=first["VersionId"], Range=spec)
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206, spec
        assert resp["Body"].read() == data[lo : hi + 1], spec
        assert resp["ContentRange"] == f"bytes {lo}-{hi}/{size}"
        assert resp["ContentLength"] == hi - lo + 1
    with pytest.raises(ClientError, match="InvalidRange"):
        s3.get_object(Bucket=bucket, Key="k", VersionId=first["VersionId"], Range=f"bytes={size}-")
    whole = s3.get_object(Bucket=bucket, Key="k", VersionId=first["VersionId"])
    assert whole["Body"].read() == data
    # a multipart object
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    parts = []
    head = os.urandom(5 * 1024 * 1024)
    for n, chunk in enumerate((head, data), start=1):
        etag = s3.upload_part(Bucket=bucket, Key="m", UploadId=upload, PartNumber=n,
                              Body=chunk)["ETag"]  # fmt: skip
        parts.append({"PartNumber": n, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload,
                                 MultipartUpload={"Parts": parts})  # fmt: skip
    joined = head + data
    edge = len(head) - 50  # across the part boundary
    resp = s3.get_object(Bucket=bucket, Key="m", Range=f"bytes={edge}-{edge + 100}")
    assert resp["Body"].read() == joined[edge : edge + 101]
