"""2-D convolution (cross-correlation), channel-last, seed notation.

Shapes: X (..., H, W, C_in), W (kh, kw, C_in, C_out), b (C_out,),
Z (..., H - kh + 1, W - kw + 1, C_out); ``...`` are batch axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcli.errors import ShapeError
from gradcli.layers.base import (
    Arrays,
    Footprint,
    Layer,
    Shapes,
    TensorInfo,
    batch_maps,
    same,
    window,
)


# Z[i, j, c] = sum_{m, n, d} W[m, n, d, c] X[i+m, j+n, d] + b[c]
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """X (..., H, W, C_in), W (..., kh, kw, C_in, C_out), b (..., C_out)
    -> Z (..., Ho, Wo, C_out)."""
    X, W, b = t["X"], t["W"], t["b"]
    kh, kw = W.shape[-4], W.shape[-3]
    Ho, Wo = X.shape[-3] - kh + 1, X.shape[-2] - kw + 1
    # one matmul per kernel tap (kh*kw is small); the None lets W's leading axes broadcast
    # against X's leading axes plus the output-row axis
    Z = X[..., 0:Ho, 0:Wo, :] @ W[..., 0, 0, None, :, :]
    for m in range(kh):
        for n in range(kw):
            if m or n:
                Z = Z + X[..., m : m + Ho, n : n + Wo, :] @ W[..., m, n, None, :, :]
    return Z + b[..., None, None, :], {"X": X, "W": W}


# dL/dW[m,n,d,c] = sum_{i,j} dZ[i,j,c] X[i+m, j+n, d]
# dL/dX[i,j,d]   = sum_{m,n,c} dZ[i-m, j-n, c] W[m,n,d,c]   (full conv with the rotated kernel)
# dL/db[c]       = sum_{i,j} dZ[i,j,c]
def backward(dZ: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dZ (..., Ho, Wo, C_out)
    -> {"X": (..., H, W, C_in), "W": (kh, kw, C_in, C_out), "b": (C_out,)}."""
    X, W = cache["X"], cache["W"]
    kh, kw, c_in, c_out = W.shape
    Ho, Wo = dZ.shape[-3], dZ.shape[-2]
    dZ2 = dZ.reshape(-1, c_out)
    dW = np.empty(W.shape, dtype=np.result_type(dZ, X))
    dX = np.zeros(X.shape, dtype=np.result_type(dZ, W))
    for m in range(kh):
        for n in range(kw):
            window = X[..., m : m + Ho, n : n + Wo, :].reshape(-1, c_in)
            dW[m, n] = window.T @ dZ2
            dX[..., m : m + Ho, n : n + Wo, :] += dZ @ W[m, n].T
    return {"X": dX, "W": dW, "b": dZ2.sum(axis=0)}


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    X, W, b = s["X"], s["W"], s["b"]
    if len(W) != 4:
        raise ShapeError(
            f"conv2d: W must be 4-D (kh, kw, C_in, C_out), got shape {list(W)}", key="W"
        )
    if len(X) < 3:
        raise ShapeError(
            f"conv2d: X must be (..., H, W, C_in) with at least 3 axes, got shape {list(X)}",
            key="X",
        )
    kh, kw, c_in, c_out = W
    if c_in != X[-1]:
        raise ShapeError(
            f"conv2d: W has C_in={c_in} (axis 2) but X has {X[-1]} channels (last axis)", key="W"
        )
    if tuple(b) != (c_out,):
        raise ShapeError(f"conv2d: b must have shape [{c_out}] (C_out,), got {list(b)}", key="b")
    Ho, Wo = X[-3] - kh + 1, X[-2] - kw + 1
    if kh < 1 or kw < 1 or Ho < 1 or Wo < 1:
        raise ShapeError(
            f"conv2d: output size (H-kh+1, W-kw+1) = ({X[-3]}-{kh}+1, {X[-2]}-{kw}+1) = "
            f"({Ho}, {Wo}) must be positive",
            key="W",
        )
    return (*X[:-3], Ho, Wo, c_out)


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """X[..., i, j, d] moves Z[..., i-kh+1 .. i, j-kw+1 .. j, :] of its own example;
    W[m, n, d, c] and b[c] move Z[..., c]."""
    batch, (H, W, _), (kh, kw, _, c_out) = s["X"][:-3], s["X"][-3:], s["W"]
    nb = len(batch)
    return {
        "X": (
            *batch_maps(batch),
            window(nb, H, -(kh - 1), 1),
            window(nb + 1, W, -(kw - 1), 1),
            None,
        ),
        "W": (None, None, None, same(nb + 2, c_out)),
        "b": (same(nb + 2, c_out),),
    }[name]


LAYER = Layer(
    name="conv2d",
    summary="Z[i,j,c] = sum_{m,n,d} W[m,n,d,c] X[i+m,j+n,d] + b[c]",
    tensors=(
        TensorInfo("X", ("H", "W", "C_in"), ("i", "j", "d"), "input", "input image, channel-last"),
        TensorInfo("W", ("kh", "kw", "C_in", "C_out"), ("m", "n", "d", "c"), "weight", "kernels"),
        TensorInfo("b", ("C_out",), ("c",), "bias", "bias per output channel", optional=True),
    ),
    output=TensorInfo(
        "Z", ("H-kh+1", "W-kw+1", "C_out"), ("i", "j", "c"), "output", "output feature map"
    ),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"X": (5, 5, 2), "W": (3, 3, 2, 3), "b": (3,)},
    footprint=footprint,
)
