"""Caller identity against a local STS that checks signatures (tests/fixtures/local_sts.py):
real SigV4 proofs from two IAM users and an assumed role, real HTTP, real refusals.

Forged proofs are refused before any request: the sender is wrapped and counted, and
URLs pointing elsewhere point at a listener that records every connection.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from pqfile.adapters.sts_identity import HttpSender, StsCallerIdentityVerifier
from pqfile.adapters.sts_proof import build_identity_proof
from pqfile.auth import (
    IdentityProofError,
    ProofPolicy,
    ProofRefusal,
    StsAnswer,
    StsEndpoint,
    StsRequest,
    retrieve_request_sha256,
    validate_proof,
)
from pqfile.cli import main
from tests.fixtures.local_sts import LocalSts, RecordingListener

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

AUDIENCE = "pqfile-it"
REQUEST = {"document_id": "doc-a"}
SHA = retrieve_request_sha256(REQUEST)


class CountingSender:
    """The real sender, counted."""

    def __init__(self, inner: HttpSender) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self, request: StsRequest) -> StsAnswer:
        self.calls += 1
        return self.inner(request)


def verifier_for(endpoint: StsEndpoint, timeout: float = 5.0) -> tuple[Any, CountingSender]:
    sender = CountingSender(HttpSender(endpoint, timeout=timeout))
    return StsCallerIdentityVerifier(ProofPolicy(endpoint, AUDIENCE), send=sender), sender


@pytest.fixture
def verifier(local_sts: LocalSts) -> tuple[Any, CountingSender]:
    return verifier_for(local_sts.endpoint())


def make_proof(
    sts: LocalSts,
    credentials: Any,
    request: dict[str, Any] | None = None,
    *,
    at: dt.datetime | None = None,
    audience: str = AUDIENCE,
    endpoint: StsEndpoint | None = None,
) -> dict[str, Any]:
    return build_identity_proof(
        request or REQUEST,
        audience=audience,
        endpoint=endpoint or sts.endpoint(),
        credentials=credentials,
        now=at,
    )


def alice(sts: LocalSts) -> Any:
    return sts.users["alice"].credentials()


def refusal(verifier: Any, proof: object, sha: str = SHA) -> IdentityProofError:
    with pytest.raises(IdentityProofError) as caught:
        verifier.verify(proof, request_sha256=sha)
    return caught.value


def with_header(proof: dict[str, Any], name: str, value: str | None) -> dict[str, Any]:
    proof = copy.deepcopy(proof)
    proof["headers"] = {k: v for k, v in proof["headers"].items() if k.lower() != name.lower()}
    if value is not None:
        proof["headers"][name] = value
    return proof


# --- who STS says signed ---------------------------------------------------------------------


def test_each_user_verifies_to_their_own_arn(local_sts: LocalSts, verifier: Any) -> None:
    check, sender = verifier
    for name in ("alice", "bob"):
        user = local_sts.users[name]
        caller = check.verify(make_proof(local_sts, user.credentials()), request_sha256=SHA)
        assert caller.principal_arn == user.arn == f"arn:aws:iam::123456789012:user/{name}"
        assert caller.sts_arn == user.arn and caller.session_name is None
        assert caller.account == "123456789012"
        assert caller.access_key_id == user.access_key_id
    assert sender.calls == 2  # one STS round trip per proof


def test_an_assumed_role_verifies_to_the_role_and_session(
    local_sts: LocalSts, verifier: Any
) -> None:
    check, _ = verifier
    role_credentials = local_sts.assume_role("alice", "alice-laptop")
    proof = make_proof(local_sts, role_credentials)
    assert "X-Amz-Security-Token" in proof["headers"]
    caller = check.verify(proof, request_sha256=SHA)
    assert caller.principal_arn == "arn:aws:iam::123456789012:role/pqfile-reader"
    assert caller.session_name == "alice-laptop"
    assert caller.sts_arn == "arn:aws:sts::123456789012:assumed-role/pqfile-reader/alice-laptop"
    assert caller.audit_details()["session"] == "alice-laptop"


def test_the_cli_proof_verifies(
    local_sts: LocalSts, verifier: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    bob = local_sts.users["bob"]
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "PQFILE_STS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", bob.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", bob.secret_access_key)
    monkeypatch.setenv("PQFILE_AUDIENCE", AUDIENCE)
    rc = main(["auth", "proof", "--document-id", "doc-a", "--region", "us-east-1",
               "--endpoint-url", local_sts.endpoint_url, "--json"])  # fmt: skip
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    check, _ = verifier
    sha = retrieve_request_sha256(payload)
    caller = check.verify(payload["identity_proof"], request_sha256=sha)
    assert caller.principal_arn == bob.arn


# --- what STS refuses: exactly one request, answered 403 -------------------------------------


def test_an_altered_signature(local_sts: LocalSts, verifier: Any) -> None:
    check, sender = verifier
    proof = make_proof(local_sts, alice(local_sts))
    auth = proof["headers"]["Authorization"]
    last = "1" if auth[-1] != "1" else "2"
    error = refusal(check, with_header(proof, "Authorization", auth[:-1] + last))
    assert error.reason is ProofRefusal.STS_REFUSED and "403 SignatureDoesNotMatch" in str(error)
    assert sender.calls == 1


def test_another_users_secret(local_sts: LocalSts, verifier: Any) -> None:
    check, _ = verifier
    a, b = local_sts.users["alice"], local_sts.users["bob"]
    error = refusal(check, make_proof(local_sts, Credentials(a.access_key_id, b.secret_access_key)))
    assert error.reason is ProofRefusal.STS_REFUSED and "SignatureDoesNotMatch" in str(error)


def test_an_unknown_access_key(local_sts: LocalSts, verifier: Any) -> None:
    check, _ = verifier
    error = refusal(check, make_proof(local_sts, Credentials("AKIANOBODYNOBODYNOBO", "x")))
    assert error.reason is ProofRefusal.STS_REFUSED and "InvalidClientTokenId" in str(error)


@pytest.mark.parametrize("header", ["X-Pqfile-Audience", "X-Pqfile-Request-Sha256"])
def test_sts_checks_the_extra_signed_headers(local_sts: LocalSts, header: str) -> None:
    # A proof made for another audience or request, its header rewritten to pass our
    # checks: only the signature stands in the way, and the emulated STS enforces it.
    proof = make_proof(local_sts, alice(local_sts), {"document_id": "doc-b"}, audience="other")
    other_sha = retrieve_request_sha256({"document_id": "doc-b"})
    if header == "X-Pqfile-Audience":
        proof, sha = with_header(proof, header, AUDIENCE), other_sha
    else:
        proof = make_proof(local_sts, alice(local_sts), {"document_id": "doc-b"})
        proof, sha = with_header(proof, header, SHA), SHA
    check, sender = verifier_for(local_sts.endpoint())
    error = refusal(check, proof, sha)
    assert error.reason is ProofRefusal.STS_REFUSED and "SignatureDoesNotMatch" in str(error)
    assert sender.calls == 1


def test_the_local_sts_enforces_iam(local_sts: LocalSts) -> None:
    """Canary: bob may not assume alice's role (no policy, not in the trust policy)."""
    with pytest.raises(ClientError) as caught:
        local_sts.assume_role("bob", "bob-session")
    assert caught.value.response["Error"]["Code"] == "AccessDenied"


