"""Softmax over the last axis.

Shapes: x (..., n), y (..., n); ``...`` are batch axes (each row is normalized on its own).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcli.errors import ShapeError
from gradcli.layers import _activation_variants as classic
from gradcli.layers.base import Arrays, Footprint, Layer, Shapes, TensorInfo, same
from gradcli.layers.words import Formulas, Shown
from gradcli.layers.words import shape as _s


# y_i = exp(x_i - max_j x_j) / sum_j exp(x_j - max_j x_j)
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., n) -> y (..., n); the shift is taken on the real part (complex-step safe)."""
    x = t["x"]
    e = np.exp(x - np.fmax.reduce(x.real, axis=-1, keepdims=True))
    y = e * (1.0 / e.sum(axis=-1, keepdims=True))
    return y, {"y": y}


# dL/dx_i = y_i (dL/dy_i - sum_j dL/dy_j y_j)
def backward(dy: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    y = cache["y"]
    return {"x": y * (dy - np.sum(dy * y, axis=-1, keepdims=True))}


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    x = s["x"]
    if len(x) < 1:
        raise ShapeError("softmax: x must have at least 1 axis (..., n), got a scalar", key="x")
    if x[-1] < 1:
        raise ShapeError("softmax: x's last axis (n) must have at least 1 element, got 0", key="x")
    return tuple(x)


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """x[..., i] moves the whole row y[..., :] of its own example: per-row footprint."""
    x = s["x"]
    return (*(same(k, n) for k, n in enumerate(x[:-1])), None)


def working_elements(s: Shapes, options: Any = None) -> int:
    """The exponentials, and one x-sized product in the backward."""
    return 2 * math.prod(s["x"])


def explain(v: Shown) -> Formulas:
    sh = _s(v.shapes["x"])
    return Formulas(
        ["y_i = e^(x_i - max x) / Σ_j e^(x_j - max x)   (over the last axis)",
         f"y {sh} = softmax(x {sh}) row by row"],
        {"x": ([f"∂L/∂x {sh}: ∂L/∂x_i = y_i (∂L/∂y_i - Σ_j ∂L/∂y_j y_j)"],
               "the Jacobian diag(y) - y yᵀ of each row applied to the upstream gradient")},
        ("n",),
    )  # fmt: skip


SKELETON = """
def forward(x):
    # y = exp(x - max(x)) / sum(exp(x - max(x)))   over the last axis;  x (..., n) -> y (..., n)
    raise NotImplementedError


def backward(grad_output, x):
    # dx = y * (dy - sum(dy * y, axis=-1, keepdims=True))
    dy = grad_output
    raise NotImplementedError
    return {"x": ...}
"""


LAYER = Layer(
    name="softmax",
    summary="y_i = exp(x_i) / sum_j exp(x_j)  (over the last axis)",
    tensors=(TensorInfo("x", ("n",), ("i",), "input", "scores; rows along the last axis"),),
    output=TensorInfo("y", ("n",), ("i",), "output", "probabilities; each row sums to 1"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"x": (3, 5)},
    footprint=footprint,
    working=working_elements,
    explain=explain,
    skeleton=SKELETON,
    variants=classic.softmax,
)
