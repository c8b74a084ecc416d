"""STS's answer read strictly, and principals normalised (pqfile.auth.caller)."""

from __future__ import annotations

import datetime as dt

import pytest

from pqfile.auth import (
    IdentityProofError,
    ProofRefusal,
    StsAnswer,
    StsRequest,
    caller_from_answer,
    normalise_principal,
)
from pqfile.auth.caller import MAX_ANSWER

REQUEST = StsRequest(
    url="https://sts.eu-west-1.amazonaws.com/",
    headers=(),
    body=b"",
    access_key_id="ASIAEXAMPLEEXAMPLE00",
    signed_at=dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC),
)
NS = "https://sts.amazonaws.com/doc/2011-06-15/"


def answer(arn: str, account: str = "111122223333", user_id: str = "AIDAEXAMPLE") -> StsAnswer:
    return StsAnswer(
        200,
        (
            f'<GetCallerIdentityResponse xmlns="{NS}">\n'
            f"  <GetCallerIdentityResult>\n"
            f"    <Arn>{arn}</Arn>\n    <UserId>{user_id}</UserId>\n"
            f"    <Account>{account}</Account>\n"
            f"  </GetCallerIdentityResult>\n"
            f"  <ResponseMetadata><RequestId>01234567-89ab</RequestId></ResponseMetadata>\n"
            f"</GetCallerIdentityResponse>\n"
        ).encode(),
    )


def refusal(a: StsAnswer) -> ProofRefusal:
    with pytest.raises(IdentityProofError) as caught:
        caller_from_answer(a, REQUEST)
    return caught.value.reason


@pytest.mark.parametrize(
    ("sts_arn", "principal", "session"),
    [
        ("arn:aws:iam::111122223333:user/alice", "arn:aws:iam::111122223333:user/alice", None),
        (
            "arn:aws:iam::111122223333:user/division/team/alice",
            "arn:aws:iam::111122223333:user/division/team/alice",
            None,
        ),
        ("arn:aws:iam::111122223333:root", "arn:aws:iam::111122223333:root", None),
        (
            "arn:aws:sts::111122223333:assumed-role/pqfile-reader/alice-session",
            "arn:aws:iam::111122223333:role/pqfile-reader",
            "alice-session",
        ),
        (
            "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Reader_0123abcd/alice@example.com",
            "arn:aws:iam::111122223333:role/AWSReservedSSO_Reader_0123abcd",
            "alice@example.com",
        ),
        (
            "arn:aws:sts::111122223333:assumed-role/ec2-app/i-0123456789abcdef0",
            "arn:aws:iam::111122223333:role/ec2-app",
            "i-0123456789abcdef0",
        ),
        (
            "arn:aws-cn:sts::111122223333:assumed-role/reader/s1",
            "arn:aws-cn:iam::111122223333:role/reader",
            "s1",
        ),
        (
            "arn:aws-us-gov:sts::111122223333:assumed-role/reader/s1",
            "arn:aws-us-gov:iam::111122223333:role/reader",
            "s1",
        ),
        (
            "arn:aws:sts::111122223333:federated-user/bob",
            "arn:aws:sts::111122223333:federated-user/bob",
            None,
        ),
    ],
)
def test_normal_form(sts_arn: str, principal: str, session: str | None) -> None:
    assert normalise_principal(sts_arn) == (principal, session)


@pytest.mark.parametrize(
    "sts_arn",
    [
        "arn:aws:iam::111122223333:role/reader",  # STS never answers with a bare role
        "arn:aws:sts::111122223333:assumed-role/reader",  # no session
        "arn:aws:sts::111122223333:assumed-role/reader/s/extra",
        "arn:aws:sts::111122223333:assumed-role/rëader/s1",
        "arn:aws:sts::111122223333:user/moto",  # moto's answer for an unknown key
        "arn:aws:iam::11112222333:user/alice",  # 11 digits
        "arn:aws:iam:eu-west-1:111122223333:user/alice",  # a region
        "arn:aws:s3:::bucket",
        "arn:evil:iam::111122223333:user/alice",
        "arn:aws:iam::111122223333:user/alice\nsecond line",
        "arn:aws:iam::111122223333:user/",
        "not an arn",
        "",
    ],
)
def test_other_forms_are_refused(sts_arn: str) -> None:
    with pytest.raises(IdentityProofError) as caught:
        normalise_principal(sts_arn)
    assert caught.value.reason is ProofRefusal.PRINCIPAL


