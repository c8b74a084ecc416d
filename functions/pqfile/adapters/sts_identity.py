"""CallerIdentityVerifier on AWS STS: check a proof, send it to the one configured STS
endpoint, read who STS says signed it (docs/CONTRACTS.md, "Caller identity proofs").

The checks and the answer's parse are pure (:mod:`pqfile.auth`); this module only sends.
It sends with ``http.client``, which never follows a redirect, to the configured
endpoint's host and port (not to anything the proof names), with the proof's own headers
and body, one attempt, a short timeout, and reads at most ``MAX_ANSWER + 1`` bytes back.
On AWS the regional host name resolves, through the VPC's ``sts`` interface endpoint
(private DNS), to addresses inside the VPC.
"""

from __future__ import annotations

import datetime as dt
import http.client
import ssl
from collections.abc import Callable

from pqfile.auth import (
    MAX_ANSWER,
    IdentityProofError,
    ProofPolicy,
    ProofRefusal,
    Send,
    StsAnswer,
    StsEndpoint,
    StsRequest,
    VerifiedCaller,
    verify_caller,
)
from pqfile.config import ConfigurationError, IdentitySettings


class HttpSender:
    """Sends a checked request to one endpoint; no redirects, no retries."""

    def __init__(
        self,
        endpoint: StsEndpoint,
        *,
        timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._ssl_context = ssl_context or ssl.create_default_context()

    def _connection(self) -> http.client.HTTPConnection:
        host = self.endpoint.host.strip("[]")
        if self.endpoint.scheme == "https":
            return http.client.HTTPSConnection(
                host, self.endpoint.port, timeout=self.timeout, context=self._ssl_context
            )
        return http.client.HTTPConnection(host, self.endpoint.port, timeout=self.timeout)

    def __call__(self, request: StsRequest) -> StsAnswer:
        if request.url != self.endpoint.url:  # validate_proof returns the endpoint's URL
            raise IdentityProofError(ProofRefusal.URL)
        connection = self._connection()
        try:
            # The proof's own Host header is sent (it is signed); none is added.
            connection.putrequest("POST", "/", skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers:
                connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(request.body)))
            connection.endheaders(request.body)
            response = connection.getresponse()
            return StsAnswer(status=response.status, body=response.read(MAX_ANSWER + 1))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise IdentityProofError(ProofRefusal.STS_UNAVAILABLE, type(exc).__name__) from None
        finally:
            connection.close()


class StsCallerIdentityVerifier:
    """pqfile.ports.CallerIdentityVerifier: one STS round trip per accepted proof, none for
    a refused one."""

    def __init__(
        self,
        policy: ProofPolicy,
        *,
        send: Send | None = None,
        timeout: float = 5.0,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.policy = policy
        self._send: Send = send or HttpSender(policy.endpoint, timeout=timeout)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    @classmethod
    def from_settings(cls, settings: IdentitySettings | None = None) -> StsCallerIdentityVerifier:
        """The verifier the settings describe (``IdentitySettings.from_env()`` by default);
        ConfigurationError without an audience: no proof could ever be accepted."""
        s = settings or IdentitySettings.from_env()
        if not s.audience:
            raise ConfigurationError("PQFILE_AUDIENCE is not set")
        endpoint = StsEndpoint.parse(
            s.sts_endpoint_url, default_region=s.sts_region, plain_http_host=s.sts_plain_http_host
        )
        policy = ProofPolicy(
            endpoint=endpoint,
            audience=s.audience,
            max_age=dt.timedelta(seconds=s.max_age_seconds),
        )
        return cls(policy, timeout=float(s.timeout_seconds))

    def verify(self, proof: object, *, request_sha256: str) -> VerifiedCaller:
        return verify_caller(
            proof,
            self.policy,
            request_sha256=request_sha256,
            now=self._clock(),
            send=self._send,
        )
