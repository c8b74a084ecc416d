"""EncryptDocument: stream the upload into a PQF package under encrypted/ (bounded memory)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pqfile import wiring
from pqfile.handlers._runtime import count, entry_point, logger, preload

# Imported on the first invocation, or before a SnapStart snapshot (_runtime.preload).
preload("pqfile.usecases.ingest", "pqfile.usecases.ingest_steps")


@entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from pqfile.usecases.ingest import encrypt_document
    from pqfile.usecases.ingest_steps import EncryptRequest

    request = EncryptRequest.from_event(event)
    written = encrypt_document(
        wiring.pipeline(),
        request.document_id,
        request.source,
        request.key_id,
        request.content_type,
    )
    count("BytesEncrypted", request.source.size or 0, "Bytes")
    logger.info("encrypted", extra={"document_id": request.document_id, "size": written.size})
    return {"encrypted": asdict(written)}