def test_an_assumed_role_answer() -> None:
    caller = caller_from_answer(
        answer(
            "arn:aws:sts::111122223333:assumed-role/pqfile-reader/alice-session",
            user_id="AROAEXAMPLE:alice-session",
        ),
        REQUEST,
    )
    assert caller.principal_arn == "arn:aws:iam::111122223333:role/pqfile-reader"
    assert caller.session_name == "alice-session"
    assert caller.sts_arn == "arn:aws:sts::111122223333:assumed-role/pqfile-reader/alice-session"
    assert caller.account == "111122223333"
    assert caller.audit_details() == {
        "sts_arn": "arn:aws:sts::111122223333:assumed-role/pqfile-reader/alice-session",
        "user_id": "AROAEXAMPLE:alice-session",
        "access_key_id": "ASIAEXAMPLEEXAMPLE00",
        "signed_at": "2026-11-30T12:00:00Z",
        "session": "alice-session",
    }


def test_a_user_answer_has_no_session() -> None:
    caller = caller_from_answer(answer("arn:aws:iam::111122223333:user/alice"), REQUEST)
    assert caller.principal_arn == "arn:aws:iam::111122223333:user/alice"
    assert caller.session_name is None and "session" not in caller.audit_details()


def test_the_account_must_be_the_arns() -> None:
    a = answer("arn:aws:iam::111122223333:user/alice", account="999999999999")
    assert refusal(a) is ProofRefusal.STS_ANSWER


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        b"{}",
        b"<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::111122223333:"
        b"user/a</Arn><UserId>A</UserId><Account>111122223333</Account>"
        b"</GetCallerIdentityResult></GetCallerIdentityResponse>",  # no namespace
        f'<AssumeRoleResponse xmlns="{NS}"/>'.encode(),
        f'<GetCallerIdentityResponse xmlns="{NS}"><GetCallerIdentityResult>'
        f"<Arn>arn:aws:iam::111122223333:user/a</Arn><Account>111122223333</Account>"
        f"</GetCallerIdentityResult></GetCallerIdentityResponse>".encode(),  # no UserId
        f'<GetCallerIdentityResponse xmlns="{NS}"><GetCallerIdentityResult>'
        f"<Arn>arn:aws:iam::111122223333:user/a</Arn><Arn>arn:aws:iam::111122223333:user/b</Arn>"
        f"<UserId>A</UserId><Account>111122223333</Account>"
        f"</GetCallerIdentityResult></GetCallerIdentityResponse>".encode(),  # two ARNs
    ],
)
def test_malformed_answers(body: bytes) -> None:
    assert refusal(StsAnswer(200, body)) is ProofRefusal.STS_ANSWER


def test_entity_declarations_are_refused_before_parsing() -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        + f'<GetCallerIdentityResponse xmlns="{NS}"><GetCallerIdentityResult>'
        f"<Arn>arn:aws:iam::111122223333:user/a</Arn><UserId>&lol2;</UserId>"
        f"<Account>111122223333</Account></GetCallerIdentityResult>"
        f"</GetCallerIdentityResponse>".encode()
    )
    assert refusal(StsAnswer(200, laughs)) is ProofRefusal.STS_ANSWER
    external = (
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + answer("arn:aws:iam::111122223333:user/a").body.replace(b"AIDAEXAMPLE", b"&x;")
    )
    assert refusal(StsAnswer(200, external)) is ProofRefusal.STS_ANSWER


def test_an_oversized_answer_is_refused_unparsed() -> None:
    big = answer("arn:aws:iam::111122223333:user/a").body + b" " * MAX_ANSWER
    assert refusal(StsAnswer(200, big)) is ProofRefusal.STS_ANSWER


def test_a_refusal_names_stss_error_code_only_when_it_looks_like_one() -> None:
    def message(body: bytes) -> str:
        with pytest.raises(IdentityProofError) as caught:
            caller_from_answer(StsAnswer(403, body), REQUEST)
        assert caught.value.reason is ProofRefusal.STS_REFUSED
        return str(caught.value)

    ok = f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>ExpiredToken</Code>'
    assert "403 ExpiredToken" in message((ok + "</Error></ErrorResponse>").encode())
    assert message(b"<Error><Code>has spaces; and <b>more</b></Code></Error>").endswith(
        "(403)"
    )
    assert message(b"garbage").endswith("(403)")
