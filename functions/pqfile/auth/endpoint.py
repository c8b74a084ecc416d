"""The one STS endpoint a deployment sends proofs to (the allow-list of one).

On AWS it is the regional endpoint, ``https://sts.<region>.amazonaws.com`` (reached
through the VPC's ``sts`` interface endpoint: its private DNS name is that host). On the
local stack it is an emulator on a loopback address, the only place plain http is allowed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

#: ``sts.<region>.amazonaws.com`` (``.com.cn`` in China), FIPS variants included.
_REGIONAL_HOST = re.compile(r"sts(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com(?:\.cn)?")
_GLOBAL_HOST = "sts.amazonaws.com"
_HOST_CHARS = re.compile(r"[a-z0-9.-]{1,253}|\[[0-9a-f:.]{2,45}\]")
_DEFAULT_PORTS = {"https": 443, "http": 80}


def default_endpoint_url(region: str) -> str:
    """The regional STS endpoint of ``region``."""
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    return f"https://sts.{region}{suffix}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class StsEndpoint:
    """A parsed endpoint URL: ``scheme://host[:port]`` with the path ``/`` and nothing else."""

    scheme: str
    host: str  # lower case; IPv6 in brackets
    port: int
    #: The SigV4 credential scope region a proof for this endpoint must be signed for.
    region: str

    @classmethod
    def parse(
        cls, url: str, *, default_region: str, plain_http_host: str | None = None
    ) -> StsEndpoint:
        """Raise ValueError unless ``url`` is an https URL, or http to a loopback host (or to
        ``plain_http_host``, an emulator's name on a private network the deployment opted
        into: PQFILE_STS_PLAIN_HTTP_HOST), with no user info, query or fragment and an
        empty or ``/`` path."""
        if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
            raise ValueError("the STS endpoint URL has characters a URL cannot have")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError("the STS endpoint URL must be https")
        if "@" in parts.netloc or parts.query or parts.fragment or parts.path not in ("", "/"):
            raise ValueError("the STS endpoint URL is scheme://host[:port]/ and nothing more")
        host = (parts.hostname or "").lower()
        if ":" in host:
            host = f"[{host}]"
        if not _HOST_CHARS.fullmatch(host):
            raise ValueError("the STS endpoint URL has no valid host")
        if scheme == "http" and not is_loopback(host) and host != (plain_http_host or "").lower():
            raise ValueError("plain http is allowed only for a loopback (local) STS endpoint")
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError:
            raise ValueError("the STS endpoint URL has an invalid port") from None
        regional = _REGIONAL_HOST.fullmatch(host)
        if regional:
            region = regional.group(1)
        elif host == _GLOBAL_HOST:
            region = "us-east-1"
        else:
            region = default_region
        return cls(scheme=scheme, host=host, port=port, region=region)

    @property
    def host_header(self) -> str:
        """The Host header a client signs for this endpoint (the port only when not the
        scheme's default, as HTTP clients and botocore write it)."""
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return self.host
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The one URL proofs are sent to."""
        return f"{self.scheme}://{self.host_header}/"
