"""What maxpool2d and avgpool2d share: the window geometry (conv2d's, from _conv), the options,
shapes and footprints, and the window loop.

Channel-last: X (..., H, W, C), Z (..., Ho, Wo, C) with Ho = floor((H + 2p - k) / s) + 1 (likewise
Wo); each channel is pooled on its own. Window (i, j) reads the padded positions
(i*s_h + m, j*s_w + n) for m < k_h, n < k_w: tap t = m * k_w + n.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from gradcli.errors import OptionError, ShapeError
from gradcli.layers import _conv
from gradcli.layers.base import Footprint, Shapes, TensorInfo, batch_maps, option, same
from gradcli.layers.cs231n import one, refuse
from gradcli.records import record


@record
class Options:
    size: int | list[int] = option(2, "window: int >= 1 or [k_h, k_w]")
    stride: int | list[int] | None = option(
        None, "step between windows: int >= 1 or [s_h, s_w]; omitted: the window's size"
    )
    padding: int | list[int] = option(
        0, "added on each side: int >= 0 or [p_h, p_w], at most half the window (as in torch)"
    )

    def __post_init__(self) -> None:
        size = _conv.ints("size", self.size, 2, 1)
        if self.stride is not None:
            _conv.ints("stride", self.stride, 2, 1)
        for p, k in zip(_conv.ints("padding", self.padding, 2, 0), size, strict=True):
            if p > k // 2:
                raise OptionError(
                    f"padding {p} is more than half the window {k} (at most {k // 2}): a window "
                    "would hold padding only",
                    key="options.padding",
                )


def geometry(X: tuple[int, ...], options: Any) -> list[_conv.Axis]:
    size = _conv.ints("size", options.size, 2, 1)
    stride = size if options.stride is None else _conv.ints("stride", options.stride, 2, 1)
    pad = _conv.ints("padding", options.padding, 2, 0)
    return [
        _conv.Axis(n, k, s, 1, p, p)
        for n, k, s, p in zip(X[-3:-1], size, stride, pad, strict=True)
    ]


def taps(geo: list[_conv.Axis]) -> Iterator[tuple[int, tuple[slice, ...]]]:
    """Per tap t (row-major in the window), the slice of the padded input it reads: one
    (Ho, Wo) grid of positions per channel."""
    gh, gw = geo
    for m in range(gh.k):
        for n in range(gw.k):
            rows = slice(m, m + gh.s * (gh.out - 1) + 1, gh.s)
            cols = slice(n, n + gw.s * (gw.out - 1) + 1, gw.s)
            yield m * gw.k + n, (Ellipsis, rows, cols, slice(None))


def unpad(dXp: np.ndarray, geo: list[_conv.Axis]) -> np.ndarray:
    gh, gw = geo
    return dXp[..., gh.lo : gh.lo + gh.n, gw.lo : gw.lo + gw.n, :]


def members(X: tuple[int, ...], options: Any) -> np.ndarray:
    """Each output's window as flat indices into X (..., H, W, C): (outputs, k_h k_w) in the
    output's row-major order, taps in the window's, -1 for padding."""
    geo = geometry(X, options)
    ids = _conv.pad(np.arange(math.prod(X)).reshape(X), geo, -1)
    return np.stack([ids[window] for _, window in taps(geo)], axis=-1).reshape(
        -1, geo[0].k * geo[1].k
    )


def output_shape(layer: str, s: Shapes, options: Any) -> tuple[int, ...]:
    X = s["X"]
    if len(X) < 3:
        raise ShapeError(
            f"{layer}: X must be (..., H, W, C) with at least 3 axes, got shape {list(X)}",
            key="X",
        )
    for g, name in zip(geometry(X, options), ("height", "width"), strict=True):
        if g.out < 1:
            raise ShapeError(
                f"{layer}: output {name} = floor((n + 2p - k) / s) + 1 = floor(({g.n} + "
                f"{g.lo + g.hi} - {g.k}) / {g.s}) + 1 = {g.out} must be >= 1: the window "
                "(options.size) does not fit in the padded input",
                key="X",
            )
    return _conv.output_shape(X, geometry(X, options), X[-1])


def working(s: Shapes, options: Any) -> int:
    """The padded input (forward) and its gradient (backward), and a few output-sized arrays:
    the running max or sum, the argmax, the comparison and each tap's masked share."""
    X = s["X"]
    geo = geometry(X, options)
    batch = math.prod(X[:-3]) * X[-1]
    padded = batch * math.prod(g.n + g.lo + g.hi for g in geo)
    return 2 * padded + 5 * batch * math.prod(g.out for g in geo)


