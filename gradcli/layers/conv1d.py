"""1-D convolution (cross-correlation, as in the seed and every DL framework).

Seed form: x (..., n), w (k,), b (), z (..., m). Channel form (w 3-D): x (..., n, C_in),
w (k, C_in, C_out), b (C_out,), z (..., m, C_out). m = floor((n + 2p - d(k-1) - 1) / s) + 1; the
seed's case (stride 1, padding 0, dilation 1) is m = n - k + 1. ``...`` are batch axes. Indices
are 0-based here; the seed's are 1-based (z_i = sum_j w_j x_{i+j-1} + b).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from gradcli.errors import OptionError, ShapeError, brief
from gradcli.layers import _conv, _conv_variants
from gradcli.layers._conv import geometry
from gradcli.layers._conv_words import WHY, ConvNames, convolution
from gradcli.layers.base import (
    Arrays,
    Footprint,
    Layer,
    Shapes,
    TensorInfo,
    batch_maps,
    option,
    same,
)
from gradcli.layers.words import XCORR, Formulas, Shown, shape
from gradcli.records import record


@record
class Options:
    stride: int = option(1, "step between windows: int >= 1")
    padding: int | str = option(0, "zeros on both ends of x: int >= 0, 'valid' or 'same'")
    dilation: int = option(1, "spacing of the kernel taps: int >= 1")
    channels: bool | None = option(
        None, "set from w's rank: 3-D w (k, C_in, C_out) has channels, 1-D w is one channel"
    )

    def __post_init__(self) -> None:
        _conv.validate(self.stride, self.padding, self.dilation, 1)
        if self.channels not in (None, True, False):
            raise OptionError(
                f"channels must be true or false, got {brief(self.channels)}",
                key="options.channels",
            )


def resolve(options: Options, s: Shapes) -> Options:
    channels = len(s["w"]) == 3
    if options.channels is not None and options.channels != channels:
        raise OptionError(
            f"channels is {str(options.channels).lower()} but w has {len(s['w'])} axes "
            "(3-D w (k, C_in, C_out) means channels, 1-D w (k,) means none)",
            key="options.channels",
        )
    return dataclasses.replace(options, channels=channels)


def _geometry(n: int, k: int, options: Options) -> list[_conv.Axis]:
    return _conv.geometry(options, (n,), (k,))


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


# z[i] = sum_j w[j] xp[i*s + j*d] + b            (channels: z[i, c] = sum_{j, e} w[j, e, c] ...)
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., n) or (..., n, C_in), w (..., k) or (..., k, C_in, C_out), b
    -> z (..., m) or (..., m, C_out)."""
    options = options or Options()
    x, w, b = t["x"], t["w"], np.asarray(t["b"])
    channels = options.channels
    if channels is None:  # not resolved from a spec: w (k, C_in, C_out) reads x's channels
        channels = w.ndim >= 3 and w.shape[-2] == x.shape[-1] and x.ndim >= 2
    if channels:
        return _conv.forward(x, w, b, _geometry(x.shape[-2], w.shape[-3], options))
    geo = _geometry(x.shape[-1], w.shape[-1], options)
    g = geo[0]
    if g.s == 1 and g.d == 1:  # numpy's correlate row by row: 8x faster at n=4096, k=64
        xp = _conv.pad(x[..., None], geo)[..., 0]
        z = _rowwise(xp, w, "correlate", g.k)
        if z is not None:
            return z + b[..., None], {"xp": xp, "w": w, "geo": geo, "x_shape": x.shape}
    Z, cache = _conv.forward(x[..., None], w[..., :, None, None], b[..., None], geo)
    return Z[..., 0], {**cache, "seed": True}


