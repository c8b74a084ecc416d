"""pqfile.crypto's streaming PQF functions (docs/FORMAT.md) as the PackageCipher port."""

from __future__ import annotations

from collections.abc import Mapping
from typing import BinaryIO

from pqfile.crypto import envelope
from pqfile.crypto.kem import PublicKey, SecretKey
from pqfile.ports import Writable


class CryptoCipher:
    """ports.PackageCipher on pqfile.crypto.envelope."""

    def encrypt_stream(
        self,
        src: BinaryIO,
        dst: Writable,
        recipient: PublicKey,
        context: Mapping[str, str],
        *,
        segment_size: int,
        document_id: str,
    ) -> object:
        return envelope.encrypt_stream(
            src, dst, recipient, context=context, segment_size=segment_size, document_id=document_id
        )

    def decrypt_stream(
        self, src: BinaryIO, dst: Writable, identity: SecretKey, *, document_id: str | None
    ) -> object:
        return envelope.decrypt_stream(src, dst, identity, expected_document_id=document_id)

    def package_ids(self, src: BinaryIO) -> tuple[str, str]:
        header = envelope.read_header(src)
        return header.key_id, header.document_id.decode("utf-8", "replace")
