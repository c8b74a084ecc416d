"""Multipart part planning: how a package of a given plaintext size is cut into S3 parts.

Pure arithmetic, no I/O. S3 allows at most 10,000 parts of at most 5 GiB (at least 5 MiB
but the last) and objects of at most 5 TiB. With a fixed part size (8 MiB by default) the
10,000-part limit would cap packages at 78 GiB, far below the configured maximum document
size; the part size here grows with the package instead, so the only cap left is S3's
object size. The package is what is uploaded, so its overhead counts (docs/FORMAT.md §1, §6):
a header of at most ``MAX_HEADER_SIZE`` bytes and a 16-byte tag per body segment.

The ingest encrypt step plans with :func:`plan_parts`; the fetch step refuses, before any
work, what :func:`check_document_size` refuses (DocumentTooLargeError, audited by
RecordFailure). The parallel ingest reuses :func:`plan_parts` for its part boundaries.

The per-part buffer (the encrypt step holds one part): at the default maximum document size,
24 GiB (``config.StorageSettings``; what one encrypt function streams in its 900 s on the
sequential path, BENCHMARKS.md "Ingest size limit"), a package takes 3,073 parts of the
preferred 8 MiB, so the buffer stays **8 MiB**. It stays 8 MiB for any maximum up to
:data:`PREFERRED_PART_CEILING` (about 78 GiB); only a maximum raised towards S3's 5 TiB grows
it, to about 525 MiB there (give the encrypt function the memory, and the time, first).
"""

from __future__ import annotations

from dataclasses import dataclass

from pqfile.errors import DocumentTooLargeError
from pqfile.format.header import MAX_HEADER_SIZE, TAG_SIZE, check_segment_size

MIB = 1024 * 1024
#: S3 multipart limits (Amazon S3 User Guide, "Amazon S3 multipart upload limits").
S3_MIN_PART_SIZE = 5 * MIB
S3_MAX_PART_SIZE = 5 * 1024 * MIB
S3_MAX_PARTS = 10_000
S3_MAX_OBJECT_SIZE = 5 * 1024 * 1024 * MIB
#: The preferred part size (config ``PQFILE_PART_SIZE``'s default).
PREFERRED_PART_SIZE = 8 * MIB
#: The largest package that 10,000 parts of the preferred size hold (78.1 GiB): up to it,
#: the encrypt step's part buffer is the preferred 8 MiB.
PREFERRED_PART_CEILING = S3_MAX_PARTS * PREFERRED_PART_SIZE


def segment_count(plaintext_size: int, segment_size: int) -> int:
    """Body segments of a package (FORMAT.md §6): at least one, a full last one allowed."""
    if plaintext_size < 0:
        raise ValueError("a size is never negative")
    return max(1, -(-plaintext_size // segment_size))


def package_size_bound(plaintext_size: int, segment_size: int) -> int:
    """The most bytes the package of ``plaintext_size`` bytes can take: the largest header
    plus the plaintext plus one tag per segment."""
    check_segment_size(segment_size)
    return MAX_HEADER_SIZE + plaintext_size + TAG_SIZE * segment_count(plaintext_size, segment_size)


def largest_storable_document(segment_size: int, object_limit: int = S3_MAX_OBJECT_SIZE) -> int:
    """The largest plaintext whose package still fits in one S3 object."""
    check_segment_size(segment_size)
    # Each full segment of N plaintext bytes costs N + 16; find the largest size that fits.
    room = object_limit - MAX_HEADER_SIZE
    full, rest = divmod(room, segment_size + TAG_SIZE)
    last = max(0, rest - TAG_SIZE)  # a partial last segment carries its own tag
    return full * segment_size + last


def document_size_limit(max_document_size: int, segment_size: int) -> int:
    """The effective limit: the configured maximum, or less when S3 could not hold it."""
    return min(max_document_size, largest_storable_document(segment_size))


def check_document_size(size: int, *, max_document_size: int, segment_size: int) -> None:
    """Refuse, with the reason, an upload the pipeline would not finish encrypting."""
    limit = document_size_limit(max_document_size, segment_size)
    if size > limit:
        why = (
            "the configured maximum document size"
            if limit == max_document_size
            else "the largest package S3 can store"
        )
        raise DocumentTooLargeError(
            f"the upload is {size} bytes; {why} allows {limit} bytes: refused"
        )


@dataclass(frozen=True)
class PartPlan:
    """How one package is uploaded: ``parts`` parts of ``part_size`` bytes (the last shorter)."""

    part_size: int
    parts: int
    package_size: int


def plan_parts(
    plaintext_size: int, *, segment_size: int, preferred_part_size: int = PREFERRED_PART_SIZE
) -> PartPlan:
    """The part size for this package: the preferred one (bounded memory) unless 10,000 parts
    of it would not hold the package; then the smallest whole number of MiB that does.

    Raises DocumentTooLargeError when the package exceeds what S3 stores in one object.
    """
    if preferred_part_size < S3_MIN_PART_SIZE or preferred_part_size > S3_MAX_PART_SIZE:
        raise ValueError("the preferred part size must be between 5 MiB and 5 GiB")
    package = package_size_bound(plaintext_size, segment_size)
    if package > S3_MAX_OBJECT_SIZE:
        raise DocumentTooLargeError(
            f"a package of {plaintext_size} plaintext bytes exceeds S3's 5 TiB object limit"
        )
    needed = -(-package // S3_MAX_PARTS)
    part_size = max(preferred_part_size, -(-needed // MIB) * MIB)
    part_size = min(part_size, S3_MAX_PART_SIZE)  # 5 TiB / 10,000 parts is 524.3 MiB: unreached
    parts = max(1, -(-package // part_size))
    return PartPlan(part_size=part_size, parts=parts, package_size=package)