def test_the_local_sts_enforces_signatures(local_sts: LocalSts) -> None:
    """Canary: signature checking is really on (enable_signature_checks took effect)."""
    a = local_sts.users["alice"]
    with pytest.raises(ClientError) as caught:
        local_sts.client("sts", Credentials(a.access_key_id, "wrong")).get_caller_identity()
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_moto_does_not_check_the_signing_time(local_sts: LocalSts, verifier: Any) -> None:
    """Documented in the fixture: locally the proof's freshness is our check alone."""
    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    proof = make_proof(local_sts, alice(local_sts), at=an_hour_ago)
    request = validate_proof(
        proof, ProofPolicy(local_sts.endpoint(), AUDIENCE), request_sha256=SHA, now=an_hour_ago
    )
    assert HttpSender(local_sts.endpoint())(request).status == 200  # moto takes it
    check, sender = verifier
    assert refusal(check, proof).reason is ProofRefusal.EXPIRED  # we do not
    assert sender.calls == 0


# --- forgeries refused before any request ----------------------------------------------------


def _future(sts: LocalSts) -> dict[str, Any]:
    return make_proof(sts, alice(sts), at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6))


def _expired(sts: LocalSts) -> dict[str, Any]:
    return make_proof(sts, alice(sts), at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6))


def _unsigned_audience(sts: LocalSts) -> dict[str, Any]:
    proof = with_header(make_proof(sts, alice(sts), audience="placeholder"), "X-Pqfile-Audience",
                        None)  # fmt: skip
    auth = proof["headers"]["Authorization"].replace(";x-pqfile-audience", "")
    return with_header(with_header(proof, "Authorization", auth), "X-Pqfile-Audience", AUDIENCE)


