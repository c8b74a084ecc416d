"""Handler settings from the environment (docs/CONTRACTS.md)."""

from __future__ import annotations

import pytest

from pqfile.config import LAMBDA_RESPONSE_CAP, ConfigurationError, Settings


def test_defaults() -> None:
    s = Settings.from_env({"PQFILE_UPLOADS_BUCKET": "u", "PQFILE_ENCRYPTED_BUCKET": "e"})
    assert (s.uploads_bucket, s.encrypted_bucket, s.default_suite) == ("u", "e", "xwing")
    assert s.segment_size == 1024 * 1024 and s.part_size == 8 * 1024 * 1024
    assert s.inline_limit == 4 * 1024 * 1024
    assert s.inline_limit * 4 // 3 < LAMBDA_RESPONSE_CAP
    assert s.presign_seconds == 300


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PQFILE_DEFAULT_SUITE", "kyber768"),
        ("PQFILE_SEGMENT_SIZE", "abc"),
        ("PQFILE_PART_SIZE", str(1024 * 1024)),  # S3 parts are at least 5 MiB
        ("PQFILE_INLINE_LIMIT", str(5 * 1024 * 1024)),  # base64 would not fit 6 MB
        ("PQFILE_PRESIGN_SECONDS", "86400"),
    ],
)
def test_bad_values_fail_the_cold_start(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


def test_require_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="PQFILE_KMS_KEY_ID"):
        Settings.from_env({}).require("kms_key_id")
