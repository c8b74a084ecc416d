"""pqfile.usecases.parts: S3's 10,000-part limit never cuts a package below the maximum
document size, and what S3 could not store is refused with its reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pqfile.config import StorageSettings
from pqfile.errors import DocumentTooLargeError, InvalidEventError
from pqfile.format.header import MAX_HEADER_SIZE, TAG_SIZE
from pqfile.usecases.parts import (
    MIB,
    PREFERRED_PART_CEILING,
    S3_MAX_OBJECT_SIZE,
    S3_MAX_PART_SIZE,
    S3_MAX_PARTS,
    S3_MIN_PART_SIZE,
    check_document_size,
    document_size_limit,
    largest_storable_document,
    package_size_bound,
    plan_parts,
)

SEGMENT = 1024 * 1024  # the default segment size
PART = 8 * MIB  # the default part size
MAX_DOCUMENT = StorageSettings.max_document_size  # the configured default: 24 GiB
S3_SIZED_MAXIMUM = 5 * 1024**4  # a maximum raised to S3's own object limit


def _holds(plan_size: int, parts: int, package: int) -> bool:
    return parts <= S3_MAX_PARTS and plan_size * parts >= package


def test_zero_bytes_is_one_small_part_of_the_preferred_size() -> None:
    plan = plan_parts(0, segment_size=SEGMENT, preferred_part_size=PART)
    assert plan.part_size == PART
    assert plan.parts == 1
    assert plan.package_size == MAX_HEADER_SIZE + TAG_SIZE  # one empty final segment


def test_five_mib_keeps_the_preferred_part_size() -> None:
    plan = plan_parts(5 * MIB, segment_size=SEGMENT, preferred_part_size=S3_MIN_PART_SIZE)
    assert plan.part_size == S3_MIN_PART_SIZE
    # 5 MiB of plaintext plus its header and tags no longer fit in one 5 MiB part.
    assert plan.parts == 2
    assert plan.package_size == 5 * MIB + MAX_HEADER_SIZE + 5 * TAG_SIZE


def test_the_default_maximum_keeps_the_preferred_eight_mib_part() -> None:
    """The per-part buffer at the default cap (usecases/parts.py): 8 MiB, 3,073 parts."""
    assert MAX_DOCUMENT == 24 * 1024**3
    plan = plan_parts(document_size_limit(MAX_DOCUMENT, SEGMENT), segment_size=SEGMENT,
                      preferred_part_size=PART)  # fmt: skip
    assert (plan.part_size, plan.parts) == (PART, 3073)
    assert package_size_bound(MAX_DOCUMENT, SEGMENT) <= PREFERRED_PART_CEILING
    above = plan_parts(PREFERRED_PART_CEILING, segment_size=SEGMENT, preferred_part_size=PART)
    assert above.part_size == 9 * MIB  # past the ceiling the part grows


def test_the_largest_s3_sized_maximum_fits_in_ten_thousand_parts() -> None:
    limit = document_size_limit(S3_SIZED_MAXIMUM, SEGMENT)
    plan = plan_parts(limit, segment_size=SEGMENT, preferred_part_size=PART)
    assert plan.part_size > PART  # 8 MiB parts would stop at 78 GiB
    assert plan.part_size % MIB == 0
    assert S3_MIN_PART_SIZE <= plan.part_size <= S3_MAX_PART_SIZE
    assert plan.package_size <= S3_MAX_OBJECT_SIZE
    assert _holds(plan.part_size, plan.parts, plan.package_size)
    assert plan.parts == S3_MAX_PARTS or plan.part_size * (plan.parts - 1) < plan.package_size


def test_the_maximum_plus_one_is_refused_with_its_reason() -> None:
    check_document_size(MAX_DOCUMENT, max_document_size=MAX_DOCUMENT, segment_size=SEGMENT)
    with pytest.raises(DocumentTooLargeError, match="configured maximum document size"):
        check_document_size(MAX_DOCUMENT + 1, max_document_size=MAX_DOCUMENT, segment_size=SEGMENT)
    limit = document_size_limit(S3_SIZED_MAXIMUM, SEGMENT)
    check_document_size(limit, max_document_size=S3_SIZED_MAXIMUM, segment_size=SEGMENT)
    with pytest.raises(DocumentTooLargeError, match="largest package S3 can store") as raised:
        check_document_size(limit + 1, max_document_size=S3_SIZED_MAXIMUM, segment_size=SEGMENT)
    assert isinstance(raised.value, InvalidEventError)  # the ingest workflow does not retry it
    with pytest.raises(DocumentTooLargeError):
        plan_parts(limit + 1, segment_size=SEGMENT, preferred_part_size=PART)


def test_a_configured_maximum_below_s3_is_the_limit() -> None:
    configured = 100 * MIB
    check_document_size(configured, max_document_size=configured, segment_size=SEGMENT)
    with pytest.raises(DocumentTooLargeError, match="configured maximum document size"):
        check_document_size(configured + 1, max_document_size=configured, segment_size=SEGMENT)


@pytest.mark.parametrize("segment", [1024, 4096, SEGMENT, 16 * MIB])
def test_the_largest_storable_document_is_exact(segment: int) -> None:
    largest = largest_storable_document(segment)
    assert package_size_bound(largest, segment) <= S3_MAX_OBJECT_SIZE
    assert package_size_bound(largest + 1, segment) > S3_MAX_OBJECT_SIZE


def test_a_part_size_outside_s3_limits_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="5 MiB"):
        plan_parts(1, segment_size=SEGMENT, preferred_part_size=S3_MIN_PART_SIZE - 1)


@given(
    size=st.integers(min_value=0, max_value=largest_storable_document(SEGMENT)),
    preferred=st.integers(min_value=S3_MIN_PART_SIZE, max_value=128 * MIB),
)
def test_every_storable_size_gets_a_plan_within_s3_limits(size: int, preferred: int) -> None:
    plan = plan_parts(size, segment_size=SEGMENT, preferred_part_size=preferred)
    assert plan.part_size >= preferred
    assert S3_MIN_PART_SIZE <= plan.part_size <= S3_MAX_PART_SIZE
    assert _holds(plan.part_size, plan.parts, plan.package_size)
    # The preferred size (bounded memory) is kept whenever it is enough.
    if preferred * S3_MAX_PARTS >= plan.package_size:
        assert plan.part_size == preferred
