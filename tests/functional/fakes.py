"""In-memory fakes of the pipeline's ports, with the real PQF cipher (pqfile.crypto) and the
real key pool (pqfile.keys) over in-memory storage."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import itertools
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pqfile.adapters.cipher import CryptoCipher
from pqfile.auth import (
    IdentityProofError,
    ProofRefusal,
    VerifiedCaller,
    normalise_principal,
    retrieve_request_sha256,
)
from pqfile.config import Settings
from pqfile.crypto import kem
from pqfile.errors import (
    CustodyError,
    DocumentNotFoundError,
    PQFileError,
    StorageError,
    TransientError,
)
from pqfile.keys.custody import seed_context
from pqfile.keys.model import (
    IllegalTransitionError,
    KeyRecord,
    KeyStatus,
    NewKey,
    SealedSeed,
    SelectedKey,
)
from pqfile.keys.policy import PoolPolicy
from pqfile.keys.pool import KeyPool
from pqfile.keys.rotation_runs import RotationRun
from pqfile.ports import DocumentRecord, KeyRequest, ObjectInfo
from pqfile.usecases.common import Pipeline
from pqfile.usecases.events import tenant_of
from pqfile.usecases.retrieve import Retrieval

UPLOADS = "pqfile-uploads"
ENCRYPTED = "pqfile-encrypted"


class _Writer:
    def __init__(self, store: FakeBlobStore, bucket: str, key: str, content_type: str,
                 kms: str | None) -> None:
        self.store, self.bucket, self.key = store, bucket, key
        self.content_type, self.kms = content_type, kms
        self.buf = bytearray()
        self.aborted = False

    def write(self, data) -> int:
        if self.store.fail_writes:
            raise StorageError("injected: put refused")
        self.buf += data
        return len(data)

    def complete(self) -> ObjectInfo:
        return self.store.put(self.bucket, self.key, bytes(self.buf), self.content_type,
                              kms=self.kms)

    def abort(self) -> None:
        self.aborted = True
        self.store.aborted += 1


class _Parts:
    """A multipart upload whose parts the caller numbers (ports.PartedUpload)."""

    def __init__(self, store: FakeBlobStore, bucket: str, key: str, content_type: str) -> None:
        self.store, self.bucket, self.key, self.content_type = store, bucket, key, content_type
        self.parts: dict[int, bytes] = {}
        self.aborted = False

    def upload_part(self, number: int, data) -> None:
        if self.store.fail_writes or self.store.fail_part == number:
            raise StorageError(f"injected: part {number} refused")
        with self.store.lock:
            self.parts[number] = bytes(data)
            self.store.parts_uploaded.append((self.key, number, len(data)))

    def complete(self) -> ObjectInfo:
        assert sorted(self.parts) == list(range(1, len(self.parts) + 1))
        data = b"".join(self.parts[n] for n in sorted(self.parts))
        return self.store.put(self.bucket, self.key, data, self.content_type)

    def abort(self) -> None:
        self.aborted = True
        self.store.aborted += 1


class FakeBlobStore:
    """A versioned object store: every put creates a new version."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.tags: dict[tuple[str, str, str | None], dict[str, str]] = {}
        self._ids = itertools.count(1)
        self.fail_writes = False
        self.aborted = 0
        self.part_sizes: dict[tuple[str, str], int | None] = {}
        self.lock = threading.Lock()
        #: (key, start, length) of every ranged read; parts uploaded (key, number, size).
        self.range_reads: list[tuple[str, int, int]] = []
        self.parts_uploaded: list[tuple[str, int, int]] = []
        self.fail_part: int | None = None  # a part number whose upload fails

    def put(self, bucket, key, data: bytes, content_type="application/octet-stream",
            kms=None) -> ObjectInfo:
        with self.lock:
            version = f"v{next(self._ids)}"
            entry = {"data": data, "version_id": version, "etag": hashlib.md5(data).hexdigest(),
                     "content_type": content_type, "kms": kms}
            self.objects.setdefault((bucket, key), []).append(entry)
        return self._info(bucket, key, entry)

    def _info(self, bucket, key, e) -> ObjectInfo:
        return ObjectInfo(bucket, key, len(e["data"]), e["etag"], e["version_id"],
                          e["content_type"])

    def _entry(self, bucket, key, version_id):
        versions = self.objects.get((bucket, key), [])
        if not versions:
            raise DocumentNotFoundError("not found")
        if version_id is None:
            return versions[-1]
        for e in versions:
            if e["version_id"] == version_id:
                return e
        raise DocumentNotFoundError("not found")

    def open_read(self, bucket, key, version_id=None):
        return io.BytesIO(self._entry(bucket, key, version_id)["data"])

    def open_read_range(self, bucket, key, version_id, start, length):
        data = self._entry(bucket, key, version_id)["data"]
        self.range_reads.append((key, start, length))
        return io.BytesIO(data[start : start + max(0, length)])

    def open_parts(self, bucket, key, *, content_type):
        return _Parts(self, bucket, key, content_type)

    def head(self, bucket, key, version_id=None) -> Mapping[str, object]:
        return dataclasses.asdict(self.stat(bucket, key, version_id))

    def stat(self, bucket, key, version_id=None) -> ObjectInfo:
        return self._info(bucket, key, self._entry(bucket, key, version_id))

    def delete_version(self, bucket, key, version_id) -> None:
        with self.lock:
            versions = self.objects.get((bucket, key), [])
            if version_id is None:
                if versions:
                    versions.pop()
            else:
                versions[:] = [e for e in versions if e["version_id"] != version_id]
            if not versions:
                self.objects.pop((bucket, key), None)

    def open_write(self, bucket, key, *, content_type, kms_key_id=None, part_size=None):
        self.part_sizes[(bucket, key)] = part_size  # what the encrypt step planned
        return _Writer(self, bucket, key, content_type, kms_key_id)

    def put_file(self, bucket, key, path, *, content_type, kms_key_id=None) -> ObjectInfo:
        with open(path, "rb") as f:
            return self.put(bucket, key, f.read(), content_type, kms=kms_key_id)

    def presign_get(self, bucket, key, version_id, seconds) -> str:
        return f"https://presigned.invalid/{bucket}/{key}?v={version_id}&expires={seconds}"

    def tag_version(self, bucket, key, version_id, tags) -> None:
        self._entry(bucket, key, version_id)
        self.tags[(bucket, key, version_id)] = dict(tags)

    def data(self, bucket, key, version_id=None) -> bytes:
        return self._entry(bucket, key, version_id)["data"]

    def keys(self, bucket, prefix="") -> list[str]:
        return sorted(k for (b, k) in self.objects if b == bucket and k.startswith(prefix))


