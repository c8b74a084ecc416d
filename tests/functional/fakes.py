"""In-memory fakes of the pipeline's ports, with the real PQF cipher (pqfile.crypto)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from pqfile.config import Settings
from pqfile.crypto import envelope, kem
from pqfile.errors import (
    CustodyError,
    DocumentNotFoundError,
    KeyNotFoundError,
    KeyNotUsableError,
    NoActiveKeyError,
    StorageError,
)
from pqfile.ports import DocumentRecord, ObjectInfo
from pqfile.usecases.common import Pipeline

UPLOADS = "pqfile-uploads"
ENCRYPTED = "pqfile-encrypted"


class RealCipher:
    def encrypt_stream(self, src, dst, recipient, context, *, segment_size, document_id):
        return envelope.encrypt_stream(
            src, dst, recipient, context=context, segment_size=segment_size,
            document_id=document_id,
        )

    def decrypt_stream(self, src, dst, identity, *, document_id):
        return envelope.decrypt_stream(src, dst, identity, expected_document_id=document_id)

    def package_ids(self, src):
        header = envelope.read_header(src)
        return header.key_id, header.document_id.decode("utf-8", "replace")


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


class FakeBlobStore:
    """A versioned object store: every put creates a new version."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.tags: dict[tuple[str, str, str | None], dict[str, str]] = {}
        self._ids = itertools.count(1)
        self.fail_writes = False
        self.aborted = 0
        self.lock = threading.Lock()

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

    def open_write(self, bucket, key, *, content_type, kms_key_id=None):
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
    def __init__(self) -> None:
        self.rows: dict[str, DocumentRecord] = {}
        self.lock = threading.Lock()
        self.down = False
        self.plaintext_deleted: set[str] = set()

    def _check(self) -> None:
        if self.down:
            from pqfile.errors import TransientError
            raise TransientError("injected: database down")

    def begin(self, *, document_id, source_bucket, source_key, source_version_id,
              source_etag, plaintext_size) -> DocumentRecord:
        self._check()
        with self.lock:
            ref = source_version_id or source_etag
            for r in self.rows.values():
                if (r.source_bucket, r.source_key, r.source_version_id or r.source_etag) == (
                        source_bucket, source_key, ref):
                    return r
            rec = DocumentRecord(document_id, source_bucket, source_key, source_version_id,
                                 source_etag, "pending", plaintext_size=plaintext_size)
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

    def assign_key(self, document_id, key_id, suite) -> DocumentRecord:
        self._check()
        with self.lock:
            r = self.rows[document_id]
            if r.key_id is None:
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
            r = dataclasses.replace(
                r, status="stored", encrypted_bucket=encrypted_bucket,
                encrypted_key=encrypted_key, encrypted_version_id=encrypted_version_id,
                encrypted_size=encrypted_size, error=None)
            self.rows[document_id] = r
            return r, True

    def mark_plaintext_deleted(self, document_id) -> None:
        self._check()
        self.plaintext_deleted.add(document_id)

    def mark_failed(self, document_id, error) -> None:
        self._check()
        with self.lock:
            r = self.rows.get(document_id)
            if r is None:
                raise DocumentNotFoundError(document_id)
            if r.status != "stored":
                self.rows[document_id] = dataclasses.replace(r, status="failed", error=error)


class FakeKeyStore:
    def __init__(self, count: int = 2, suite: kem.Suite = kem.Suite.XWING) -> None:
        self.secrets: dict[str, kem.SecretKey] = {}
        self.status: dict[str, str] = {}
        self.usage: dict[str, int] = {}
        self.kms_down = False
        self.refills = 0
        for _ in range(count):
            self._add(suite)

    def _add(self, suite: kem.Suite) -> str:
        sk = kem.generate(suite)
        kid = sk.public_key().key_id
        self.secrets[kid] = sk
        self.status[kid] = "active"
        self.usage[kid] = 0
        return kid

    def select_encryption_key(self, suite, plaintext_size=0):
        active = [k for k, s in self.status.items()
                  if s == "active" and self.secrets[k].suite is suite]
        if not active:
            raise NoActiveKeyError("empty pool")
        kid = min(active, key=lambda k: (self.usage[k], k))
        self.usage[kid] += 1
        return self.secrets[kid].public_key()

    def refill(self, suite, *, actor=None, request_id=None):
        if self.kms_down:
            raise CustodyError("injected: KMS key disabled")
        self.refills += 1
        return [self._add(suite) for _ in range(2)]

    def public_key(self, key_id):
        if key_id not in self.secrets:
            raise KeyNotFoundError(key_id)
        return self.secrets[key_id].public_key()

    def load_decryption_key(self, key_id):
        if key_id not in self.secrets:
            raise KeyNotFoundError(key_id)
        if self.status[key_id] == "revoked":
            raise KeyNotUsableError(f"key {key_id} is revoked")
        if self.kms_down:
            raise CustodyError("injected: KMS key disabled")
        return self.secrets[key_id]


class FakeAudit:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def append(self, *, operation, outcome, actor, document_id=None, key_id=None,
               request_id=None, details=None) -> int:
        with self.lock:
            self.rows.append({"operation": operation, "outcome": outcome, "actor": actor,
                              "document_id": document_id, "key_id": key_id,
                              "request_id": request_id, "details": dict(details or {})})
            return len(self.rows)

    def tail(self, limit: int = 20) -> Iterator[Mapping[str, object]]:
        return iter(self.rows[-limit:])


def make_pipeline(**settings: Any) -> Pipeline:
    values = {"uploads_bucket": UPLOADS, "encrypted_bucket": ENCRYPTED, "segment_size": 64 * 1024}
    values.update(settings)
    return Pipeline(
        settings=Settings.from_values(**values),
        blobs=FakeBlobStore(),
        documents=FakeDocuments(),
        keys=FakeKeyStore(),
        audit=FakeAudit(),
        cipher=RealCipher(),
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
                            request_id=execution)
        state["status"] = "SUCCEEDED"
    except Exception as exc:  # noqa: BLE001 - the ASL Catch is States.ALL
        state["error"] = {"Error": type(exc).__name__, "Cause": str(exc)}
        report = ingest.record_failure(p, state, request_id=execution)
        state["failure"] = report.to_dict()
        state["status"] = "FAILED"
    return state
