"""Handler modules import without Powertools or the X-Ray SDK (issue 15: cold init); the
first invocation builds them (handlers/_runtime.prepare), with tracing on as on AWS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
