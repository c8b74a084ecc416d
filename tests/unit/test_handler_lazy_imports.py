"""Handler modules import without Powertools, the X-Ray SDK, their use case, the settings or
pyca (issue 15: cold init); the first invocation builds them (handlers/_runtime.prepare and
the imports in the handler's body), with tracing on as on AWS, or a SnapStart function's
before-snapshot hook does (_runtime.preload)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pqfile.handlers

HANDLERS = sorted(
    p.stem for p in Path(pqfile.handlers.__file__).parent.glob("*.py") if not p.stem.startswith("_")
)
HEAVY = ("aws_xray_sdk", "aws_lambda_powertools", "pg8000")


def _deployed_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PQFILE_"))}
    env.update(AWS_REGION="eu-west-1", AWS_XRAY_CONTEXT_MISSING="IGNORE_ERROR")
    return env  # no AWS_ENDPOINT_URL: tracing on, as deployed


def test_no_handler_imports_powertools_xray_or_pg8000() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {HANDLERS!r}:\n"
        "    importlib.import_module('pqfile.handlers.' + name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_deployed_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert len(HANDLERS) >= 10


def test_first_invocation_builds_the_tools_with_tracing_on() -> None:
    code = (
        "import sys\n"
        "from pqfile.handlers import _runtime\n"
        "from pqfile.handlers._runtime import entry_point, logger\n"
        "@entry_point\n"
        "def handler(event, context):\n"
        "    logger.info('hello')\n"
        "    return {'ok': True}\n"
        "assert 'aws_xray_sdk' not in sys.modules\n"
        "class Ctx:\n"
        "    function_name = 'f'; memory_limit_in_mb = 128; invoked_function_arn = 'arn'\n"
        "    aws_request_id = 'r'\n"
        "result = handler({}, Ctx())\n"
        "assert result['ok'] and 'duration_ms' in result, result\n"
        "tools = _runtime.prepare()\n"
        "assert tools is _runtime.prepare()\n"
        "assert 'aws_xray_sdk.core' in sys.modules\n"
        "print('OK')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_deployed_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "OK"


# What a handler module may load at import (issue 15, cold init target 1): neither its use
# case nor the settings, ports or pyca. The use case comes on the first invocation, or before
# a SnapStart snapshot (_runtime.preload).
DEFERRED = ("cryptography", "pqfile.usecases", "pqfile.config", "pqfile.ports", "pqfile.crypto",
            "pqfile.keys", "pqfile.adapters")  # fmt: skip


def _run(code: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, env=env or _deployed_env(), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("name", HANDLERS)
def test_handler_import_defers_use_case_settings_and_pyca(name: str) -> None:
    code = (
        "import sys\n"
        f"import pqfile.handlers.{name}\n"
        f"print(sorted(m for m in sys.modules if m.startswith({DEFERRED!r})))\n"
    )
    assert _run(code) == "[]"


def test_ports_load_no_pyca() -> None:
    """pqfile.ports (every use case imports it) names SignedDigest for typing only."""
    code = (
        "import sys, pqfile.ports, pqfile.keys.audit_digest\n"
        "from pqfile.config import ENVIRONMENT, IdentitySettings, PoolSettings, Settings\n"
        "print(sorted(m for m in sys.modules if m.startswith('cryptography')))\n"
    )
    assert _run(code) == "[]"


def test_client_factory_loads_only_the_aws_settings() -> None:
    """Every function builds its S3 and KMS clients at cold start (pqfile.adapters.aws): of
    the settings that loads the constants and AwsSettings, not the other concerns' classes,
    the variable registry or the key pool's policy (pqfile.config loads per module)."""
    code = (
        "import sys\n"
        "from pqfile.adapters.aws import client\n"
        "client('s3')\n"
        "client('kms')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pqfile.config', 'pqfile.keys'))))\n"
    )
    assert _run(code) == "['pqfile.config', 'pqfile.config._base', 'pqfile.config.aws']"


def _body_imports(tree: ast.Module) -> set[str]:
    """The pqfile modules imported inside the functions of a handler module."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("pqfile"):
                    found.add(inner.module or "")
    return found


def _preloaded(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name) and node.value.func.id == "preload"):
            names.update(a.value for a in node.value.args
                         if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return names  # fmt: skip


@pytest.mark.parametrize("name", HANDLERS)
def test_preload_names_every_module_the_handler_imports_late(name: str) -> None:
    path = Path(pqfile.handlers.__file__).parent / f"{name}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    missing = _body_imports(tree) - _preloaded(tree)
    assert not missing, f"{name}: preload(...) misses {sorted(missing)}"


_FAKE_HOOKS = (
    "import sys, types\n"
    "hooks = types.ModuleType('snapshot_restore_py')\n"
    "hooks.before, hooks.after = [], []\n"
    "hooks.register_before_snapshot = hooks.before.append\n"
    "hooks.register_after_restore = hooks.after.append\n"
    "sys.modules['snapshot_restore_py'] = hooks\n"
)


def test_snapstart_hooks_preload_before_the_snapshot_and_reseed_after_restore() -> None:
    """With the runtime's SnapStart library present (faked here: only Lambda has it), a
    handler registers a before-snapshot hook that loads its use case and the Powertools
    objects, and _runtime registers the reseeding after-restore hook."""
    code = _FAKE_HOOKS + (
        "import pqfile.handlers.store as store\n"
        "from pqfile.handlers import _runtime\n"
        "assert 'pqfile.usecases.ingest' not in sys.modules\n"
        "assert hooks.after == [_runtime.reseed_after_restore], hooks.after\n"
        "assert len(hooks.before) == 1, hooks.before\n"
        "hooks.before[0]()\n"
        "assert {'pqfile.usecases.ingest', 'pqfile.usecases.ingest_steps'} <= set(sys.modules)\n"
        "assert _runtime._tools is not None and 'aws_xray_sdk.core' in sys.modules\n"
        "import random, ssl\n"
        "state = random.getstate()\n"
        "hooks.after[0]()\n"
        "assert random.getstate() != state\n"
        "print('OK')\n"
    )
    assert _run(code) == "OK"
