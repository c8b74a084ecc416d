"""Who reaches what: the database connection, verified identities, the admin function, the
command line, completion events."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pqfile.config._base import ConfigurationError, _environ, _int, _text
from pqfile.config.aws import AwsSettings


@dataclass(frozen=True)
class DatabaseSettings:
    """How to reach PostgreSQL (adapters/postgres/connection.py builds the connection)."""

    url: str | None = None
    secret_arn: str | None = None
    host: str = "localhost"
    port: int = 5432
    name: str = "pqfile"
    sslmode: str = "verify-full"
    sslrootcert: str | None = None
    iam_auth: bool = False
    migrations_dir: str | None = None
    region: str = "us-east-1"
    #: The URL's role's password, from this Secrets Manager secret (LocalStack in Docker).
    password_secret_arn: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DatabaseSettings:
        e = _environ(env)
        return cls(
            url=_text(e, "PQFILE_DATABASE_URL"),
            secret_arn=_text(e, "PQFILE_DATABASE_SECRET_ARN"),
            host=_text(e, "PQFILE_DATABASE_HOST") or cls.host,
            port=_int(e, "PQFILE_DATABASE_PORT", cls.port, 1, 65535),
            name=_text(e, "PQFILE_DATABASE_NAME") or cls.name,
            sslmode=_text(e, "PQFILE_DATABASE_SSLMODE") or cls.sslmode,
            sslrootcert=_text(e, "PQFILE_DATABASE_SSLROOTCERT"),
            iam_auth=e.get("PQFILE_DATABASE_IAM_AUTH", "").strip().lower() in {"1", "true", "yes"},
            migrations_dir=_text(e, "PQFILE_MIGRATIONS_DIR"),
            region=AwsSettings.from_env(e).region,
            password_secret_arn=_text(e, "PQFILE_DATABASE_PASSWORD_SECRET_ARN"),
        )


@dataclass(frozen=True)
class CliSettings:
    #: The operator named in audit rows (the database records session_user as well).
    actor: str | None = None
    #: The retrieve function `pqfile retrieve` invokes.
    retrieve_function: str | None = None
    #: The rotate-keys state machine `pqfile keys rotate` starts.
    rotation_state_machine: str | None = None
    #: The admin function operator commands invoke on a deployed stack.
    admin_function: str | None = None
    #: A deployed stack's Terraform root, or a file of its `terraform output -json`: service
    #: commands and (through its admin function) operator commands use it.
    stack: str | None = None
    #: The local stack's state folder (None: `.devstack` in the repository).
    devstack_dir: str | None = None
    #: The tenant `pqfile upload` uses without --tenant.
    tenant: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CliSettings:
        values = _environ(env)
        return cls(
            actor=_text(values, "PQFILE_ACTOR"),
            retrieve_function=_text(values, "PQFILE_RETRIEVE_FUNCTION"),
            rotation_state_machine=_text(values, "PQFILE_ROTATION_STATE_MACHINE"),
            admin_function=_text(values, "PQFILE_ADMIN_FUNCTION"),
            stack=_text(values, "PQFILE_STACK"),
            devstack_dir=_text(values, "PQFILE_DEVSTACK_DIR"),
            tenant=_text(values, "PQFILE_TENANT"),
        )


@dataclass(frozen=True)
class IdentitySettings:
    """Verified caller identity (pqfile.auth): where proofs go, and what they must name."""

    #: The STS endpoint, checked (https, or http to loopback) and written canonically.
    sts_endpoint_url: str = "https://sts.us-east-1.amazonaws.com/"
    #: The credential scope region proofs are signed for (from the endpoint's host name,
    #: else the AWS region).
    sts_region: str = "us-east-1"
    #: This deployment's name; None refuses every proof (fail closed).
    audience: str | None = None
    max_age_seconds: int = 300
    timeout_seconds: int = 5
    #: Whether PQFILE_STS_ENDPOINT_URL was set (the CLI then prefers it to a stack's).
    sts_endpoint_configured: bool = field(default=False, compare=False)
    #: A host besides loopback the endpoint may reach over plain http (local emulators).
    sts_plain_http_host: str | None = None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, region: str | None = None
    ) -> IdentitySettings:
        """``region`` (the CLI's ``--region``) replaces the AWS region of the environment."""
        # Imported here: only retrieve and the CLI pay for pqfile.auth at cold start.
        from pqfile.auth import AUDIENCE_PATTERN, StsEndpoint, default_endpoint_url

        e = _environ(env)
        region = region or AwsSettings.from_env(e).region
        raw = _text(e, "PQFILE_STS_ENDPOINT_URL") or default_endpoint_url(region)
        plain_http_host = _text(e, "PQFILE_STS_PLAIN_HTTP_HOST")
        if plain_http_host is not None and not re.fullmatch(r"[a-z0-9-]{1,63}", plain_http_host):
            raise ConfigurationError(
                "PQFILE_STS_PLAIN_HTTP_HOST must be one lower-case host name label"
            )
        try:
            endpoint = StsEndpoint.parse(
                raw, default_region=region, plain_http_host=plain_http_host
            )
        except ValueError as exc:
            raise ConfigurationError(f"PQFILE_STS_ENDPOINT_URL: {exc}") from None
        audience = _text(e, "PQFILE_AUDIENCE")
        if audience is not None and not AUDIENCE_PATTERN.fullmatch(audience):
            raise ConfigurationError(
                f"PQFILE_AUDIENCE must match {AUDIENCE_PATTERN.pattern}, not {audience!r}"
            )
        return cls(
            sts_endpoint_url=endpoint.url,
            sts_region=endpoint.region,
            audience=audience,
            max_age_seconds=_int(e, "PQFILE_PROOF_MAX_AGE_SECONDS", cls.max_age_seconds, 1, 900),
            timeout_seconds=_int(e, "PQFILE_STS_TIMEOUT_SECONDS", cls.timeout_seconds, 1, 30),
            sts_endpoint_configured=_text(e, "PQFILE_STS_ENDPOINT_URL") is not None,
            sts_plain_http_host=plain_http_host,
        )


@dataclass(frozen=True)
class AdminSettings:
    """The admin function (pqfile.usecases.admin): the auditor role's connection."""

    auditor_database_url: str | None = None
    #: The auditor login's password secret (``database_role_passwords``), else None.
    auditor_password_secret_arn: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AdminSettings:
        e = _environ(env)
        return cls(
            auditor_database_url=_text(e, "PQFILE_AUDITOR_DATABASE_URL"),
            auditor_password_secret_arn=_text(e, "PQFILE_AUDITOR_DATABASE_PASSWORD_SECRET_ARN"),
        )


#: The only bus events go to (the IAM grants events:PutEvents on it alone).
DEFAULT_EVENT_BUS = "default"


@dataclass(frozen=True)
class EventSettings:
    """Completion events (pqfile.usecases.notices): the bus, or None when switched off."""

    bus: str | None = DEFAULT_EVENT_BUS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EventSettings:
        raw = (_text(_environ(env), "PQFILE_EVENT_BUS") or DEFAULT_EVENT_BUS).strip()
        if raw == "off":
            return cls(bus=None)
        if raw != DEFAULT_EVENT_BUS:
            raise ConfigurationError(
                f"PQFILE_EVENT_BUS must be {DEFAULT_EVENT_BUS!r} or 'off', not {raw[:64]!r}"
            )
        return cls(bus=raw)
