"""The bug records and the list of all of them (each layer's bugs live in its own module)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Bug:
    id: str
    layer: str  # the built-in layer it implements
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    shapes: Mapping[str, tuple[int, ...]]
    wrong: frozenset[str]  # the tensors whose gradients are wrong (empty: a correct twin)
    cause: str | Mapping[str, str] | None  # expected cause prefix (per tensor), None: outside
    options: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""

    def tensors(self, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {n: rng.standard_normal(s) for n, s in self.shapes.items()}

    def expected(self, name: str) -> str | None:
        return self.cause.get(name) if isinstance(self.cause, Mapping) else self.cause


def bug(
    id: str, layer: str, make: Callable[..., tuple[Callable, Callable]], shapes: dict,
    wrong: str, cause: Any, options: dict | None = None, doc: str = "", **flags: Any,
) -> Bug:  # fmt: skip
    fwd, bwd = make(**flags)
    return Bug(id, layer, fwd, bwd, shapes, frozenset(wrong.split()), cause, options or {}, doc)


def _all() -> tuple[list[Bug], list[Bug]]:
    from bugcorpus import attention, classic, conv1d, conv2d, library, linear

    bugs, twins = [], []
    for module in (linear, conv1d, conv2d, attention, library, classic):
        for b in module.bugs():
            (bugs if b.wrong else twins).append(b)
    return bugs, twins


BUGS, TWINS = _all()