class FakeDocuments:
    """The document index in a dictionary. Like the database functions of migration 0010, a
    key is assigned or a document stored only while the key is active (the key rows come
    from the FakeKeyStorage it is part of), and a failure is recorded with its audit row."""

    def __init__(self) -> None:
        self.rows: dict[str, DocumentRecord] = {}
        self.lock = threading.Lock()
        self.down = False
        self.plaintext_deleted: set[str] = set()
        self.keys: FakeKeyRepository | None = None  # set by FakeKeyStorage
        self.audit: FakeAudit | None = None

    def _check(self) -> None:
        if self.down:
            raise TransientError("injected: database down")

    def _active(self, key_id: str | None, *, attested: bool = False) -> bool:
        if self.keys is None:
            return True
        record = self.keys.records.get(key_id or "")
        return (record is not None and record.status is KeyStatus.ACTIVE
                and (not attested or record.attestation is not None))

    def begin(self, *, document_id, source_bucket, source_key, source_version_id,
              source_etag, plaintext_size, tenant, content_type=None) -> DocumentRecord:
        self._check()
        with self.lock:
            ref = source_version_id or source_etag
            for r in self.rows.values():
                if (r.source_bucket, r.source_key, r.source_version_id or r.source_etag) == (
                        source_bucket, source_key, ref):
                    return r
            rec = DocumentRecord(document_id, source_bucket, source_key, source_version_id,
                                 source_etag, "pending", plaintext_size=plaintext_size,
                                 tenant=tenant, source_content_type=content_type)
            if not tenant or tenant_of(source_key) != tenant:  # as document_begin (0011)
                raise ValueError("the tenant must be the first folder under uploads/")
            self.rows[document_id] = rec
            return rec

    def get(self, document_id) -> DocumentRecord | None:
        self._check()
        return self.rows.get(document_id)

    def find_by_encrypted_object(self, bucket, key) -> DocumentRecord | None:
        self._check()
        for r in self.rows.values():
            if r.encrypted_bucket == bucket and r.encrypted_key == key:
                return r
        return None

    def find_stored_by_source(self, bucket, key, version_id=None) -> DocumentRecord | None:
        self._check()
        found = None
        for r in self.rows.values():  # insertion order: the last match is the newest
            if (r.source_bucket, r.source_key) == (bucket, key) and r.status == "stored" and (
                    version_id is None or r.source_version_id == version_id):
                found = r
        return found

    def assign_key(self, document_id, key_id) -> DocumentRecord:
        self._check()
        with self.lock:
            if not self._active(key_id, attested=True):
                raise IllegalTransitionError(f"key {key_id} is not active for encryption")
            r = self.rows.get(document_id)
            if r is None:
                raise DocumentNotFoundError(document_id)
            if r.status != "stored" and (r.key_id is None or not self._active(r.key_id)):
                suite = self.keys.records[key_id].suite if self.keys else "xwing"
                r = dataclasses.replace(r, key_id=key_id, suite=suite)
                self.rows[document_id] = r
            return r

    def mark_stored(self, document_id, *, encrypted_bucket, encrypted_key,
                    encrypted_version_id, encrypted_size) -> tuple[DocumentRecord, bool]:
        self._check()
        with self.lock:
            r = self.rows.get(document_id)
            if r is None:
                raise DocumentNotFoundError(document_id)
            if r.status == "stored":
                return r, False
            if r.key_id is None or not self._active(r.key_id):
                raise IllegalTransitionError(f"key {r.key_id} is not active for encryption")
            r = dataclasses.replace(
                r, status="stored", encrypted_bucket=encrypted_bucket,
                encrypted_key=encrypted_key, encrypted_version_id=encrypted_version_id,
                encrypted_size=encrypted_size, error=None, stored_at=_now())
            self.rows[document_id] = r
            return r, True

    def mark_plaintext_deleted(self, document_id) -> None:
        self._check()
        r = self.rows.get(document_id)
        if r is not None and r.status == "stored":
            self.plaintext_deleted.add(document_id)

    def record_failure(self, document_id, *, error, details, request_id=None) -> int:
        self._check()
        with self.lock:
            r = self.rows.get(document_id or "")
            if r is not None and r.status != "stored":
                self.rows[document_id] = dataclasses.replace(r, status="failed", error=error)
        assert self.audit is not None, "FakeDocuments needs its FakeKeyStorage's audit log"
        return self.audit.append(operation="document.encrypt", outcome="failure",
                                 document_id=document_id, request_id=request_id,
                                 details=details)


