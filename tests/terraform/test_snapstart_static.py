"""SnapStart only where a restore is safe, checked statically (terraform/snapstart.tf,
docs/OPERATIONS.md "SnapStart"): no plan, no deployment.

A function that draws keys, nonces or HPKE encapsulations from pyca's OpenSSL must never
restore from a snapshot: tests/unit/test_fork_restore.py shows two same-pid restores repeat
pyca's encapsulations, and no after-restore hook reaches that generator.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"

#: Encapsulate (encrypt: to a pool key; rotate_rewrap: rewraps; retrieve: sealed retrieval
#: to the caller's key) or run operator commands that may (admin).
NEVER = {"encrypt", "rotate_rewrap", "retrieve", "admin"}
#: The ingest steps that draw nothing from pyca (their TLS and login nonces are restore-safe
#: with handlers/_runtime.reseed_after_restore).
CANDIDATES = {"fetch", "select_key", "store", "audit", "record_failure"}


def _local_list(text: str, name: str) -> list[str]:
    found = re.search(rf"^\s*{name}\s*=\s*\[([^\]]*)\]", text, re.M)
    assert found, f"local {name} not found"
    return re.findall(r'"([a-z_]+)"', found.group(1))


def _function_keys() -> set[str]:
    """Every function key defined in the *_functions maps (one aws_lambda_function.this)."""
    keys: set[str] = set()
    for path in TF.glob("*.tf"):
        text = path.read_text(encoding="utf-8")
        for block in re.finditer(r"^  [a-z_]+_functions = \{\n(.*?)^  \}", text, re.M | re.S):
            keys.update(re.findall(r"^    ([a-z_]+) = \{", block.group(1), re.M))
    return keys


def test_only_the_safe_ingest_steps_are_snapstart_candidates() -> None:
    text = (TF / "snapstart.tf").read_text(encoding="utf-8")
    candidates = _local_list(text, "snapstart_candidates")
    assert set(candidates) == CANDIDATES
    assert not set(candidates) & NEVER
    functions = _function_keys()
    assert NEVER | CANDIDATES <= functions, sorted((NEVER | CANDIDATES) - functions)
    # Only the candidates, never on the local stack, only with the switch on.
    snap = re.search(r"^\s*snapstart_functions\s*=\s*(.+)$", text, re.M)
    assert snap and "var.lambda_snapstart" in snap.group(1) and "!local.is_local" in snap.group(1)
    assert "local.snapstart_candidates" in snap.group(1)


def test_snap_start_and_published_versions_come_only_from_the_candidates() -> None:
    blocks = []
    for path in TF.glob("*.tf"):
        text = path.read_text(encoding="utf-8")
        for found in re.finditer(r'dynamic "snap_start"\s*\{\s*for_each\s*=\s*([^\n]+)', text):
            blocks.append((path.name, found.group(1)))
        assert not re.search(r"^\s*snap_start\s*\{", text, re.M), f"{path.name}: a fixed snap_start"
    assert blocks == [("lambda.tf", "contains(local.snapstart_functions, each.key) ? [1] : []")]
    lam = (TF / "lambda.tf").read_text(encoding="utf-8")
    publish = r"^\s*publish\s*=\s*contains\(local\.snapstart_functions, each\.key\)"
    assert re.search(publish, lam, re.M)


def test_the_unsafe_functions_are_named_as_such_in_snapstart_tf() -> None:
    """The reasons stay beside the switch, where the next change to the list is made."""
    text = (TF / "snapstart.tf").read_text(encoding="utf-8")
    for name in NEVER:
        assert re.search(rf"\b{name}\b", text), name
