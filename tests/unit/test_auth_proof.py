"""Identity proofs checked before anything is sent (pqfile.auth.proof), on proofs signed
with botocore for fixed credentials: every forgery is refused with its reason and the
sender is never called."""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import Any

import pytest
from botocore.credentials import Credentials

from pqfile.adapters.sts_proof import build_identity_proof
from pqfile.auth import (
    STS_BODY,
    IdentityProofError,
    ProofPolicy,
    ProofRefusal,
    StsAnswer,
    StsEndpoint,
    StsRequest,
    retrieve_request_sha256,
    validate_proof,
    verify_caller,
)
from pqfile.auth.proof import MAX_HEADER_VALUE

NOW = dt.datetime(2026, 11, 30, 12, 0, 0, tzinfo=dt.UTC)
ENDPOINT = StsEndpoint.parse("https://sts.eu-west-1.amazonaws.com", default_region="eu-west-1")
POLICY = ProofPolicy(endpoint=ENDPOINT, audience="pqfile-test")
ALICE = Credentials("AKIAALICEALICEALICE0", "alice-secret")
REQUEST = {"document_id": "doc-a"}
SHA = retrieve_request_sha256(REQUEST)
OK_ANSWER = StsAnswer(
    200,
    b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
    b"<GetCallerIdentityResult><Arn>arn:aws:iam::111122223333:user/alice</Arn>"
    b"<UserId>AIDAALICE</UserId><Account>111122223333</Account></GetCallerIdentityResult>"
    b"</GetCallerIdentityResponse>",
)


class RecordingSender:
    def __init__(self, answer: StsAnswer = OK_ANSWER) -> None:
        self.answer = answer
        self.sent: list[StsRequest] = []

    def __call__(self, request: StsRequest) -> StsAnswer:
        self.sent.append(request)
        return self.answer


def proof(
    request: dict[str, Any] | None = None,
    *,
    at: dt.datetime = NOW,
    audience: str = "pqfile-test",
    endpoint: StsEndpoint = ENDPOINT,
    credentials: Credentials = ALICE,
) -> dict[str, Any]:
    return build_identity_proof(
        request or REQUEST, audience=audience, endpoint=endpoint, credentials=credentials, now=at
    )


def refused(candidate: object, *, sha: str = SHA, now: dt.datetime = NOW) -> ProofRefusal:
    sender = RecordingSender()
    with pytest.raises(IdentityProofError) as caught:
        verify_caller(candidate, POLICY, request_sha256=sha, now=now, send=sender)
    assert sender.sent == [], "a refused proof must not be sent anywhere"
    # The message names the check only: never a header value, a token or a signature.
    assert "Signature=" not in str(caught.value) and "secret" not in str(caught.value)
    return caught.value.reason


def set_header(p: dict[str, Any], name: str, value: str | None) -> dict[str, Any]:
    p = copy.deepcopy(p)
    for existing in list(p["headers"]):
        if existing.lower() == name.lower():
            del p["headers"][existing]
    if value is not None:
        p["headers"][name] = value
    return p


# --- the valid proof --------------------------------------------------------------------------


def test_a_valid_proof_is_sent_once_exactly_as_signed_to_the_configured_endpoint() -> None:
    p = proof()
    sender = RecordingSender()
    caller = verify_caller(p, POLICY, request_sha256=SHA, now=NOW, send=sender)
    assert caller.principal_arn == "arn:aws:iam::111122223333:user/alice"
    assert caller.access_key_id == ALICE.access_key and caller.signed_at == NOW
    [sent] = sender.sent
    assert sent.url == "https://sts.eu-west-1.amazonaws.com/"
    assert sent.body == STS_BODY.encode()
    assert dict(sent.headers) == p["headers"]