def _body(body: str) -> Any:
    def forge(sts: LocalSts) -> dict[str, Any]:
        proof = make_proof(sts, alice(sts))
        proof["body"] = body
        return proof

    return forge


FORGERIES = {
    "expired date": (_expired, ProofRefusal.EXPIRED),
    "future date": (_future, ProofRefusal.FUTURE),
    "missing audience": (
        lambda s: with_header(make_proof(s, alice(s)), "X-Pqfile-Audience", None),
        ProofRefusal.UNSIGNED,
    ),
    "wrong audience": (lambda s: make_proof(s, alice(s), audience="pqfile-other"),
                       ProofRefusal.AUDIENCE),
    "audience not signed": (_unsigned_audience, ProofRefusal.UNSIGNED),
    "another document": (lambda s: make_proof(s, alice(s), {"document_id": "doc-b"}),
                         ProofRefusal.REQUEST_HASH),
    "another action": (_body("Action=GetSessionToken&Version=2011-06-15"), ProofRefusal.ACTION),
    "assume role": (
        _body("Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::123456789012:role/"
              "pqfile-reader&RoleSessionName=x"),
        ProofRefusal.ACTION,
    ),
    "extra parameters": (_body("Action=GetCallerIdentity&Version=2011-06-15&X=1"),
                         ProofRefusal.ACTION),
    "oversized token": (
        lambda s: with_header(make_proof(s, alice(s)), "X-Amz-Security-Token", "t" * 5000),
        ProofRefusal.TOO_LARGE,
    ),
    "no proof": (lambda s: None, ProofRefusal.MISSING),
}  # fmt: skip


@pytest.mark.parametrize("name", list(FORGERIES))
def test_forgeries_are_refused_unsent(local_sts: LocalSts, verifier: Any, name: str) -> None:
    forge, reason = FORGERIES[name]
    check, sender = verifier
    assert refusal(check, forge(local_sts)).reason is reason
    assert sender.calls == 0


