"""1-D convolution (cross-correlation, as in the seed and every DL framework).

Shapes: x (..., n), w (k,), b (), z (..., m) with m = n - k + 1; ``...`` are batch axes.
Indices are 0-based here; the seed's are 1-based (z_i = sum_j w_j x_{i+j-1} + b).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gradcli.errors import ShapeError
from gradcli.layers.base import Arrays, Footprint, Layer, Shapes, TensorInfo, batch_maps, window


def _rowwise(a: np.ndarray, v: np.ndarray, op: str, taps: int) -> np.ndarray | None:
    """np.correlate / np.convolve row by row over the broadcast leading axes of a (..., p) and
    v (..., q), when there are few rows for the work per row (then numpy's C dot loop beats
    one vectorized pass per tap, 8x at n=4096, k=64); None when a tap loop is the better pick."""
    lead = np.broadcast_shapes(a.shape[:-1], v.shape[:-1])
    rows = math.prod(lead)
    if rows > 4 * taps:
        return None
    a2 = np.broadcast_to(a, lead + a.shape[-1:]).reshape(rows, -1)
    v2 = np.broadcast_to(v, lead + v.shape[-1:]).reshape(rows, -1)
    if op == "correlate":  # numpy's correlate conjugates v; undo it (complex step)
        v2 = np.conj(v2) if np.iscomplexobj(v2) else v2
        out = [np.correlate(a2[r], v2[r], "valid") for r in range(rows)]
    else:
        out = [np.convolve(a2[r], v2[r], "full") for r in range(rows)]
    return np.array(out).reshape(lead + (-1,))


# z_i = sum_j w_j x_{i+j} + b
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., n), w (..., k), b (...) -> z (..., m)."""
    x, w, b = t["x"], t["w"], t["b"]
    k = w.shape[-1]
    m = x.shape[-1] - k + 1
    z = _rowwise(x, w, "correlate", k)
    if z is None:  # many short rows: one vectorized pass per kernel tap, w's leading axes broadcast
        z = w[..., 0, None] * x[..., 0:m]
        for j in range(1, k):
            z = z + w[..., j, None] * x[..., j : j + m]
    return z + np.asarray(b)[..., None], {"x": x, "w": w}


# dL/db = sum_i d_i     dL/dw_j = sum_i d_i x_{i+j}     dL/dx_p = sum_i d_i w_{p-i}
def backward(dz: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dz (..., m) -> {"x": (..., n), "w": (k,), "b": ()}."""
    x, w = cache["x"], cache["w"]
    k, m = w.shape[-1], dz.shape[-1]
    # dw is the correlation of x with the upstream gradient, summed over the batch
    dw = _rowwise(x, dz, "correlate", k)
    if dw is None:
        windows = sliding_window_view(x.reshape(-1, x.shape[-1]), m, axis=-1)  # (B, k, m)
        dw = np.einsum("bjm,bm->j", windows, dz.reshape(-1, m))
    else:
        dw = dw.reshape(-1, k).sum(axis=0)
    # dx is the full convolution of the upstream gradient with the kernel
    dx = _rowwise(dz, w, "convolve", k)
    if dx is None:
        dx = np.zeros(x.shape, dtype=np.result_type(dz, w))
        for j in range(k):  # each tap scatters the upstream gradient back
            dx[..., j : j + m] += dz * w[j]
    return {"x": dx, "w": dw, "b": np.asarray(dz.sum())}


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    x, w, b = s["x"], s["w"], s["b"]
    if len(w) != 1:
        raise ShapeError(f"conv1d: w must be 1-D (k,), got shape {list(w)}", key="w")
    if len(x) < 1:
        raise ShapeError("conv1d: x must have at least 1 axis (..., n), got a scalar", key="x")
    if len(b) != 0:
        raise ShapeError(f"conv1d: b must be a scalar, got shape {list(b)}", key="b")
    n, k = x[-1], w[0]
    if k < 1 or n - k + 1 < 1:
        raise ShapeError(
            f"conv1d: output length m = n - k + 1 = {n} - {k} + 1 = {n - k + 1} must be >= 1",
            key="w",
        )
    return (*x[:-1], n - k + 1)


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """x[..., p] moves z[..., p-k+1 .. p]; every w_j moves all of z; b moves all of z."""
    batch, n, k = s["x"][:-1], s["x"][-1], s["w"][0]
    return {
        "x": (*batch_maps(batch), window(len(batch), n, -(k - 1), 1)),
        "w": (None,),
        "b": (),
    }[name]


LAYER = Layer(
    name="conv1d",
    summary="z_i = sum_j w_j x_{i+j-1} + b",
    tensors=(
        TensorInfo("x", ("n",), ("p",), "input", "input signal"),
        TensorInfo("w", ("k",), ("j",), "weight", "kernel"),
        TensorInfo("b", (), (), "bias", "scalar bias", optional=True),
    ),
    output=TensorInfo("z", ("m",), ("i",), "output", "output signal, m = n - k + 1"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"x": (8,), "w": (3,), "b": ()},
    footprint=footprint,
)