def test_the_proof_format() -> None:
    p = proof()
    assert set(p) == {"method", "url", "headers", "body"}
    assert p["method"] == "POST" and p["body"] == "Action=GetCallerIdentity&Version=2011-06-15"
    assert p["url"] == "https://sts.eu-west-1.amazonaws.com/"
    h = p["headers"]
    assert h["Host"] == "sts.eu-west-1.amazonaws.com"
    assert h["X-Amz-Date"] == "20261130T120000Z"
    assert h["X-Pqfile-Audience"] == "pqfile-test"
    assert h["X-Pqfile-Request-Sha256"] == SHA
    assert re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=AKIAALICEALICEALICE0/20261130/eu-west-1/sts/aws4_request, "
        r"SignedHeaders=content-type;host;x-amz-date;x-pqfile-audience;x-pqfile-request-sha256, "
        r"Signature=[0-9a-f]{64}",
        h["Authorization"],
    )


def test_temporary_credentials_sign_their_session_token() -> None:
    p = proof(credentials=Credentials("ASIAROLEROLEROLEROLE", "s", "token-value"))
    assert p["headers"]["X-Amz-Security-Token"] == "token-value"
    assert "x-amz-security-token" in p["headers"]["Authorization"]
    validate_proof(p, POLICY, request_sha256=SHA, now=NOW)


@pytest.mark.parametrize("skew", [-300, -1, 0, 1, 300])
def test_the_date_may_be_five_minutes_off_either_way(skew: int) -> None:
    validate_proof(proof(), POLICY, request_sha256=SHA, now=NOW + dt.timedelta(seconds=skew))


def test_header_names_are_case_insensitive_and_the_url_may_lack_its_slash() -> None:
    p = proof()
    p["headers"] = {k.lower(): v for k, v in p["headers"].items()}
    p["url"] = "https://STS.eu-west-1.amazonaws.com"
    validate_proof(p, POLICY, request_sha256=SHA, now=NOW)


def test_a_local_http_endpoint_is_allowed_when_configured() -> None:
    local = StsEndpoint.parse("http://127.0.0.1:4599", default_region="us-east-1")
    policy = ProofPolicy(endpoint=local, audience="pqfile-test")
    p = proof(endpoint=local)
    assert p["headers"]["Host"] == "127.0.0.1:4599"
    sent = validate_proof(p, policy, request_sha256=SHA, now=NOW)
    assert sent.url == "http://127.0.0.1:4599/"


def test_plain_http_to_a_named_emulator_host_only_when_opted_in() -> None:
    """The Docker path: LocalStack is http://localstack:4566 on a private network. Plain
    http to it is refused unless that exact host is PQFILE_STS_PLAIN_HTTP_HOST; any other
    non-loopback host stays refused."""
    with pytest.raises(ValueError, match="plain http"):
        StsEndpoint.parse("http://localstack:4566", default_region="us-east-1")
    with pytest.raises(ValueError, match="plain http"):
        StsEndpoint.parse(
            "http://attacker:4566", default_region="us-east-1", plain_http_host="localstack"
        )
    named = StsEndpoint.parse(
        "http://localstack:4566", default_region="us-east-1", plain_http_host="localstack"
    )
    policy = ProofPolicy(endpoint=named, audience="pqfile-test")
    p = proof(endpoint=named)
    assert p["headers"]["Host"] == "localstack:4566"
    assert validate_proof(p, policy, request_sha256=SHA, now=NOW).url == "http://localstack:4566/"


# --- forgeries, refused before anything is sent ----------------------------------------------


def test_no_proof() -> None:
    assert refused(None) is ProofRefusal.MISSING


def test_expired_date() -> None:
    assert refused(proof(at=NOW - dt.timedelta(seconds=301))) is ProofRefusal.EXPIRED
    assert refused(proof(at=NOW - dt.timedelta(days=2))) is ProofRefusal.EXPIRED


def test_future_date() -> None:
    assert refused(proof(at=NOW + dt.timedelta(seconds=301))) is ProofRefusal.FUTURE


def test_the_window_follows_the_policy() -> None:
    strict = ProofPolicy(ENDPOINT, "pqfile-test", max_age=dt.timedelta(seconds=30))
    with pytest.raises(IdentityProofError) as caught:
        validate_proof(proof(at=NOW - dt.timedelta(seconds=31)), strict, request_sha256=SHA,
                       now=NOW)  # fmt: skip
    assert caught.value.reason is ProofRefusal.EXPIRED


