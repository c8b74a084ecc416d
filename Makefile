# The front door. `make demo` runs the whole job on the local stack; `make test` runs the tests.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
# Some machines' pip configuration names index folders that do not exist; pip warns once per
# package. The filter keeps that noise out of the demo; real errors still fail the target.
PIP_QUIET := 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test lint bench up down deploy-local demo clean

venv: $(STAMP)

# Installs exactly what was tested: constraints.txt locks every transitive version.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the Python environment into $(VENV) (constraints.txt) ..."
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]' $(PIP_QUIET)
	touch $(STAMP)

node_modules/.bin/asl-validator: package.json package-lock.json
	npm ci --silent --no-audit --no-fund

test: venv node_modules/.bin/asl-validator
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check functions tests scripts devstack
	$(VENV)/bin/mypy

bench: venv
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]' $(PIP_QUIET)
	$(PY) scripts/bench.py $(BENCH_ARGS)

up: venv
	$(PY) -m devstack up

down:
	-$(PY) -m devstack down

deploy-local: venv
	$(PY) -m devstack deploy

demo: venv
	$(PY) -m devstack demo

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info

.PHONY: deploy-localstack test-localstack
# LocalStack (issue 17). deploy-localstack: against LocalStack in Docker (`docker compose up`;
# docs/OPERATIONS.md): builds the zip and layer, tflocal init + apply. test-localstack:
# LocalStack on the host (its own virtualenv, .venv-localstack/), the deploy, the demo's
# journey, tflocal destroy (tests/localstack/).
deploy-localstack: venv
	$(PY) scripts/deploy_localstack.py $(DEPLOY_ARGS)

test-localstack: venv
	PQFILE_LOCALSTACK_TESTS=1 $(PY) -m pytest tests/localstack -p no:cacheprovider -q $(PYTEST_ARGS)

.PHONY: lambda checkov
# The Lambda artefacts Terraform deploys (build/lambda/), and checkov in its own venv.
lambda: venv
	$(PY) scripts/build_lambda

checkov:
	scripts/checkov
