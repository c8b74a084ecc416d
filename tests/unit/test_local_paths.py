"""The local paths cannot drift from what they name (docs/OPERATIONS.md "Three local paths").

No Docker on these machines: the Docker path is checked statically. Every `make` target and
repository file the section and docker-compose.yml's header name exists; docker-compose.yml
pins its images and carries what the functions need there (the network they share with
the database, native-architecture Lambda containers, password logins); and the database URL
of terraform/envs/docker.tfvars is the compose service's, as the header and the docs say.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
COMPOSE = ROOT / "docker-compose.yml"
DOCKER_TFVARS = ROOT / "terraform" / "envs" / "docker.tfvars"


def _section() -> str:
    text = OPERATIONS.read_text(encoding="utf-8")
    start = text.index("### Three local paths")
    end = re.compile(r"^#{1,3} ", re.M).search(text, start + 1)
    assert end is not None
    return text[start : end.start()]


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))


def _compose_header() -> str:
    lines = COMPOSE.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if line.startswith("#"))


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", text, re.M))


def _make_targets_named(text: str) -> set[str]:
    return set(re.findall(r"`make ([a-z0-9-]+)", text)) | set(
        re.findall(r"^\s*#?\s*make ([a-z0-9-]+)", text, re.M)
    )


def _tfvars(path: Path) -> dict[str, str]:
    return dict(re.findall(r'^(\w+)\s*=\s*"?([^"\n]*)"?\s*$', path.read_text(), re.M))


def test_the_section_names_make_targets_that_exist() -> None:
    named = _make_targets_named(_section()) | _make_targets_named(_compose_header())
    # Each of the three paths has its commands in the table.
    assert {"demo", "up", "deploy-local", "down", "test-localstack", "deploy-localstack"} <= named
    missing = named - _makefile_targets()
    assert not missing, f"named in the docs or docker-compose.yml, not in the Makefile: {missing}"


def test_the_section_names_files_that_exist() -> None:
    text = _section() + _compose_header()
    paths = set(re.findall(r"`((?:terraform|devstack|tests|docs|sql)/[\w./-]+)`", text))
    paths |= {f"terraform/{p}" for p in re.findall(r"\b(envs/[\w.-]+\.tfvars)\b", text)}
    assert {"terraform/envs/docker.tfvars", "terraform/envs/localstack.tfvars"} <= paths
    missing = {p for p in paths if not (ROOT / p.rstrip("/")).exists()}
    assert not missing, f"named but not in the repository: {missing}"
    assert "docker compose up -d --wait" in text and "docker compose down -v" in text


def test_the_images_are_pinned() -> None:
    services = _compose()["services"]
    assert set(services) == {"localstack", "postgres"}
    localstack = str(services["localstack"]["image"])
    # Overridable, with a pinned default (images after 4.14.0 need an auth token).
    assert localstack == "${LOCALSTACK_IMAGE:-localstack/localstack:4.14.0}"
    postgres = str(services["postgres"]["image"])
    assert re.fullmatch(r"postgres:\d+\.\d+", postgres), postgres
    assert f"`{localstack.split(':-')[1].rstrip('}')}` image" in _section()
    assert f"PostgreSQL {postgres.split(':')[1]}" in _section()


def test_lambda_containers_share_the_database_network_and_run_natively() -> None:
    compose = _compose()
    network = compose["networks"]["pqfile"]["name"]
    localstack = compose["services"]["localstack"]
    env = localstack["environment"]
    assert env["LAMBDA_DOCKER_NETWORK"] == network
    assert network in compose["services"]["postgres"]["networks"]
    assert network in localstack["networks"]
    assert env["LAMBDA_IGNORE_ARCHITECTURE"] == "1"
    assert "/var/run/docker.sock:/var/run/docker.sock" in localstack["volumes"]
    # Every service the deployed stack uses starts with LocalStack.
    services = set(env["SERVICES"].split(","))
    assert {"s3", "kms", "sts", "iam", "lambda", "stepfunctions", "events", "secretsmanager",
            "sqs", "logs"} <= services  # fmt: skip
    # Only this machine reaches the published ports; the endpoint tflocal uses.
    assert localstack["ports"] == ["127.0.0.1:4566:4566"]
    assert compose["services"]["postgres"]["ports"] == ["127.0.0.1:5432:5432"]
    assert "http://127.0.0.1:4566" in _compose_header()


def test_the_functions_database_url_is_the_compose_postgres_with_passwords() -> None:
    compose = _compose()
    postgres = compose["services"]["postgres"]
    env = postgres["environment"]
    assert env["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    values = _tfvars(DOCKER_TFVARS)
    assert values["environment"] == "docker"
    url = urlsplit(values["database_url"])
    assert url.hostname == "postgres" and (url.port or 5432) == 5432  # the service, inside
    assert (url.username, url.password) == (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
    assert url.path == f"/{env['POSTGRES_DB']}"
    assert "sslmode=disable" in url.query  # no certificate in the postgres image
    # Each function logs in as its own role with the password of its own secret.
    assert values["database_url_per_role"] == "true"
    assert values["database_role_passwords"] == "true"
    # The header and the docs give the same URL, with the role in place of the owner.
    role_url = values["database_url"].replace(f"{url.username}:{url.password}@", "<their role>@")
    assert role_url in _compose_header()
    assert role_url in _section()
    host_url = f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@127.0.0.1:5432/"
    assert host_url in _compose_header() and host_url in _section()


@pytest.mark.parametrize("claim", ["the same root works against LocalStack"])
def test_the_old_claim_is_gone(claim: str) -> None:
    assert claim.lower() not in OPERATIONS.read_text(encoding="utf-8").lower()