def test_missing_audience_header() -> None:
    assert refused(set_header(proof(), "X-Pqfile-Audience", None)) is ProofRefusal.UNSIGNED


def test_wrong_audience() -> None:
    assert refused(proof(audience="pqfile-other-stack")) is ProofRefusal.AUDIENCE


def test_audience_not_signed() -> None:
    # Signed without the audience, which is then added: SignedHeaders does not cover it.
    p = set_header(proof(audience="placeholder"), "X-Pqfile-Audience", None)
    auth = p["headers"]["Authorization"].replace(";x-pqfile-audience", "")
    p = set_header(set_header(p, "Authorization", auth), "X-Pqfile-Audience", "pqfile-test")
    assert refused(p) is ProofRefusal.UNSIGNED


def test_request_hash_not_signed() -> None:
    p = proof()
    auth = p["headers"]["Authorization"].replace(";x-pqfile-request-sha256", "")
    assert refused(set_header(p, "Authorization", auth)) is ProofRefusal.UNSIGNED


def test_a_proof_for_another_document() -> None:
    other = proof({"document_id": "doc-b"})
    assert refused(other) is ProofRefusal.REQUEST_HASH
    # ... nor for the same document delivered another way, nor by location.
    assert refused(proof({"document_id": "doc-a", "delivery": "url"})) is (
        ProofRefusal.REQUEST_HASH
    )
    assert refused(proof({"bucket": "b", "key": "encrypted/doc-a.pqf"})) is (
        ProofRefusal.REQUEST_HASH
    )


def test_request_hash_header_changed() -> None:
    p = set_header(proof(), "X-Pqfile-Request-Sha256", "0" * 64)
    assert refused(p) is ProofRefusal.REQUEST_HASH


@pytest.mark.parametrize(
    "body",
    [
        "Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::1:role/x&RoleSessionName=x",
        "Action=GetSessionToken&Version=2011-06-15",
        "Action=GetCallerIdentity&Version=2011-06-15&Extra=1",
        "Action=GetCallerIdentity&Version=2011-06-15&Action=AssumeRole",
        "Version=2011-06-15&Action=GetCallerIdentity",
        "Action=GetCallerIdentity&Version=2099-01-01",
        "Action=GetCallerIdentity&Version=2011-06-15 ",
        "",
    ],
)
def test_another_sts_action_or_extra_parameters(body: str) -> None:
    p = proof()
    p["body"] = body
    assert refused(p) is ProofRefusal.ACTION


@pytest.mark.parametrize("method", ["GET", "PUT", "post", "POST "])
def test_only_post(method: str) -> None:
    p = proof()
    p["method"] = method
    assert refused(p) is ProofRefusal.METHOD


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/",
        "https://sts.us-east-1.amazonaws.com/",  # another region's endpoint
        "https://sts.amazonaws.com/",  # the global one, not configured
        "https://sts.eu-west-1.amazonaws.com.evil.example/",
        "https://sts.eu-west-1.amazonaws.com@evil.example/",
        "https://evil.example@sts.eu-west-1.amazonaws.com/",
        "https://user:pass@sts.eu-west-1.amazonaws.com/",
        "https://evil.example\\@sts.eu-west-1.amazonaws.com/",
        "https://sts.eu-west-1.amazonaws.com:8443/",
        "https://sts.eu-west-1.amazonaws.com:443/",
        "https://sts.eu-west-1.amazonaws.com:443@evil.example/",
        "https://evil.example:443#@sts.eu-west-1.amazonaws.com/",
        "https://sts%2eeu-west-1.amazonaws.com/",
        "https://sts.eu-west-1.amazonaws.com/?Action=AssumeRole",
        "https://sts.eu-west-1.amazonaws.com/#x",
        "https://sts.eu-west-1.amazonaws.com/x",
        "https://sts.eu-west-1.amazonaws.com//",
        "http://sts.eu-west-1.amazonaws.com/",  # http to a non-local host
        "http://127.0.0.1:4566/",  # a local URL the deployment is not configured for
        "//sts.eu-west-1.amazonaws.com/",
        "file:///etc/passwd",
        " https://sts.eu-west-1.amazonaws.com/",
    ],
)
def test_a_url_other_than_the_configured_endpoint(url: str) -> None:
    p = proof()
    p["url"] = url
    assert refused(p) is ProofRefusal.URL


