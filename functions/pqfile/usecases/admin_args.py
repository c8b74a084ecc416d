"""The admin function's argument checks (usecases/admin.py ``COMMANDS``): each takes the
argument's name and value, raises :class:`InvalidArgument` naming the argument (never echoing
its value), and returns the value to keep."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from pqfile.errors import InvalidEventError, KeyFormatError
from pqfile.usecases.recipients import (
    MAX_RECIPIENT_PEM,
    RecipientPrincipalError,
    exact_principal,
    recipient_key_from_pem,
)

MAX_TEXT = 256
MAX_PRINCIPAL = 1000
MAX_ANCHORS = 16
MAX_RUN_IDS = 100
_KEY_ID = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class InvalidArgument(InvalidEventError):
    """An argument outside its command's schema (named, never echoed)."""


def text(cap: int = MAX_TEXT) -> Callable[[str, object], object]:
    def check(name: str, value: object) -> object:
        if not isinstance(value, str) or not value or len(value) > cap:
            raise InvalidArgument(f"args.{name} must be a string of 1 to {cap} characters")
        if not value.isprintable():
            raise InvalidArgument(f"args.{name} holds control characters")
        return value

    return check


def key_id(name: str, value: object) -> object:
    if not isinstance(value, str) or not _KEY_ID.fullmatch(value):
        raise InvalidArgument(f"args.{name} must be a key id (32 lower-case hex digits)")
    return value


def choice(*options: object) -> Callable[[str, object], object]:
    def check(name: str, value: object) -> object:
        if value not in options or isinstance(value, bool) != isinstance(options[0], bool):
            shown = ", ".join(json.dumps(o) for o in options)
            raise InvalidArgument(f"args.{name} must be one of {shown}")
        return value

    return check


def flag(name: str, value: object) -> object:
    if not isinstance(value, bool):
        raise InvalidArgument(f"args.{name} must be true or false")
    return value


def int_range(low: int, high: int) -> Callable[[str, object], object]:
    def check(name: str, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidArgument(f"args.{name} must be an integer from {low} to {high}")
        return value

    return check


def moment(name: str, value: object) -> object:
    from pqfile.usecases.audit_report import parse_bound

    if not isinstance(value, str) or len(value) > 40:
        raise InvalidArgument(f"args.{name} must be an ISO 8601 date-time")
    try:
        parse_bound(value)
    except ValueError:
        raise InvalidArgument(f"args.{name} must be an ISO 8601 date-time") from None
    return value


def anchors(name: str, value: object) -> object:
    if not isinstance(value, list) or len(value) > MAX_ANCHORS:
        raise InvalidArgument(f"args.{name} must be a list of at most {MAX_ANCHORS} anchors")
    for item in value:
        if not (isinstance(item, str) and ":" in item):
            raise InvalidArgument(f"args.{name} holds SEQ:HASH strings")
        seq, _, digest = item.partition(":")
        if not seq.isdigit() or len(seq) > 19 or not _HEX64.fullmatch(digest):
            raise InvalidArgument(f"args.{name} holds SEQ:HASH strings (64 hex digits)")
    return value


def execution_arn(name: str, value: object) -> object:
    if not isinstance(value, str) or not value.startswith("arn:") or len(value) > 2048:
        raise InvalidArgument(f"args.{name} must be an execution ARN")
    return text(2048)(name, value)


def run_ids(name: str, value: object) -> object:
    if not isinstance(value, list) or len(value) > MAX_RUN_IDS:
        raise InvalidArgument(f"args.{name} must be a list of at most {MAX_RUN_IDS} run ids")
    for item in value:
        int_range(1, 2**63 - 1)(name, item)
    return value


def recipient_principal(name: str, value: object) -> object:
    """One exact principal ARN (a recipient key is one reader's, never a pattern's)."""
    text(MAX_PRINCIPAL)(name, value)
    try:
        exact_principal(str(value))
    except RecipientPrincipalError as exc:
        raise InvalidArgument(f"args.{name}: {exc}") from None
    return value


def public_key_pem(name: str, value: object) -> object:
    """A PEM public key of a supported suite, fully checked here (crypto.keyfiles) before
    the database sees it; the message names the flaw, never the input."""
    if not isinstance(value, str) or not value or len(value) > MAX_RECIPIENT_PEM:
        raise InvalidArgument(
            f"args.{name} must be a PEM public key of at most {MAX_RECIPIENT_PEM} characters"
        )
    try:
        recipient_key_from_pem(value)
    except KeyFormatError as exc:
        raise InvalidArgument(f"args.{name}: {exc}") from None
    return value
