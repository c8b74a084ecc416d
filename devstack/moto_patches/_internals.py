"""What every patch module shares: the error a failed check raises, the check helper, and
the runtime a patch is applied with."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.lambda_pool import LambdaWorkerPool

#: The moto release every check was written against (constraints.txt pins it).
MOTO_VERSION = "5.2.5"


class MotoInternalChanged(RuntimeError):
    """A moto internal a patch replaces or relies on is not what the patch was written for."""

    def __init__(self, patch: str, problems: list[str]) -> None:
        self.patch = patch
        self.problems = list(problems)
        super().__init__(f"{patch}: " + "; ".join(problems))


@dataclass(frozen=True)
class Runtime:
    """What a patch may need from the emulator process it is applied in."""

    port: int
    pool: LambdaWorkerPool


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


@contextmanager
def checking(patch: str) -> Iterator[Callable[[bool, str], None]]:
    """`with checking(__name__) as expect: expect(condition, "what changed")`.

    Collects every failed expectation; a moto module or attribute that is gone (ImportError,
    AttributeError inside the block) is one more. On leaving, raises `MotoInternalChanged`
    naming them all.
    """
    import moto

    problems: list[str] = []

    def expect(condition: bool, message: str) -> None:
        if not condition:
            problems.append(f"moto {moto.__version__}: {message}")

    try:
        yield expect
    except AttributeError as exc:
        problems.append(f"moto {moto.__version__}: {_missing(exc)} is gone")
    except ImportError as exc:
        problems.append(f"moto {moto.__version__}: cannot import {exc.name or exc}: {exc}")
    except (OSError, TypeError, ValueError) as exc:  # inspect could not read an internal
        problems.append(f"moto {moto.__version__}: internals changed: {exc}")
    if problems:
        raise MotoInternalChanged(patch, problems)


def _missing(exc: AttributeError) -> str:
    """`moto.events.models.Rule.send_to_targets` for the AttributeError of that lookup."""
    owner = getattr(exc, "obj", None)
    if owner is None or not getattr(exc, "name", None):
        return str(exc)
    where = getattr(owner, "__qualname__", None) or type(owner).__qualname__
    module = getattr(owner, "__module__", None) or getattr(owner, "__name__", "")
    if isinstance(owner, type(inspect)):  # a module
        return f"{owner.__name__}.{exc.name}"
    return f"{module}.{where}.{exc.name}"