def test_a_host_header_other_than_the_endpoint() -> None:
    assert refused(set_header(proof(), "Host", "evil.example")) is ProofRefusal.HOST
    assert refused(set_header(proof(), "Host", "sts.eu-west-1.amazonaws.com:443")) is (
        ProofRefusal.HOST
    )


def test_a_proof_signed_for_another_endpoint() -> None:
    other = StsEndpoint.parse("https://sts.us-east-1.amazonaws.com", default_region="us-east-1")
    p = proof(endpoint=other)
    p["url"] = ENDPOINT.url  # pointed at ours, but Host and scope still name the other
    assert refused(p) is ProofRefusal.HOST
    p = set_header(p, "Host", ENDPOINT.host_header)
    assert refused(p) is ProofRefusal.SCOPE


def test_a_scope_for_another_service() -> None:
    p = proof()
    auth = p["headers"]["Authorization"].replace("/sts/aws4_request", "/iam/aws4_request")
    assert refused(set_header(p, "Authorization", auth)) is ProofRefusal.SCOPE


def test_a_scope_date_other_than_the_signing_date() -> None:
    p = proof()
    auth = p["headers"]["Authorization"].replace("/20261130/", "/20261129/")
    assert refused(set_header(p, "Authorization", auth)) is ProofRefusal.SCOPE


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
        lambda a: a.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"),
        lambda a: a.split(", Signature=")[0],
        lambda a: a + ", Extra=1",
        lambda a: a.replace("SignedHeaders=", "SignedHeaders=zzz;"),
        lambda a: a.replace("content-type;host", "host;content-type"),
        lambda a: a.replace("Signature=", "Signature=AB"),
        lambda a: a.replace("x-pqfile-request-sha256", "x-pqfile-request-sha256;x-forwarded-for"),
        lambda a: "Bearer abc",
    ],
)
def test_a_malformed_authorization_header(change: Any) -> None:
    p = proof()
    p = set_header(p, "Authorization", change(p["headers"]["Authorization"]))
    assert refused(p) is ProofRefusal.AUTHORIZATION


def test_no_authorization_header() -> None:
    assert refused(set_header(proof(), "Authorization", None)) is ProofRefusal.AUTHORIZATION


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Forwarded-For", "10.0.0.1"),
        ("Accept", "application/json"),
        ("Date", "Mon, 30 Nov 2026 12:00:00 GMT"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "999"),
        ("X Amz Date", "x"),
        ("Host\r\nX-Injected", "x"),
    ],
)
def test_headers_outside_the_allowed_set(name: str, value: str) -> None:
    assert refused(set_header(proof(), name, value)) is ProofRefusal.HEADER


def test_a_header_given_twice_in_different_case() -> None:
    p = proof()
    p["headers"]["x-amz-date"] = p["headers"]["X-Amz-Date"]
    assert refused(p) is ProofRefusal.HEADER


@pytest.mark.parametrize(
    "value", ["pqfile-test\r\nX-Injected: 1", "pqfile-test\n", " pqfile-test", "pqfile-tést", ""]
)
def test_header_values_that_could_split_a_request(value: str) -> None:
    assert refused(set_header(proof(), "X-Pqfile-Audience", value)) is ProofRefusal.HEADER


def test_a_content_type_sts_would_not_read_as_a_form() -> None:
    p = set_header(proof(), "Content-Type", "application/json")
    assert refused(p) is ProofRefusal.CONTENT_TYPE


@pytest.mark.parametrize("date", ["2026-11-30T12:00:00Z", "20261130T120000", "20261331T120000Z"])
def test_a_malformed_date(date: str) -> None:
    assert refused(set_header(proof(), "X-Amz-Date", date)) is ProofRefusal.DATE


