"""Frozen records: ``@record`` is ``@dataclass(frozen=True)``, built without compiling code.

On Python before 3.13, dataclasses compiles every generated method of every class from source
(``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, the frozen ``__setattr__`` and
``__delattr__``): about 6 million instructions for a class of ten fields, and a check imports
some thirty of them, the largest part of gradcli's own start-up (issue 13: a whole
``gradcli check linear`` under 0.25 s). A record keeps what dataclasses gives the rest of the
code (``fields``, ``replace``, ``asdict``, ``field(default_factory=..., repr=False)``,
``__post_init__``, inheritance) and the same meaning for every method, written once here and
shared: ``__init__`` binds arguments as the generated one would, equality compares the fields
in order as a tuple does, the hash is that tuple's, and assigning or deleting a field raises
``dataclasses.FrozenInstanceError``. ``@mutable_record`` is ``@dataclass``: the same, with fields
that may be assigned and no hash. Not supported (gradcli uses none): ``InitVar``,
``kw_only``, ``field(init=False)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, FrozenInstanceError
from typing import TYPE_CHECKING, Any, TypeVar

T = TypeVar("T")


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    fields = self.__record_init__
    if len(args) > len(fields):
        raise TypeError(
            f"{type(self).__name__}() takes {len(fields)} positional arguments but "
            f"{len(args)} were given"
        )
    for (name, _, _), value in zip(fields, args, strict=False):  # fewer args than fields
        if name in kwargs:
            raise TypeError(f"{type(self).__name__}() got multiple values for argument {name!r}")
        object.__setattr__(self, name, value)
    for name, default, factory in fields[len(args) :]:
        if name in kwargs:
            value = kwargs.pop(name)
        elif default is not MISSING:
            value = default
        elif factory is not MISSING:
            value = factory()
        else:
            raise TypeError(f"{type(self).__name__}() missing required argument: {name!r}")
        object.__setattr__(self, name, value)
    if kwargs:
        raise TypeError(
            f"{type(self).__name__}() got an unexpected keyword argument {next(iter(kwargs))!r}"
        )
    if hasattr(self, "__post_init__"):
        self.__post_init__()


def _setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _repr(self: Any) -> str:
    shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__record_repr__)
    return f"{type(self).__qualname__}({shown})"


def _values(self: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(getattr(self, n) for n in names)


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    names = self.__record_compare__
    return _values(self, names) == _values(other, names)


def _hash(self: Any) -> int:
    return hash(_values(self, self.__record_hash__))


def _record(cls: type[T], frozen: bool = True) -> type[T]:
    if not cls.__dict__.get("__doc__"):
        # dataclasses writes a missing docstring from inspect.signature, which for a class
        # without __init__ yet parses object's text signature with tokenize: compiling
        # tokenize's regular expressions cost 15 million instructions, a tenth of a check's
        cls.__doc__ = cls.__name__
    cls = dataclasses.dataclass(cls, init=False, repr=False, eq=False)  # compiles nothing
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    shared: dict[str, Any] = {
        "__record_init__": tuple((f.name, f.default, f.default_factory) for f in fields),
        "__record_repr__": tuple(f.name for f in fields if f.repr),
        "__record_compare__": tuple(f.name for f in fields if f.compare),
        "__record_hash__": tuple(
            f.name for f in fields if (f.compare if f.hash is None else f.hash)
        ),
        "__init__": _init, "__repr__": _repr, "__eq__": _eq,
        # a mutable dataclass that compares is unhashable (its hash would change with it)
        "__hash__": _hash if frozen else None,
    }  # fmt: skip
    if frozen:
        shared.update(__setattr__=_setattr, __delattr__=_delattr)
    for name, value in shared.items():
        type.__setattr__(cls, name, value)
    return cls


if TYPE_CHECKING:  # what type checkers know how to read
    from dataclasses import dataclass as _dataclass

    record = _dataclass(frozen=True)
    mutable_record = _dataclass
else:
    record = _record

    def mutable_record(cls: type[T]) -> type[T]:
        """``@dataclass`` (fields that may be assigned), built as a record is."""
        return _record(cls, frozen=False)
