# The front door. `make demo` runs the whole job on the local stack; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test lint bench up down deploy-local demo clean

venv: $(STAMP)

# Installs exactly what was tested: constraints.txt locks every transitive version.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

node_modules/.bin/asl-validator: package.json package-lock.json
	npm ci --silent --no-audit --no-fund

test: venv node_modules/.bin/asl-validator
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check functions tests scripts devstack
	$(VENV)/bin/mypy

bench: venv
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
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

.PHONY: lambda checkov
# The Lambda artefacts Terraform deploys (build/lambda/), and checkov in its own venv.
lambda: venv
	$(PY) scripts/build_lambda

checkov:
	scripts/checkov
