"""What conv1d and conv2d share: stride/padding/dilation, the im2col GEMM and its transpose.

Channel-last: X (..., *spatial, C_in), W (*k, C_in, C_out), b (C_out,), Z (..., *out, C_out), with
Xp the zero-padded input and, per spatial axis, out = floor((n + 2p - d(k-1) - 1) / s) + 1:

    Z[i, c]   = sum_{m, e} W[m, e, c] Xp[i*s + m*d, e] + b[c]      (i, m: one index per axis)
    dW[m,e,c] = sum_i dZ[i, c] Xp[i*s + m*d, e]
    dXp[i*s + m*d, e] += sum_c dZ[i, c] W[m, e, c];   dX = dXp without the padding
    db[c]     = sum_i dZ[i, c]
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from gradcli.errors import OptionError, ShapeError, brief
from gradcli.layers.base import AxisMap
from gradcli.records import record

FLAT_MIN = 2**18  # grid positions x K from which one image takes the flat layout (tests: 0)


@record
class Axis:
    """One spatial axis: input size n, kernel k, stride s, dilation d, padding lo/hi."""

    n: int
    k: int
    s: int
    d: int
    lo: int
    hi: int

    @cached_property
    def span(self) -> int:
        return self.d * (self.k - 1) + 1

    @cached_property
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


def pad(X: np.ndarray, geo: list[Axis], value: float = 0.0) -> np.ndarray:
    """Padding of the spatial axes of X (..., *spatial, C): zeros, or -inf for max-pooling."""
    if all(g.lo == 0 and g.hi == 0 for g in geo):
        return X
    shape = X.shape[: -len(geo) - 1] + tuple(g.n + g.lo + g.hi for g in geo) + X.shape[-1:]
    Xp = np.zeros(shape, dtype=X.dtype) if value == 0 else np.full(shape, value, dtype=X.dtype)
    Xp[(Ellipsis, *(slice(g.lo, g.lo + g.n) for g in geo), slice(None))] = X
    return Xp


def _operands(X: np.ndarray, W: np.ndarray, b: np.ndarray, ns: int) -> tuple[Any, ...]:
    """Leading axes padded to one length; X's split into A (where W varies too: batched GEMMs)
    and B (rows of one GEMM). W as (*A, K, C_out), with b as row K when b varies only along A:
    it rides in the GEMM against a row of ones, and db comes out of dW's GEMM."""
    lx, lw, lb = X.shape[: -ns - 1], W.shape[: -ns - 2], b.shape[:-1]
    nl = max(len(lx), len(lw), len(lb))
    lx, lw, lb = ((1,) * (nl - len(t)) + t for t in (lx, lw, lb))
    j = nl
    while j > 0 and lw[j - 1] == 1:
        j -= 1
    c_out, fold = W.shape[-1], all(v == 1 for v in lb[j:])
    Wt = W.reshape(lw[:j] + (W.size // (math.prod(lw) * c_out), c_out))
    if fold:
        K = Wt.shape[-2]
        Wb = np.empty(np.broadcast_shapes(lw[:j], lb[:j]) + (K + 1, c_out), np.result_type(W, b))
        Wb[..., :K, :], Wb[..., K, :] = Wt, b.reshape(lb[:j] + (c_out,))
        Wt = Wb
    return lx[:j], lx[j:], Wt, fold, math.prod(lx + lw + lb) == 1


def _taps(geo: list[Axis], grid: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Per tap, in W's row-major order, on a row-major grid whose cells hold s positions per axis
    (position p in cell p // s, phase p % s): the plane (the phases of all axes but the last),
    the cell's flat offset, and the slot (the last axis's phase)."""
    taps = [(0, 0, 0)]
    for a, g in enumerate(geo):
        step, last = math.prod(grid[a + 1 :]), a == len(geo) - 1
        taps = [
            (p if last else p * g.s + t * g.d % g.s, o + t * g.d // g.s * step, t * g.d % g.s)
            for p, o, _ in taps
            for t in range(g.k)
        ]
    return taps


def forward(X: np.ndarray, W: np.ndarray, b: np.ndarray, geo: list[Axis]) -> tuple[Any, Any]:
    """X (..., *spatial, C_in), W (..., *k, C_in, C_out), b (..., C_out) -> Z, cache.
    Leading axes of W and b broadcast against X's (the numerical engine's probe axis)."""
    ns = len(geo)
    A, B, Wt, fold, single = _operands(X, W, b, ns)
    grid, out = tuple(g.n + g.lo + g.hi for g in geo), tuple(g.out for g in geo)
    # the flat layout's transposes pay off through the backward's faster GEMMs on one large
    # real image (L: 8% faster fwd+bwd); probe stacks (leading axes) and complex inputs are
    # forward-only and run 5-25% faster as rows, and so do small images
    flat = (
        all(g.s == 1 for g in geo)
        and single
        and not any(np.iscomplexobj(a) for a in (X, W, b))
        and math.prod(grid) <= 2 * math.prod(out)
        and math.prod(grid) * len(Wt) >= FLAT_MIN
    )
    Z, cols = _forward_flat(X, Wt, geo, grid) if flat else _forward_rows(X, Wt, geo, A, B)
    if not fold:
        Z = Z + b.reshape(b.shape[:-1] + (1,) * ns + b.shape[-1:])
    cache = {"cols": cols, "flat": flat, "fold": fold, "W": W, "geo": geo}
    return Z.reshape(A + B + out + Z.shape[-1:]) if flat else Z, {**cache, "X_shape": X.shape}


def _forward_flat(X: np.ndarray, Wt: np.ndarray, geo: list[Axis], grid: tuple) -> tuple:
    """Stride 1, one image: the padded input channel-first, flattened to (C_in, N); tap m reads
    the contiguous columns [off_m, off_m + R), so im2col is one block copy per tap, and the
    GEMM computes every grid position (those past the output's edge are dropped)."""
    ns, c_in, c_out = len(geo), X.shape[-1], Wt.shape[-1]
    offs, N = [o for _, o, _ in _taps(geo, grid)], math.prod(grid)
    R, K = N - offs[-1], len(offs) * c_in
    # rows 8 values longer (here and below): a row length of a multiple of 4 KB makes the
    # transposing copies 3x slower (every channel of a position maps to the same cache set)
    cols = np.empty((len(Wt), N + 8), X.dtype)
    Xt = cols[:c_in, :N]  # tap 0 reads from offset 0: the transposed input is its block
    if N > math.prod(X.shape[-ns - 1 : -1]):
        Xt[...] = 0
    inner = (slice(None), *(slice(g.lo, g.lo + g.n) for g in geo))
    Xt.reshape((c_in,) + grid)[inner] = np.moveaxis(X.reshape(X.shape[-ns - 1 :]), -1, 0)
    for i, off in enumerate(offs[1:], 1):
        cols[i * c_in : (i + 1) * c_in, :R] = Xt[:, off : off + R]
    cols = cols[:, :R]
    cols[K:] = 1  # b's row
    ZT = np.empty((c_out, N + 8), np.result_type(X, Wt))
    np.matmul(Wt.T, cols, out=ZT[:, :R])  # this orientation: 1.4x faster than cols.T @ Wt
    Z = np.empty(tuple(g.out for g in geo) + (c_out,), ZT.dtype)
    view = ZT[:, :N].reshape((c_out,) + grid)[(slice(None), *(slice(g.out) for g in geo))]
    np.copyto(Z, np.moveaxis(view, 0, -1))
    return Z, cols


def _forward_rows(X: np.ndarray, Wt: np.ndarray, geo: list[Axis], A: tuple, B: tuple) -> tuple:
    """Any stride: every window as a row (..., *out, K) of one GEMM; with dilation 1 along the
    last axis each window row is a contiguous run of k * C_in values, copied in one go."""
    ns, c_in, c_out = len(geo), X.shape[-1], Wt.shape[-1]
    Xp = pad(X, geo)
    st, lead = Xp.strides, Xp.shape[: -ns - 1]
    k, out = tuple(g.k for g in geo), tuple(g.out for g in geo)
    steps = tuple(s * g.s for s, g in zip(st[-ns - 1 : -1], geo, strict=True))
    taps = tuple(s * g.d for s, g in zip(st[-ns - 1 : -1], geo, strict=True))
    win = as_strided(Xp, lead + out + k + (c_in,), st[: -ns - 1] + steps + taps + st[-1:])
    K = math.prod(k) * c_in
    cols = np.empty(lead + out + Wt.shape[-2:-1], X.dtype)
    np.copyto(cols[..., :K].reshape(win.shape), win)
    cols[..., K:] = 1  # b's column, when folded
    Z = np.matmul(cols.reshape(A + (-1, cols.shape[-1])), Wt)
    return Z.reshape(Z.shape[:-2] + B + out + (c_out,)), cols


def backward(dZ: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dZ (..., *out, C_out)
    -> {"X": (..., *spatial, C_in), "W": (*k, C_in, C_out), "b": (C_out,)}."""
    cols, W, geo = cache["cols"], cache["W"], cache["geo"]
    ns, c_out = len(geo), W.shape[-1]
    K = W.size // c_out
    batch = cache["X_shape"][: -ns - 1]
    # dZ on _dx's grid (for stride 1 _forward_flat's too), zero off the output
    grid = tuple(-(-(g.n + g.lo + g.hi) // g.s) for g in geo)
    dZg = np.zeros((math.prod(batch) * math.prod(grid), c_out), dZ.dtype)
    dZg.reshape(batch + grid + (c_out,))[(Ellipsis, *(slice(g.out) for g in geo), slice(None))] = (
        dZ.reshape(batch + dZ.shape[-ns - 1 :])
    )
    if cache["flat"]:
        dWb = cols @ dZg[: cols.shape[1]]
        dX = _dx_flat(dZg, W, geo, grid)
    else:
        dWb = cols.reshape(-1, cols.shape[-1]).T @ dZ.reshape(-1, c_out)
        dX = _dx(dZg, W, geo, grid, batch)
    if cache["fold"]:  # the row of ones gives db = sum_i dZ[i] for free
        db = dWb[K]
    else:
        dZ2 = dZ.reshape(-1, c_out)
        db = np.ones(len(dZ2), dZ2.dtype) @ dZ2  # a GEMV: 5x faster than sum(axis=0)
    return {"X": dX.reshape(cache["X_shape"]), "W": dWb[:K].reshape(W.shape), "b": db}


def _dx_flat(dZg: np.ndarray, W: np.ndarray, geo: list[Axis], grid: tuple) -> np.ndarray:
    """_forward_flat's transpose: one GEMM W dZ^T (taps * C_in, N) and one add of a contiguous
    (C_in, R) block per tap (4% faster fwd+bwd at L than _dx, 20% slower at M)."""
    c_in, c_out, N = W.shape[-2], W.shape[-1], len(dZg)
    offs = [o for _, o, _ in _taps(geo, grid)]
    R = N - offs[-1]
    G = np.empty((len(offs) * c_in, N + 8), np.result_type(W, dZg))  # + 8: as in the forward
    np.matmul(W.reshape(-1, c_out), dZg[:R].T, out=G[:, :R])
    dXt = G[:c_in, :N]  # tap 0 adds at offset 0: its block starts the sum
    dXt[:, R:] = 0
    for i, off in enumerate(offs[1:], 1):  # same row stride on both sides: numpy's fast add
        dXt[:, off : off + R] += G[i * c_in : (i + 1) * c_in, :R]
    inner = (slice(None), *(slice(g.lo, g.lo + g.n) for g in geo))
    view = dXt[:, :N].reshape((c_in,) + grid)[inner]
    dX = np.empty(view.shape[1:] + (c_in,), G.dtype)
    np.copyto(dX, np.moveaxis(view, 0, -1))
    return dX


def _dx(dZg: np.ndarray, W: np.ndarray, geo: list[Axis], grid: tuple, batch: tuple) -> Any:
    """dXp[i*s + m*d] += dZ[i] W[m]^T on a flat grid: padded position p of an axis with stride s
    is phase p % s in cell p // s. Along the last axis the s phases of a cell sit side by side
    (channel-last keeps them adjacent): the taps landing in one cell make one GEMM whose rows,
    s * C_in wide, are added as one contiguous block; along the other axes each phase is a
    separate plane. Every add is 1-D and contiguous (numpy's fast loop: 3x a strided add)."""
    *hs, gw = geo
    c_in, c_out, s = W.shape[-2], W.shape[-1], gw.s
    blocks: dict[tuple, list] = {}  # (plane, offset) -> [(tap, slot)]: the taps of a cell
    for i, (p, o, q) in enumerate(_taps(geo, grid)):
        blocks.setdefault((p, o), []).append((i, q))
    Wf = W.reshape(-1, c_in, c_out)
    if s == 1:  # one tap per block, in W's order
        Wg = np.ascontiguousarray(Wf.swapaxes(1, 2))
    else:
        Wg = np.zeros((len(blocks), c_out, s * c_in), np.result_type(W, dZg))
        for i, members in enumerate(blocks.values()):
            for t, q in members:
                Wg[i, :, q * c_in : (q + 1) * c_in] = Wf[t].T
    R = len(dZg) - max(off for _, off in blocks)
    U = np.matmul(dZg[:R], Wg)  # (blocks, R, s * C_in)
    planes, row = math.prod(g.s for g in hs), s * c_in
    dXg = np.zeros((planes, len(dZg) * row), U.dtype)
    for i, (plane, off) in enumerate(blocks):
        dXg[plane, off * row : (off + R) * row] += U[i].reshape(-1)
    dXg = dXg.reshape((planes,) + batch + grid[:-1] + (grid[-1] * s, c_in))
    shape = batch + tuple(g.n for g in geo) + (c_in,)
    if planes == 1 and dXg.shape[1:] == shape and gw.lo == 0:
        return dXg
    dX = np.empty(shape, U.dtype)
    cols = slice(gw.lo, gw.lo + gw.n)
    for plane, e in enumerate(np.ndindex(*(g.s for g in hs))):  # p = cell * s + e = index + lo
        src, cut = [], []
        for ei, g in zip(e, hs, strict=True):
            h0 = (ei - g.lo) % g.s
            src.append(slice(h0, g.n, g.s))
            cut.append(slice((h0 + g.lo) // g.s, (h0 + g.lo) // g.s + len(range(h0, g.n, g.s))))
        dX[(Ellipsis, *src, slice(None), slice(None))] = dXg[
            (plane, Ellipsis, *cut, cols, slice(None))
        ]
    return dX


def window(out_axis: int, g: Axis) -> AxisMap:
    """Input index t moves the outputs i with i*s + m*d = t + lo for some tap m."""
    t = np.arange(g.n) + g.lo
    lo = -(-(t - (g.k - 1) * g.d) // g.s)  # ceil
    return (out_axis, lo, t // g.s + 1)


def working(geo: list[Axis], batch: int, c_in: int, c_out: int) -> int:
    """Elements of the arrays forward and backward allocate beyond the tensors, the output and
    the gradients, at the most they hold at once, an upper bound from the shapes alone (Python
    ints: no overflow): the forward's (``forward_working``), or the windows its cache keeps
    and the backward's: dZ on the phase grid, W with b's row as the GEMM's operand, one
    product per tap and phase (or the flat layout's per-tap GEMM) and the phase planes it adds
    them into, and dW with db's row. The forward's padded input and transposed output are
    freed before the backward runs (their sum with it counted conv2d at 1.8x its peak)."""
    cells = batch * math.prod(-(-(g.n + g.lo + g.hi) // g.s) for g in geo)
    phases = cells * math.prod(g.s for g in geo)  # every padded position, rounded up
    taps, K = math.prod(g.k for g in geo), math.prod(g.k for g in geo) * c_in + 1
    per_tap = taps * (cells + 8) * geo[-1].s * c_in + taps * geo[-1].s * c_in * c_out
    backward = cells * c_out + per_tap + phases * c_in + K * c_out
    return max(forward_working(geo, batch, c_in, c_out), _kept(geo, batch, c_in) + backward)


def forward_working(geo: list[Axis], batch: int, c_in: int, c_out: int) -> int:
    """Elements the forward allocates beyond its tensors and output, its cache's windows
    among them, in either layout it may take: as rows (any stride, and every stacked probe),
    the padded input, a window of K values per output position and, when b is not folded into
    the GEMM (a stack of b's probes), Z before b is added; in the flat layout (one image at
    stride 1), K rows over every padded position and the output's transposed copy. W with
    b's row is the GEMM's operand in both."""
    padded = math.prod(g.n + g.lo + g.hi for g in geo)
    out = batch * math.prod(g.out for g in geo)
    K = math.prod(g.k for g in geo) * c_in + 1
    pads = any(g.lo or g.hi for g in geo)
    rows = (batch * padded * c_in if pads else 0) + out * K + out * c_out
    return max(rows, _flat(geo, batch) * (K + c_out)) + K * c_out


def _kept(geo: list[Axis], batch: int, c_in: int) -> int:
    """Elements of the windows the forward's cache keeps for the backward."""
    out = batch * math.prod(g.out for g in geo)
    K = math.prod(g.k for g in geo) * c_in + 1
    return max(out * K, _flat(geo, batch) * K)


def _flat(geo: list[Axis], batch: int) -> int:
    """Columns of the flat layout's arrays (every padded position, and 8 more), 0 where the
    forward cannot take it (a batch, a stride): its size threshold aside, as tests lower it."""
    padded = math.prod(g.n + g.lo + g.hi for g in geo)
    if batch != 1 or any(g.s != 1 for g in geo) or padded > 2 * math.prod(g.out for g in geo):
        return 0
    return padded + 8


def output_shape(X: tuple[int, ...], geo: list[Axis], c_out: int) -> tuple[int, ...]:
    return (*X[: -len(geo) - 1], *(g.out for g in geo), c_out)
