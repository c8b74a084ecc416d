"""Every function Terraform defines points at a handler that exists, and every environment
variable the Lambda code reads is set by Terraform (terraform/lambda.tf)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from tests.terraform.conftest import REPO_ROOT

LAMBDA_TF = REPO_ROOT / "terraform" / "lambda.tf"
PACKAGE = REPO_ROOT / "functions" / "pqfile"
# The code a function runs: handlers, use cases, adapters and the settings module.
LAMBDA_CODE = ["handlers", "usecases", "adapters", "config"]
# Read by the code above, but only on paths no function takes.
NOT_FOR_FUNCTIONS = {
    "PQFILE_ACTOR": "names the operator in CLI audit rows; functions audit as themselves",
    "PQFILE_RETRIEVE_FUNCTION": "the function `pqfile retrieve` invokes, read by the CLI only",
    "PQFILE_ROTATION_STATE_MACHINE": "the workflow `pqfile keys rotate` starts, CLI only",
    "PQFILE_STACK": "the deployed stack the service and operator commands use, CLI only",
    "PQFILE_TENANT": "the tenant `pqfile upload` writes under, CLI only",
    "PQFILE_DEVSTACK_DIR": "the local stack's state folder, CLI and devstack only",
    "PQFILE_ADMIN_FUNCTION": "the function operator commands invoke with --stack, CLI only",
}
CONTRACT_FUNCTIONS = {
    "fetch",
    "select_key",
    "encrypt",
    "store",
    "audit",
    "record_failure",
    "retrieve",
    "documents",
}


def _terraform_handlers() -> dict[str, str]:
    """Function key -> handler, from every `<key> = { handler = "..." }` in the root."""
    handlers: dict[str, str] = {}
    for path in (REPO_ROOT / "terraform").glob("*.tf"):
        found = re.findall(r'^\s{4}(\w+) = \{\s*handler\s*=\s*"([\w.]+)"', path.read_text(), re.M)
        handlers.update(found)
    return handlers


def _environment_names() -> set[str]:
    text = LAMBDA_TF.read_text()
    return set(re.findall(r"\b((?:PQFILE|POWERTOOLS|AWS)_[A-Z0-9_]+)\s*=", text))


def _variables_read(path: Path) -> set[str]:
    """String constants naming PQFILE_* variables (os.environ[...], .get(...), getenv)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.fullmatch(r"PQFILE_[A-Z0-9_]+", node.value):
                names.add(node.value)
    return names


def test_terraform_defines_the_contract_functions() -> None:
    assert set(_terraform_handlers()) >= CONTRACT_FUNCTIONS


def test_every_function_handler_exists() -> None:
    for key, handler in _terraform_handlers().items():
        module, _, function = handler.rpartition(".")
        assert module.startswith("pqfile.handlers."), (key, handler)
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{key}: {path} does not exist"
        tree = ast.parse(path.read_text())
        defined = {
            n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        } | {
            t.id
            for n in tree.body
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        assert function in defined, f"{key}: {path.name} defines no {function}()"


def test_every_environment_variable_the_code_reads_is_set() -> None:
    read: dict[str, set[str]] = {}
    for entry in LAMBDA_CODE:
        base = PACKAGE / entry
        for path in [base] if base.is_file() else sorted(base.rglob("*.py")):
            for name in _variables_read(path):
                read.setdefault(name, set()).add(str(path.relative_to(REPO_ROOT)))
    assert "PQFILE_UPLOADS_BUCKET" in read, "scan found nothing: did the package move?"
    missing = {
        name: sorted(files)
        for name, files in read.items()
        if name not in _environment_names() and name not in NOT_FOR_FUNCTIONS
    }
    assert not missing, f"read by the code but never set in terraform/lambda.tf: {missing}"
    assert {"AWS_ENDPOINT_URL", "POWERTOOLS_SERVICE_NAME"} <= _environment_names()


def _default_map(variable: str) -> dict[str, int]:
    text = (REPO_ROOT / "terraform" / "variables.tf").read_text()
    block = text[text.index(f'variable "{variable}"') :]
    body = re.search(r"default\s*=\s*\{([^}]*)\}", block)
    assert body, variable
    return {k: int(v) for k, v in re.findall(r"(\w+)\s*=\s*(\d+)", body.group(1))}


def _tasks(states: dict[str, object]) -> list[tuple[str, str, int | None]]:
    found = []
    for name, state in states.items():
        assert isinstance(state, dict)
        if state.get("Type") == "Task":
            function = state.get("Parameters", {}).get("FunctionName", "")
            found.append((name, function, state.get("TimeoutSeconds")))
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                found += _tasks(state[key]["States"])
        for branch in state.get("Branches", []):
            found += _tasks(branch["States"])
    return found


def test_function_timeouts_fit_their_workflow_tasks() -> None:
    """A function that outlives its Task's timeout keeps working after the workflow gave up."""
    timeouts = _default_map("lambda_timeout_seconds")
    placeholders = {
        "ingest.asl.json": lambda p: p,
        # ShredKeys runs `shred`: its role name is the bucket's one package deleter.
        "rotate-keys.asl.json": lambda p: p if p == "shred" else f"rotate_{p}",
    }
    checked = 0
    for name, to_key in placeholders.items():
        definition = json.loads((REPO_ROOT / "statemachines" / name).read_text())
        for state, function, task_timeout in _tasks(definition["States"]):
            match = re.fullmatch(r"\$\{(\w+)_function_arn\}", function)
            assert match, (name, state, function)
            key = to_key(match.group(1))
            assert key in _terraform_handlers(), (name, state, key)
            assert task_timeout, f"{name} {state}: Task without TimeoutSeconds"
            assert timeouts.get(key, 60) <= task_timeout, (name, state, key)
            checked += 1
    assert checked >= 10