class FakeAudit:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        #: Outcomes whose append fails (TransientError), to test fail-closed paths.
        self.fail_outcomes: set[str] = set()

    def append(self, *, operation, outcome, actor=None, document_id=None, key_id=None,
               request_id=None, details=None) -> int:
        if str(outcome) in self.fail_outcomes:
            raise TransientError(f"injected: audit {outcome} unavailable")
        with self.lock:
            self.rows.append({"operation": operation, "outcome": outcome, "actor": actor,
                              "document_id": document_id, "key_id": key_id,
                              "request_id": request_id, "details": dict(details or {})})
            return len(self.rows)

    def tail(self, limit: int = 20) -> Iterator[Mapping[str, object]]:
        return iter(self.rows[-limit:])


# --- the key pool: the real KeyPool (pqfile.keys) over in-memory storage -------------------
# Only storage is faked here (rows in dictionaries, a transaction as a lock plus a snapshot
# to roll back to), KMS (AES-GCM with the encryption context as associated data) and the
# KMS HMAC key that attests keys (pyca's HMAC). Each write does what the database function
# of migration 0010 stores (and appends its audit row); the rules that decide when to call
# it are pqfile.keys' own code. The database's refusals (roles, due checks, invariants) are
# tested against PostgreSQL in tests/integration.


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class FakeProtector:
    """ports.SeedProtector: a wrong encryption context does not unwrap, as with KMS."""

    ARN = "arn:aws:kms:us-east-1:123456789012:key/fake"

    def __init__(self) -> None:
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self.down = False
        self.unwraps = 0

    @staticmethod
    def _aad(context: Mapping[str, str]) -> bytes:
        return json.dumps(dict(context), sort_keys=True).encode()

    def wrap(self, seed: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        if self.down:
            raise CustodyError("injected: KMS key disabled")
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, seed, self._aad(context)), self.ARN

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        if self.down:
            raise CustodyError("injected: KMS key disabled")
        self.unwraps += 1
        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], self._aad(context))
        except InvalidTag:
            raise CustodyError("KMS refused to unwrap the seed") from None


class FakeAttestor:
    """ports.KeyAttestor: HMAC-SHA256 with a local key (KMS GenerateMac / VerifyMac)."""

    def __init__(self) -> None:
        self._key = os.urandom(32)
        self.verifications = 0

    def generate(self, message: bytes) -> bytes:
        mac = hmac.HMAC(self._key, hashes.SHA256())
        mac.update(message)
        return mac.finalize()

    def verify(self, message: bytes, mac: bytes) -> bool:
        self.verifications += 1
        check = hmac.HMAC(self._key, hashes.SHA256())
        check.update(message)
        try:
            check.verify(mac)
        except InvalidSignature:
            return False
        return True


_STAMPS = {
    KeyStatus.ROTATION_QUEUED: "rotation_queued_at",
    KeyStatus.EXPIRED: "expired_at",
    KeyStatus.REVOKED: "revoked_at",
}


