#!/usr/bin/env python3
"""Deploy PQFile to LocalStack with tflocal: `make deploy-localstack`.

    docker compose up -d                       # LocalStack on :4566, PostgreSQL on :5432
    make deploy-localstack                     # this script: build, tflocal init + apply
    .venv/bin/python scripts/deploy_localstack.py --destroy

Builds the function zip and a dependencies layer for this machine's architecture (what
LocalStack runs the functions on), installs tflocal (terraform-local, pinned in
devstack/localstack/constraints.txt) into .venv-localstack/, and applies terraform/ with
envs/localstack.tfvars from a working copy under .devstack/localstack/ (local state file).
The same code deploys LocalStack on the host in `make test-localstack`
(devstack/localstack/deploy.py). Prints the Terraform outputs (`--json`: as JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.localstack import LocalStackError
from devstack.localstack import deploy as ls_deploy

#: The Docker path's settings (docker-compose.yml), given after envs/localstack.tfvars.
DOCKER_TFVARS = "envs/docker.tfvars"
TERRAFORM_ROOT = Path(__file__).resolve().parent.parent / "terraform"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default=ls_deploy.DEFAULT_ENDPOINT,
                        help=f"LocalStack's gateway (default {ls_deploy.DEFAULT_ENDPOINT})")
    parser.add_argument("--database-url",
                        default=os.environ.get("PQFILE_LOCALSTACK_DATABASE_URL"),
                        help="the database as the functions reach it (default "
                        f"$PQFILE_LOCALSTACK_DATABASE_URL, else {DOCKER_TFVARS}'s)")
    parser.add_argument("--var-file", action="append", default=None, metavar="PATH",
                        help="terraform var files after envs/localstack.tfvars, relative to "
                        f"terraform/ (repeatable; default {DOCKER_TFVARS}, the Docker path)")
    parser.add_argument("--workdir", type=Path, default=ls_deploy.WORKDIR,
                        help="working copy and state file (default .devstack/localstack)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra terraform variable (repeatable)")
    parser.add_argument("--destroy", action="store_true", help="tflocal destroy instead")
    parser.add_argument("--json", action="store_true", help="outputs as JSON")
    args = parser.parse_args(argv)
    echo = None if args.json else print
    var_files = args.var_file
    if var_files is None:
        var_files = [DOCKER_TFVARS] if (TERRAFORM_ROOT / DOCKER_TFVARS).exists() else []
    extra = [f"-var={v}" for v in args.var]
    if not args.endpoint.startswith(("http://", "https://")):
        print(f"error: --endpoint must be an http(s) URL, not {args.endpoint!r}", file=sys.stderr)
        return 2
    if not args.database_url and not var_files:
        print("error: no database for the functions: give --database-url (or "
              "PQFILE_LOCALSTACK_DATABASE_URL), or a --var-file that sets database_url",
              file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(f"{args.endpoint.rstrip('/')}/_localstack/health",
                                    timeout=10):
            pass
    except (urllib.error.URLError, OSError) as exc:
        print(f"error: LocalStack does not answer at {args.endpoint} ({exc}): start it first "
              "(`docker compose up -d --wait`)", file=sys.stderr)
        return 1
    try:
        if args.destroy:
            ls_deploy.destroy(args.endpoint, args.database_url, args.workdir, echo=echo,
                              extra_vars=extra, var_files=var_files)
            return 0
        outputs = ls_deploy.deploy(args.endpoint, args.database_url, args.workdir, echo=echo,
                                   extra_vars=extra, var_files=var_files)
    except (ls_deploy.DeployError, LocalStackError) as exc:
        print(f"error: {str(exc).strip()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted (terraform stopped; its state file is kept)", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(outputs, indent=2, sort_keys=True))
    else:
        for name in sorted(outputs):
            print(f"{name} = {json.dumps(outputs[name])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
