"""Cold init (issue 15): suite_names mirrors kem.Suite; config loads no cryptography; the
STREAM module loads no AEAD, thread or signal machinery until a body is processed."""

from __future__ import annotations

import subprocess
import sys

from pqfile.crypto.kem import Suite
from pqfile.crypto.suite_names import SuiteName


def test_suite_names_mirror_kem_suites() -> None:
    assert [(s.name, s.value) for s in SuiteName] == [(s.name, s.value) for s in Suite]


def test_config_imports_without_cryptography() -> None:
    code = (
        "import sys, pqfile.config\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('cryptography'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_stream_import_defers_aead_and_threads() -> None:
    code = (
        "import sys, pqfile.crypto.stream\n"
        "deferred = ('threading', 'cryptography.hazmat.primitives.ciphers.aead')\n"
        "loaded = [m for m in deferred if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
