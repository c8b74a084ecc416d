"""Checking an audit table against its signed digests (``pqfile audit verify --digests``;
docs/KEYS.md, "Verifying against the digests"). Pure: the caller reads the rows' hashes and
times and the digest objects. Split from keys/audit_digest.py, which defines the digests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pqfile.errors import AuditDigestError, AuditProofError
from pqfile.keys.audit_digest import (
    GENESIS_DIGEST_HASH,
    SignedDigest,
    TreeHead,
)
from pqfile.keys.audit_tree import AuditTree, verify_consistency

__all__ = ["DigestProblem", "DigestsReport", "check_digests"]


@dataclass(frozen=True)
class DigestProblem:
    """One finding. ``kind``: malformed, signature, beyond, root, times, fork, gap,
    consistency (docs/KEYS.md, "Verifying against the digests")."""

    kind: str
    name: str
    tree_size: int | None
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "tree_size": self.tree_size,
                "detail": self.detail}  # fmt: skip


@dataclass(frozen=True)
class DigestsReport:
    rows: int
    digests: int
    latest_tree_size: int | None
    latest_root: bytes | None
    problems: tuple[DigestProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unsigned_rows(self) -> int:
        """Rows newer than the latest digest (signed by the next one)."""
        return max(0, self.rows - (self.latest_tree_size or 0))

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "digests": self.digests,
            "latest_tree_size": self.latest_tree_size,
            "latest_root": None if self.latest_root is None else self.latest_root.hex(),
            "unsigned_rows": self.unsigned_rows,
            "gaps": sum(1 for p in self.problems if p.kind == "gap"),
            "problems": [p.as_dict() for p in self.problems],
        }


def check_digests(
    row_hashes: Sequence[bytes],
    occurred_at: Sequence[dt.datetime],
    objects: Sequence[tuple[str, bytes]],
    public_key_der: bytes,
) -> DigestsReport:
    """Check the rows (``row_hash`` and ``occurred_at`` in seq order, seq 1 first) against
    every digest object ``(name, JSON bytes)``: its signature; that the root of its first
    tree_size rows is the signed root (a consistent rewrite of the table by its owner fails
    here) and its time range is the rows'; between successive digests, the previous-digest
    link (a missing digest is a gap), first_seq, and a consistency proof."""
    tree = AuditTree(row_hashes)
    problems: list[DigestProblem] = []
    heads: list[tuple[TreeHead, SignedDigest, str]] = []
    for name, raw in objects:
        try:
            signed = SignedDigest.from_json(raw)
        except AuditDigestError as exc:
            problems.append(DigestProblem("malformed", name, None, str(exc)))
            continue
        try:
            heads.append((signed.verify(public_key_der), signed, name))
        except AuditDigestError as exc:
            problems.append(DigestProblem("signature", name, signed.head.tree_size, str(exc)))
    heads.sort(key=lambda h: (h[0].tree_size, h[0].signed_at))
    prev: tuple[TreeHead, SignedDigest, str] | None = None
    prev_matches = False
    for head, signed, name in heads:
        size = head.tree_size

        def problem(kind: str, detail: str, name: str = name, size: int = size) -> None:
            problems.append(DigestProblem(kind, name, size, detail))

        matches = False
        if size > tree.size:
            problem("beyond", f"signed {size} rows; the table has {tree.size} (rows deleted)")
        elif tree.root(size) != head.root_hash:
            first = 1 if prev is None else prev[0].tree_size + 1
            problem("root", f"rows 1..{size} differ from the signed tree head (a changed row "
                            f"within {first}..{size}, or the whole table rewritten)")  # fmt: skip
        else:
            matches = True
            if head.covers_rows and (
                head.first_at != occurred_at[head.first_seq - 1]
                or head.last_at != occurred_at[head.last_seq - 1]
            ):
                problem("times", "first_at/last_at differ from the rows' occurred_at")
        if prev is None:
            if head.previous_digest_hash != GENESIS_DIGEST_HASH or head.first_seq != 1:
                missing = f"rows 1..{head.first_seq - 1} have no digest here"
                problem("gap", f"digest(s) before this one are missing ({missing})")
            prev = (head, signed, name)
            prev_matches = matches
            continue
        old, old_signed, old_name = prev
        if old.tree_size == size and old.root_hash != head.root_hash:
            problem("fork", f"{old_name} signed the same size with another root")
        if (
            head.previous_digest_hash != old_signed.digest_hash
            or head.first_seq != old.tree_size + 1
        ):
            problem("gap", f"does not link to {old_name} (tree size {old.tree_size}): a digest "
                           "between them is missing")  # fmt: skip
        if matches and prev_matches:
            try:
                proof = tree.consistency_proof(old.tree_size, size)
                verify_consistency(old.tree_size, size, old.root_hash, head.root_hash, proof)
            except AuditProofError as exc:
                problem("consistency", f"not consistent with {old_name}: {exc}")
        prev = (head, signed, name)
        prev_matches = matches
    latest = heads[-1][0] if heads else None
    return DigestsReport(
        rows=tree.size,
        digests=len(heads),
        latest_tree_size=None if latest is None else latest.tree_size,
        latest_root=None if latest is None else latest.root_hash,
        problems=tuple(problems),
    )
