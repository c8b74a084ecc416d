"""Event parsing and the derived names."""

from __future__ import annotations

import pytest

from pqfile.errors import InvalidEventError
from pqfile.usecases.events import (
    SourceRef,
    document_id_for,
    encrypted_key_for,
    parse_object_created,
)


def _ev(key: str = "uploads/a", **obj):
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
