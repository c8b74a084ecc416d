"""The KEM suite names alone, without pyca/cryptography (issue 15, cold init).

:mod:`pqfile.config` needs only the names of the suites (validation, defaults); importing
:class:`pqfile.crypto.kem.Suite` for them loaded cryptography in every handler and CLI
command before its first use. ``SuiteName`` has exactly the members and values of
``kem.Suite`` (a unit test checks it); use ``kem.Suite`` for anything cryptographic.
"""

from __future__ import annotations

import enum


class SuiteName(enum.Enum):
    """A KEM suite's name in key files, the database, the CLI and the settings."""

    XWING = "xwing"
    MLKEM768 = "mlkem768"
    MLKEM1024 = "mlkem1024"
