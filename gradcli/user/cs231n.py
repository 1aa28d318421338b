"""The CS231n convention most student code uses, accepted for a user's layer (``--impl``, the
Python API) beside gradcli's own keywords-and-dict one:

    def forward(x, w, b, **options): ...   # -> (out, cache)
    def backward(dout, cache): ...         # -> (dx, dw, db), in the tensors' order

It is recognised from the backward's signature alone, before anything runs: exactly two
parameters (no ``**kwargs``), the second not named after a tensor (gradcli's backward takes
``grad_output`` and the tensors by name). Either way a misreading cannot pass: read as CS231n,
a forward that does not return ``(out, cache)`` and a backward that does not return one
gradient per tensor are refused, naming the convention; read as gradcli's, a ``(dout,
cache)`` backward cannot take the tensors as keywords and fails loudly.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradcli.errors import UserCodeError

CONVENTION = "the CS231n convention: forward(x, w, ...) -> (out, cache), backward(dout, cache)"


def detect(backward: Callable[..., Any], tensors: tuple[str, ...]) -> bool:
    """Whether ``backward`` is written as ``backward(dout, cache)``."""
    try:
        params = list(inspect.signature(backward).parameters.values())
    except (TypeError, ValueError):  # a C function: no signature to read
        return False
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return (
        len(params) == 2 and all(p.kind in plain for p in params) and params[1].name not in tensors
    )


def order(t: Mapping[str, np.ndarray], names: tuple[str, ...]) -> list[str]:
    """The tensors in the order the functions take and return them: the layer's (a custom
    layer's: the spec's or the ``tensors`` mapping's)."""
    return [n for n in names if n in t] + [n for n in t if n not in names]


def split(value: Any, path: Path, what: str) -> tuple[Any, Any]:
    """A forward's ``(out, cache)``."""
    if not (isinstance(value, tuple) and len(value) == 2):
        got = f"a tuple of {len(value)}" if isinstance(value, tuple) else type(value).__name__
        raise UserCodeError(
            f"{what} must return (out, cache) under {CONVENTION} (backward takes two "
            f"arguments); got {got}",
            source=str(path),
        )
    return value


def gradients(value: Any, names: list[str], path: Path, what: str) -> dict[str, Any]:
    """A backward's tuple of gradients, keyed by position: one per tensor, in order."""
    if len(names) == 1 and not isinstance(value, (tuple, list)):
        value = (value,)  # relu_backward returns dx alone
    if not isinstance(value, (tuple, list)) or len(value) != len(names):
        got = f"{len(value)} values" if isinstance(value, (tuple, list)) else type(value).__name__
        raise UserCodeError(
            f"{what} must return one gradient per tensor ({', '.join('d' + n for n in names)}, "
            f"in this order) under {CONVENTION}; got {got}",
            source=str(path),
        )
    return dict(zip(names, value, strict=True))