class FakeKeyRepository:
    """ports.KeyRepository over a dictionary of KeyRecords (and their wrapped seeds)."""

    def __init__(self) -> None:
        self.records: dict[str, KeyRecord] = {}
        self.wrapped: dict[str, bytes] = {}
        self.requests: dict[int, dict[str, Any]] = {}
        self._request_ids = itertools.count(1)
        self.lock = threading.RLock()
        # Set by FakeKeyStorage: the other tables the database functions touch.
        self.documents: FakeDocuments = FakeDocuments()
        self.audit: FakeAudit = FakeAudit()
        self.rotations: FakeRotationRepository | None = None

    def now(self) -> dt.datetime:
        return _now()

    def _selectable(self, suite, max_documents, max_bytes, exclude=()) -> list[KeyRecord]:
        now = _now()
        return [r for r in self.records.values()
                if r.suite == suite and r.status is KeyStatus.ACTIVE and r.rotate_after > now
                and r.attestation is not None and r.key_id not in exclude
                and r.usage_count < max_documents and r.bytes_encrypted < max_bytes]

    def take_least_used(self, suite, *, nbytes, max_documents, max_bytes, wait, exclude=()):
        with self.lock:
            candidates = self._selectable(suite, max_documents, max_bytes, exclude)
            if not candidates:
                return None
            key = min(candidates, key=lambda r: (r.usage_count, r.key_id))
            self.count_use(key.key_id, nbytes)
            used = self.records[key.key_id]
            return SelectedKey(used.key_id, used.suite, used.usage_count, used.bytes_encrypted,
                               used.public_key, used.attestation)

    def count_selectable(self, suite, *, max_documents, max_bytes, exclude=()) -> int:
        with self.lock:
            return len(self._selectable(suite, max_documents, max_bytes, exclude))

    def get_key(self, key_id) -> KeyRecord | None:
        return self.records.get(key_id)

    def list_keys(self, suite=None, status=None) -> list[KeyRecord]:
        with self.lock:
            rows = [r for r in self.records.values() if (suite is None or r.suite == suite)
                    and (status is None or r.status is status)]
        return sorted(rows, key=lambda r: (r.suite, r.created_at, r.key_id))

    def sealed_seed(self, key_id) -> SealedSeed | None:
        record = self.records.get(key_id)
        if record is None:
            return None
        return SealedSeed(record.suite, record.status, self.wrapped[key_id])

    def status_counts(self) -> list[tuple[str, str, int, float]]:
        now = _now()
        groups: dict[tuple[str, str], list[KeyRecord]] = {}
        for r in self.list_keys():
            groups.setdefault((r.suite, r.status.value), []).append(r)
        return [(suite, status, len(rows),
                 (now - min(r.created_at for r in rows)).total_seconds())
                for (suite, status), rows in sorted(groups.items())]

    def active_usage(self) -> list[tuple[str, int]]:
        return [(r.suite, r.usage_count) for r in self.list_keys(status=KeyStatus.ACTIVE)]

    def lock_pool(self, suite) -> None:
        return None  # the storage transaction already holds the one lock

    def count_active(self, suite) -> int:
        return sum(1 for r in self.list_keys(suite, KeyStatus.ACTIVE) if r.attestation)

    # -- storage helpers (what the database functions change) --

    def insert(self, key: NewKey, *, attestation: bytes | None,
               max_age: dt.timedelta) -> KeyRecord:
        now = _now()
        record = KeyRecord(key.key_id, key.suite, key.public_key, key.kms_key_arn,
                           KeyStatus.ACTIVE, 0, 0, now, now, now + max_age,
                           attestation=attestation)
        with self.lock:
            self.records[key.key_id] = record
            self.wrapped[key.key_id] = key.wrapped_seed
        return record

    def set_status(self, key_id, status: KeyStatus, *, reason=None) -> KeyStatus:
        now = _now()
        with self.lock:
            r = self.records[key_id]
            if r.status is KeyStatus.REVOKED:
                raise IllegalTransitionError(f"key {key_id} is revoked")
            old = r.status
            stamp = _STAMPS.get(status)
            stamps = {stamp: getattr(r, stamp) or now} if stamp else {}
            self.records[key_id] = dataclasses.replace(
                r, status=status, revoke_reason=reason or r.revoke_reason, **stamps)
            return old

    def count_use(self, key_id, nbytes) -> None:
        with self.lock:
            r = self.records[key_id]
            self.records[key_id] = dataclasses.replace(
                r, usage_count=r.usage_count + 1, bytes_encrypted=r.bytes_encrypted + nbytes,
                last_used_at=_now())

    def _audit(self, operation, key_id, request_id, details, outcome="success",
               document_id=None) -> None:
        self.audit.append(operation=operation, outcome=outcome, key_id=key_id,
                          document_id=document_id, request_id=request_id, details=details)

    # -- writes (the database functions of migration 0010) --

    def create_key(self, key: NewKey, *, attestation, max_age, actor, request_id) -> KeyRecord:
        record = self.insert(key, attestation=attestation, max_age=max_age)
        self._audit("key.create", key.key_id, request_id,
                    {"suite": key.suite, "kms_key_arn": key.kms_key_arn})
        return record

    def queue_rotation(self, key_id, reason, *, max_documents, max_bytes, actor,
                       request_id) -> bool:
        with self.lock:
            record = self.records.get(key_id)
            if record is None or record.status is not KeyStatus.ACTIVE:
                return False
            self.set_status(key_id, KeyStatus.ROTATION_QUEUED)
            assert self.rotations is not None
            self.rotations.open_run(key_id, reason)
            self._audit("key.rotation_queued", key_id, request_id,
                        {"reason": reason, "usage_count": record.usage_count,
                         "bytes_encrypted": record.bytes_encrypted})
            return True

    def revoke(self, key_id, reason, *, actor, request_id) -> KeyStatus:
        with self.lock:
            old = self.set_status(key_id, KeyStatus.REVOKED, reason=reason)
            for req in self.requests.values():
                if (req["key_id"], req["kind"], req["status"]) == (key_id, "revoke", "pending"):
                    req["status"] = "completed"
            self._audit("key.revoke", key_id, request_id,
                        {"from": old.value, "to": "revoked", "reason": reason})
            return old

    def expire(self, key_id, *, actor, request_id) -> KeyStatus:
        with self.lock:
            old = self.set_status(key_id, KeyStatus.EXPIRED)
            self._audit("key.expire", key_id, request_id, {"from": old.value, "to": "expired"})
            return old

    def request(self, key_id, kind, reason, *, actor, request_id) -> int:
        with self.lock:
            record = self.records[key_id]
            if record.status is KeyStatus.ACTIVE:
                self.set_status(key_id, KeyStatus.ROTATION_QUEUED)
            assert self.rotations is not None
            if record.status in (KeyStatus.ACTIVE, KeyStatus.ROTATION_QUEUED) and not any(
                    r.old_key_id == key_id and r.status in ("queued", "running")
                    for r in self.rotations.runs.values()):
                self.rotations.open_run(key_id, f"request:{kind}")
            rid = next(self._request_ids)
            self.requests[rid] = {"key_id": key_id, "kind": kind, "reason": reason,
                                  "requested_by": actor or "operator", "status": "pending"}
            self._audit(f"key.{kind}_requested", key_id, request_id,
                        {"request_id": rid, "reason": reason})
            return rid

    def pending_requests(self, key_id=None) -> list[KeyRequest]:
        return [KeyRequest(rid, r["key_id"], r["kind"], r["reason"], r["requested_by"])
                for rid, r in sorted(self.requests.items())
                if r["status"] == "pending" and key_id in (None, r["key_id"])]

    def complete_request(self, request, *, actor, request_id) -> bool:
        with self.lock:
            req = self.requests[request]
            if any(d.key_id == req["key_id"] for d in self.documents.rows.values()):
                return False
            if self.records[req["key_id"]].status is not KeyStatus.REVOKED:
                self.set_status(req["key_id"], KeyStatus.REVOKED, reason=req["reason"])
            req["status"] = "completed"
            self._audit("key.revoke", req["key_id"], request_id,
                        {"request": request, "reason": req["reason"],
                         "requested_by": req["requested_by"]})
            return True


