"""``access_rules`` (sql/migrations/0011): who may read what, deny by default.

The retrieve role asks ``access_check()`` and sees nothing else of the rules
(:class:`PostgresAccessPolicy`, ports.AccessPolicy); people (``pqfile_operator``) change
them only through ``access_grant()`` / ``access_revoke()``, each an audit row in the same
transaction, and read them with a SELECT (:class:`PostgresAccessRules`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pqfile.adapters.postgres.connection import Database
from pqfile.keys.audit_chain import MAX_REQUEST_ID_CHARS, bounded_text
from pqfile.ports import AccessOperation, AccessRule, RecipientKey

_RULE_COLUMNS = "rule_id, principal, tenant, document_id, operation, created_by, created_at"


def _rule(r: Sequence[Any]) -> AccessRule:
    return AccessRule(
        rule_id=int(r[0]),
        principal=r[1],
        tenant=r[2],
        document_id=r[3],
        operation=r[4],
        created_by=r[5],
        created_at=r[6],
    )


class PostgresAccessPolicy:
    """ports.AccessPolicy for the retrieve function (EXECUTE on access_check only)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def allows(self, principal: str, document_id: str, operation: AccessOperation) -> bool:
        rows = self._db.run(
            "SELECT access_check(:p, :d, :o)",
            p=principal[:1000],
            d=document_id[:128],
            o=AccessOperation(operation).value,
        )
        return rows[0][0] is True


class PostgresRecipientDirectory:
    """ports.RecipientDirectory for the retrieve function (EXECUTE on recipient_for only,
    sql/migrations/0020)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def recipient_for(self, principal: str, document_id: str) -> RecipientKey | None:
        rows = self._db.run(
            "SELECT recipient_id, suite, public_key, fingerprint, allow_weaker "
            "FROM recipient_for(:p, :d)",
            p=principal[:1000],
            d=document_id[:128],
        )
        if not rows:
            return None
        r = rows[0]
        return RecipientKey(
            recipient_id=int(r[0]),
            suite=r[1],
            public_key=bytes(r[2]),
            fingerprint=r[3],
            allow_weaker=r[4] is True,
        )


class PostgresAccessRules:
    """The operator's view: list, grant, revoke (``pqfile access``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def list(self) -> list[AccessRule]:
        rows = self._db.run(
            f"SELECT {_RULE_COLUMNS} FROM access_rules "  # noqa: S608 (a constant)
            "ORDER BY coalesce(tenant, ''), coalesce(document_id, ''), principal, operation"
        )
        return [_rule(r) for r in rows]

    def grant(
        self,
        principal: str,
        *,
        tenant: str | None,
        document_id: str | None,
        operation: AccessOperation,
        actor: str | None,
        request_id: str | None = None,
    ) -> int:
        return self._change(
            "access_grant", principal, tenant, document_id, operation, actor, request_id
        )

    def revoke(
        self,
        principal: str,
        *,
        tenant: str | None,
        document_id: str | None,
        operation: AccessOperation,
        actor: str | None,
        request_id: str | None = None,
    ) -> int:
        return self._change(
            "access_revoke", principal, tenant, document_id, operation, actor, request_id
        )

    def _change(
        self,
        function: str,
        principal: str,
        tenant: str | None,
        document_id: str | None,
        operation: AccessOperation,
        actor: str | None,
        request_id: str | None,
    ) -> int:
        """One call of access_grant / access_revoke (the SECURITY DEFINER functions of 0011)."""
        rows = self._db.run(
            f"SELECT {function}(:p, :t, :d, :o, :a, :r)",
            p=principal,
            t=tenant,
            d=document_id,
            o=AccessOperation(operation).value,
            a=None if actor is None else actor[:256],
            r=bounded_text(request_id, MAX_REQUEST_ID_CHARS),
        )
        return int(rows[0][0])
