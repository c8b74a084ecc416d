"""Sign a tree head of the audit log and keep it outside the database (issue 14, item 1).

On a schedule (terraform/audit_digests.tf) the digest-signing function reads the audit rows'
hashes as ``pqfile_auditor`` (read-only), computes the RFC 9162 tree over them
(pqfile.keys.audit_tree), links the previous digest (the latest object in the digest
bucket), has KMS sign the canonical encoding (pqfile.keys.audit_digest) and writes
``digests/<tree size>.json`` to the Object Lock bucket. docs/OPERATIONS.md, "Audit digests".

- Nothing new since the latest digest (or no rows yet): nothing is signed or written, and
  the answer says so.
- Idempotent under retries: the object key is the tree size and the write is conditional
  (``If-None-Match: *``), so a retry or a concurrent run that finds the digest already
  written writes nothing more; the next run sees it as the latest and skips.
- The first ``tree_size`` rows of the previous digest must still have the root it signed:
  a table that shrank or was rewritten is refused (no digest is signed over it) and
  reported, which the function counts as ``AuditDigestFailures``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from pqfile.keys.audit_digest import (
    GENESIS_DIGEST_HASH,
    SignedDigest,
    TreeHead,
    encode,
    object_key,
)
from pqfile.keys.audit_tree import AuditTree
from pqfile.ports.audit_digests import AuditLeafSource, DigestSigner, DigestStore


@dataclass(frozen=True)
class DigestOutcome:
    """What one run did. ``written``: a new digest object; ``skipped``: why not (None when
    written); ``ok``: False only when the log no longer matches the previous digest."""

    ok: bool
    written: bool
    tree_size: int
    root_hash: bytes | None
    key: str | None
    previous_tree_size: int | None
    skipped: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "written": self.written,
            "tree_size": self.tree_size,
            "root_hash": None if self.root_hash is None else self.root_hash.hex(),
            "key": self.key,
            "previous_tree_size": self.previous_tree_size,
            "skipped": self.skipped,
        }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuditDigester:
    """One run of the digest-signing function."""

    def __init__(
        self,
        leaves: AuditLeafSource,
        signer: DigestSigner,
        store: DigestStore,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        self._leaves = leaves
        self._signer = signer
        self._store = store
        self._clock = clock

    def run(self) -> DigestOutcome:
        previous = self._store.latest()
        previous_head = None if previous is None else previous.head
        since = 0 if previous_head is None else previous_head.tree_size
        snapshot = self._leaves.leaves(since)
        size = len(snapshot.row_hashes)
        tree = AuditTree(snapshot.row_hashes)
        root = tree.root()

        if previous_head is not None:
            if size < previous_head.tree_size:
                return self._refused(
                    size,
                    root,
                    previous_head,
                    f"the audit log holds {size} rows, fewer than the {previous_head.tree_size}"
                    " the latest digest signed",
                )
            if tree.root(previous_head.tree_size) != previous_head.root_hash:
                return self._refused(
                    size,
                    root,
                    previous_head,
                    f"the first {previous_head.tree_size} audit rows no longer have the root "
                    "the latest digest signed (rewritten)",
                )
            if size == previous_head.tree_size:
                return DigestOutcome(
                    ok=True,
                    written=False,
                    tree_size=size,
                    root_hash=root,
                    key=object_key(size),
                    previous_tree_size=size,
                    skipped=f"nothing new: the latest digest already covers {size} rows",
                )
        elif size == 0:
            return DigestOutcome(
                ok=True,
                written=False,
                tree_size=0,
                root_hash=root,
                key=None,
                previous_tree_size=None,
                skipped="nothing new: the audit log has no rows yet",
            )

        head = TreeHead(
            tree_size=size,
            root_hash=root,
            first_seq=since + 1,
            last_seq=size,
            first_at=snapshot.first_at,
            last_at=snapshot.last_at,
            previous_digest_hash=(
                GENESIS_DIGEST_HASH if previous is None else previous.digest_hash
            ),
            signed_at=self._clock(),
            key_id=self._signer.key_id,
            algorithm=self._signer.algorithm,
        )
        encoded = encode(head)
        signed = SignedDigest(
            digest=encoded,
            signature=self._signer.sign(encoded),
            algorithm=head.algorithm,
            key_id=head.key_id,
        )
        key = object_key(size)
        written = self._store.put_new(key, signed.to_json())
        return DigestOutcome(
            ok=True,
            written=written,
            tree_size=size,
            root_hash=root,
            key=key,
            previous_tree_size=None if previous_head is None else previous_head.tree_size,
            skipped=None if written else f"{key} was already written (a retry or another run)",
        )

    @staticmethod
    def _refused(size: int, root: bytes, previous: TreeHead, reason: str) -> DigestOutcome:
        return DigestOutcome(
            ok=False,
            written=False,
            tree_size=size,
            root_hash=root,
            key=None,
            previous_tree_size=previous.tree_size,
            skipped=reason,
        )