class FakeRotationRepository:
    """ports.RotationRepository: runs in a dictionary; documents are FakeDocuments' rows."""

    def __init__(self, keys: FakeKeyRepository, documents: FakeDocuments,
                 audit: FakeAudit) -> None:
        self.keys, self.documents, self.audit = keys, documents, audit
        self.runs: dict[int, RotationRun] = {}
        self._ids = itertools.count(1)

    def list_runs(self, status=None) -> list[RotationRun]:
        return [r for _, r in sorted(self.runs.items()) if status is None or r.status == status]

    def run_counts(self) -> Mapping[str, int] | None:
        return dict(collections.Counter(r.status for r in self.runs.values()))

    def documents_on_key(self, key_id, limit) -> list[str]:
        return sorted(d for d, r in self.documents.rows.items() if r.key_id == key_id)[:limit]

    def documents_after(self, key_id, after, limit) -> list[tuple[str, bool]]:
        rows = sorted((d, r) for d, r in self.documents.rows.items()
                      if r.key_id == key_id and (after is None or d > after))
        return [(d, r.status == "stored" and bool(r.encrypted_key)) for d, r in rows[:limit]]

    def pool_keys(self, suite, *, exclude, limit) -> list[tuple[str, int]]:
        now = _now()
        keys = sorted((r.usage_count, r.key_id) for r in self.keys.records.values()
                      if r.suite == suite and r.status is KeyStatus.ACTIVE
                      and r.key_id != exclude and r.rotate_after > now
                      and r.attestation is not None)
        return [(k, n) for n, k in keys[:limit]]

    def open_run(self, old_key_id, reason) -> None:
        """A queued run (what the owner or key_queue_rotation / key_request insert)."""
        rid = next(self._ids)
        self.runs[rid] = RotationRun(rid, old_key_id, None, reason, "queued", 0, 0, 0, None)

    def get_run(self, rotation_id) -> RotationRun | None:
        return self.runs.get(rotation_id)

    def successor(self, old_key_id, *, suite=None, exclude=()) -> str | None:
        old = self.keys.records[old_key_id]
        now = _now()
        candidates = [r for r in self.keys.records.values()
                      if r.suite == (suite or old.suite) and r.status is KeyStatus.ACTIVE
                      and r.key_id != old_key_id and r.rotate_after > now
                      and r.attestation is not None and r.key_id not in exclude]
        if not candidates:
            return None
        return min(candidates, key=lambda r: (r.usage_count, r.key_id)).key_id

    def _update(self, rotation_id, **changes) -> RotationRun:
        run = dataclasses.replace(self.runs[rotation_id], **changes)
        self.runs[rotation_id] = run
        return run

    def _count_on(self, key_id) -> int:
        return sum(1 for r in self.documents.rows.values() if r.key_id == key_id)

    def begin_run(self, rotation_id, *, new_key_id, actor, request_id) -> RotationRun:
        with self.keys.lock:
            run = self.runs[rotation_id]
            if run.status != "queued":
                return run
            run = self._update(rotation_id, status="running", new_key_id=new_key_id,
                               documents_total=self._count_on(run.old_key_id))
            self.audit.append(operation="key.rotation_started", outcome="success",
                              key_id=run.old_key_id, request_id=request_id,
                              details={"rotation_id": rotation_id, "new_key_id": new_key_id,
                                       "documents_total": run.documents_total})
            return run

    def record_rewrap(self, rotation_id, document_id, *, new_key_id, encrypted_version_id,
                      encrypted_size, actor, request_id) -> bool:
        with self.keys.lock, self.documents.lock:
            run = self.runs[rotation_id]
            old_suite = self.keys.records[run.old_key_id].suite
            target = self.keys.records.get(new_key_id)
            if (target is None or target.status is not KeyStatus.ACTIVE
                    or target.suite != (run.to_suite or old_suite)):
                raise PQFileError(f"key {new_key_id} is not an active key of the run's suite")
            r = self.documents.rows.get(document_id)
            if r is None or r.key_id != run.old_key_id or r.status != "stored":
                return False
            self.documents.rows[document_id] = dataclasses.replace(
                r, key_id=new_key_id, encrypted_version_id=encrypted_version_id,
                encrypted_size=encrypted_size)
            self.keys.count_use(new_key_id, r.plaintext_size or 0)
            self._update(rotation_id, documents_rewrapped=run.documents_rewrapped + 1)
            self.audit.append(operation="document.rewrap", outcome="success",
                              document_id=document_id, key_id=new_key_id,
                              request_id=request_id,
                              details={"rotation_id": rotation_id,
                                       "from_key_id": run.old_key_id,
                                       "from_suite": old_suite,
                                       "to_suite": run.to_suite or old_suite})
            return True

    def record_reencrypt(self, rotation_id, document_id, *, new_key_id, encrypted_version_id,
                         encrypted_size, from_kdf, to_kdf, actor, request_id) -> bool:
        """As rotation_record_reencrypt (0015): the downgrade guard, the row moves, and a
        ``document.reencrypt`` audit row with both keys, suites and KDFs."""
        with self.keys.lock, self.documents.lock:
            run = self.runs[rotation_id]
            if run.status != "running":
                raise PQFileError(f"rotation run {rotation_id} is not running")
            old_suite = self.keys.records[run.old_key_id].suite
            to_suite = run.to_suite or old_suite
            target = self.keys.records.get(new_key_id)
            if (target is None or target.status is not KeyStatus.ACTIVE
                    or target.suite != to_suite):
                raise PQFileError(f"key {new_key_id} is not an active key of the run's suite")
            r = self.documents.rows.get(document_id)
            if r is None or r.key_id != run.old_key_id or r.status != "stored":
                return False
            self.documents.rows[document_id] = dataclasses.replace(
                r, key_id=new_key_id, suite=to_suite, encrypted_version_id=encrypted_version_id,
                encrypted_size=encrypted_size)
            self.keys.count_use(new_key_id, r.plaintext_size or 0)
            self._update(rotation_id, documents_rewrapped=run.documents_rewrapped + 1)
            compromised = any(q["key_id"] == run.old_key_id and q["kind"] == "compromise"
                              and q["status"] == "pending" for q in self.keys.requests.values())
            self.audit.append(operation="document.reencrypt", outcome="success",
                              document_id=document_id, key_id=new_key_id,
                              request_id=request_id,
                              details={"rotation_id": rotation_id,
                                       "from_key_id": run.old_key_id, "to_key_id": new_key_id,
                                       "from_suite": old_suite, "to_suite": to_suite,
                                       "from_kdf": from_kdf, "to_kdf": to_kdf,
                                       "compromise": compromised})
            return True

    def finish_run(self, rotation_id, *, actor, request_id) -> RotationRun:
        with self.keys.lock:
            run = self.runs[rotation_id]
            if run.status != "running":
                return run
            left = self._count_on(run.old_key_id)
            if left:
                run = self._update(rotation_id, status="failed", documents_failed=left,
                                   error=f"{left} document(s) still use the old key")
            else:
                if self.keys.records[run.old_key_id].status in (KeyStatus.ACTIVE,
                                                                KeyStatus.ROTATION_QUEUED):
                    self.keys.set_status(run.old_key_id, KeyStatus.EXPIRED)
                run = self._update(rotation_id, status="completed", documents_failed=0)
                self.audit.append(operation="key.expire", outcome="success",
                                  key_id=run.old_key_id, request_id=request_id,
                                  details={"rotation_id": rotation_id, "to": "expired"})
            self.audit.append(operation="key.rotation_finished",
                              outcome="failure" if left else "success",
                              key_id=run.old_key_id, request_id=request_id,
                              details={"rotation_id": rotation_id,
                                       "new_key_id": run.new_key_id,
                                       "documents_rewrapped": run.documents_rewrapped,
                                       "documents_left": left})
            return run