def touched(s: Shapes, options: Any, per_tap: int) -> int:
    """Elements one forward pass touches (Layer.forward_elements): the input, its padded copy
    and, for each tap, ``per_tap`` elements per output (the window loop's passes over strided
    output-sized grids): a 3x3 window at stride 1 costs nine passes over the whole output,
    where the arrays alone (input, output) count two."""
    X = s["X"]
    geo = geometry(X, options)
    batch = math.prod(X[:-3]) * X[-1]
    padded = batch * math.prod(g.n + g.lo + g.hi for g in geo) if any(g.lo for g in geo) else 0
    taps = math.prod(g.k for g in geo)
    return math.prod(X) + padded + batch * math.prod(g.out for g in geo) * (1 + per_tap * taps)


def footprint(name: str, s: Shapes, options: Any) -> Footprint:
    """X[..., i, j, c] moves the outputs whose windows hold it, in channel c of its example."""
    X = s["X"]
    batch, nb = X[:-3], len(X) - 3
    gh, gw = geometry(X, options)
    return (*batch_maps(batch), _conv.window(nb, gh), _conv.window(nb + 1, gw), same(nb + 2, X[-1]))


TENSORS = (TensorInfo("X", ("H", "W", "C"), ("i", "j", "c"), "input", "input image, channel-last"),)


def words(v: Any, op: str, back: list[str], why: str, per: str = "") -> Any:
    """The explain formulas of a pooling: the window, its geometry and the input gradient."""
    from gradcli.layers.words import Formulas, shape

    gh, gw = geometry(v.shapes["X"], v.options)
    pads = gh.lo or gw.lo
    xp = "Xp" if pads else "X"
    fwd = [f"Z[i,j,c] = {op}_{{m<{gh.k}, n<{gw.k}}} {xp}[i*{gh.s}+m, j*{gw.s}+n, c]{per}"]
    if pads:
        pad = "-∞ (never the maximum)" if op == "max" else "zeros"
        fwd.append(f"Xp: X padded with {pad}, {gh.lo} rows and {gw.lo} columns on each side")
    extra = [
        f"Ho = floor((H + 2p - k) / s) + 1 = floor(({gh.n} + {2 * gh.lo} - {gh.k}) / {gh.s}) + 1 "
        f"= {gh.out},   Wo = {gw.out}"
    ]
    grads = {"X": ([f"∂L/∂X {shape(v.shapes['X'])}: " + back[0], *back[1:]], why)}
    return Formulas(fwd, grads, ("Ho", "Wo", "C"), extra)


def pool_param(fn: str) -> Any:
    """CS231n's pool_param for their function ``fn``: the window and one stride, no padding
    (an options -> (pool_param,) for cs231n.Form)."""
    def params(options: Any, s: Shapes) -> tuple[dict[str, int]]:
        geo = geometry(s["X"], options or Options())
        if any(g.lo for g in geo):
            refuse("padding", options.padding, fn, "has no padding")
        stride = one("stride", tuple(g.s for g in geo), fn, "stride")
        return ({"pool_height": geo[0].k, "pool_width": geo[1].k, "stride": stride},)

    return params
