"""1-D convolution (cross-correlation, as in the seed and every DL framework).

Shapes: x (..., n), w (k,), b (), z (..., m) with m = n - k + 1; ``...`` are batch axes.
Indices are 0-based here; the seed's are 1-based (z_i = sum_j w_j x_{i+j-1} + b).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gradcli.errors import ShapeError
from gradcli.layers.base import Arrays, Footprint, Layer, Shapes, TensorInfo, batch_maps, window


# z_i = sum_j w_j x_{i+j} + b
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., n), w (..., k), b (...) -> z (..., m)."""
    x, w, b = t["x"], t["w"], t["b"]
    k = w.shape[-1]
    m = x.shape[-1] - k + 1
    # one vectorized pass per kernel tap (k is small next to n); w's leading axes broadcast
    z = w[..., 0, None] * x[..., 0:m]
    for j in range(1, k):
        z = z + w[..., j, None] * x[..., j : j + m]
    return z + np.asarray(b)[..., None], {"x": x, "w": w}


# dL/db = sum_i d_i     dL/dw_j = sum_i d_i x_{i+j}     dL/dx_p = sum_i d_i w_{p-i}
def backward(dz: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dz (..., m) -> {"x": (..., n), "w": (k,), "b": ()}."""
    x, w = cache["x"], cache["w"]
    k, m = w.shape[-1], dz.shape[-1]
    windows = sliding_window_view(x.reshape(-1, x.shape[-1]), m, axis=-1)  # (B, k, m)
    dw = np.einsum("bjm,bm->j", windows, dz.reshape(-1, m))
    dx = np.zeros(x.shape, dtype=np.result_type(dz, w))
    for j in range(k):  # the input gradient is the upstream gradient "scattered" by each tap
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
