"""The audit log as an RFC 9162 Merkle tree (docs/KEYS.md, "Signed tree heads").

The leaves are the audit rows' ``row_hash`` values in ``seq`` order (seq 1 is leaf 0).
Hashing follows RFC 9162 section 2.1.1 with SHA-256::

    MTH({})       = SHA-256("")
    leaf_hash(d)  = SHA-256(0x00 || d)
    MTH(D[n])     = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))   k: largest power of 2 < n

Inclusion proofs are RFC 9162 section 2.1.3 (PATH), consistency proofs section 2.1.4
(PROOF / SUBPROOF); both verifiers are the RFC's algorithms (2.1.3.2, 2.1.4.2). A proof is
a list of sibling hashes only: it reveals no other row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pqfile.errors import AuditProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: No audit table comes near this; a proof longer than the tree is deep is refused.
MAX_PROOF_HASHES = 64


def leaf_hash(row_hash: bytes) -> bytes:
    """RFC 9162 2.1.1: the hash of one leaf (a row's ``row_hash``)."""
    return hashlib.sha256(b"\x00" + row_hash).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _leaves(row_hashes: Sequence[bytes]) -> list[bytes]:
    for h in row_hashes:
        if len(h) != HASH_SIZE:
            raise AuditProofError(f"a row hash must be {HASH_SIZE} bytes, not {len(h)}")
    return [leaf_hash(h) for h in row_hashes]


#: Perfect, aligned subtrees at least this large are remembered (AuditTree).
_CACHE_FROM = 16


class AuditTree:
    """The tree over a list of row hashes, answering for any prefix size.

    Every perfect aligned subtree of 16 leaves or more is hashed once and remembered, so the
    roots and proofs of many tree heads over one table cost O(n) in all plus O(log^2 n) each.
    """

    def __init__(self, row_hashes: Sequence[bytes]) -> None:
        self._leaves = _leaves(row_hashes)
        self._cache: dict[tuple[int, int], bytes] = {}

    @property
    def size(self) -> int:
        return len(self._leaves)

    def _mth(self, lo: int, hi: int) -> bytes:
        """MTH of leaves[lo:hi] (hi > lo)."""
        n = hi - lo
        if n == 1:
            return self._leaves[lo]
        remembered = n >= _CACHE_FROM and n & (n - 1) == 0 and lo % n == 0
        if remembered and (lo, hi) in self._cache:
            return self._cache[(lo, hi)]
        k = _split(n)
        out = _node(self._mth(lo, lo + k), self._mth(lo + k, hi))
        if remembered:
            self._cache[(lo, hi)] = out
        return out

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise AuditProofError(f"tree size {size} is outside 0..{self.size}")

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` rows (all by default)."""
        size = self.size if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._mth(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 2.1.3.1 PATH(index, D[size])."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise AuditProofError(f"leaf index {index} is outside a tree of size {size}")
        path: list[bytes] = []
        m, lo, hi = index, 0, size
        while hi - lo > 1:  # PATH's recursion from the root down; reversed at the end
            k = _split(hi - lo)
            if m < k:
                path.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._mth(lo, lo + k))
                lo, m = lo + k, m - k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 2.1.4.1 PROOF(old_size, D[new_size]); empty when old_size is 0 or
        new_size."""
        n = self.size if new_size is None else new_size
        self._check_size(n)
        if not 0 <= old_size <= n:
            raise AuditProofError(f"old size {old_size} is outside 0..{n}")
        if old_size in (0, n):
            return []
        proof: list[bytes] = []
        m, lo, hi, complete = old_size, 0, n, True
        while m != hi - lo:  # SUBPROOF's recursion from the root down; reversed at the end
            k = _split(hi - lo)
            if m <= k:
                proof.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._mth(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            proof.append(self._mth(lo, hi))
        proof.reverse()
        return proof


def tree_root(row_hashes: Sequence[bytes]) -> bytes:
    """MTH over the rows (the empty tree's root is SHA-256 of nothing)."""
    return AuditTree(row_hashes).root()


def inclusion_proof(row_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(index, D[n]) for the tree over ``row_hashes``."""
    return AuditTree(row_hashes).inclusion_proof(index)


def consistency_proof(row_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """RFC 9162 2.1.4.1 PROOF(old_size, D[n]): the tree over the first ``old_size`` rows is
    a prefix of the tree over ``row_hashes``. Empty when old_size is 0 or n."""
    return AuditTree(row_hashes).consistency_proof(old_size)


def _check_hashes(name: str, values: Sequence[bytes]) -> None:
    if len(values) > MAX_PROOF_HASHES:
        raise AuditProofError(f"{name} has {len(values)} hashes (at most {MAX_PROOF_HASHES})")
    for v in values:
        if not isinstance(v, bytes) or len(v) != HASH_SIZE:
            raise AuditProofError(f"{name} holds a value that is not a {HASH_SIZE}-byte hash")


def verify_inclusion(
    row_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 2.1.3.2: raise AuditProofError unless ``proof`` shows the row with
    ``row_hash`` as leaf ``index`` of the tree of ``tree_size`` leaves with ``root``."""
    _check_hashes("the inclusion proof", [row_hash, root, *proof])
    if not 0 <= index < tree_size:
        raise AuditProofError(f"leaf index {index} is outside a tree of size {tree_size}")
    fn, sn = index, tree_size - 1
    r = leaf_hash(row_hash)
    for p in proof:
        if sn == 0:
            raise AuditProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise AuditProofError("the inclusion proof is shorter than the tree is deep")
    if r != root:
        raise AuditProofError("the inclusion proof does not lead to the tree head's root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 2.1.4.2: raise AuditProofError unless the tree of ``old_size`` leaves with
    ``old_root`` is a prefix of the tree of ``new_size`` leaves with ``new_root``."""
    _check_hashes("the consistency proof", [old_root, new_root, *proof])
    if not 0 <= old_size <= new_size:
        raise AuditProofError(f"tree size went from {old_size} to {new_size}")
    if old_size == new_size or old_size == 0:
        if proof:
            raise AuditProofError("the consistency proof must be empty for these sizes")
        if old_size == new_size and old_root != new_root:
            raise AuditProofError("two tree heads of the same size have different roots")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise AuditProofError("an empty tree's root must be SHA-256 of nothing")
        return
    if not proof:
        raise AuditProofError("the consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise AuditProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise AuditProofError("the consistency proof is shorter than the tree is deep")
    if fr != old_root:
        raise AuditProofError("the consistency proof does not lead to the old root")
    if sr != new_root:
        raise AuditProofError("the consistency proof does not lead to the new root")
