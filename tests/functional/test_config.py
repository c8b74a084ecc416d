"""Settings from the environment (pqfile.config; docs/CONTRACTS.md)."""

from __future__ import annotations

import ast
import datetime as dt
import re
from pathlib import Path

import pytest

from pqfile.config import (
    ENVIRONMENT,
    LAMBDA_RESPONSE_CAP,
    AwsSettings,
    ConfigurationError,
    ObservabilitySettings,
    PoolSettings,
    Settings,
)
from pqfile.crypto.kem import Suite
from pqfile.keys.policy import PoolPolicy

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "functions" / "pqfile"



def test_defaults() -> None:
    s = Settings.from_env({"PQFILE_UPLOADS_BUCKET": "u", "PQFILE_ENCRYPTED_BUCKET": "e"})
    assert (s.storage.uploads_bucket, s.storage.encrypted_bucket) == ("u", "e")
    assert s.encryption.default_suite == "xwing"
    assert s.encryption.segment_size == 1024 * 1024 and s.storage.part_size == 8 * 1024 * 1024
    # what one encrypt function streams in 900 s (BENCHMARKS.md, "Ingest size limit")
    assert s.storage.max_document_size == 24 * 1024**3
    assert s.retrieve.inline_limit == 4 * 1024 * 1024
    assert s.retrieve.inline_limit * 4 // 3 < LAMBDA_RESPONSE_CAP
    assert s.retrieve.presign_seconds == 300
    assert s.kms.key_id is None and s.retrieve.retrievals_kms_key_id is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PQFILE_DEFAULT_SUITE", "kyber768"),
        ("PQFILE_SEGMENT_SIZE", "abc"),
        ("PQFILE_PART_SIZE", str(1024 * 1024)),  # S3 parts are at least 5 MiB
        ("PQFILE_INLINE_LIMIT", str(5 * 1024 * 1024)),  # base64 would not fit 6 MB
        ("PQFILE_PRESIGN_SECONDS", "86400"),
    ],
)
def test_bad_values_fail_the_cold_start(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


def test_suites_are_the_kem_suites() -> None:
    for suite in Suite:
        env = {"PQFILE_DEFAULT_SUITE": suite.value}
        assert Settings.from_env(env).encryption.default_suite == suite.value
    with pytest.raises(ConfigurationError, match="'xwing', 'mlkem768', 'mlkem1024'"):
        Settings.from_env({"PQFILE_DEFAULT_SUITE": "XWING"})


def test_require_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="PQFILE_KMS_KEY_ID"):
        Settings.from_env({}).require("PQFILE_KMS_KEY_ID")
    with pytest.raises(ConfigurationError, match="PQFILE_ENCRYPTED_BUCKET"):
        Settings.from_env({"PQFILE_KMS_KEY_ID": "k"}).require(
            "PQFILE_KMS_KEY_ID", "PQFILE_ENCRYPTED_BUCKET"
        )
    Settings.from_env({"PQFILE_KMS_KEY_ID": "k"}).require("PQFILE_KMS_KEY_ID")


def test_from_values_spreads_names_over_the_concerns() -> None:
    s = Settings.from_values(uploads_bucket="u", inline_limit=10, segment_size=2048)
    assert s.storage.uploads_bucket == "u" and s.storage.encrypted_bucket == ""
    assert (s.retrieve.inline_limit, s.encryption.segment_size) == (10, 2048)
    with pytest.raises(TypeError, match="no_such_setting"):
        Settings.from_values(no_such_setting=1)


