"""Event parsing and the derived names."""

from __future__ import annotations

import pytest

from pqfile.errors import InvalidEventError, OutsideTenantError
from pqfile.usecases.events import (
    SourceRef,
    document_id_for,
    encrypted_key_for,
    parse_object_created,
    require_tenant,
    tenant_of,
)


def _ev(key: str = "uploads/t/a", **obj):
    detail = {"bucket": {"name": "up"}, "object": {"key": key, "size": 1, "etag": "e", **obj}}
    return {"source": "aws.s3", "detail-type": "Object Created", "detail": detail}


def test_document_id_is_deterministic_and_distinct() -> None:
    a = SourceRef("up", "uploads/a", "v1", "e", 1)
    assert document_id_for(a) == document_id_for(SourceRef("up", "uploads/a", "v1", "other", 2))
    assert document_id_for(a) != document_id_for(SourceRef("up", "uploads/a", "v2", "e", 1))
    assert document_id_for(a) != document_id_for(SourceRef("up", "uploads/b", "v1", "e", 1))
    # no ambiguity from concatenation
    assert document_id_for(SourceRef("ab", "c", "v", None, 0)) != document_id_for(
        SourceRef("a", "bc", "v", None, 0))
    assert len(document_id_for(a)) == 32
    assert encrypted_key_for(document_id_for(a)).startswith("encrypted/")


def test_version_or_etag_required() -> None:
    with pytest.raises(InvalidEventError):
        parse_object_created(_ev(etag=None), uploads_bucket="up")
    assert parse_object_created(_ev(**{"version-id": "v"}), uploads_bucket="up").ref == "v:v"
    assert parse_object_created(_ev(), uploads_bucket="up").ref == "e:e"


@pytest.mark.parametrize("bad", [None, [], "x", {"detail": "x"}, {"detail": {"bucket": {}}}])
def test_malformed(bad) -> None:
    with pytest.raises(InvalidEventError):
        parse_object_created(bad, uploads_bucket="up")  # type: ignore[arg-type]


def test_source_ref_round_trip() -> None:
    s = SourceRef("b", "k", None, "e", 5)
    assert SourceRef.from_dict(s.to_dict()) == s
    with pytest.raises(InvalidEventError):
        SourceRef.from_dict({"key": "k"})


@pytest.mark.parametrize(
    ("key", "tenant"),
    [
        ("uploads/acme/report.pdf", "acme"),
        ("uploads/a/b/c.txt", "a"),
        ("uploads/A.b_c-9/x", "A.b_c-9"),
        ("uploads/report.pdf", None),  # no tenant folder
        ("uploads/acme/", None),  # a folder marker
        ("uploads//x", None),
        ("uploads/.hidden/x", None),
        ("uploads/t%20x/y", None),
        ("uploads/" + "t" * 64 + "/x", None),
        ("other/acme/x", None),
    ],
)
def test_tenant_is_the_first_folder_under_uploads(key: str, tenant: str | None) -> None:
    assert tenant_of(key) == tenant


def test_uploads_outside_a_tenant_folder_are_refused_with_a_clear_reason() -> None:
    with pytest.raises(OutsideTenantError, match="outside a tenant folder"):
        require_tenant(parse_object_created(_ev("uploads/report.pdf"), uploads_bucket="up"))
    assert require_tenant(parse_object_created(_ev("uploads/acme/r.pdf"), uploads_bucket="up")) == (
        "acme")
