"""The shred use case (pqfile.usecases.shred) on in-memory ports: which package versions it
deletes (every version of a lost document; only the versions a moved document still has on
the key), that it commits in the database only after S3, and the completion date."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Mapping

import pytest

from pqfile.crypto import envelope, kem
from pqfile.errors import TransientError
from pqfile.ports import (
    CompromiseCandidate,
    KeyRequest,
    PackageVersion,
    ShredCandidate,
    ShredOutcome,
)
from pqfile.usecases.shred import Shredding, complete_at, shred_pending

SHREDDED_AT = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def _package(public: kem.PublicKey, document_id: str) -> bytes:
    out = io.BytesIO()
    envelope.encrypt_stream(io.BytesIO(b"secret"), out, public, document_id=document_id)
    return out.getvalue()


class FakeVersions:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], list[tuple[str, bytes | None]]] = {}
        self.deleted: list[tuple[str, str]] = []
        self.fail_deletes = False

    def put(self, key: str, version: str, data: bytes | None) -> None:
        self.objects.setdefault(("b", key), []).append((version, data))

    def list_versions(self, bucket: str, key: str) -> list[PackageVersion]:
        return [PackageVersion(v, delete_marker=d is None)
                for v, d in self.objects.get((bucket, key), [])]  # fmt: skip

    def read_prefix(self, bucket: str, key: str, version_id: str, length: int) -> bytes:
        data = dict(self.objects[(bucket, key)])[version_id]
        assert data is not None
        return data[:length]

    def delete_version(self, bucket: str, key: str, version_id: str) -> None:
        if self.fail_deletes:
            raise TransientError("s3 busy")
        self.objects[(bucket, key)] = [
            (v, d) for v, d in self.objects[(bucket, key)] if v != version_id
        ]
        self.deleted.append((key, version_id))


class FakeShredRepository:
    def __init__(self, key_id: str, candidates: list[ShredCandidate]) -> None:
        self.requests = [KeyRequest(7, key_id, "shred", "erase", "alice", suite="xwing")]
        self.candidates = candidates
        self.committed: list[tuple[int, int]] = []

    def pending_shreds(self) -> list[KeyRequest]:
        return [r for r in self.requests if r.request_id not in {c[0] for c in self.committed}]

    def shred_candidates(self, request: int) -> list[ShredCandidate]:
        return self.candidates

    def shred(
        self, request: int, *, versions_deleted: int, request_id: str | None
    ) -> ShredOutcome:
        self.committed.append((request, versions_deleted))
        lost = tuple((c.document_id, "a") for c in self.candidates if c.lost)
        return ShredOutcome(lost, SHREDDED_AT)

    # -- compromises (0015): none unless a test adds them --
    compromises: list[KeyRequest] = []  # noqa: RUF012
    compromise_list: list[CompromiseCandidate] = []  # noqa: RUF012
    documents_left = 0

    def pending_compromises(self) -> list[KeyRequest]:
        done = {c[0] for c in self.committed}
        return [r for r in self.compromises if r.request_id not in done]

    def compromise_candidates(self, request: int) -> list[CompromiseCandidate]:
        return [] if self.documents_left else self.compromise_list

    def complete_compromise(
        self, request: int, *, deleted: Mapping[str, int], request_id: str | None
    ) -> bool:
        if self.documents_left:
            return False
        self.committed.append((request, sum(deleted.values())))
        self.completed = dict(deleted)
        return True


@pytest.fixture
def keys() -> tuple[kem.PublicKey, kem.PublicKey]:
    return kem.generate().public_key(), kem.generate().public_key()


def test_shred_deletes_what_is_wrapped_to_the_key_and_nothing_else(
    keys: tuple[kem.PublicKey, kem.PublicKey],
) -> None:
    old, new = keys
    versions = FakeVersions()
    # lost: stored on the key; two versions and a delete marker, all go
    versions.put("encrypted/lost.pqf", "v1", _package(old, "lost"))
    versions.put("encrypted/lost.pqf", "v2", _package(old, "lost"))
    versions.put("encrypted/lost.pqf", "m1", None)
    # moved: rotated off the key; the old version goes, the current one (new key) stays,
    # and a version that is not a package is kept (not attributable to the key)
    versions.put("encrypted/moved.pqf", "v1", _package(old, "moved"))
    versions.put("encrypted/moved.pqf", "v2", _package(new, "moved"))
    versions.put("encrypted/moved.pqf", "v3", b"not a package")
    candidates = [
        ShredCandidate("lost", "b", "encrypted/lost.pqf", lost=True),
        ShredCandidate("moved", "b", "encrypted/moved.pqf", lost=False),
    ]
    repo = FakeShredRepository(old.key_id, candidates)
    report = shred_pending(Shredding(repo, versions, backup_retention_days=14))

    assert versions.objects[("b", "encrypted/lost.pqf")] == []
    assert [v for v, _ in versions.objects[("b", "encrypted/moved.pqf")]] == ["v2", "v3"]
    (done,) = report.shredded
    assert (done.key_id, done.request, done.versions_deleted, done.versions_kept) == (
        old.key_id, 7, 4, 2)  # fmt: skip
    assert done.documents_lost == (("lost", "a"),)
    assert repo.committed == [(7, 4)]
    assert done.complete_at == SHREDDED_AT + dt.timedelta(days=14)
    assert report.to_dict()["shredded"][0]["documents_lost"] == [
        {"document_id": "lost", "tenant": "a"}
    ]
    # nothing pending any more: a second run does nothing
    assert shred_pending(Shredding(repo, versions, backup_retention_days=14)).shredded == []


def test_a_failed_deletion_commits_nothing(keys: tuple[kem.PublicKey, kem.PublicKey]) -> None:
    old, _ = keys
    versions = FakeVersions()
    versions.put("encrypted/lost.pqf", "v1", _package(old, "lost"))
    versions.fail_deletes = True
    lost = ShredCandidate("lost", "b", "encrypted/lost.pqf", lost=True)
    repo = FakeShredRepository(old.key_id, [lost])
    with pytest.raises(TransientError):
        shred_pending(Shredding(repo, versions, backup_retention_days=14))
    assert repo.committed == []  # the key keeps its seed until every version is gone
    versions.fail_deletes = False
    assert len(shred_pending(Shredding(repo, versions, backup_retention_days=14)).shredded) == 1


def test_complete_at_is_the_backup_retention_after_the_shred() -> None:
    assert complete_at(SHREDDED_AT, 0) == SHREDDED_AT
    assert complete_at(SHREDDED_AT, 35) == SHREDDED_AT + dt.timedelta(days=35)


def test_a_compromise_deletes_every_version_but_the_reencrypted_one(
    keys: tuple[kem.PublicKey, kem.PublicKey],
) -> None:
    """Once no document is on the compromised key, every version of each re-encrypted
    package but the committed one goes (older ones under other keys and delete markers
    too: they share the exposed data key), then the key is revoked; before that, nothing."""
    old, new = keys
    versions = FakeVersions()
    versions.put("encrypted/d.pqf", "v1", _package(new, "d"))  # rewrapped earlier, same data key
    versions.put("encrypted/d.pqf", "v2", _package(old, "d"))
    versions.put("encrypted/d.pqf", "m1", None)
    versions.put("encrypted/d.pqf", "v3", _package(new, "d"))  # the re-encrypted one
    versions.put("encrypted/other.pqf", "v1", _package(old, "other"))
    repo = FakeShredRepository(old.key_id, [])
    repo.requests = []
    repo.compromises = [
        KeyRequest(9, old.key_id, "compromise", "leaked", "alice", suite=old.suite.value)
    ]
    repo.compromise_list = [CompromiseCandidate("d", "b", "encrypted/d.pqf", "v3")]
    repo.documents_left = 1
    s = Shredding(repo, versions, backup_retention_days=14)
    assert shred_pending(s).compromised == []
    assert versions.deleted == [] and repo.committed == []

    repo.documents_left = 0
    from tests.functional.test_completion_events import RecordingEvents

    s.events = recorder = RecordingEvents()
    report = shred_pending(s)
    (event,) = recorder.events  # PQFile Key Revoked, mode compromise; never the reason
    assert (event.detail["key_id"], event.detail["mode"]) == (old.key_id, "compromise")
    assert event.detail["suite"] == old.suite.value  # the key's suite, not null
    assert "leaked" not in json.dumps(event.detail)
    (done,) = report.compromised
    assert done.key_id == old.key_id and done.versions_deleted == {"d": 3}
    assert [v for v, _ in versions.objects[("b", "encrypted/d.pqf")]] == ["v3"]
    assert [v for v, _ in versions.objects[("b", "encrypted/other.pqf")]] == ["v1"]
    assert repo.committed == [(9, 3)] and repo.completed == {"d": 3}
    assert report.to_dict()["compromised"] == [
        {"request": 9, "key_id": old.key_id, "documents": 1, "versions_deleted": 3}
    ]
    assert shred_pending(s).compromised == []  # completed: not again
