"""A local STS that checks SigV4 signatures: a moto server of its own, IAM enforced.

:func:`start_local_sts` starts ``python -m devstack.local_sts`` (a moto
``ThreadedMotoServer`` on a free loopback port, in a child process), creates two IAM users
with access keys (``alice``, ``bob``) and a role alice may assume (``pqfile-reader``),
then switches signature checking on. It returns a :class:`LocalSts`. The local stack
(``python -m devstack up``) runs one for the retrieve function's PQFILE_STS_ENDPOINT_URL;
the tests' ``local_sts`` fixture (tests/fixtures/local_sts.py) runs another.

What moto 5.2.5 does, read in its source and checked by tests/integration/test_identity_sts.py:

- ``INITIAL_NO_AUTH_ACTION_COUNT`` is read once, from the environment, when
  ``moto.settings`` is imported, into a module global (default infinity: never check).
  Every request that goes through ``ActionAuthenticatorMixin._authenticate_and_authorize_action``
  (moto/core/authorization.py; every service's ``call_action``) counts until the global
  is reached; after that each request is authenticated and authorised.
- In server mode the global can also be changed at run time: ``POST /moto-api/reset-auth``
  with the new count as a bare body (``0``: check every request from now on) sets it and
  resets the counter. The body must not be form-encoded (Flask then hands moto an empty
  body and the call fails with a 500), so we send ``text/plain``.
- Because the global and the IAM backends belong to the process, a ``ThreadedMotoServer``
  inside the pytest process would switch IAM on for every in-process moto as well (the
  ``custody_kms`` fixture runs one), and the main emulator's Step Functions interpreter
  calls Lambda with fake credentials, which an IAM-enforcing emulator refuses. So this STS
  is a separate process, set up while checking is off, then switched on.
- The signature check (``IAMRequestBase.check_signature``, moto/iam/access_control.py)
  recomputes SigV4 with botocore over exactly the headers named in the request's
  ``SignedHeaders`` and their received values, so the extra ``x-pqfile-audience`` and
  ``x-pqfile-request-sha256`` headers are covered: changing either fails with 403
  ``SignatureDoesNotMatch``. An unknown access key fails with 403 ``InvalidClientTokenId``.
- It does not check the signing time: a request signed an hour ago still passes (real STS
  refuses after 15 minutes). Locally, the proof's freshness is pqfile.auth's check alone.
- ``sts:GetCallerIdentity`` is always permitted once the signature verifies, even with an
  explicit Deny (as on AWS), so the users need no policy for it. ``sts:AssumeRole`` needs
  both an identity policy that allows it and the role's trust policy naming the caller
  (the resource is the RoleArn, so moto checks the trust): alice has both, bob neither,
  and bob given the identity policy alone is still refused.
- GetCallerIdentity answers with the IAM user behind the access key
  (``arn:aws:iam::123456789012:user/NAME``) or, for assumed-role credentials (an
  ``X-Amz-Security-Token`` matching the session), ``arn:aws:sts::...:assumed-role/ROLE/SESSION``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
ROLE_NAME = "pqfile-reader"
_ROLE_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:user/alice"},
            "Action": "sts:AssumeRole",
        }
    ],
}
_MAY_ASSUME = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
}


@dataclass(frozen=True)
class StsUser:
    name: str
    arn: str
    access_key_id: str
    secret_access_key: str

    def credentials(self) -> Any:
        from botocore.credentials import Credentials

        return Credentials(self.access_key_id, self.secret_access_key)


@dataclass
class LocalSts:
    """The running local STS: ``endpoint_url``, its users, and role assumption."""

    endpoint_url: str
    process: subprocess.Popen[bytes]
    users: dict[str, StsUser] = field(default_factory=dict)
    role_arn: str = ""

    def endpoint(self) -> Any:
        from pqfile.auth import StsEndpoint

        return StsEndpoint.parse(self.endpoint_url, default_region=REGION)

    def client(self, service: str, credentials: Any) -> Any:
        import boto3

        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            aws_session_token=credentials.token,
        )

    def assume_role(self, user: str, session_name: str) -> Any:
        """Temporary credentials of the role, assumed by ``user`` (signed, IAM checked)."""
        from botocore.credentials import Credentials

        sts = self.client("sts", self.users[user].credentials())
        found = sts.assume_role(RoleArn=self.role_arn, RoleSessionName=session_name)
        c = found["Credentials"]
        return Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])


def _post(url: str, body: bytes) -> bytes:
    assert url.startswith("http://127.0.0.1:"), url  # our own child on loopback
    request = urllib.request.Request(  # noqa: S310 - checked above
        url, data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310
        return bytes(reply.read())


def enable_signature_checks(endpoint_url: str) -> None:
    """From now on moto authenticates (and authorises) every request."""
    answer = json.loads(_post(f"{endpoint_url}/moto-api/reset-auth", b"0"))
    assert answer["status"] == "ok", answer


def start_local_sts(log_path: Path | None = None) -> LocalSts:
    env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
    log = open(log_path, "wb") if log_path else None
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack.local_sts"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log or subprocess.DEVNULL,
        )
    finally:
        if log:
            log.close()  # the child keeps its own descriptor
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line.startswith("port "):
        process.kill()
        raise RuntimeError(f"the local STS did not start (said {line!r})")
    sts = LocalSts(endpoint_url=f"http://127.0.0.1:{int(line.split()[1])}", process=process)
    try:
        _set_up(sts)
    except BaseException:
        stop_local_sts(sts)
        raise
    return sts


def _set_up(sts: LocalSts) -> None:
    from botocore.credentials import Credentials

    # Checking is off until enable_signature_checks: any key will do for the set-up.
    iam = sts.client("iam", Credentials("AKIASETUPSETUPSETUP0", "setup"))
    for name in ("alice", "bob"):
        user = iam.create_user(UserName=name)["User"]
        key = iam.create_access_key(UserName=name)["AccessKey"]
        sts.users[name] = StsUser(name, user["Arn"], key["AccessKeyId"], key["SecretAccessKey"])
    role = iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(_ROLE_TRUST))
    sts.role_arn = role["Role"]["Arn"]
    iam.put_user_policy(
        UserName="alice", PolicyName="may-assume-reader", PolicyDocument=json.dumps(_MAY_ASSUME)
    )
    enable_signature_checks(sts.endpoint_url)


def stop_local_sts(sts: LocalSts) -> None:
    sts.process.terminate()
    try:
        sts.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        sts.process.kill()
        sts.process.wait()
    if sts.process.stdout:
        sts.process.stdout.close()


def _serve() -> int:
    """The child: a moto server on a free loopback port, until SIGTERM or the parent goes."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"port {server.get_host_and_port()[1]}", flush=True)
    parent = os.getppid()
    while not stop.wait(0.5) and os.getppid() == parent:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
