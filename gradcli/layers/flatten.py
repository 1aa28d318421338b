"""Flatten, as torch.nn.Flatten(start_dim=start): the axes of x from ``start`` on become one.

Shapes: x (N, d1, ..., dk) -> y (N, d1*...*dk) with the default start 1: axis 0 is the batch.
``start`` counts x's axes as the spec gives them (0 flattens everything; negative counts from
the end, as in torch). The axes before ``start`` are batch axes; the numerical engine's extra
leading axes join them, because the flattened axes are settled from the spec as a count from
the end.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from gradcli.errors import OptionError, ShapeError, brief
from gradcli.layers.base import (
    Arrays,
    AxisMap,
    Footprint,
    Layer,
    Shapes,
    TensorInfo,
    option,
    same,
)
from gradcli.layers.words import Formulas, Shown
from gradcli.layers.words import shape as _s
from gradcli.records import record


@record
class Options:
    start: int = option(
        1,
        "first flattened axis of x (torch's start_dim): 1 keeps axis 0 as the batch, 0 "
        "flattens all, negative counts from the end",
    )

    def __post_init__(self) -> None:
        if isinstance(self.start, bool) or not isinstance(self.start, int):
            raise OptionError(
                f"start must be an integer, got {brief(self.start)}", key="options.start"
            )


def _count(start: int, rank: int) -> int:
    """How many trailing axes ``start`` flattens on an x of this rank."""
    return rank - start if start >= 0 else -start


def resolve(options: Options, s: Shapes) -> Options:
    rank = len(s["x"])
    if not rank:  # the tensor's fault, not an option given or not (outside test t55a F8)
        raise ShapeError("x is a scalar; flatten needs at least 1 axis", key="tensors.x")
    if not -rank <= options.start < rank:
        raise OptionError(
            f"start must lie in [{-rank}, {rank - 1}] for x of {rank} axes, got {options.start}",
            key="options.start",
        )
    resolved = dataclasses.replace(options)
    # the count lives beside the fields, not as one: a user's --impl flatten receives the
    # options as keywords and must see only start
    object.__setattr__(resolved, "flat", _count(options.start, rank))
    return resolved


def _flat(x_ndim: int, options: Any) -> int:
    options = options or Options()
    return getattr(options, "flat", None) or _count(options.start, x_ndim)


# y[b..., f] = x[b..., i1, ..., ik],  f = ((i1 d2 + i2) d3 + ...) dk + ik   (C order)
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    x = t["x"]
    k = _flat(x.ndim, options)
    lead = x.shape[: x.ndim - k]
    return x.reshape(*lead, math.prod(x.shape[x.ndim - k :])), {"shape": x.shape}


# dL/dx[b..., i1, ..., ik] = dL/dy[b..., f]   (the same reshape backwards)
def backward(dy: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"x": dy.reshape(cache["shape"])}


def variants(t: Arrays, options: Any, dy: np.ndarray) -> dict[str, tuple[str, dict]]:
    """The classic slip, for the diagnosis: dy reshaped back in Fortran order. The whole
    array's (``dy.reshape(x.shape, order="F")``) is each example's too: the batch axes lead
    on both sides, and in Fortran order the first runs fastest in both."""
    x = np.asarray(t["x"])
    return {"flatten:order-F": (
        'with dx = dy.reshape(x.shape, order="F") where dy.reshape(x.shape) belongs: the '
        "forward joins the axes in C order (numpy's default): reshape back the same way",
        {"x": np.asarray(dy, dtype=np.float64).reshape(x.shape, order="F")})}


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    x, start = s["x"], (options or Options()).start
    if not -len(x) <= start < len(x):
        need = start + 1 if start >= 0 else -start
        raise ShapeError(
            f"flatten: start={start} needs x with at least {need} axes, got shape {list(x)}",
            key="x",
        )
    k = _flat(len(x), options)
    return (*x[: len(x) - k], math.prod(x[len(x) - k :]))


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """Batch axes map one-to-one; the first flattened axis's index t moves the block
    [t*m, (t+1)*m) of y's last axis (m: the product of the later flattened axes); the later
    flattened axes are dense within it (so their product is the number of colors)."""
    x = s["x"]
    k = _flat(len(x), options)
    nb = len(x) - k
    m = math.prod(x[nb + 1 :])
    t = np.arange(x[nb])
    first: AxisMap = (nb, t * m, (t + 1) * m)
    return (*(same(a, n) for a, n in enumerate(x[:nb])), first, *([None] * (k - 1)))


def sources(name: str, t: Arrays, options: Any = None) -> np.ndarray:
    """y's element at flat index i is x's at flat index i (C order on both sides): every
    coordinate moves in one pass."""
    return np.arange(t["x"].size).reshape(output_shape({"x": t["x"].shape}, options))


LETTERS = "ijklmpqrstuvw"


def layout(s: Shapes, options: Any = None) -> tuple[tuple[TensorInfo, ...], TensorInfo]:
    """Axis names for these shapes and start: (N, d1, ..., dk) with the default start 1;
    the axes before start are N (N1, N2, ... when several), the joined ones d1 ... dk."""
    rank = len(s.get("x", ()))
    start = (options or Options()).start
    start = start if start >= 0 else rank + start
    nb = min(max(start, 0), rank)
    k = min(rank - nb, len(LETTERS))
    n = ("N",) if nb == 1 else tuple(f"N{a + 1}" for a in range(nb))
    ni = ("n",) if nb == 1 else tuple(f"n{a + 1}" for a in range(nb))
    x = TensorInfo(
        "x",
        (*n, *(f"d{a + 1}" for a in range(k))),
        (*ni, *LETTERS[:k]),
        "input",
        "axes before start (default 1) the batch, the rest joined",
    )
    y = TensorInfo("y", (*n, "D"), (*ni, "f"), "output", "the joined axes in C order")
    return (x,), y


def explain(v: Shown) -> Formulas:
    sh, start = _s(v.shapes["x"]), (v.options or Options()).start
    return Formulas(
        [f"y = x with its axes from {start} on joined in C order (torch.flatten)",
         f"y {_s(v.out_shape)} = x {sh}.reshape(...)"],
        {"x": ([f"∂L/∂x {sh} = ∂L/∂y reshaped back to x's shape"],
               "a reshape moves no value: the gradient is the same numbers, unflattened")},
        layout(v.shapes, v.options)[1].axes,
    )  # fmt: skip


SKELETON = """
def forward(x, start=1):
    # y = x.reshape(x.shape[:start] + (-1,))   x (N, d1, ..., dk) -> y (N, d1*...*dk)
    raise NotImplementedError


def backward(grad_output, x, start=1):
    # dx = dy.reshape(x.shape)
    dy = grad_output
    raise NotImplementedError
    return {"x": ...}
"""


LAYER = Layer(
    name="flatten",
    summary="y[b, f] = x[b, i, j, ...], f = flat index of (i, j, ...) (torch's Flatten)",
    # named for the default start 1 on a 3-axis x; other ranks show their axes as b0, b1, ...
    tensors=(
        TensorInfo(
            "x", ("N", "d1", "d2"), ("n", "i", "j"), "input", "axis 0 the batch, the rest joined"
        ),
    ),
    output=TensorInfo("y", ("N", "D"), ("n", "f"), "output", "D = d1*d2, f = i*d2 + j"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"x": (2, 3, 4)},
    options=Options,
    footprint=footprint,
    sources=sources,
    working=lambda s, options=None: 0,  # reshapes are views: nothing beyond x, y and dx
    resolve=resolve,
    layout=layout,
    explain=explain,
    skeleton=SKELETON,
    variants=variants,
)
