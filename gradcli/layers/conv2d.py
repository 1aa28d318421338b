"""2-D convolution (cross-correlation, as in the seed and every DL framework), channel-last.

Shapes: X (..., H, W, C_in), W (kh, kw, C_in, C_out), b (C_out,), Z (..., Ho, Wo, C_out) with
Ho = floor((H + 2p - d(kh-1) - 1) / s) + 1 (likewise Wo); ``...`` are batch axes. The seed's case
is stride 1, padding 0, dilation 1: Ho = H - kh + 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcli.errors import ShapeError
from gradcli.layers import _conv, _conv_variants
from gradcli.layers._conv import geometry
from gradcli.layers._conv_words import ConvNames, convolution
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
from gradcli.layers.cs231n import FILTERS, NCHW, Form, one, out, refuse
from gradcli.layers.words import Formulas, Shown
from gradcli.records import record


@record
class Options:
    stride: int | list[int] = option(1, "step between windows: int >= 1 or [s_h, s_w]")
    padding: int | str | list[int] = option(
        0, "zeros around X: int >= 0, [p_h, p_w], 'valid' (0) or 'same' (stride 1 only)"
    )
    dilation: int | list[int] = option(1, "spacing of the kernel taps: int >= 1 or [d_h, d_w]")

    def __post_init__(self) -> None:
        _conv.validate(self.stride, self.padding, self.dilation, 2)


def _geometry(X: tuple[int, ...], W: tuple[int, ...], options: Options) -> list[_conv.Axis]:
    return _conv.geometry(options, tuple(X[-3:-1]), tuple(W[-4:-2]))


# Z[i, j, c] = sum_{m, n, d} W[m, n, d, c] Xp[i*s_h + m*d_h, j*s_w + n*d_w, d] + b[c]
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """X (..., H, W, C_in), W (..., kh, kw, C_in, C_out), b (..., C_out)
    -> Z (..., Ho, Wo, C_out)."""
    X, W, b = t["X"], t["W"], t["b"]
    return _conv.forward(X, W, b, _geometry(X.shape, W.shape, options or Options()))


# dL/dW[m,n,d,c] = sum_{i,j} dZ[i,j,c] Xp[i*s_h + m*d_h, j*s_w + n*d_w, d]
# dL/dX[i,j,d]   = sum_{m,n,c} dZ[i-m, j-n, c] W[m,n,d,c]   (stride 1, no padding: a full
#                  convolution with the 180-degree-rotated kernel; in general each tap's share
#                  goes back to the padded positions it read, and the padding is cut off)
# dL/db[c]       = sum_{i,j} dZ[i,j,c]
def backward(dZ: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dZ (..., Ho, Wo, C_out)
    -> {"X": (..., H, W, C_in), "W": (kh, kw, C_in, C_out), "b": (C_out,)}."""
    return _conv.backward(dZ, cache)


def variants(t: Arrays, options: Any, dZ: np.ndarray) -> dict[str, tuple[str, dict]]:
    """Classic wrong dX (gradcli.layers._conv_variants), for the diagnosis."""
    X, W = t["X"], t["W"]
    geo = _geometry(X.shape, W.shape, options or Options())
    found = _conv_variants.variants_nd(X, W, dZ, geo)
    return {c: (text, {"X": dX}) for c, (text, dX) in found.items()}


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
    geo = _geometry(X, W, options or Options())
    _conv.check_sizes("conv2d", geo, ("height", "width"))
    return _conv.output_shape(X, geo, c_out)


def working_elements(s: Shapes, options: Any = None) -> int:
    """The largest working arrays of forward and backward (see _conv.working)."""
    X, W = s["X"], s["W"]
    geo = _geometry(X, W, options or Options())
    return _conv.working(geo, math.prod(X[:-3]), W[2], W[3])


def forward_elements_held(s: Shapes, options: Any = None) -> int:
    """The forward's own arrays (see _conv.forward_working)."""
    X, W = s["X"], s["W"]
    geo = _geometry(X, W, options or Options())
    return _conv.forward_working(geo, math.prod(X[:-3]), W[2], W[3])


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """X[..., i, j, d] moves the output rows and columns whose windows read it, of its own
    example; W[m, n, d, c] and b[c] move Z[..., c]."""
    batch, nb, c_out = s["X"][:-3], len(s["X"]) - 3, s["W"][3]
    geo = _geometry(s["X"], s["W"], options or Options())
    return {
        "X": (*batch_maps(batch), _conv.window(nb, geo[0]), _conv.window(nb + 1, geo[1]), None),
        "W": (None, None, None, same(nb + 2, c_out)),
        "b": (same(nb + 2, c_out),),
    }[name]


