"""Ports: every Protocol the use cases depend on, and the values that cross them.

Adapters (``pqfile.adapters``) implement them on AWS and PostgreSQL; the functional tests
implement them in memory. The composition root (``pqfile.wiring``) picks the adapters.
Read this package first (``pqfile.ports``; one module per concern, every name re-exported
here): it is the whole surface between the workflows and the outside world.
"""

from __future__ import annotations

from pqfile.ports.access import (
    AccessOperation,
    AccessPolicy,
    AccessRule,
    RecipientDirectory,
    RecipientKey,
)
from pqfile.ports.audit_digests import AuditLeafSource, AuditLeaves, DigestSigner, DigestStore
from pqfile.ports.events import EVENT_SOURCE, EventPublisher, EventType, ServiceEvent
from pqfile.ports.identity import (
    CallerIdentityVerifier,
)
from pqfile.ports.keys import (
    KeyAttestor,
    KeyStore,
    KeyView,
    RotationKeyStore,
    RotationRunView,
    SeedProtector,
)
from pqfile.ports.model import (
    AuditOutcome,
    DocumentRecord,
    DocumentStatus,
    KeyRequest,
    ObjectInfo,
    RotationStatus,
)
from pqfile.ports.repositories import (
    AuditLog,
    DocumentReader,
    DocumentRepository,
    KeyRepository,
    KeyStorage,
    RotationRepository,
)
from pqfile.ports.shred import (
    CompromiseCandidate,
    PackageVersion,
    PackageVersions,
    ShredCandidate,
    ShredOutcome,
    ShredRepository,
)
from pqfile.ports.storage import (
    BlobStore,
    ManifestStore,
    ObjectWriter,
    PackageCipher,
    PackageStore,
    PartedUpload,
    Writable,
)

__all__ = [
    "EVENT_SOURCE",
    "AccessOperation",
    "AccessPolicy",
    "AccessRule",
    "AuditLeafSource",
    "AuditLeaves",
    "AuditLog",
    "AuditOutcome",
    "BlobStore",
    "CallerIdentityVerifier",
    "CompromiseCandidate",
    "DigestSigner",
    "DigestStore",
    "DocumentReader",
    "DocumentRecord",
    "DocumentRepository",
    "DocumentStatus",
    "EventPublisher",
    "EventType",
    "KeyAttestor",
    "KeyRepository",
    "KeyRequest",
    "KeyStorage",
    "KeyStore",
    "KeyView",
    "ManifestStore",
    "ObjectInfo",
    "ObjectWriter",
    "PackageCipher",
    "PackageStore",
    "PackageVersion",
    "PackageVersions",
    "PartedUpload",
    "RecipientDirectory",
    "RecipientKey",
    "RotationKeyStore",
    "RotationRepository",
    "RotationRunView",
    "RotationStatus",
    "SeedProtector",
    "ServiceEvent",
    "ShredCandidate",
    "ShredOutcome",
    "ShredRepository",
    "Writable",
]