class FakeKeyStorage:
    """ports.KeyStorage: a transaction holds the key rows' lock and rolls back on error."""

    def __init__(self, keys: FakeKeyRepository | None = None,
                 documents: FakeDocuments | None = None, audit: FakeAudit | None = None) -> None:
        self.keys = keys or FakeKeyRepository()
        self.documents = documents or FakeDocuments()
        self.audit = audit or FakeAudit()
        self.rotations = FakeRotationRepository(self.keys, self.documents, self.audit)
        self.keys.documents, self.keys.audit = self.documents, self.audit
        self.keys.rotations = self.rotations
        self.documents.keys, self.documents.audit = self.keys, self.audit

    @contextlib.contextmanager
    def transaction(self) -> Iterator[FakeKeyStorage]:
        with self.keys.lock:
            saved = (dict(self.keys.records), dict(self.keys.wrapped), dict(self.rotations.runs),
                     dict(self.documents.rows), len(self.audit.rows))
            try:
                yield self
            except BaseException:
                records, wrapped, runs, documents, audited = saved
                self.keys.records, self.keys.wrapped = records, wrapped
                self.rotations.runs = runs
                self.documents.rows.clear()
                self.documents.rows.update(documents)
                del self.audit.rows[audited:]
                raise


class _StatusView(MutableMapping[str, str]):
    """Key id -> status name of the stored rows (tests set statuses directly, as an owner
    would with SQL); deleting an entry deletes the key."""

    def __init__(self, repo: FakeKeyRepository) -> None:
        self._repo = repo

    def __getitem__(self, key_id: str) -> str:
        return self._repo.records[key_id].status.value

    def __setitem__(self, key_id: str, status: str) -> None:
        with self._repo.lock:
            self._repo.records[key_id] = dataclasses.replace(
                self._repo.records[key_id], status=KeyStatus.from_name(status))

    def __delitem__(self, key_id: str) -> None:
        with self._repo.lock:
            del self._repo.records[key_id]
            del self._repo.wrapped[key_id]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._repo.records))

    def __len__(self) -> int:
        return len(self._repo.records)


