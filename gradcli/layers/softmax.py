"""Softmax over the last axis.

Shapes: x (..., n), y (..., n); ``...`` are batch axes (each row is normalized on its own).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcli.errors import ShapeError
from gradcli.layers.base import Arrays, Footprint, Layer, Shapes, TensorInfo, same


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


LAYER = Layer(
    name="softmax",
    summary="y_i = exp(x_i) / sum_j exp(x_j)  (over the last axis)",
    tensors=(TensorInfo("x", ("n",), ("i",), "input", "scores; rows along the last axis"),),
    output=TensorInfo("y", ("n",), ("i",), "output", "probabilities; each row sums to 1"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"x": (5,)},
    footprint=footprint,
    working=working_elements,
)