def test_pool_settings_from_the_environment() -> None:
    pool = PoolSettings.from_env({})
    assert pool.policy == PoolPolicy()  # the domain's defaults
    assert (pool.policy.target_active, pool.policy.floor_active) == (100, 80)
    assert pool.policy.max_age == dt.timedelta(days=30) and pool.policy.max_bytes == 1 << 40
    assert pool.suites == ("xwing",) and pool.rewrap_batch == 2000
    assert pool.rewrap_concurrency == 100
    for name, bad in (("PQFILE_REWRAP_BATCH", "2001"), ("PQFILE_REWRAP_CONCURRENCY", "0")):
        with pytest.raises(ConfigurationError, match=name):
            PoolSettings.from_env({name: bad})
    policy = PoolSettings.from_env(
        {
            "PQFILE_POOL_TARGET": "2",
            "PQFILE_KEY_MAX_AGE_DAYS": "0.5",
            "PQFILE_KEY_MAX_DOCUMENTS": "3",
            "PQFILE_KEY_MAX_BYTES": "1099511627776",
        }
    ).policy
    assert (policy.target_active, policy.floor_active, policy.max_documents) == (2, 2, 3)
    assert policy.max_age == dt.timedelta(hours=12)
    for bad in ({"PQFILE_POOL_TARGET": "x"}, {"PQFILE_POOL_TARGET": "2", "PQFILE_POOL_FLOOR": "3"}):
        with pytest.raises(ConfigurationError):
            PoolSettings.from_env(bad)
    assert PoolSettings.from_env({"PQFILE_DEFAULT_SUITE": "mlkem768"}).suites == ("mlkem768",)
    suites = PoolSettings.from_env({"PQFILE_ROTATION_SUITES": "xwing, mlkem768,xwing"}).suites
    assert suites == ("xwing", "mlkem768")
    with pytest.raises(ConfigurationError):
        PoolSettings.from_env({"PQFILE_ROTATION_SUITES": "kyber"})
    assert PoolSettings.from_env({"PQFILE_REWRAP_BATCH": "7"}).rewrap_batch == 7


def test_suite_by_prefix_longest_prefix_wins() -> None:
    env = {
        "PQFILE_DEFAULT_SUITE": "xwing",
        "PQFILE_SUITE_BY_PREFIX": '{"acme/": "mlkem1024", "acme/legacy/": "mlkem768", '
        '"gov": "mlkem1024"}',
    }
    enc = Settings.from_env(env).encryption
    assert enc.suite_by_prefix[0] == ("acme/legacy/", "mlkem768")  # longest first
    assert enc.suite_for("uploads/acme/report.pdf") == "mlkem1024"
    assert enc.suite_for("uploads/acme/legacy/old.pdf") == "mlkem768"
    assert enc.suite_for("uploads/acme/legacyx.pdf") == "mlkem1024"
    assert enc.suite_for("uploads/gov-lab/x") == "mlkem1024"  # a plain prefix, as in S3
    assert enc.suite_for("uploads/other/acme/x") == "xwing"
    assert enc.suite_for("uploads/acm/x") == "xwing"
    assert enc.suites == ("xwing", "mlkem768", "mlkem1024")
    assert Settings.from_env({}).encryption.suite_by_prefix == ()
    assert Settings.from_env({}).encryption.suite_for("uploads/acme/x") == "xwing"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("acme/=mlkem1024", "must be a JSON object"),
        ('["acme/"]', "must be a JSON object"),
        ('{"acme/": "kyber1024"}', "'acme/'.* must be one of"),
        ('{"acme/": "MLKEM1024"}', "must be one of"),
        ('{"acme/": 1024}', "must be a string"),
        ('{"uploads/acme/": "mlkem1024"}', "relative to uploads/ \\(write 'acme/'"),
        ('{"": "mlkem1024"}', "is not an upload prefix"),
        ('{"/acme/": "mlkem1024"}', "is not an upload prefix"),
        ('{"acme/\\n": "mlkem1024"}', "is not an upload prefix"),
        ('{"acme/": "mlkem1024", "acme/": "xwing"}', "names the prefix 'acme/' twice"),
        ("{" + ",".join(f'"t{i}/": "xwing"' for i in range(101)) + "}", "at most 100"),
    ],
)
def test_suite_by_prefix_is_validated_at_load(raw: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match="PQFILE_SUITE_BY_PREFIX") as caught:
        Settings.from_env({"PQFILE_SUITE_BY_PREFIX": raw})
    assert re.search(message, str(caught.value)), str(caught.value)
    assert "\n" not in str(caught.value)  # one line
    with pytest.raises(ConfigurationError, match="PQFILE_SUITE_BY_PREFIX"):
        PoolSettings.from_env({"PQFILE_SUITE_BY_PREFIX": raw})


