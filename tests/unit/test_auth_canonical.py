"""The canonical retrieve request, the STS endpoint allow-list, IdentitySettings, and the
pure layering of pqfile.auth."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import Any

import pytest

from pqfile.auth import (
    CANONICAL_FIELDS,
    StsEndpoint,
    canonical_retrieve_request,
    default_endpoint_url,
    retrieve_request_sha256,
)
from pqfile.config import ConfigurationError, IdentitySettings
from pqfile.errors import InvalidEventError

AUTH = Path(__file__).resolve().parents[2] / "functions" / "pqfile" / "auth"

# --- canonical request (docs/CONTRACTS.md, "Caller identity proofs") --------------------------

#: Vectors a second implementation can check itself against (also in docs/CONTRACTS.md).
VECTORS = [
    (
        {"document_id": "3f2a9c"},
        b'{"document_id":"3f2a9c"}',
        "0037da265590efbda8bdd86e465628aa4e5ea5ce71000f7d625f762cf596c5c0",
    ),
    (
        {"key": "encrypted/3f2a9c.pqf", "bucket": "pqfile-dev-encrypted"},
        b'{"bucket":"pqfile-dev-encrypted","key":"encrypted/3f2a9c.pqf"}',
        "6fa09ad1ebcb4282ff943b68a42c9caf31755eb87bce1601fabf1ea46620eed0",
    ),
    (
        {"document_id": "d", "range": {"start": 0, "end": 1023}, "delivery": "url"},
        b'{"delivery":"url","document_id":"d","range":{"end":1023,"start":0}}',
        "2d967e4e527cda02bfc412686846d54673538702b4d559e29e1ffe7ee9f8a07f",
    ),
    (
        {"document_id": "na\u00efve \u2713"},
        '{"document_id":"na\u00efve \u2713"}'.encode(),
        "5a9fa50b90b95d72f2acec5dd15062a474aaea1446ef8524405b01c8d9027c11",
    ),
]


@pytest.mark.parametrize(("payload", "canonical", "sha"), VECTORS)
def test_vectors(payload: dict[str, Any], canonical: bytes, sha: str) -> None:
    assert canonical_retrieve_request(payload) == canonical
    assert retrieve_request_sha256(payload) == sha == hashlib.sha256(canonical).hexdigest()


def test_only_the_request_fields_count() -> None:
    plain = {"document_id": "3f2a9c"}
    noisy = {
        "document_id": "3f2a9c",
        "identity_proof": {"anything": 1},
        "requested_by": "auditor@example.com",
        "bucket": None,
    }
    assert retrieve_request_sha256(noisy) == retrieve_request_sha256(plain)
    assert set(CANONICAL_FIELDS) == {
        "bucket", "delivery", "document_id", "key", "range", "source",
        # the documents query function's (retrieve refuses them: see the next test)
        "limit", "operation", "status", "tenant"}  # fmt: skip


def test_a_documents_query_proof_is_never_a_retrieve_proof() -> None:
    """A status request's proof covers ``operation``; retrieve refuses that field, so the
    proof cannot be replayed to decrypt the same document."""
    from pqfile.errors import InvalidEventError
    from pqfile.usecases.retrieve import RetrieveRequest

    status = {"operation": "status", "document_id": "3f2a9c"}
    assert retrieve_request_sha256(status) != retrieve_request_sha256({"document_id": "3f2a9c"})
    with pytest.raises(InvalidEventError, match="unknown payload field"):
        RetrieveRequest.from_payload(status)


def test_every_request_field_changes_the_hash() -> None:
    base = {"document_id": "d"}
    seen = {retrieve_request_sha256(base)}
    for name in CANONICAL_FIELDS:
        seen.add(retrieve_request_sha256({**base, name: "x"} if name != "document_id" else
                                         {"document_id": "e"}))  # fmt: skip
    assert len(seen) == len(CANONICAL_FIELDS) + 1


@pytest.mark.parametrize(
    "value",
    [True, 1.5, 2**53, "x" * 2049, {"k": False}, {1: "x"}, {"kë": 1}, [[[[["deep"]]]]], b"raw"],
)
def test_values_outside_the_canonical_domain_are_refused(value: object) -> None:
    with pytest.raises(InvalidEventError):
        canonical_retrieve_request({"document_id": "d", "range": value})


def test_a_payload_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidEventError):
        canonical_retrieve_request(["document_id"])  # type: ignore[arg-type]


# --- the STS endpoint ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "host_header", "region"),
    [
        ("https://sts.eu-west-1.amazonaws.com", "https", "sts.eu-west-1.amazonaws.com",
         "eu-west-1"),
        ("https://STS.eu-west-1.amazonaws.com/", "https", "sts.eu-west-1.amazonaws.com",
         "eu-west-1"),
        ("https://sts-fips.us-gov-west-1.amazonaws.com", "https",
         "sts-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
        ("https://sts.cn-north-1.amazonaws.com.cn", "https", "sts.cn-north-1.amazonaws.com.cn",
         "cn-north-1"),
        ("https://sts.amazonaws.com", "https", "sts.amazonaws.com", "us-east-1"),
        ("https://sts.internal.example:8443", "https", "sts.internal.example:8443",
         "ap-south-1"),
        ("http://127.0.0.1:4566", "http", "127.0.0.1:4566", "ap-south-1"),
        ("http://localhost:4566/", "http", "localhost:4566", "ap-south-1"),
        ("http://[::1]:4566", "http", "[::1]:4566", "ap-south-1"),
    ],
)  # fmt: skip
def test_endpoints(url: str, scheme: str, host_header: str, region: str) -> None:
    endpoint = StsEndpoint.parse(url, default_region="ap-south-1")
    assert (endpoint.scheme, endpoint.host_header, endpoint.region) == (scheme, host_header, region)
    assert endpoint.url == f"{scheme}://{host_header}/"


@pytest.mark.parametrize(
    "url",
    [
        "http://sts.eu-west-1.amazonaws.com",  # http only to loopback
        "http://10.0.0.5:4566",
        "http://127.0.0.1.evil.example:4566",
        "ftp://sts.eu-west-1.amazonaws.com",
        "https://user@sts.eu-west-1.amazonaws.com",
        "https://sts.eu-west-1.amazonaws.com/path",
        "https://sts.eu-west-1.amazonaws.com/?q=1",
        "https://sts.eu-west-1.amazonaws.com/#f",
        "https://sts.eu-west-1.amazonaws.com:99999",
        "https://",
        "https://st s.example",
        "https://stß.example",
    ],
)
def test_endpoints_refused(url: str) -> None:
    with pytest.raises(ValueError):
        StsEndpoint.parse(url, default_region="us-east-1")


def test_default_endpoint_per_partition() -> None:
    assert default_endpoint_url("eu-central-1") == "https://sts.eu-central-1.amazonaws.com"
    assert default_endpoint_url("cn-northwest-1") == "https://sts.cn-northwest-1.amazonaws.com.cn"


# --- settings ---------------------------------------------------------------------------------


def test_identity_settings_defaults_follow_the_region() -> None:
    s = IdentitySettings.from_env({"AWS_REGION": "eu-west-1"})
    assert s == IdentitySettings(
        sts_endpoint_url="https://sts.eu-west-1.amazonaws.com/",
        sts_region="eu-west-1",
        audience=None,
        max_age_seconds=300,
        timeout_seconds=5,
    )
    assert IdentitySettings.from_env({}) == IdentitySettings()
    assert IdentitySettings.from_env({}, region="ca-central-1").sts_region == "ca-central-1"


def test_identity_settings_from_the_environment() -> None:
    s = IdentitySettings.from_env(
        {
            "AWS_REGION": "eu-west-1",
            "PQFILE_STS_ENDPOINT_URL": "http://127.0.0.1:4599",
            "PQFILE_AUDIENCE": "pqfile-local",
            "PQFILE_PROOF_MAX_AGE_SECONDS": "60",
            "PQFILE_STS_TIMEOUT_SECONDS": "2",
        }
    )
    assert s == IdentitySettings("http://127.0.0.1:4599/", "eu-west-1", "pqfile-local", 60, 2)


def test_identity_settings_allow_plain_http_to_the_one_named_host() -> None:
    s = IdentitySettings.from_env(
        {
            "PQFILE_STS_ENDPOINT_URL": "http://localstack:4566",
            "PQFILE_STS_PLAIN_HTTP_HOST": "localstack",
        }
    )
    assert s.sts_endpoint_url == "http://localstack:4566/"
    assert s.sts_plain_http_host == "localstack"


@pytest.mark.parametrize(
    "env",
    [
        {"PQFILE_STS_ENDPOINT_URL": "http://sts.example.com"},
        {"PQFILE_STS_ENDPOINT_URL": "http://localstack:4566"},
        {
            "PQFILE_STS_ENDPOINT_URL": "http://sts.example.com",
            "PQFILE_STS_PLAIN_HTTP_HOST": "localstack",
        },
        {"PQFILE_STS_PLAIN_HTTP_HOST": "local.stack"},
        {"PQFILE_STS_PLAIN_HTTP_HOST": "LocalStack"},
        {"PQFILE_STS_ENDPOINT_URL": "https://a@sts.example.com"},
        {"PQFILE_AUDIENCE": "has spaces"},
        {"PQFILE_PROOF_MAX_AGE_SECONDS": "0"},
        {"PQFILE_PROOF_MAX_AGE_SECONDS": "901"},
        {"PQFILE_STS_TIMEOUT_SECONDS": "31"},
    ],
)
def test_identity_settings_refuse_malformed_values(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        IdentitySettings.from_env(env)


def test_the_verifier_needs_an_audience() -> None:
    from pqfile.adapters.sts_identity import StsCallerIdentityVerifier

    with pytest.raises(ConfigurationError, match="PQFILE_AUDIENCE"):
        StsCallerIdentityVerifier.from_settings(IdentitySettings())
    verifier = StsCallerIdentityVerifier.from_settings(
        IdentitySettings.from_env({"PQFILE_AUDIENCE": "pqfile-prod", "AWS_REGION": "eu-west-1"})
    )
    assert verifier.policy.endpoint.url == "https://sts.eu-west-1.amazonaws.com/"
    assert verifier.policy.audience == "pqfile-prod"
    assert verifier.policy.max_age.total_seconds() == 300


# --- layering ---------------------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(AUTH.glob("*.py")), ids=lambda p: p.name)
def test_auth_is_pure(path: Path) -> None:
    # No AWS SDK, database, Powertools or network client: the checks run before any I/O.
    forbidden = ("boto3", "botocore", "mypy_boto3_", "pg8000", "aws_lambda_powertools",
                 "aws_xray_sdk", "http", "urllib.request", "socket", "ssl", "requests")  # fmt: skip
    imports = _imports(path)
    own = ("pqfile.auth", "pqfile.errors")
    bad = sorted(
        n
        for n in imports
        if n.startswith(forbidden) or (n.startswith("pqfile.") and not n.startswith(own))
    )
    assert not bad, f"auth/{path.name} imports {bad}"


def test_the_layering_scan_sees_files() -> None:
    assert len(list(AUTH.glob("*.py"))) >= 5
