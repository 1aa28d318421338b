"""2-D average pooling (torch.nn.AvgPool2d), channel-last.

Shapes: X (..., H, W, C), Z (..., Ho, Wo, C), Ho = floor((H + 2p - k) / s) + 1; ``...`` are batch
axes. The padding is zeros. With ``count_include_pad`` (the default, torch's too) every window
divides by k_h k_w; without it, by the number of X's own elements in the window.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcli.errors import OptionError, brief
from gradcli.layers import _conv, _pool
from gradcli.layers.base import Arrays, Footprint, Layer, Shapes, TensorInfo, option
from gradcli.layers.cs231n import NCHW, Form, out
from gradcli.records import record


@record
class Options(_pool.Options):
    count_include_pad: bool = option(
        True, "divide by the whole window (true) or by X's elements in it only (false)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.count_include_pad, bool):
            raise OptionError(
                f"count_include_pad must be true or false, got {brief(self.count_include_pad)}",
                key="options.count_include_pad",
            )


def _scale(geo: list[_conv.Axis], options: Options, dtype: Any) -> Any:
    """1 / the divisor of each window: a number, or (Ho, Wo, 1) without count_include_pad."""
    if options.count_include_pad:
        return 1.0 / (geo[0].k * geo[1].k)
    counts = []
    for g in geo:  # X's own positions in window i: [i*s - lo, i*s - lo + k) clipped to [0, n)
        start = np.arange(g.out) * g.s - g.lo
        counts.append(np.minimum(start + g.k, g.n) - np.maximum(start, 0))
    return (1.0 / np.multiply.outer(*counts))[..., None].astype(np.finfo(dtype).dtype)


# Z[i, j, c] = sum_{m, n} Xp[i*s_h + m, j*s_w + n, c] / count[i, j]     (Xp: X padded with zeros)
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """X (..., H, W, C) -> Z (..., Ho, Wo, C)."""
    options = options or Options()
    X = t["X"]
    geo = _pool.geometry(X.shape, options)
    Xp = _conv.pad(X, geo)
    Z = None
    for _, window in _pool.taps(geo):
        Z = Xp[window].copy() if Z is None else np.add(Z, Xp[window], out=Z)
    scale = _scale(geo, options, X.dtype)
    Z *= scale
    return Z, {"geo": geo, "scale": scale, "X_shape": X.shape}


# dX[i*s_h + m, j*s_w + n, c] += dZ[i, j, c] / count[i, j]     for every tap (m, n)
def backward(dZ: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dZ (..., Ho, Wo, C) -> {"X": (..., H, W, C)}."""
    geo = cache["geo"]
    shape = cache["X_shape"][:-3] + tuple(g.n + g.lo + g.hi for g in geo) + dZ.shape[-1:]
    dXp = np.zeros(shape, dZ.dtype)
    share = dZ * cache["scale"]
    for _, window in _pool.taps(geo):
        dXp[window] += share
    return {"X": np.ascontiguousarray(_pool.unpad(dXp, geo))}


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    return _pool.output_shape("avgpool2d", s, options or Options())


def working_elements(s: Shapes, options: Any = None) -> int:
    return _pool.working(s, options or Options())


def forward_elements(s: Shapes, options: Any = None) -> int:
    """One add per tap and output, on a strided grid."""
    return _pool.touched(s, options or Options(), 1)


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    return _pool.footprint(name, s, options or Options())


def explain(v: Any) -> Any:
    whole = v.options.count_include_pad
    gh, gw = _pool.geometry(v.shapes["X"], v.options)
    count = f"{gh.k * gw.k}" if whole else "count[i,j]"
    lines = [f"∂L/∂X[i*s+m, j*s+n, c] += ∂L/∂Z[i,j,c] / {count} for every tap (m, n)"]
    if not whole:
        lines.append("count[i,j]: X's own elements in window (i, j), the padding left out")
    why = "every element of a window gets an equal share of its gradient"
    if whole or not (gh.lo or gw.lo):
        return _pool.words(v, "mean", lines, why)
    return _pool.words(v, "Σ", lines, why, " / count[i,j]")


SKELETON = """
def forward(X, size=2, stride=None, padding=0, count_include_pad=True):
    # Z[i, j, c] = mean over the window (m, n) of X[i*stride + m, j*stride + n, c]
    # stride None means stride = size; padding adds zeros around X, counted in the mean unless
    # count_include_pad is False (then each window divides by X's own elements in it)
    # X ([N,] H, W, C) -> Z ([N,] Ho, Wo, C),  Ho = (H + 2*padding - size) // stride + 1
    # (the leading batch axes optional: the default spec has none)
    raise NotImplementedError


def backward(grad_output, X, size=2, stride=None, padding=0,
             count_include_pad=True):
    # each window shares dZ[i, j, c] equally among the positions it averaged
    dZ = grad_output
    raise NotImplementedError
    return {"X": ...}
"""


def factors(s: Shapes, options: Any = None) -> list[tuple[float, str, str]]:
    """The window's size, the average's count, and that count divided by one side (a mean
    over the window's side, not its area) (Layer.factors)."""
    size = (options or Options()).size
    kh, kw = (size, size) if isinstance(size, int) else size
    if kh * kw < 2:
        return []
    found = [(float(kh * kw), "scale:window", f"multiplied by {kh * kw}, the window's size "
              "(the average's 1/count left out)")]  # fmt: skip
    for side in sorted({kh, kw} - {1, kh * kw}):
        found.append((float(kh * kw / side), f"scale:window/{side}", f"divided by {side}, one "
                      f"side of the window, where its {kh * kw} elements belong"))  # fmt: skip
    # the stride's area where the window's belongs: the two agree in the default pool only
    stride = (options or Options()).stride
    sh, sw = (kh, kw) if stride is None else (stride, stride) if isinstance(stride, int) else (
        stride)  # fmt: skip
    if sh * sw not in (1, kh * kw):
        found.append((kh * kw / (sh * sw), "scale:window/stride", f"multiplied by "
                      f"{kh * kw / (sh * sw):g}: divided by {sh * sw}, the stride's area "
                      f"{sh} x {sw}, where the window's {kh * kw} elements belong"))  # fmt: skip
    return found


LAYER = Layer(
    name="avgpool2d",
    factors=factors,
    summary="Z[i,j,c] = mean_{m,n} X[i*s+m, j*s+n, c]",
    tensors=_pool.TENSORS,
    output=TensorInfo("Z", ("Ho", "Wo", "C"), ("i", "j", "c"), "output", "window averages"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"X": (4, 8, 3)},
    options=Options,
    footprint=footprint,
    working=working_elements,
    forward_elements=forward_elements,
    explain=explain,
    skeleton=SKELETON,
    # no assignment has one; written as max-pool's is (NCHW, pool_param), a student's is
    # read, and NCHW answers are named as such (outside test t22 N1)
    cs231n=(
        Form("avg_pool_forward_naive", "avg_pool_backward_naive", {"X": NCHW}, out(NCHW),
             _pool.pool_param("avg_pool_forward_naive"),
             layout="X as (N, C, H, W), pool_param {pool_height, pool_width, stride}"),
    ),  # fmt: skip
)
