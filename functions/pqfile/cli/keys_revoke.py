"""`pqfile keys revoke`: pending by default, ``--now`` at once, ``--compromised``, ``--shred``
(docs/KEYS.md, "Revocation", "Shredding", "Key compromise"). Directly on the database, or
through the admin function with ``--stack`` (the same answers either way; ``--now``
announces `PQFile Key Revoked` on both paths).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from pqfile.cli._admin_client import invoke_admin, via_function
from pqfile.cli.db import open_database, print_json
from pqfile.cli.keys_common import store as _store
from pqfile.config import ConfigurationError, ShredSettings
from pqfile.keys.model import RequestKind

#: The warning when `PQFile Key Revoked` could not be put (the revocation stands).
EVENT_WARNING = (
    "pqfile: warning: revoked, but the PQFile Key Revoked event was not delivered "
    "(events:PutEvents)"
)


def revoke(args: argparse.Namespace) -> int:
    from pqfile.adapters.postgres.documents import list_documents

    if args.yes_destroy_documents and not args.shred:
        raise ConfigurationError("--yes-destroy-documents confirms --shred only")
    if via_function(args):
        mode = "now" if args.now else "shred" if args.shred else (
            "compromised" if args.compromised else "pending")  # fmt: skip
        answer = invoke_admin(args, "keys.revoke", {
            "key_id": args.key_id, "reason": args.reason, "mode": mode,
            "yes_destroy_documents": args.yes_destroy_documents or None})  # fmt: skip
        result: dict[str, Any] = dict(answer.get("result") or {})
        if answer.get("events_not_delivered"):  # the function announced it, as below
            print(EVENT_WARNING, file=sys.stderr)
        if args.json:
            print_json(result)
        else:
            print(revoke_text(mode, result))
        return 0
    db = open_database(args)
    try:
        store = _store(db, args)
        if args.now:
            record = store.revoke(args.key_id, args.reason)
            result = {
                "key_id": record.key_id, "suite": record.suite, "status": record.status.value,
                "revoked_at": record.revoked_at,
            }  # fmt: skip
            text = revoke_text("now", result)
            from pqfile.cli._events import announce_revoked_now  # (issue 13: events)

            if announce_revoked_now(record.key_id, record.suite, record.revoked_at):
                print(EVENT_WARNING, file=sys.stderr)
        elif args.shred:
            key = store.get_key(args.key_id)
            doomed = [d for d in list_documents(db, key_id=key.key_id, limit=1_000_000)
                      if d.status in ("stored", "encrypted")]  # fmt: skip
            if not args.yes_destroy_documents:
                print(
                    f"pqfile: error: --shred destroys key {key.key_id} and its "
                    f"{len(doomed)} document(s) for good: add --yes-destroy-documents",
                    file=sys.stderr,
                )
                return 2
            request = store.request(key.key_id, RequestKind.SHRED, args.reason)
            retention = ShredSettings.from_env().backup_retention_days
            now = store.storage.keys.now()
            complete = now + dt.timedelta(days=retention)
            result = {
                "request": request, "key_id": key.key_id, "kind": "shred", "status": "pending",
                "documents_to_lose": [{"document_id": d.document_id, "tenant": d.tenant}
                                      for d in doomed],
                "backup_retention_days": retention,
                "complete_at_earliest": complete.isoformat(),
            }  # fmt: skip
            text = revoke_text("shred", result)
        elif args.compromised:
            request = store.request(args.key_id, RequestKind.COMPROMISE, args.reason)
            left = len(store.documents_on_key(args.key_id, limit=1_000_000))
            result = {
                "request": request, "key_id": args.key_id, "kind": "compromise",
                "status": "pending", "documents_to_reencrypt": left,
            }  # fmt: skip
            text = revoke_text("compromised", result)
        else:
            request = store.request(args.key_id, RequestKind.REVOKE, args.reason)
            left = len(store.documents_on_key(args.key_id, limit=1_000_000))
            result = {
                "request": request, "key_id": args.key_id, "kind": "revoke",
                "status": "pending", "documents_to_rewrap": left,
            }  # fmt: skip
            text = revoke_text("pending", result)
    finally:
        db.close()
    if args.json:
        print_json(result)
    else:
        print(text)
    return 0


def revoke_text(mode: str, r: dict[str, Any]) -> str:
    """The human answer of `keys revoke`, from its JSON (the direct path's or the admin
    function's: the same words either way)."""
    if mode == "now":
        return f"revoked {r['key_id']} ({r['suite']}) at {r['revoked_at']}"
    if mode == "shred":
        retention = r["backup_retention_days"]
        complete = dt.datetime.fromisoformat(str(r["complete_at_earliest"]))
        doomed = r["documents_to_lose"]
        lines = [
            f"request {r['request']}: shred {r['key_id']} (pending; the key no longer encrypts)",
            *(f"  will be lost: {d['document_id']} (tenant {d['tenant']})" for d in doomed),
            f"{len(doomed)} document(s) will be lost when rotate-keys runs the shred "
            "(`pqfile keys rotate`)",
            f"backups keep the wrapped seed {retention} day(s) after the shred: "
            f"shredding is complete on {complete:%Y-%m-%d} at the earliest",
        ]
        return "\n".join(lines)
    if mode == "compromised":
        return (
            f"request {r['request']}: compromise of {r['key_id']} (pending; the key no longer "
            f"encrypts); rotate-keys re-encrypts its {r['documents_to_reencrypt']} document(s) "
            "under fresh data keys, deletes every older package version, then revokes it "
            "(`pqfile keys rotate`). Copies taken before this are not protected."
        )
    return (
        f"request {r['request']}: revoke {r['key_id']} (pending; the key no longer "
        f"encrypts); rotate-keys rewraps its {r['documents_to_rewrap']} document(s), then "
        "revokes it (`pqfile keys rotate`)"
    )