@pytest.fixture
def listener() -> Iterator[RecordingListener]:
    spot = RecordingListener(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    yield spot
    spot.close()


def test_urls_elsewhere_reach_nothing(
    local_sts: LocalSts, verifier: Any, listener: RecordingListener
) -> None:
    check, sender = verifier
    sts_port = local_sts.endpoint().port
    valid = make_proof(local_sts, alice(local_sts))
    urls = [
        listener.url,
        f"http://localhost:{listener.port}/",
        f"http://127.0.0.1:{listener.port}/?Action=GetCallerIdentity",
        f"http://127.0.0.1:{sts_port}@127.0.0.1:{listener.port}/",
        f"http://127.0.0.1:{listener.port}#@127.0.0.1:{sts_port}/",
        f"http://127.0.0.1:{listener.port}\\@127.0.0.1:{sts_port}/",
        f"http://user:pass@127.0.0.1:{sts_port}/",
        f"https://127.0.0.1:{sts_port}/",
        f"http://127.0.0.2:{sts_port}/",
        "https://sts.us-east-1.amazonaws.com/",
        "http://sts.us-east-1.amazonaws.com/",
        "http://169.254.169.254/latest/meta-data/",
    ]
    for url in urls:
        proof = copy.deepcopy(valid)
        proof["url"] = url
        assert refusal(check, proof).reason is ProofRefusal.URL, url
    # The Host header is the other way to name a host: refused just the same.
    assert refusal(check, with_header(valid, "Host", f"127.0.0.1:{listener.port}")).reason is (
        ProofRefusal.HOST
    )
    # A proof signed for the listener as its endpoint: its URL is not ours.
    theirs = make_proof(local_sts, alice(local_sts), endpoint=StsEndpoint.parse(
        listener.url, default_region="us-east-1"))  # fmt: skip
    assert refusal(check, theirs).reason is ProofRefusal.URL
    assert sender.calls == 0
    assert listener.connections() == 0


# --- an endpoint that misbehaves ---------------------------------------------------------------


def test_a_redirect_is_not_followed(local_sts: LocalSts, listener: RecordingListener) -> None:
    redirecting = RecordingListener(
        f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {listener.url}\r\n"
        f"Content-Length: 0\r\n\r\n".encode()
    )
    try:
        endpoint = StsEndpoint.parse(redirecting.url, default_region="us-east-1")
        check, sender = verifier_for(endpoint)
        proof = make_proof(local_sts, alice(local_sts), endpoint=endpoint)
        error = refusal(check, proof)
        assert error.reason is ProofRefusal.STS_REDIRECT and "307" in str(error)
        assert sender.calls == 1 and redirecting.connections() == 1
        assert listener.connections() == 0
        # What was sent: the proof's request, its own signed Host header and nothing added.
        [sent] = redirecting.requests
        head = sent.split(b"\r\n\r\n")[0].decode().split("\r\n")
        assert head[0] == "POST / HTTP/1.1"
        names = [line.split(":", 1)[0].lower() for line in head[1:]]
        assert names.count("host") == 1 and f"Host: 127.0.0.1:{redirecting.port}" in head
        assert sorted(names) == sorted([*(n.lower() for n in proof["headers"]), "content-length"])
    finally:
        redirecting.close()


def test_a_silent_endpoint_times_out(local_sts: LocalSts) -> None:
    silent = RecordingListener(None)
    try:
        endpoint = StsEndpoint.parse(silent.url, default_region="us-east-1")
        check, _ = verifier_for(endpoint, timeout=1.0)
        started = time.monotonic()
        error = refusal(check, make_proof(local_sts, alice(local_sts), endpoint=endpoint))
        assert error.reason is ProofRefusal.STS_UNAVAILABLE
        assert time.monotonic() - started < 5
    finally:
        silent.close()


def test_a_closed_port_is_unavailable(local_sts: LocalSts) -> None:
    gone = RecordingListener()
    endpoint = StsEndpoint.parse(gone.url, default_region="us-east-1")
    gone.close()
    check, _ = verifier_for(endpoint, timeout=1.0)
    error = refusal(check, make_proof(local_sts, alice(local_sts), endpoint=endpoint))
    assert error.reason is ProofRefusal.STS_UNAVAILABLE


def test_an_oversized_answer_is_not_read_whole(local_sts: LocalSts) -> None:
    body = b"<GetCallerIdentityResponse>" + b"x" * 1_000_000
    flood = RecordingListener(
        b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    try:
        endpoint = StsEndpoint.parse(flood.url, default_region="us-east-1")
        check, _ = verifier_for(endpoint)
        error = refusal(check, make_proof(local_sts, alice(local_sts), endpoint=endpoint))
        assert error.reason is ProofRefusal.STS_ANSWER and "too large" in str(error)
    finally:
        flood.close()