@pytest.mark.parametrize(
    "candidate",
    [
        [],
        "proof",
        {"method": "POST", "url": ENDPOINT.url, "headers": {}},
        {"method": "POST", "url": ENDPOINT.url, "headers": {}, "body": STS_BODY, "extra": 1},
        {"method": "POST", "url": ENDPOINT.url, "headers": [], "body": STS_BODY},
        {"method": "POST", "url": 7, "headers": {}, "body": STS_BODY},
        {"method": "POST", "url": ENDPOINT.url, "headers": {"Host": 1}, "body": STS_BODY},
        {"method": "POST", "url": ENDPOINT.url, "headers": {}, "body": b"bytes"},
    ],
)
def test_a_malformed_proof(candidate: object) -> None:
    assert refused(candidate) is ProofRefusal.MALFORMED


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p.update(url="https://sts.eu-west-1.amazonaws.com/" + "a" * 300),
        lambda p: p.update(body=STS_BODY + "&" * 300),
        lambda p: p.update(method="POST" * 10),
        lambda p: p["headers"].update({"X-Amz-Security-Token": "t" * (MAX_HEADER_VALUE + 1)}),
        lambda p: p["headers"].update({f"X-H{i}": "v" for i in range(20)}),
        lambda p: p["headers"].update({"X" * 100: "v"}),
        lambda p: p["headers"].update(
            {
                "X-Amz-Security-Token": "t" * 4000,
                "X-Pqfile-Audience": "a" * 4000,
                "X-Amz-Date": "d" * 4000,
            }
        ),
        lambda p: p.update(url="x" * 5_000_000),
    ],
)
def test_oversized_fields(change: Any) -> None:
    p = proof()
    change(p)
    assert refused(p) is ProofRefusal.TOO_LARGE


def test_the_policy_refuses_odd_audiences_and_lifetimes() -> None:
    for audience in ["", "a b", "x" * 200, "-leading-dash", "tab\t"]:
        with pytest.raises(ValueError):
            ProofPolicy(ENDPOINT, audience)
    for seconds in [0, -1, 901]:
        with pytest.raises(ValueError):
            ProofPolicy(ENDPOINT, "ok", max_age=dt.timedelta(seconds=seconds))


def test_callers_must_pass_a_real_hash_and_an_aware_clock() -> None:
    with pytest.raises(ValueError):
        validate_proof(proof(), POLICY, request_sha256="abc", now=NOW)
    with pytest.raises(ValueError):
        validate_proof(proof(), POLICY, request_sha256=SHA, now=NOW.replace(tzinfo=None))


# --- what STS answers ------------------------------------------------------------------------


def test_an_altered_signature_passes_the_checks_and_sts_refuses_it() -> None:
    # The service cannot check a signature (it lacks the caller's secret): STS does.
    p = proof()
    auth = p["headers"]["Authorization"]
    p = set_header(p, "Authorization", auth[:-8] + ("0" * 8 if auth[-8:] != "0" * 8 else "1" * 8))
    refusal = b"<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code></Error></ErrorResponse>"
    sender = RecordingSender(StsAnswer(403, refusal))
    with pytest.raises(IdentityProofError) as caught:
        verify_caller(p, POLICY, request_sha256=SHA, now=NOW, send=sender)
    assert caught.value.reason is ProofRefusal.STS_REFUSED
    assert "SignatureDoesNotMatch" in str(caught.value)
    assert len(sender.sent) == 1


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (301, ProofRefusal.STS_REDIRECT),
        (302, ProofRefusal.STS_REDIRECT),
        (307, ProofRefusal.STS_REDIRECT),
        (400, ProofRefusal.STS_REFUSED),
        (403, ProofRefusal.STS_REFUSED),
        (500, ProofRefusal.STS_UNAVAILABLE),
        (503, ProofRefusal.STS_UNAVAILABLE),
        (204, ProofRefusal.STS_UNAVAILABLE),
    ],
)
def test_any_answer_but_200_refuses(status: int, reason: ProofRefusal) -> None:
    sender = RecordingSender(StsAnswer(status, OK_ANSWER.body))
    with pytest.raises(IdentityProofError) as caught:
        verify_caller(proof(), POLICY, request_sha256=SHA, now=NOW, send=sender)
    assert caught.value.reason is reason
    assert len(sender.sent) == 1