class _SecretsView(_StatusView):
    """Key id -> the secret key, unwrapped from the stored row (for tests to decrypt with)."""

    def __init__(self, repo: FakeKeyRepository, protector: FakeProtector) -> None:
        super().__init__(repo)
        self._protector = protector

    def __getitem__(self, key_id: str) -> kem.SecretKey:  # type: ignore[override]
        record = self._repo.records[key_id]
        seed = self._protector.unwrap(self._repo.wrapped[key_id],
                                      seed_context(key_id, record.suite))
        return kem.secret_key_from_seed(kem.Suite.from_name(record.suite), seed)

    def __setitem__(self, key_id: str, value: object) -> None:
        raise TypeError("keys are added with FakeKeyStore._add")


class FakeKeyStore(KeyPool):
    """The pipeline's key store: pqfile.keys.pool.KeyPool over FakeKeyStorage."""

    def __init__(self, count: int = 2, suite: kem.Suite = kem.Suite.XWING, *,
                 storage: FakeKeyStorage | None = None) -> None:
        self.protector = FakeProtector()
        super().__init__(storage or FakeKeyStorage(), self.protector, attestor=FakeAttestor(),
                         policy=PoolPolicy(target_active=2, floor_active=2))
        self.refills = 0
        for _ in range(count):
            self._add(suite)

    def _add(self, suite: kem.Suite, *, attested: bool = True) -> str:
        """A new active key, stored without an audit row (a fixture, not a refill)."""
        key = self.custody.generate(suite)
        mac = self.attest(key.suite, key.key_id, key.public_key) if attested else None
        self.storage.keys.insert(key, attestation=mac,  # type: ignore[attr-defined]
                                 max_age=self.policy.max_age)
        return key.key_id

    def plant(self, suite: kem.Suite = kem.Suite.XWING, *, forged: bool = True) -> str:
        """A key inserted as an attacker with SQL would: its secret known to the attacker,
        with a forged attestation (or none). Returns its id."""
        key = self.custody.generate(suite)
        mac = os.urandom(32) if forged else None
        self.storage.keys.insert(key, attestation=mac,  # type: ignore[attr-defined]
                                 max_age=self.policy.max_age)
        return key.key_id

    def refill(self, suite, *, actor=None, request_id=None):
        self.refills += 1
        return super().refill(suite, actor=actor, request_id=request_id)

    @property
    def kms_down(self) -> bool:
        return self.protector.down

    @kms_down.setter
    def kms_down(self, down: bool) -> None:
        self.protector.down = down

    @property
    def status(self) -> _StatusView:
        return _StatusView(self.storage.keys)

    @status.setter
    def status(self, statuses: Mapping[str, str]) -> None:
        view = self.status
        for key_id, name in statuses.items():
            view[key_id] = name

    @property
    def secrets(self) -> _SecretsView:
        return _SecretsView(self.storage.keys, self.protector)


class _DueKeys:
    """``due.add(key_id)``: the key is past its age now (as the owner would set with SQL)."""

    def __init__(self, repo: FakeKeyRepository) -> None:
        self._repo = repo

    def add(self, key_id: str) -> None:
        with self._repo.lock:
            self._repo.records[key_id] = dataclasses.replace(
                self._repo.records[key_id], rotate_after=_now() - dt.timedelta(seconds=1))


class FakeRotationKeys(KeyPool):
    """The rotate roles' KeyPool: the pipeline's key rows, documents and audit log."""

    def __init__(self, keys: FakeKeyStore, documents: FakeDocuments, audit: FakeAudit,
                 target: int = 2) -> None:
        storage = FakeKeyStorage(keys.storage.keys, documents, audit)
        super().__init__(storage, keys.protector, attestor=keys.attestor,
                         policy=PoolPolicy(target_active=target, floor_active=target))
        self.keys = keys
        self.due = _DueKeys(storage.keys)
        self.runs = storage.rotations.runs
        self.crash_before_record = 0

    def record_rewrap(self, *args: Any, **kwargs: Any) -> bool:
        if self.crash_before_record:
            self.crash_before_record -= 1
            raise TransientError("injected: crashed before the row update")
        return super().record_rewrap(*args, **kwargs)


