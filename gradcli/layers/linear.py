"""Linear (fully connected) layer, seed notation.

Shapes: x (..., in), W (out, in), b (out,), z (..., out); ``...`` are batch axes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcli.errors import ShapeError
from gradcli.layers.base import Arrays, Footprint, Layer, Shapes, TensorInfo, batch_maps, same


# z = W x + b
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., in), W (out, in), b (out,) -> z (..., out)."""
    x, W, b = t["x"], t["W"], t["b"]
    return _rows_matmul(x, W) + b, {"x": x, "W": W}


def _rows_matmul(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """x (..., in) times W (..., out, in)^T with leading axes broadcast, as few GEMMs as
    possible: the trailing leading axes along which W does not vary become rows of one GEMM."""
    n = max(x.ndim - 1, W.ndim - 2)
    lead_x = (1,) * (n - x.ndim + 1) + x.shape[:-1]
    lead_w = (1,) * (n - W.ndim + 2) + W.shape[:-2]
    k = n
    while k > 0 and lead_w[k - 1] == 1:
        k -= 1
    rows = x.reshape(lead_x[:k] + (math.prod(lead_x[k:]), x.shape[-1]))
    z = rows @ W.reshape(lead_w[:k] + W.shape[-2:]).swapaxes(-1, -2)
    return z.reshape(np.broadcast_shapes(lead_x[:k], lead_w[:k]) + lead_x[k:] + z.shape[-1:])


# dL/dW = dL/dz x^T     dL/db = dL/dz     dL/dx = W^T dL/dz   (summed over batch axes)
def backward(dz: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dz (..., out) -> {"x": (..., in), "W": (out, in), "b": (out,)}."""
    x, W = cache["x"], cache["W"]
    dz2 = dz.reshape(-1, dz.shape[-1])
    return {
        "x": dz @ W,
        "W": dz2.T @ x.reshape(-1, x.shape[-1]),
        "b": dz2.sum(axis=0),
    }


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    x, W, b = s["x"], s["W"], s["b"]
    if len(W) != 2:
        raise ShapeError(f"linear: W must be 2-D (out, in), got shape {list(W)}", key="W")
    if len(x) < 1:
        raise ShapeError("linear: x must have at least 1 axis (..., in), got a scalar", key="x")
    if x[-1] != W[1]:
        raise ShapeError(
            f"linear: W has in={W[1]} (axis 1) but x has {x[-1]} features (last axis)", key="W"
        )
    if tuple(b) != (W[0],):
        raise ShapeError(f"linear: b must have shape [{W[0]}] (out,), got {list(b)}", key="b")
    return (*x[:-1], W[0])


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """x[..., i] moves z[..., :] of its own example; W[o, i] and b[o] move z[..., o]."""
    batch, out = s["x"][:-1], s["W"][0]
    return {
        "x": (*batch_maps(batch), None),
        "W": (same(len(batch), out), None),
        "b": (same(len(batch), out),),
    }[name]


LAYER = Layer(
    name="linear",
    summary="z = W x + b",
    tensors=(
        TensorInfo("x", ("in",), ("i",), "input", "input vector"),
        TensorInfo("W", ("out", "in"), ("o", "i"), "weight", "weight matrix"),
        TensorInfo("b", ("out",), ("o",), "bias", "bias", optional=True),
    ),
    output=TensorInfo("z", ("out",), ("o",), "output", "pre-activation output"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"x": (4,), "W": (3, 4), "b": (3,)},
    footprint=footprint,
)
