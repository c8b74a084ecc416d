"""The audit tree (pqfile.keys.audit_tree) against RFC 9162 section 2.1.

Expected values are computed here, independently: hand-expanded hashes for small trees and a
reference implementation written on list slices straight from the RFC's recursive
definitions (the module works on index ranges and never calls this code).
"""

from __future__ import annotations

import hashlib

import pytest

from pqfile.errors import AuditProofError, PQFileError
from pqfile.keys import audit_tree as t

MAX_SIZE = 33


def H(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def rows(n: int) -> list[bytes]:
    return [H(b"row %d" % i) for i in range(n)]


def L(row: bytes) -> bytes:
    return H(b"\x00" + row)


def N(left: bytes, right: bytes) -> bytes:
    return H(b"\x01" + left + right)


# --- a reference implementation on slices (RFC 9162 2.1.1, 2.1.3.1, 2.1.4.1) ------------


def ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return H(b"")
    if len(d) == 1:
        return L(d[0])
    k = ref_k(len(d))
    return N(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = ref_k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = ref_k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def flip(value: bytes, bit: int = 0) -> bytes:
    return bytes([value[0] ^ (1 << bit)]) + value[1:]


# --- known answers ---------------------------------------------------------------------


def test_known_roots_of_small_trees() -> None:
    d = rows(5)
    assert t.tree_root([]) == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert t.tree_root(d[:1]) == H(b"\x00" + d[0])
    assert t.tree_root(d[:2]) == H(b"\x01" + L(d[0]) + L(d[1]))
    assert t.tree_root(d[:3]) == N(N(L(d[0]), L(d[1])), L(d[2]))
    assert t.tree_root(d[:4]) == N(N(L(d[0]), L(d[1])), N(L(d[2]), L(d[3])))
    assert t.tree_root(d) == N(N(N(L(d[0]), L(d[1])), N(L(d[2]), L(d[3]))), L(d[4]))


def test_known_inclusion_and_consistency_proofs() -> None:
    d = rows(5)
    h01 = N(L(d[0]), L(d[1]))
    assert t.inclusion_proof(d, 2) == [L(d[3]), h01, L(d[4])]
    assert t.inclusion_proof(d, 4) == [N(h01, N(L(d[2]), L(d[3])))]
    assert t.consistency_proof(d, 3) == [L(d[2]), L(d[3]), h01, L(d[4])]
    assert t.consistency_proof(d, 4) == [L(d[4])]  # old root is a node: not repeated
    assert t.consistency_proof(d, 5) == []
    assert t.consistency_proof(d, 0) == []


# --- every proof of every tree of size 1..33 --------------------------------------------


@pytest.mark.parametrize("n", range(1, MAX_SIZE + 1))
def test_roots_and_inclusion_proofs_match_the_reference(n: int) -> None:
    d = rows(n)
    root = t.tree_root(d)
    assert root == ref_mth(d)
    for i in range(n):
        proof = t.inclusion_proof(d, i)
        assert proof == ref_path(i, d)
        t.verify_inclusion(d[i], i, n, proof, root)


@pytest.mark.parametrize("n", range(1, MAX_SIZE + 1))
def test_every_consistency_proof_verifies(n: int) -> None:
    d = rows(n)
    new_root = t.tree_root(d)
    for m in range(0, n + 1):
        proof = t.consistency_proof(d, m)
        assert proof == ([] if m in (0, n) else ref_subproof(m, d, True))
        t.verify_consistency(m, n, ref_mth(d[:m]), new_root, proof)


# --- forged proofs ---------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, MAX_SIZE + 1))
def test_forged_inclusion_proofs_are_refused(n: int) -> None:
    d = rows(n)
    root = t.tree_root(d)
    other = rows(n + 1)
    for i in range(n):
        proof = t.inclusion_proof(d, i)
        forgeries: list[tuple[bytes, int, int, list[bytes], bytes]] = []
        for j in range(len(proof)):  # one bit flipped in each sibling
            for bit in (0, 7):
                bad = list(proof)
                bad[j] = flip(bad[j], bit)
                forgeries.append((d[i], i, n, bad, root))
        forgeries += [
            (flip(d[i]), i, n, proof, root),  # another row
            (d[i], i, n, proof, flip(root)),  # another root
            (other[n], i, n, proof, root),  # a row that is not in the tree
            (d[i], i, n, [*proof, root], root),  # extended
            (d[i], i, n, [*proof, bytes(32)], root),
            (d[i], n, n, proof, root),  # index outside the tree
            (d[i], -1, n, proof, root),
        ]
        if proof:
            forgeries.append((d[i], i, n, proof[:-1], root))  # truncated
            forgeries.append((d[i], i, n, proof[1:], root))
        for j in (i - 1, i + 1):  # another index
            if 0 <= j < n:
                forgeries.append((d[i], j, n, proof, root))
        for m in (n - 1, n + 1, 2 * n):  # another size, against that size's true root
            if m > i and t.inclusion_proof(other[:m] if m > n else d[:m], i) != proof:
                forgeries.append((d[i], i, m, proof, t.tree_root(other[:m] if m > n else d[:m])))
        for row, index, size, bad, r in forgeries:
            with pytest.raises(AuditProofError):
                t.verify_inclusion(row, index, size, bad, r)


@pytest.mark.parametrize("n", range(2, MAX_SIZE + 1))
def test_forged_consistency_proofs_are_refused(n: int) -> None:
    d = rows(n)
    new_root = t.tree_root(d)
    for m in range(1, n):
        old_root = t.tree_root(d[:m])
        proof = t.consistency_proof(d, m)
        forgeries: list[tuple[int, int, bytes, bytes, list[bytes]]] = []
        for j in range(len(proof)):
            bad = list(proof)
            bad[j] = flip(bad[j], j % 8)
            forgeries.append((m, n, old_root, new_root, bad))
        rewritten = list(d)
        rewritten[m - 1] = flip(rewritten[m - 1])  # a row the old head covered, rewritten
        forgeries += [
            (m, n, old_root, t.tree_root(rewritten), t.consistency_proof(rewritten, m)),
            (m, n, flip(old_root), new_root, proof),
            (m, n, old_root, flip(new_root), proof),
            (m, n, old_root, new_root, proof[:-1]),  # truncated
            (m, n, old_root, new_root, [*proof, new_root]),  # extended
            (m, n, old_root, new_root, []),
            (n, m, new_root, old_root, proof),  # sizes swapped: the tree shrank
            (m, n, old_root, new_root, proof[1:]),
        ]
        for m2 in (m - 1, m + 1):  # another old size, with that size's true root
            if 0 < m2 < n and t.consistency_proof(d, m2) != proof:
                forgeries.append((m2, n, t.tree_root(d[:m2]), new_root, proof))
        if n + 1 <= MAX_SIZE + 1:  # another new size
            bigger = rows(n + 1)
            forgeries.append((m, n + 1, old_root, t.tree_root(bigger), proof))
        for old, new, r1, r2, bad in forgeries:
            with pytest.raises(AuditProofError):
                t.verify_consistency(old, new, r1, r2, bad)


def test_equal_and_empty_sizes() -> None:
    d = rows(4)
    root = t.tree_root(d)
    t.verify_consistency(4, 4, root, root, [])
    t.verify_consistency(0, 4, t.EMPTY_ROOT, root, [])
    with pytest.raises(AuditProofError):
        t.verify_consistency(4, 4, root, flip(root), [])
    with pytest.raises(AuditProofError):
        t.verify_consistency(4, 4, root, root, [root])
    with pytest.raises(AuditProofError):
        t.verify_consistency(0, 4, root, root, [])


@pytest.mark.parametrize(
    "proof",
    [[b"short"], [bytes(33)], [bytes(32)] * (t.MAX_PROOF_HASHES + 1)],
    ids=["short-hash", "long-hash", "too-many"],
)
def test_hostile_proof_values_are_one_error(proof: list[bytes]) -> None:
    d = rows(3)
    root = t.tree_root(d)
    with pytest.raises(AuditProofError) as info:
        t.verify_inclusion(d[0], 0, 3, proof, root)
    assert isinstance(info.value, PQFileError)
    with pytest.raises(AuditProofError):
        t.verify_consistency(1, 3, t.tree_root(d[:1]), root, proof)


def test_row_hashes_must_be_32_bytes() -> None:
    with pytest.raises(AuditProofError):
        t.tree_root([b"x"])
    with pytest.raises(AuditProofError):
        t.inclusion_proof(rows(2), 2)
    with pytest.raises(AuditProofError):
        t.consistency_proof(rows(2), 3)


def test_one_tree_answers_for_every_prefix() -> None:
    d = rows(70)  # several remembered subtrees (16, 32, 64 leaves)
    tree = t.AuditTree(d)
    for n in (0, 1, 15, 16, 17, 33, 64, 65, 70):
        assert tree.root(n) == ref_mth(d[:n])
        for i in range(0, n, 7):
            assert tree.inclusion_proof(i, n) == ref_path(i, d[:n])
        for m in range(1, n, 5):
            assert tree.consistency_proof(m, n) == ref_subproof(m, d[:n], True)
    with pytest.raises(AuditProofError):
        tree.root(71)
