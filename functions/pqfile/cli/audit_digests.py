"""`pqfile audit verify --digests` and `pqfile audit prove`: the audit table against its
signed tree heads (docs/KEYS.md, "Signed tree heads", "Verifying against the digests",
"Receipts")."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pqfile.cli._admin_client import run_admin, via_function
from pqfile.cli.db import open_database, print_json
from pqfile.errors import AuditDigestError, AuditProofError, PQFileError
from pqfile.keys.audit_digest import (
    MAX_DIGEST_JSON,
    InclusionReceipt,
    SignedDigest,
    TreeHead,
    public_key_der,
)
from pqfile.keys.audit_digest_check import check_digests

#: An S3 source: s3://bucket/prefix (the prefix may be empty).
S3_SCHEME = "s3://"


def add_digest_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--digests",
        metavar="SRC",
        required=required,
        help="signed tree heads: a directory of digest JSON files or s3://bucket/prefix",
    )
    parser.add_argument(
        "--public-key",
        metavar="PEM",
        type=Path,
        help="the signing key's public key (PEM or DER; KMS GetPublicKey); needed with --digests",
    )


def check_pairing(args: argparse.Namespace) -> None:
    if args.public_key is not None and not args.digests:
        raise AuditDigestError("--public-key goes with --digests SRC")


def load_digests(src: str) -> list[tuple[str, bytes]]:
    """``(name, JSON bytes)`` of every digest object in ``src``."""
    if src.startswith(S3_SCHEME):
        bucket, _, prefix = src[len(S3_SCHEME) :].partition("/")
        if not bucket:
            raise AuditDigestError(f"expected s3://bucket/prefix, got {src!r}")
        from pqfile.adapters.s3_digest_source import S3DigestSource

        return S3DigestSource().read_all(bucket, prefix)
    folder = Path(src)
    if not folder.is_dir():
        raise AuditDigestError(f"{src}: not a directory of digests (or s3://bucket/prefix)")
    files = sorted(folder.glob("*.json"))
    if not files and (folder / "digests").is_dir():  # a copy of the whole bucket
        files = sorted((folder / "digests").glob("*.json"))
    out = []
    for path in files:
        try:
            with path.open("rb") as f:
                out.append((str(path), f.read(MAX_DIGEST_JSON + 1)))
        except OSError as exc:
            raise AuditDigestError(f"{path}: {exc.strerror or exc}") from None
    return out


def load_public_key(path: Path | None) -> bytes:
    if path is None:
        raise AuditDigestError("--digests needs --public-key PEM (the signing key's public key)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditDigestError(f"{path}: {exc.strerror or exc}") from None
    return public_key_der(data)


def verify_with_digests(args: argparse.Namespace) -> int:
    """The chain, then the tree against every digest (one snapshot of the table)."""
    if via_function(args):
        raise PQFileError("--digests reads every row: run it with --database-url (an auditor)")
    public_key = load_public_key(args.public_key)
    objects = load_digests(args.digests)
    from pqfile.adapters.postgres.audit import PostgresAuditLog

    leaves: list[tuple[bytes, Any]] = []
    db = open_database(args)
    try:
        chain = PostgresAuditLog(db).verify_chain(anchors=dict(args.anchor), leaves=leaves)
    finally:
        db.close()
    report = check_digests([h for h, _ in leaves], [t for _, t in leaves], objects, public_key)
    ok = chain.ok and report.ok and report.latest_tree_size is not None
    if args.json:
        print_json({"ok": ok, "chain": chain.as_dict(), "digests": report.as_dict()})
        return 0 if ok else 1
    if chain.ok:
        print(f"audit chain OK: {chain.rows} rows, head {chain.head_seq} {chain.head_hash.hex()}")
    else:
        print(f"audit chain BROKEN at row {chain.broken_seq}: {chain.reason}")
    if report.latest_tree_size is None:
        print(f"digests: none found in {args.digests}")
    else:
        print(
            f"digests: {report.digests} checked, the latest covers rows "
            f"1..{report.latest_tree_size}; {report.unsigned_rows} newer row(s) await the next "
            "digest"
        )
    for p in report.problems:
        size = "" if p.tree_size is None else f" (tree size {p.tree_size})"
        print(f"  {p.kind.upper()}: {p.name}{size}: {p.detail}")
    if report.problems:
        print(f"digests FAILED: {len(report.problems)} problem(s)")
    elif report.latest_tree_size is None:
        print("digests: nothing to check against")
    else:
        print("digests OK")
    return 0 if ok else 1


def _verified_heads(args: argparse.Namespace) -> tuple[list[tuple[TreeHead, str]], int]:
    public_key = load_public_key(args.public_key)
    heads, ignored = [], 0
    for name, raw in load_digests(args.digests):
        try:
            heads.append((SignedDigest.from_json(raw).verify(public_key), name))
        except AuditDigestError:
            ignored += 1  # `audit verify --digests` names them
    heads.sort(key=lambda h: (h[0].tree_size, h[0].signed_at))
    return heads, ignored


def _receipt(args: argparse.Namespace, seq: int, tree_size: int | None) -> InclusionReceipt:
    if via_function(args):
        payload: dict[str, Any] = {"seq": seq}
        if tree_size is not None:
            payload["tree_size"] = tree_size
        return InclusionReceipt.from_dict(run_admin(args, "audit.prove", payload))
    from pqfile.adapters.postgres.audit import PostgresAuditLog

    db = open_database(args)
    try:
        return PostgresAuditLog(db).inclusion(seq, tree_size)
    finally:
        db.close()


def prove(args: argparse.Namespace) -> int:
    """Row SEQ's hash and inclusion proof against the latest signed digest, verified."""
    check_pairing(args)
    seq: int = args.seq
    head: TreeHead | None = None
    name = None
    ignored = 0
    if args.digests:
        heads, ignored = _verified_heads(args)
        if heads:
            head, name = heads[-1]
        if head is None or head.tree_size < seq:
            covered = "none" if head is None else f"rows 1..{head.tree_size}"
            pending = {"seq": seq, "status": "pending", "latest_digest_covers": covered,
                       "note": "the next signed digest will cover this row"}  # fmt: skip
            if args.json:
                print_json(pending)
            else:
                print(f"row {seq}: no signed digest covers it yet (latest: {covered}); the "
                      "inclusion proof is available once the next digest is signed")  # fmt: skip
            return 0
    receipt = _receipt(args, seq, None if head is None else head.tree_size)
    if head is not None:
        receipt.verify(head.root_hash)  # AuditProofError: refused, one line
        status = "verified"
    else:
        receipt.verify(receipt.root_hash)
        status = "unsigned"
    if not receipt.row_hash_matches_row:
        raise AuditProofError(f"row {seq}'s fields do not hash to its row_hash")
    out: dict[str, Any] = {"status": status, **receipt.as_dict()}
    if head is not None:
        out["digest"] = {"name": name, **head.as_dict()}
        out["digests_ignored"] = ignored
    if args.json:
        print_json(out)
        return 0
    row = receipt.row
    print(f"row {seq}: {row.get('operation')} {row.get('outcome')} at {row.get('occurred_at')} "
          f"by {row.get('actor')}")  # fmt: skip
    print(f"row_hash {receipt.row_hash.hex()} (leaf {seq - 1})")
    if head is not None:
        print(f"signed tree head: {name}: {head.tree_size} rows, root {head.root_hash.hex()}, "
              f"signed {head.as_dict()['signed_at']} ({head.algorithm})")  # fmt: skip
    else:
        print(f"tree of the table now: {receipt.tree_size} rows, root {receipt.root_hash.hex()} "
              "(not signed: pass --digests and --public-key to check a signed digest)")  # fmt: skip
    print(f"inclusion proof ({len(receipt.proof)} sibling hashes, leaf first):")
    for h in receipt.proof:
        print(f"  {h.hex()}")
    print("inclusion proof VERIFIED against the signed root" if head is not None
          else "inclusion proof verified against the table's current root (unsigned)")  # fmt: skip
    return 0