def test_the_pool_keeps_every_suite_ingest_selects_from() -> None:
    # The default, the map's suites and PQFILE_ROTATION_SUITES: no configured pool is left
    # empty (ingest never creates keys).
    env = {
        "PQFILE_DEFAULT_SUITE": "xwing",
        "PQFILE_SUITE_BY_PREFIX": '{"acme/": "mlkem1024"}',
        "PQFILE_ROTATION_SUITES": "mlkem768",
    }
    assert PoolSettings.from_env(env).suites == ("xwing", "mlkem1024", "mlkem768")
    assert PoolSettings.from_env({"PQFILE_ROTATION_SUITES": "mlkem1024"}).suites == (
        "xwing",
        "mlkem1024",
    )
    assert PoolSettings.from_env({"PQFILE_DEFAULT_SUITE": "mlkem1024"}).suites == ("mlkem1024",)


def test_aws_and_observability_settings() -> None:
    assert AwsSettings.from_env({}) == AwsSettings(None, "us-east-1")
    assert AwsSettings.from_env({"AWS_DEFAULT_REGION": "eu-west-1"}).region == "eu-west-1"
    local = {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "AWS_REGION": "eu-central-1"}
    assert AwsSettings.from_env(local) == AwsSettings("http://127.0.0.1:4566", "eu-central-1")
    assert ObservabilitySettings.from_env({}) == ObservabilitySettings("pqfile", tracing=True)
    assert not ObservabilitySettings.from_env(local).tracing


def _contracts_table() -> set[str]:
    text = (ROOT / "docs" / "CONTRACTS.md").read_text(encoding="utf-8")
    section = text[text.index("## Environment variables") :]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", section, re.M))


def test_every_variable_is_documented_once() -> None:
    names = [v.name for v in ENVIRONMENT]
    assert len(names) == len(set(names))
    assert _contracts_table() == set(names)


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes = ast.walk(tree)
    return {n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_every_variable_the_code_names_is_in_the_registry() -> None:
    registry = {v.name for v in ENVIRONMENT}
    pattern = re.compile(r"(?:PQFILE|POWERTOOLS|AWS)_[A-Z0-9_]+")
    named: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for value in _string_constants(path):
            if pattern.fullmatch(value):
                named.setdefault(value, str(path.relative_to(PACKAGE)))
    assert "PQFILE_UPLOADS_BUCKET" in named, "scan found nothing: did the package move?"
    assert {n: f for n, f in named.items() if n not in registry} == {}


def _reads_environment(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb"}:
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            if {a.name for a in node.names} & {"environ", "getenv", "environb"}:
                return True
    return False


def test_only_config_reads_the_environment() -> None:
    readers = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if _reads_environment(path)
    }
    assert "config/_base.py" in readers, "the scan must see config/_base.py's own reads"
    assert readers == {"config/_base.py"}


def test_every_exported_name_resolves_to_its_module() -> None:
    """pqfile.config loads its settings modules on first use: every name it exports
    resolves, to the same object its module holds, and nothing else does."""
    import importlib

    import pqfile.config as config

    assert set(config.__all__) <= set(dir(config))
    for name in config.__all__:
        value = getattr(config, name)
        module = config._LAZY.get(name)
        if module is not None:
            assert value is getattr(importlib.import_module(f"pqfile.config.{module}"), name)
    with pytest.raises(AttributeError, match="no attribute 'NoSuchSetting'"):
        _ = config.NoSuchSetting
    # Every settings class of the package is exported (a new one cannot be forgotten).
    for module in set(config._LAZY.values()):
        loaded = importlib.import_module(f"pqfile.config.{module}")
        for name, value in vars(loaded).items():
            if isinstance(value, type) and value.__module__ == loaded.__name__:
                assert name in config.__all__, f"pqfile.config.{module}.{name} is not exported"
