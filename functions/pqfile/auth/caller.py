"""From STS's answer to a verified caller: the answer's parse and the principal's normal form.

Normal form (docs/CONTRACTS.md, "Caller identity proofs"), by the ARN STS returns:

============================================  ================================  ==========
STS ``Arn``                                   ``principal_arn`` (the actor)     session
============================================  ================================  ==========
``arn:P:iam::ACCT:user/PATH/NAME``            unchanged                         None
``arn:P:iam::ACCT:root``                      unchanged                         None
``arn:P:sts::ACCT:assumed-role/ROLE/SESSION`` ``arn:P:iam::ACCT:role/ROLE``     SESSION
``arn:P:sts::ACCT:federated-user/NAME``       unchanged                         None
============================================  ================================  ==========

An assumed-role ARN carries no role path, so the role ARN has none either: rules name a
role as ``arn:P:iam::ACCT:role/ROLE``. Any other ARN is refused.

The answer is parsed with ``xml.etree.ElementTree`` on a body capped at
:data:`MAX_ANSWER` bytes (defusedxml is not a dependency). ElementTree (expat) never
fetches external entities or DTDs; internal entities could still expand, so any answer
with a document type declaration is refused before parsing.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from pqfile.auth.errors import IdentityProofError, ProofRefusal
from pqfile.auth.proof import ProofPolicy, StsRequest, validate_proof

#: Largest STS answer read (a GetCallerIdentity answer is well under 1 KiB).
MAX_ANSWER = 16 * 1024
STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"

_PARTITION = r"aws(?:-cn|-us-gov|-iso(?:-[a-z])?)?"
_NAME = r"[\w+=,.@-]{1,64}"
_ARN = re.compile(
    rf"arn:(?P<partition>{_PARTITION}):(?P<service>iam|sts)::(?P<account>\d{{12}})"
    r":(?P<resource>[\x21-\x7e]{1,1024})",
    re.ASCII,
)
_USER = re.compile(rf"user(?:/[\x21-\x7e]{{1,512}})?/{_NAME}", re.ASCII)
_ASSUMED_ROLE = re.compile(rf"assumed-role/(?P<role>{_NAME})/(?P<session>{_NAME})", re.ASCII)
_FEDERATED = re.compile(rf"federated-user/{_NAME}", re.ASCII)
_USER_ID = re.compile(r"[A-Za-z0-9:+=,.@_-]{1,256}")
_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9.]{0,63}")


@dataclass(frozen=True)
class StsAnswer:
    """What the endpoint answered: the status and at most MAX_ANSWER + 1 bytes of body."""

    status: int
    body: bytes


#: Sends a checked request to its URL, follows no redirect, reads at most MAX_ANSWER + 1
#: bytes; raises IdentityProofError(STS_UNAVAILABLE) when there is no answer.
Send = Callable[[StsRequest], StsAnswer]


@dataclass(frozen=True)
class VerifiedCaller:
    """The principal STS vouched for."""

    #: The actor: an IAM user or root ARN, a role ARN (assumed roles) or a federated user.
    principal_arn: str
    account: str
    #: The role session name of an assumed role (who, for SSO and federation); else None.
    session_name: str | None
    #: The ARN exactly as STS returned it.
    sts_arn: str
    #: STS's UserId (``AIDA...``, or ``AROA...:session``).
    user_id: str
    #: The access key that signed (not secret; CloudTrail records it too).
    access_key_id: str
    signed_at: dt.datetime

    def audit_details(self) -> dict[str, str]:
        """What an audit row keeps beside the actor."""
        details = {
            "sts_arn": self.sts_arn,
            "user_id": self.user_id,
            "access_key_id": self.access_key_id,
            "signed_at": self.signed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if self.session_name is not None:
            details["session"] = self.session_name
        return details


def normalise_principal(sts_arn: str) -> tuple[str, str | None]:
    """(principal ARN, session name) of an ARN STS returned; see the module's table.
    Raise IdentityProofError(PRINCIPAL) for any other form."""
    match = _ARN.fullmatch(sts_arn)
    if match is None:
        raise IdentityProofError(ProofRefusal.PRINCIPAL)
    partition, service = match["partition"], match["service"]
    account, resource = match["account"], match["resource"]
    if service == "iam" and (resource == "root" or _USER.fullmatch(resource)):
        return sts_arn, None
    if service == "sts":
        assumed = _ASSUMED_ROLE.fullmatch(resource)
        if assumed:
            return f"arn:{partition}:iam::{account}:role/{assumed['role']}", assumed["session"]
        if _FEDERATED.fullmatch(resource):
            return sts_arn, None
    raise IdentityProofError(ProofRefusal.PRINCIPAL)


def _parse_xml(body: bytes) -> ET.Element:
    if len(body) > MAX_ANSWER:
        raise IdentityProofError(ProofRefusal.STS_ANSWER, "too large")
    if b"<!" in body:  # DOCTYPE, ENTITY, CDATA, comments: none belongs in an STS answer
        raise IdentityProofError(ProofRefusal.STS_ANSWER, "declarations")
    try:
        return ET.fromstring(body)  # noqa: S314 - see the module docstring
    except ET.ParseError:
        raise IdentityProofError(ProofRefusal.STS_ANSWER, "not XML") from None


def _text(parent: ET.Element, path: str) -> str:
    found = parent.findall(path)
    if len(found) != 1 or not found[0].text:
        raise IdentityProofError(ProofRefusal.STS_ANSWER, "fields")
    return found[0].text.strip()


def _error_code(body: bytes) -> str:
    """STS's error code of a refusal, when it is one we can name safely."""
    try:
        root = _parse_xml(body)
    except IdentityProofError:
        return ""
    code = next((e.text for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Code"), None)
    return code.strip() if code and _ERROR_CODE.fullmatch(code.strip()) else ""


def caller_from_answer(answer: StsAnswer, request: StsRequest) -> VerifiedCaller:
    """The caller STS named in a GetCallerIdentity answer; refuse anything else."""
    if 300 <= answer.status < 400:
        raise IdentityProofError(ProofRefusal.STS_REDIRECT, str(answer.status))
    if 400 <= answer.status < 500:
        code = _error_code(answer.body)
        raise IdentityProofError(ProofRefusal.STS_REFUSED, f"{answer.status} {code}".strip())
    if answer.status != 200:
        raise IdentityProofError(ProofRefusal.STS_UNAVAILABLE, str(answer.status))
    root = _parse_xml(answer.body)
    ns = f"{{{STS_NAMESPACE}}}"
    if root.tag != f"{ns}GetCallerIdentityResponse":
        raise IdentityProofError(ProofRefusal.STS_ANSWER, "not a GetCallerIdentityResponse")
    result = root.findall(f"{ns}GetCallerIdentityResult")
    if len(result) != 1:
        raise IdentityProofError(ProofRefusal.STS_ANSWER, "fields")
    sts_arn = _text(result[0], f"{ns}Arn")
    account = _text(result[0], f"{ns}Account")
    user_id = _text(result[0], f"{ns}UserId")
    if len(sts_arn) > 2048 or not _USER_ID.fullmatch(user_id):
        raise IdentityProofError(ProofRefusal.STS_ANSWER, "fields")
    principal, session = normalise_principal(sts_arn)
    match = _ARN.fullmatch(sts_arn)
    if match is None or match["account"] != account:
        raise IdentityProofError(ProofRefusal.STS_ANSWER, "account")
    return VerifiedCaller(
        principal_arn=principal,
        account=account,
        session_name=session,
        sts_arn=sts_arn,
        user_id=user_id,
        access_key_id=request.access_key_id,
        signed_at=request.signed_at,
    )


def verify_caller(
    proof: object,
    policy: ProofPolicy,
    *,
    request_sha256: str,
    now: dt.datetime,
    send: Send,
) -> VerifiedCaller:
    """Check ``proof``, then (only if every check passed) send it once and read STS's
    answer. Raise IdentityProofError; ``send`` is never called for a refused proof."""
    request = validate_proof(proof, policy, request_sha256=request_sha256, now=now)
    return caller_from_answer(send(request), request)