# dL/db = sum_i d_i     dL/dw_j = sum_i d_i xp_{i*s + j*d}     dL/dxp_{i*s + j*d} += d_i w_j
# (stride 1, no padding: dL/dx_p = sum_i d_i w_{p-i}, the full convolution of d with w)
def backward(dz: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dz (..., m[, C_out]) -> {"x": x's shape, "w": w's shape, "b": () or (C_out,)}."""
    if "xp" in cache:  # the seed's form, stride 1, dilation 1, few rows: correlate/convolve
        xp, w, g = cache["xp"], cache["w"], cache["geo"][0]
        dw = _rowwise(xp, dz, "correlate", g.k).reshape(-1, g.k).sum(axis=0)
        dxp = _rowwise(dz, w, "convolve", g.k)
        dx = np.ascontiguousarray(dxp[..., g.lo : g.lo + g.n]).reshape(cache["x_shape"])
        return {"x": dx, "w": dw, "b": np.asarray(dz.sum())}
    if cache.get("seed"):
        grads = _conv.backward(dz[..., None], cache)
        return {"x": grads["X"][..., 0], "w": grads["W"][:, 0, 0], "b": grads["b"][0]}
    grads = _conv.backward(dz, cache)
    return {"x": grads["X"], "w": grads["W"], "b": grads["b"]}


def variants(t: Arrays, options: Any, dz: np.ndarray) -> dict[str, tuple[str, dict]]:
    """Classic wrong dx (gradcli.layers._conv_variants), for the diagnosis; the seed's form
    as one channel in and out."""
    x, w = t["x"], t["w"]
    options = options or Options()
    if w.ndim == 3:
        found = _conv_variants.variants_nd(x, w, dz, _geometry(x.shape[-2], w.shape[0], options))
        return {c: (text, {"x": dx}) for c, (text, dx) in found.items()}
    geo = _geometry(x.shape[-1], w.shape[0], options)
    found = _conv_variants.variants_nd(x[..., None], w[:, None, None], dz[..., None], geo)
    return {c: (text, {"x": dx[..., 0]}) for c, (text, dx) in found.items()}


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    x, w, b = s["x"], s["w"], s["b"]
    options = options or Options()
    if len(w) == 3:
        k, c_in, c_out = w
        if len(x) < 2 or x[-1] != c_in:
            got = f"shape {list(x)}" if len(x) < 2 else f"{x[-1]} channels (last axis)"
            raise ShapeError(
                f"conv1d: w has C_in={c_in} (axis 1), so x must be (..., n, {c_in}); x has {got}",
                key="x",
            )
        if tuple(b) != (c_out,):
            raise ShapeError(
                f"conv1d: with channels b must have shape [{c_out}] (C_out,), got {list(b)}",
                key="b",
            )
        geo = _geometry(x[-2], k, options)
        _conv.check_sizes("conv1d", geo, ("length m",))
        return (*x[:-2], geo[0].out, c_out)
    if len(w) != 1:
        raise ShapeError(
            f"conv1d: w must be 1-D (k,) or 3-D (k, C_in, C_out), got shape {list(w)}", key="w"
        )
    if len(x) < 1:
        raise ShapeError("conv1d: x must have at least 1 axis (..., n), got a scalar", key="x")
    if len(b) != 0:
        raise ShapeError(f"conv1d: b must be a scalar, got shape {list(b)}", key="b")
    geo = _geometry(x[-1], w[0], options)
    _conv.check_sizes("conv1d", geo, ("length m",))
    return (*x[:-1], geo[0].out)


def _sizes(s: Shapes, options: Any) -> tuple[Any, int, int, int, bool]:
    """(geometry, rows, C_in, C_out, whether the forward runs row by row): the seed's form runs
    as one channel in and out, row by row where its windows are short enough (_rowwise)."""
    x, w = s["x"], s["w"]
    channels = len(w) == 3
    c_in, c_out = (w[1], w[2]) if channels else (1, 1)
    batch = x[: -2 if channels else -1]
    geo = _geometry(x[len(batch)], w[0], options or Options())
    g, rows = geo[0], math.prod(batch)
    rowwise = not channels and g.s == 1 and g.d == 1 and rows <= 4 * g.k
    return geo, rows, c_in, c_out, rowwise


def working_elements(s: Shapes, options: Any = None) -> int:
    """The largest working arrays of forward and backward (see _conv.working)."""
    geo, rows, c_in, c_out, rowwise = _sizes(s, options)
    g = geo[0]
    if rowwise:
        return rows * (3 * (g.n + g.lo + g.hi) + 2 * g.k)  # xp, z, dxp; dw's rows
    return _conv.working(geo, rows, c_in, c_out)


def forward_elements_held(s: Shapes, options: Any = None) -> int | None:
    """The forward's own arrays (see _conv.forward_working); None for the seed's form row by
    row, whose working arrays stand for its forward's (a stack of probes may hold more rows
    than it takes, and the windows' count for every copy read 7x its check's peak)."""
    geo, rows, c_in, c_out, rowwise = _sizes(s, options)
    return None if rowwise else _conv.forward_working(geo, rows, c_in, c_out)


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """x[..., p] moves the outputs whose windows read it, of its own example; every w_j moves
    all of z (every z[..., c] with channels); b likewise."""
    options = options or Options()
    channels = len(s["w"]) == 3
    batch = s["x"][: -2 if channels else -1]
    nb = len(batch)
    geo = _geometry(s["x"][nb], s["w"][0], options)
    if not channels:
        return {"x": (*batch_maps(batch), _conv.window(nb, geo[0])), "w": (None,), "b": ()}[name]
    c_out = s["w"][2]
    return {
        "x": (*batch_maps(batch), _conv.window(nb, geo[0]), None),
        "w": (None, None, same(nb + 1, c_out)),
        "b": (same(nb + 1, c_out),),
    }[name]


SEED_TENSORS = (
    TensorInfo("x", ("n",), ("p",), "input", "input signal"),
    TensorInfo("w", ("k",), ("j",), "weight", "kernel (3-D (k, C_in, C_out) for channels)"),
    TensorInfo("b", (), (), "bias", "scalar bias ((C_out,) with channels)", optional=True),
)
CHANNEL_TENSORS = (
    TensorInfo("x", ("n", "C_in"), ("p", "e"), "input", "input signal, channel-last"),
    TensorInfo("w", ("k", "C_in", "C_out"), ("j", "e", "c"), "weight", "kernels"),
    TensorInfo("b", ("C_out",), ("c",), "bias", "bias per output channel", optional=True),
)


SEED_OUTPUT = TensorInfo("z", ("m",), ("i",), "output", "output signal ((m, C_out) with channels)")
CHANNEL_OUTPUT = TensorInfo("z", ("m", "C_out"), ("i", "c"), "output", "output signal")


def layout(s: Shapes, options: Any = None) -> tuple[tuple[TensorInfo, ...], TensorInfo]:
    if len(s.get("w", ())) == 3:
        return CHANNEL_TENSORS, CHANNEL_OUTPUT
    return SEED_TENSORS, SEED_OUTPUT


def _explain_seed(v: Shown) -> Formulas:
    """The notes' own 1-based formulas, for the seed's case (no channels, no options)."""
    sh, m = v.shapes, v.out_shape[-1]
    n, k = sh["x"][-1], sh["w"][0]
    fwd = ["z_i = Σ_{j=1}^{k} w_j · x_{i+j-1} + b,   i ∈ {1, …, m}", XCORR,
           "indices are 1-based, the textbook's (gradcli's tables are 0-based)"]  # fmt: skip
    grads = {
        "b": ([f"∂L/∂b {shape(sh['b'])} = Σ_{{i=1}}^{{m}} δ_i,   δ = ∂L/∂z"], WHY["b"]),
        "w": ([f"∂L/∂w {shape(sh['w'])} = x ⋆ δ   (a valid cross-correlation)",
               "∂L/∂w_j = Σ_{i=1}^{m} δ_i · x_{i+j-1},   j ∈ {1, …, k}"], WHY["w"]),
        "x": ([f"∂L/∂x {shape(sh['x'])} = δ ⋆ rot180(w)   (a full cross-correlation)",
               "∂L/∂x_p = Σ_{i=max(1, p-k+1)}^{min(m, p)} δ_i · w_{p-i+1},   p ∈ {1, …, n}"],
              WHY["x"]),
    }  # fmt: skip
    return Formulas(fwd, grads, ("m",), [f"m = n - k + 1 = {n} - {k} + 1 = {m}"])



def explain(v: Shown) -> Formulas:
    sh, o = v.shapes, v.options
    ch = len(sh["w"]) == 3
    if not ch and o.stride == 1 and o.padding in (0, "valid") and o.dilation == 1:
        return _explain_seed(v)
    nm = ConvNames("x", "w", "z", "δ", ("i",), ("j",), ("p",), "e" if ch else None,
                "c" if ch else None, ("",), (("n", "k", "m"),))  # fmt: skip
    n = sh["x"][-2] if ch else sh["x"][-1]
    geo = geometry(o, (n,), (sh["w"][0],))
    return convolution(v, nm, geo, layout(v.shapes)[1].axes, seed_1based=True)


SKELETON = """
def forward(x, w, b, stride=1, padding=0, dilation=1, channels=None):
    # z_i = sum_{j=1..k} w_j x_{i+j-1} + b,  i = 1..m,  m = n - k + 1   (1-based, as the seed)
    # (at stride 1, padding 0, dilation 1, one channel; the others: gradcli explain conv1d)
    # x (n,), w (k,), b scalar -> z (m,)
    raise NotImplementedError


def backward(grad_output, x, w, b, stride=1, padding=0, dilation=1,
             channels=None):
    # dL/db = sum_i d_i
    # dL/dw_j = sum_i d_i x_{i+j-1}
    # dL/dx_p = sum_{i=max(1, p-k+1)..min(m, p)} d_i w_{p-i+1}
    d = grad_output
    raise NotImplementedError
    return {"x": ..., "w": ..., "b": ...}
"""


LAYER = Layer(
    name="conv1d",
    summary="z_i = sum_j w_j x_{i+j-1} + b",
    tensors=SEED_TENSORS,
    output=SEED_OUTPUT,
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"x": (8,), "w": (3,), "b": ()},
    options=Options,
    footprint=footprint,
    working=working_elements,
    forward_working=forward_elements_held,
    layout=layout,
    resolve=resolve,
    explain=explain,
    skeleton=SKELETON,
    variants=variants,
)
