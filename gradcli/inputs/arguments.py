"""The library's keyword arguments checked for type and range before anything runs, each
refusal an OptionError naming the parameter (``err.param``). They accept what the CLI's options
accept, as Python values: ``samples=2.5``, ``coloring="false"`` or ``max_memory="512"`` are
refused, not coerced (``"false"`` is truthy, ``float(True)`` is 1.0), and a choice is a name,
not a spelling (``"Complex"``, ``"AUTO"``), as the CLI takes it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from gradcli.errors import OptionError, brief, one_of


def got(value: Any) -> str:
    """A value as a Python caller wrote it (``None``, ``True``; a string says it is one)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    return f"{brief(value)} ({type(value).__name__})" if isinstance(value, str) else brief(value)


def number(value: Any, param: str, infinite: bool = False) -> float:
    """A finite real number (not a bool, not a numeric string); ``infinite``: +inf too."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise OptionError(f"expected a number, got {got(value)}", param=param)
    v = float(value)
    if not math.isfinite(v) and not (infinite and v == math.inf):
        what = "a number (inf: no limit)" if infinite else "a finite number"
        raise OptionError(f"expected {what}, got {v}", param=param)
    return v


def integer(value: Any, param: str, lo: int | None = None, hi: int | None = None) -> int:
    """An integer (numpy's too; not a bool, a float or a string) within [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OptionError(f"expected an integer, got {got(value)}", param=param)
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        if hi is None:
            want = "a positive integer" if lo == 1 else f"an integer >= {lo}"
        else:
            want = f"an integer from {lo} to {'2**63-1' if hi == 2**63 - 1 else hi}"
        raise OptionError(f"expected {want}, got {brief(v)}", param=param)
    return v


def boolean(value: Any, param: str) -> bool:
    """True or False (numpy's too): a string such as "false" would be truthy."""
    if isinstance(value, bool) or (
        type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
    ):
        return bool(value)
    raise OptionError(f"expected True or False, got {got(value)}", param=param)


def choice(value: Any, param: str, choices: Iterable[str]) -> str:
    """One of ``choices``, in any case ("Central" is "central")."""
    names = tuple(choices)
    if not isinstance(value, str):
        raise OptionError(f"expected one of {one_of(names)}, got {got(value)}", param=param)
    if value.lower() not in names:
        raise OptionError(f"expected one of {one_of(names)}, got {brief(value)}", param=param)
    return value.lower()


def mapping(value: Any, param: str) -> Mapping[str, Any]:
    """A mapping with string keys (``options``, ``tensors``, ``grads``)."""
    if not isinstance(value, Mapping):
        raise OptionError(f"expected a mapping, got {got(value)}", param=param)
    for key in value:
        if not isinstance(key, str):
            raise OptionError(f"expected string keys, got the key {got(key)}", param=param)
    return value


def text(value: Any, param: str) -> str:
    """A string (a name such as a method's, whose spelling is checked where it is used)."""
    if not isinstance(value, str):
        raise OptionError(f"expected a name, got {got(value)}", param=param)
    return value