OUTPUT = TensorInfo("Z", ("Ho", "Wo", "C_out"), ("i", "j", "c"), "output", "output feature map")


def explain(v: Shown) -> Formulas:
    X, W = v.shapes["X"], v.shapes["W"]
    nm = ConvNames("X", "W", "Z", "∂L/∂Z", ("i", "j"), ("m", "n"), ("i", "j"), "d", "c",
                ("_h", "_w"), (("H", "kh", "Ho"), ("W", "kw", "Wo")))  # fmt: skip
    geo = geometry(v.options, tuple(X[-3:-1]), tuple(W[:2]))
    f = convolution(v, nm, geo, OUTPUT.axes, seed_1based=False)
    # (W is the weight too: "Wo = W - kw + 1" read as the weight's: outside test t56b F7)
    f.extra.append("H, W in these sizes: X's height and width (not the weight W)")
    return f


SKELETON = """
def forward(X, W, b, stride=1, padding=0, dilation=1):
    # Z[i, j, c] = sum_{m, n, d} W[m, n, d, c] X[i+m, j+n, d] + b[c]      (channel-last)
    # (at stride 1, padding 0, dilation 1; the others: gradcli explain conv2d)
    # X (H, W, C_in), W (kh, kw, C_in, C_out), b (C_out,) -> Z (H-kh+1, W-kw+1, C_out)
    raise NotImplementedError


def backward(grad_output, X, W, b, stride=1, padding=0, dilation=1):
    # dL/dW[m, n, d, c] = sum_{i, j} dZ[i, j, c] X[i+m, j+n, d]   (correlate X with dZ)
    # dL/dX[i, j, d] = sum_{m, n, c} dZ[i-m, j-n, c] W[m, n, d, c]  (full conv, rotated kernel)
    # dL/db[c] = sum_{i, j} dZ[i, j, c]
    dZ = grad_output
    raise NotImplementedError
    return {"X": ..., "W": ..., "b": ...}
"""


def conv_param(options: Any, s: Shapes) -> tuple[dict[str, int]]:
    """CS231n's conv_param: one stride and one symmetric zero padding, no dilation."""
    fn = "conv_forward_naive"
    geo = _geometry(s["X"], s["W"], options or Options())
    if any(g.d != 1 for g in geo):
        refuse("dilation", options.dilation, fn, "has no dilation")
    if any(g.lo != g.hi for g in geo):
        refuse("padding", options.padding, fn, "pads both sides alike")
    stride = one("stride", tuple(g.s for g in geo), fn, "stride")
    return ({"stride": stride, "pad": one("padding", tuple(g.lo for g in geo), fn, "pad")},)


LAYER = Layer(
    name="conv2d",
    summary="Z[i,j,c] = sum_{m,n,d} W[m,n,d,c] X[i+m,j+n,d] + b[c]",
    tensors=(
        TensorInfo("X", ("H", "W", "C_in"), ("i", "j", "d"), "input", "input image, channel-last"),
        TensorInfo("W", ("kh", "kw", "C_in", "C_out"), ("m", "n", "d", "c"), "weight", "kernels"),
        TensorInfo("b", ("C_out",), ("c",), "bias", "bias per output channel", optional=True),
    ),
    output=OUTPUT,
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"X": (6, 5, 2), "W": (3, 3, 2, 5), "b": (5,)},
    options=Options,
    footprint=footprint,
    working=working_elements,
    forward_working=forward_elements_held,
    explain=explain,
    skeleton=SKELETON,
    variants=variants,
    cs231n=(
        Form("conv_forward_naive", "conv_backward_naive", {"X": NCHW, "W": FILTERS}, out(NCHW),
             conv_param, layout="X as (N, C, H, W), W as (F, C, HH, WW), conv_param {stride, pad}"),
    ),  # fmt: skip
)
