"""What a layer says about itself in words: its explain formulas and its `init --impl` skeleton.

A layer's file writes its formulas with these helpers (``Layer.explain``); the explain command
(render/explain.py) adds the sections every layer shares: the batch sums and the shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Any

from gradcli.records import record

XCORR = (
    "convolutions here are cross-correlations (the kernel slides unflipped), as in every DL "
    "framework"
)


@record
class Shown:
    """What a layer's formulas are written for: the spec's shapes (batch axes included) and
    options, the output's shape, and the batch (the input's leading axes)."""

    shapes: Mapping[str, tuple[int, ...]]
    options: Any
    out_shape: tuple[int, ...]
    batch: tuple[int, ...] = ()


@record
class Formulas:
    """A layer's forward lines, then per gradient (its lines, one line of intuition), the
    output's core axes and any lines for the shapes section (sizes derived from options)."""

    forward: list[str]
    grads: dict[str, tuple[list[str], str]]
    out_axes: tuple[str, ...] = ()
    extra: list[str] = field(default_factory=list)


def shape(s: Any) -> str:
    """A shape as Python writes it: (3, 4), (4,), ()."""
    return str(tuple(int(n) for n in s))


def ix(*parts: str | None) -> str:
    """An index list; the seed writes W[m,n,d,c] tight but X[i+m, j+n, d] spaced."""
    kept = [p for p in parts if p]
    return ("," if all(p.isidentifier() for p in kept) else ", ").join(kept)


def sigma(*idx: str | None) -> str:
    """Σ over the given indices: Σ_i, or Σ_{m,n,d} for several."""
    kept = [i for i in idx if i]
    return f"Σ_{kept[0]}" if len(kept) == 1 else "Σ_{" + ",".join(kept) + "}"


def skeleton_for(names: tuple[str, ...], summary: str, shapes: str, out: str) -> str:
    """An `init --impl` body for a layer that wrote none: its tensors, formula and shapes."""
    args = ", ".join(names)
    grads = ", ".join(f'"{n}": ...' for n in names)
    return f"""
def forward({args}):
    # {summary}
    # {shapes} -> {out}
    raise NotImplementedError


def backward(grad_output, {args}):
    # grad_output has the output's shape; return each tensor's gradient, of its shape
    raise NotImplementedError
    return {{{grads}}}
"""
