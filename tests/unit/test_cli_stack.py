"""cli/_stack.py: which stack the service commands use, and one-line errors when none."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from pqfile.cli import _stack
from pqfile.cli.upload import upload_key
from pqfile.config import ConfigurationError

OUTPUTS = {
    "uploads_bucket_name": {"value": "up", "type": "string", "sensitive": False},
    "ingest_state_machine_arn": {
        "value": "arn:aws:states:eu-west-3:111122223333:stateMachine:pqfile-prod-ingest",
        "type": "string",
    },
    "function_names": {"value": {"fetch": "f"}, "type": ["object", {}]},
}


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("PQFILE_STACK", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PQFILE_DEVSTACK_DIR", str(tmp_path / "devstack"))


def _args(stack: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(stack=stack)


def _state(tmp_path: Path, **state: object) -> None:
    base = tmp_path / "devstack"
    base.mkdir(exist_ok=True)
    (base / "state.json").write_text(json.dumps(state))


def test_the_local_stack_comes_from_its_state_file(tmp_path: Path) -> None:
    _state(tmp_path, status="ready", endpoint_url="http://127.0.0.1:4566", region="us-east-1",
           sts_endpoint_url="http://127.0.0.1:4567/",
           terraform_outputs={"uploads_bucket_name": "up-local"})  # fmt: skip
    stack = _stack.discover(_args())
    assert (stack.kind, stack.endpoint_url, stack.region) == (
        "local", "http://127.0.0.1:4566", "us-east-1",
    )  # fmt: skip
    assert stack.sts_endpoint_url == "http://127.0.0.1:4567/"
    assert stack.output("uploads_bucket_name") == "up-local"


def test_a_deployed_stack_from_an_outputs_file_wins_over_the_local_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _state(tmp_path, status="ready", terraform_outputs={"uploads_bucket_name": "up-local"})
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(OUTPUTS))
    for stack in (
        _stack.discover(_args(str(outputs))),
        (monkeypatch.setenv("PQFILE_STACK", str(outputs)), _stack.discover(_args()))[1],
    ):
        assert stack.kind == "deployed" and stack.endpoint_url is None
        assert stack.output("uploads_bucket_name") == "up"
        assert stack.region == "eu-west-3"  # from the state machine's ARN


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (None, "not deployed: no local stack"),
        ({"status": "failed"}, "the local stack is not running"),
        ({"status": "ready"}, "not deployed: the local stack runs but nothing is deployed"),
    ],
)
def test_no_usable_local_stack_is_a_one_line_error(
    tmp_path: Path, state: dict[str, str] | None, message: str
) -> None:
    if state is not None:
        _state(tmp_path, **state)
    with pytest.raises(ConfigurationError, match=message) as info:
        _stack.discover(_args())
    assert "\n" not in str(info.value)
    # Retrieve may do without a stack (flags and environment): the error waits for a need.
    lazy = _stack.discover(_args(), required=False)
    assert lazy.kind == "none"
    with pytest.raises(ConfigurationError, match=message):
        lazy.output("retrieve_function_name")


def test_unknown_outputs_and_bad_files_are_named(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(OUTPUTS))
    stack = _stack.discover(_args(str(outputs)))
    with pytest.raises(ConfigurationError, match="has no output 'retrieve_function_name'"):
        stack.output("retrieve_function_name")
    with pytest.raises(ConfigurationError, match="'function_names' is not a string"):
        stack.output("function_names")
    outputs.write_text("not json")
    with pytest.raises(ConfigurationError, match="not the JSON of terraform output"):
        _stack.discover(_args(str(outputs)))
    outputs.write_text("{}")
    with pytest.raises(ConfigurationError, match=r"not deployed: .* has no Terraform outputs"):
        _stack.discover(_args(str(outputs)))
    with pytest.raises(ConfigurationError, match="no such folder or file"):
        _stack.discover(_args(str(tmp_path / "missing")))


def test_an_empty_terraform_root_is_not_deployed(tmp_path: Path) -> None:
    pytest.importorskip("shutil").which("terraform") or pytest.fail("terraform not on PATH")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ConfigurationError, match=r"not deployed|terraform output in"):
        _stack.discover(_args(str(root)))


@pytest.mark.parametrize(
    ("tenant", "name", "key"),
    [("acme", "report.pdf", "uploads/acme/report.pdf"),
     ("a-1.b_c", "q3/board minutes.txt", "uploads/a-1.b_c/q3/board minutes.txt")],
)  # fmt: skip
def test_upload_keys(tenant: str, name: str, key: str) -> None:
    assert upload_key(tenant, name) == key


@pytest.mark.parametrize(
    ("tenant", "name", "message"),
    [(None, "x", "no tenant"), ("", "x", "no tenant"), ("../x", "x", "tenant '../x'"),
     ("-a", "x", "tenant '-a'"), ("a", "../x", "relative object name"),
     ("a", "/x", "relative object name"), ("a", "x//y", "relative object name")],
)  # fmt: skip
def test_bad_tenants_and_names_are_refused(tenant: str | None, name: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        upload_key(tenant, name)


def test_auth_proof_requests_for_the_documents_function() -> None:
    from pqfile.cli.auth import _request

    def ns(**kw: object) -> argparse.Namespace:
        base: dict[str, object] = {"document_id": None, "bucket": None, "key": None,
                                   "source": None, "operation": None}  # fmt: skip
        return argparse.Namespace(**{**base, **kw})

    assert _request(ns(document_id="d")) == {"document_id": "d"}
    assert _request(ns(operation="status", document_id="d")) == {
        "operation": "status", "document_id": "d"}  # fmt: skip
    assert _request(ns(operation="status", source="s3://b/uploads/a/x")) == {
        "operation": "status", "source": {"bucket": "b", "key": "uploads/a/x"}}  # fmt: skip
    assert _request(ns(operation="list")) == {"operation": "list"}
    with pytest.raises(ConfigurationError, match="--document-id or --source"):
        _request(ns(operation="status", bucket="b", key="k"))
