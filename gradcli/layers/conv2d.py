"""2-D convolution (cross-correlation), channel-last, seed notation.

Shapes: X (..., H, W, C_in), W (kh, kw, C_in, C_out), b (C_out,),
Z (..., H - kh + 1, W - kw + 1, C_out); ``...`` are batch axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gradcli.errors import ShapeError
from gradcli.layers.base import (
    Arrays,
    Footprint,
    Layer,
    Shapes,
    TensorInfo,
    batch_maps,
    rows_matmul,
    same,
    window,
)


def _im2col(X: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """X (..., H, W, C_in) -> every window as a row (..., Ho, Wo, kh*kw*C_in), ordered (m, n, d)
    like W.reshape(kh*kw*C_in, C_out), so the convolution is one GEMM."""
    win = sliding_window_view(X, (kh, kw), axis=(-3, -2))  # (..., Ho, Wo, C_in, kh, kw)
    win = np.moveaxis(win, -3, -1)
    return win.reshape(win.shape[:-3] + (kh * kw * X.shape[-1],))


# Z[i, j, c] = sum_{m, n, d} W[m, n, d, c] X[i+m, j+n, d] + b[c]
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """X (..., H, W, C_in), W (..., kh, kw, C_in, C_out), b (..., C_out)
    -> Z (..., Ho, Wo, C_out)."""
    X, W, b = t["X"], t["W"], t["b"]
    kh, kw, c_in, c_out = W.shape[-4:]
    cols = _im2col(X, kh, kw)
    # W as (..., 1, 1, C_out, K): its leading axes line up with X's, then the output rows
    Wt = W.reshape(W.shape[:-4] + (1, 1, kh * kw * c_in, c_out)).swapaxes(-1, -2)
    Z = rows_matmul(cols, Wt) + b[..., None, None, :]
    return Z, {"cols": cols, "X_shape": X.shape, "W": W}


# dL/dW[m,n,d,c] = sum_{i,j} dZ[i,j,c] X[i+m, j+n, d]
# dL/dX[i,j,d]   = sum_{m,n,c} dZ[i-m, j-n, c] W[m,n,d,c]   (full conv with the rotated kernel)
# dL/db[c]       = sum_{i,j} dZ[i,j,c]
def backward(dZ: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dZ (..., Ho, Wo, C_out)
    -> {"X": (..., H, W, C_in), "W": (kh, kw, C_in, C_out), "b": (C_out,)}."""
    cols, W = cache["cols"], cache["W"]
    kh, kw, c_in, c_out = W.shape
    dZ2 = dZ.reshape(-1, c_out)
    dW = (cols.reshape(-1, cols.shape[-1]).T @ dZ2).reshape(W.shape)
    # dX is a full convolution of dZ with the 180-degree-rotated kernel: pad dZ by k-1 on each
    # side, then the same im2col GEMM as the forward, with W[kh-1-m, kw-1-n, d, c] as [m, n, c, d]
    Hp, Wp = dZ.shape[-3] + 2 * (kh - 1), dZ.shape[-2] + 2 * (kw - 1)
    padded = np.zeros(dZ.shape[:-3] + (Hp, Wp, c_out), dtype=dZ.dtype)
    padded[..., kh - 1 : Hp - kh + 1, kw - 1 : Wp - kw + 1, :] = dZ
    rotated = W[::-1, ::-1].swapaxes(2, 3).reshape(kh * kw * c_out, c_in)
    dX = _im2col(padded, kh, kw) @ rotated
    return {
        "X": dX.reshape(cache["X_shape"]),
        "W": dW,
        "b": np.ones(len(dZ2), dtype=dZ2.dtype) @ dZ2,
    }


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
