"""What conv1d and conv2d share: stride/padding/dilation, the im2col GEMM and its transpose.

Channel-last: X (..., *spatial, C_in), W (*k, C_in, C_out), b (C_out,), Z (..., *out, C_out), with
Xp the zero-padded input and, per spatial axis, out = floor((n + 2p - d(k-1) - 1) / s) + 1:

    Z[i, c]   = sum_{m, e} W[m, e, c] Xp[i*s + m*d, e] + b[c]      (i, m: one index per axis)
    dW[m,e,c] = sum_i dZ[i, c] Xp[i*s + m*d, e]
    dXp[i*s + m*d, e] += sum_c dZ[i, c] W[m, e, c];   dX = dXp without the padding
    db[c]     = sum_i dZ[i, c]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gradcli.errors import OptionError, ShapeError, brief
from gradcli.layers.base import AxisMap, rows_matmul


@dataclass(frozen=True)
class Axis:
    """One spatial axis: input size n, kernel k, stride s, dilation d, padding lo/hi."""

    n: int
    k: int
    s: int
    d: int
    lo: int
    hi: int

    @property
    def span(self) -> int:
        return self.d * (self.k - 1) + 1

    @property
    def out(self) -> int:
        return (self.n + self.lo + self.hi - self.span) // self.s + 1


def ints(name: str, value: Any, dims: int, minimum: int) -> tuple[int, ...]:
    """An int, or (conv2d) a list of ``dims`` ints, each >= minimum."""
    values = value if isinstance(value, (list, tuple)) and dims > 1 else [value]
    if len(values) == 1:
        values = list(values) * dims
    pair = " or a pair [h, w] of them" if dims > 1 else ""
    if len(values) != dims or any(
        isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values
    ):
        raise OptionError(
            f"{name} must be an integer >= {minimum}{pair}, got {brief(value)}",
            key=f"options.{name}",
        )
    return tuple(values)


def validate(stride: Any, padding: Any, dilation: Any, dims: int) -> None:
    """Raise an OptionError naming the option and its valid range."""
    strides = ints("stride", stride, dims, 1)
    ints("dilation", dilation, dims, 1)
    if padding in ("valid", "same"):
        if padding == "same" and any(s != 1 for s in strides):
            raise OptionError(
                f"padding 'same' needs stride 1, got stride {stride!r}", key="options.padding"
            )
        return
    if isinstance(padding, str):
        raise OptionError(
            f"padding must be 'valid', 'same' or an integer >= 0, got {brief(padding)}",
            key="options.padding",
        )
    ints("padding", padding, dims, 0)


def geometry(options: Any, sizes: tuple[int, ...], kernel: tuple[int, ...]) -> list[Axis]:
    dims = len(sizes)
    strides = ints("stride", options.stride, dims, 1)
    dilations = ints("dilation", options.dilation, dims, 1)
    if options.padding == "same":  # the output keeps the input's size; extra on the high side
        totals = [d * (k - 1) for d, k in zip(dilations, kernel, strict=True)]
        pads = [(t // 2, t - t // 2) for t in totals]
    else:
        p = (0,) * dims if options.padding == "valid" else ints("padding", options.padding, dims, 0)
        pads = [(q, q) for q in p]
    return [
        Axis(n, k, s, d, lo, hi)
        for n, k, s, d, (lo, hi) in zip(sizes, kernel, strides, dilations, pads, strict=True)
    ]


def check_sizes(layer: str, geo: list[Axis], names: tuple[str, ...]) -> None:
    for g, name in zip(geo, names, strict=True):
        if g.k < 1 or g.out < 1:
            raise ShapeError(
                f"{layer}: output {name} = floor((n + pad - d(k-1) - 1) / s) + 1 = "
                f"floor(({g.n} + {g.lo + g.hi} - {g.d}*({g.k}-1) - 1) / {g.s}) + 1 = {g.out} "
                "must be >= 1",
                key="W" if layer == "conv2d" else "w",
            )


def pad(X: np.ndarray, geo: list[Axis]) -> np.ndarray:
    """Zero padding of the spatial axes of X (..., *spatial, C)."""
    if all(g.lo == 0 and g.hi == 0 for g in geo):
        return X
    shape = X.shape[: -len(geo) - 1] + tuple(g.n + g.lo + g.hi for g in geo) + X.shape[-1:]
    Xp = np.zeros(shape, dtype=X.dtype)
    Xp[(Ellipsis, *(slice(g.lo, g.lo + g.n) for g in geo), slice(None))] = X
    return Xp


def im2col(Xp: np.ndarray, geo: list[Axis]) -> np.ndarray:
    """Xp (..., *padded, C) -> every window as a row (..., *out, prod(k) * C), ordered
    (taps..., channel) like W.reshape(-1, C_out), so the convolution is one GEMM."""
    ns = len(geo)
    win = sliding_window_view(Xp, tuple(g.span for g in geo), axis=tuple(range(-ns - 1, -1)))
    steps = (slice(None, None, g.s) for g in geo)
    taps = (slice(None, None, g.d) for g in geo)
    win = win[(Ellipsis, *steps, slice(None), *taps)]  # (..., *out, C, *k)
    win = np.moveaxis(win, -ns - 1, -1)
    return win.reshape(win.shape[: -ns - 1] + (-1,))


def forward(X: np.ndarray, W: np.ndarray, b: np.ndarray, geo: list[Axis]) -> tuple[Any, Any]:
    """X (..., *spatial, C_in), W (..., *k, C_in, C_out), b (..., C_out) -> Z, cache.
    Leading axes of W and b broadcast against X's (the numerical engine's probe axis)."""
    ns = len(geo)
    cols = im2col(pad(X, geo), geo)
    K, c_out = cols.shape[-1], W.shape[-1]
    Wt = W.reshape(W.shape[: -ns - 2] + (1,) * ns + (K, c_out)).swapaxes(-1, -2)
    Z = rows_matmul(cols, Wt) + b.reshape(b.shape[:-1] + (1,) * ns + b.shape[-1:])
    return Z, {"cols": cols, "X_shape": X.shape, "W": W, "geo": geo}


def backward(dZ: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dZ (..., *out, C_out)
    -> {"X": (..., *spatial, C_in), "W": (*k, C_in, C_out), "b": (C_out,)}."""
    cols, W, geo = cache["cols"], cache["W"], cache["geo"]
    ns, c_in, c_out = len(geo), W.shape[-2], W.shape[-1]
    dZ2 = dZ.reshape(-1, c_out)
    dW = (cols.reshape(-1, cols.shape[-1]).T @ dZ2).reshape(W.shape)
    lead, out = dZ.shape[: -ns - 1], dZ.shape[-ns - 1 : -1]
    # each tap's share dZ W[m]^T goes back to the input positions that tap read: one small GEMM
    # and one add per tap (with stride 1 and no dilation this is the full convolution of dZ
    # with the 180-degree-rotated kernel); contiguous per-tap results keep the adds fast
    dXp = np.zeros(lead + tuple(g.n + g.lo + g.hi for g in geo) + (c_in,), dtype=dZ.dtype)
    for taps in np.ndindex(*(g.k for g in geo)):
        reads = (
            slice(t * g.d, t * g.d + g.s * (g.out - 1) + 1, g.s)
            for t, g in zip(taps, geo, strict=True)
        )
        share = (dZ2 @ W[taps].T).reshape(lead + out + (c_in,))
        dXp[(Ellipsis, *reads, slice(None))] += share
    dX = dXp[(Ellipsis, *(slice(g.lo, g.lo + g.n) for g in geo), slice(None))]
    ones = np.ones(len(dZ2), dtype=dZ2.dtype)  # a GEMV: 5x faster than sum(axis=0)
    return {"X": np.ascontiguousarray(dX).reshape(cache["X_shape"]), "W": dW, "b": ones @ dZ2}


def window(out_axis: int, g: Axis) -> AxisMap:
    """Input index t moves the outputs i with i*s + m*d = t + lo for some tap m."""
    t = np.arange(g.n) + g.lo
    lo = -(-(t - (g.k - 1) * g.d) // g.s)  # ceil
    return (out_axis, lo, t // g.s + 1)


def output_shape(X: tuple[int, ...], geo: list[Axis], c_out: int) -> tuple[int, ...]:
    return (*X[: -len(geo) - 1], *(g.out for g in geo), c_out)
