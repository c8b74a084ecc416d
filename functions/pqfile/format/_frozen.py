"""Immutable value objects for the format and crypto core, without ``dataclasses``.

``import dataclasses`` pulls in ``inspect`` (with ``ast``, ``dis``, ``tokenize``) and each
decorated class compiles generated code: about 10 ms of a `pqfile encrypt` that should
cost little more than ``python -c pass`` (issue 15). The few records on that path (the
header, keys, results) derive from :class:`Frozen` instead: fields in ``__slots__``,
assignment refused, equality, hash, pickling and a repr built from the fields, with the
secret ones left out (what ``field(repr=False)`` did).
"""

from __future__ import annotations

from typing import ClassVar


class Frozen:
    """Base of a frozen record: a subclass names its fields in ``_fields`` (in the order of
    its ``__init__`` arguments) and makes them its ``__slots__``, sets them with
    :meth:`_init`, and names the fields its repr must not show in ``_hidden``."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _hidden: ClassVar[frozenset[str]] = frozenset()

    def _init(self, *values: object) -> None:
        for name, value in zip(self._field_names(), values, strict=True):
            object.__setattr__(self, name, value)

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        return cls._fields

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._field_names())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen record")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen record")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Frozen)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __reduce__(self) -> tuple[type[Frozen], tuple[object, ...]]:
        return (type(self), self._values())

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in self._field_names()
            if name not in self._hidden
        )
        return f"{type(self).__name__}({shown})"