def make_pipeline(**settings: Any) -> Pipeline:
    # Plaintext delivery on, as today's tests expect (the deployed default is off).
    values = {"uploads_bucket": UPLOADS, "encrypted_bucket": ENCRYPTED, "segment_size": 64 * 1024,
              "plaintext_delivery": True}  # fmt: skip
    values.update(settings)
    documents, audit = FakeDocuments(), FakeAudit()
    return Pipeline(
        settings=Settings.from_values(**values),
        blobs=FakeBlobStore(),
        documents=documents,
        keys=FakeKeyStore(storage=FakeKeyStorage(documents=documents, audit=audit)),
        audit=audit,
        cipher=CryptoCipher(),
    )


def event_for(info: ObjectInfo, *, bucket: str | None = None, key: str | None = None,
              with_version: bool = True) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": key or info.key, "size": info.size, "etag": info.etag,
                           "sequencer": "0A1B2C"}
    if with_version:
        obj["version-id"] = info.version_id
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-28T12:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket or info.bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket or info.bucket},
            "object": obj,
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "reason": "PutObject",
        },
    }


def run_workflow(p: Pipeline, event: dict[str, Any], execution: str = "exec-1") -> dict[str, Any]:
    """The ingest ASL's happy and Catch paths, in process (the real ASL runs in integration)."""
    from pqfile.usecases import ingest

    state: dict[str, Any] = dict(event)
    try:
        fetched = ingest.fetch_document(p, event)
        state["document"] = fetched.to_dict()
        if fetched.status == "stored":
            state["stored"] = {"outcome": "duplicate"}
        else:
            choice = ingest.select_key(p, fetched.document_id)
            state["key"] = {"key_id": choice.key_id, "suite": choice.suite}
            written = ingest.encrypt_document(
                p, fetched.document_id, fetched.source, choice.key_id, fetched.content_type)
            state["encrypted"] = {"encrypted": dataclasses.asdict(written)}
            stored = ingest.store_document(p, fetched.document_id, fetched.source, written)
            state["stored"] = {"outcome": stored.outcome}
        ingest.audit_ingest(p, fetched.document_id, state["stored"]["outcome"],
                            request_id=execution, uploaded_by=fetched.uploaded_by)
        state["status"] = "SUCCEEDED"
    except Exception as exc:  # noqa: BLE001 - the ASL Catch is States.ALL
        state["error"] = {"Error": type(exc).__name__, "Cause": str(exc)}
        report = ingest.record_failure(p, state, request_id=execution)
        state["failure"] = report.to_dict()
        state["status"] = "FAILED"
    return state


# --- retrieve: a verifier that trusts a test proof, and access rules in memory ------------


def proof_for(principal: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """A test proof: the principal it names, bound to the payload's canonical hash (the
    real checks are pqfile.auth's, tested in tests/unit and tests/integration)."""
    return {"principal": principal, "request_sha256": retrieve_request_sha256(payload)}


class FakeVerifier:
    def __init__(self) -> None:
        self.calls = 0
        self.unavailable = False

    def verify(self, proof: object, *, request_sha256: str) -> VerifiedCaller:
        self.calls += 1
        if proof is None:
            raise IdentityProofError(ProofRefusal.MISSING)
        if not isinstance(proof, Mapping) or set(proof) != {"principal", "request_sha256"}:
            raise IdentityProofError(ProofRefusal.MALFORMED)
        if proof["request_sha256"] != request_sha256:
            raise IdentityProofError(ProofRefusal.REQUEST_HASH)
        if self.unavailable:
            raise IdentityProofError(ProofRefusal.STS_UNAVAILABLE)
        arn = str(proof["principal"])
        principal, session = normalise_principal(arn)
        return VerifiedCaller(principal_arn=principal, account=arn.split(":")[4],
                              session_name=session, sts_arn=arn, user_id="AIDATEST",
                              access_key_id="AKIATEST",
                              signed_at=dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC))


class FakeAccess:
    """access_check of migration 0011: deny by default, `*` patterns, tenant or document."""

    def __init__(self, documents: FakeDocuments) -> None:
        self.documents = documents
        self.rules: list[tuple[str, str | None, str | None, str]] = []
        self.checks: list[tuple[str, str]] = []

    def grant(self, principal: str, *, tenant: str | None = None,
              document_id: str | None = None, operation: str = "retrieve") -> None:
        self.rules.append((principal, tenant, document_id, operation))

    def allows(self, principal: str, document_id: str, operation: Any) -> bool:
        self.checks.append((principal, document_id))
        record = self.documents.rows.get(document_id)
        if record is None:
            return False
        for pattern, tenant, doc, op in self.rules:
            regex = ".*".join(re.escape(part) for part in pattern.split("*"))
            if op == str(operation) and re.fullmatch(regex, principal) and (
                    doc == document_id or (tenant is not None and tenant == record.tenant)):
                return True
        return False


def make_retrieval(p: Pipeline | None = None, **settings: Any) -> Retrieval:
    pipeline = p or make_pipeline(**settings)
    assert isinstance(pipeline.documents, FakeDocuments)
    return Retrieval(pipeline=pipeline, access=FakeAccess(pipeline.documents),
                     identity=FakeVerifier())
