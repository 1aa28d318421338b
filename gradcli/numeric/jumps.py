"""A user's float64 output that rounds in float32 on part of its paths: ``tanh(x32) + x``.

Such a forward is not blind to moves float32 cannot hold (its float64 path follows them:
stacking._float32_steps reads it as float64 work), yet its loss jumps by float32's last bits
along any line. Differenced at float64's steps (6e-6) those jumps read as slopes 1e-8 / 6e-6
off, and at the smaller steps of a refinement, below float32's resolution, the float32 branch
stops moving at all and the derivative read leaves it out: a correct backward failed, 0.20
read for 0.31 (outside test t28 R5).

Three lines through the point, every float tensor moved at once (each element up or down), are
read at moves off the step grid (methods.offgrid_noise, what a cubic leaves): at 2^-20 and
2^-22 of each element (several float32 cells a step) a float32 path leaves float32's rounding
whatever the step, where a smooth but curved output leaves 2^8 times less at the second; at
2^-30 of each element (inside its float32 cell, the tensors placed on float32's grid) the same
float32 path does not move, where float64 work that amplifies its own rounding (a layernorm of
1e8 + N(0, 1), whose x - mean keeps 1e-8 of it) jitters at every step as much as at the
others. An output element whose lines say float32 at all three marks the forward as computing
in float32 (checking/mixed.py then gives float64 steps back to the tensors whose paths carry
none of it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradcli.errors import UserCodeError
from gradcli.layers import Layer
from gradcli.numeric.methods import EPS, offgrid_moves, offgrid_noise, steps

MOVES = offgrid_moves((2, 3, 5, 7, 11, 13))  # 6 moves, 1.2 ... 6.3 steps: a cubic keeps 3 free
WIDE, NARROW, INSIDE = 2.0**-20, 2.0**-22, 2.0**-30
# what a cubic leaves of an output along a line, against float64's rounding of it: float64 work
# leaves a few, a float32 path some 2^29 times its share of the output
ABOVE = 2.0**12
EPS32 = float(np.finfo(np.float32).eps)
LARGER = 2.0**10  # float32's rounding of numbers up to this many times the outputs, at most
COLUMNS = 2**16  # output elements read, at most (a random choice of them)
# forward calls: the point on float32's grid and the first line, all a float64 forward takes
# (nothing above its rounding there); the other two lines only where the first says float32
CALLS = 1 + len(MOVES)
MORE_CALLS = 2 * len(MOVES)


def float32_jumps(layer: Layer, t64: Mapping[str, np.ndarray], options: Any) -> bool:
    """Whether some output of ``layer``'s forward at float64 tensors ``t64`` carries float32's
    rounding on a path its float64 work does not hide (module docstring). ``CALLS`` forward
    calls, ``MORE_CALLS`` more where the first line says float32; False where the forward returns no finite float output of one shape throughout."""
    rng = np.random.default_rng(1)
    names = [n for n, a in t64.items() if a.dtype.kind == "f"]
    grid: dict[str, np.ndarray] = {}
    for n in names:
        with np.errstate(all="ignore"):
            grid[n] = t64[n].astype(np.float32).astype(np.float64)
        if not np.all(np.isfinite(grid[n])):  # beyond float32's range (or not finite)
            return 0.0
    if not grid:
        return 0.0
    signs = {n: rng.choice([-1.0, 1.0], size=a.shape) for n, a in grid.items()}
    base = {**t64, **grid}
    y0 = _output(layer, base, options, None)
    if y0 is None:
        return 0.0
    size = y0.size
    cols = np.arange(size) if size <= COLUMNS else rng.choice(size, COLUMNS, replace=False)
    y0 = y0.ravel()[cols]
    t = np.array(MOVES)
    sigma = {}
    for rel in (WIDE, NARROW, INSIDE):
        # inside a float32 cell: steps of each element's own size (a 0 stays); across cells:
        # the default step's rule, relative to max(1, |x|)
        h = {n: (steps(a, rel) if rel != INSIDE else _own(a, rel)) * signs[n]
             for n, a in grid.items()}  # fmt: skip
        D = np.empty((t.size, cols.size))
        for k, tk in enumerate(t):
            y = _output(layer, {**base, **{n: a + tk * h[n] for n, a in grid.items()}},
                        options, size)  # fmt: skip
            if y is None:
                return 0.0
            D[k] = y.ravel()[cols] - y0
        sigma[rel] = offgrid_noise(t, D)
        if rel == WIDE:
            magnitude = np.abs(y0) + np.max(np.abs(D), axis=0)
            # against the largest output's rounding, not each one's own: an output that
            # cancels to 0 (a relu's tied input, 1 - 1) carries the rounding of its terms
            floor = ABOVE * EPS * float(magnitude.max())
            if not np.any(sigma[WIDE] > floor):  # nothing above float64's rounding: done
                return 0.0
    # float32's rounding of numbers the size of the outputs, or up to 2^10 times larger: a
    # residual of their own size is an output varying within float32's resolution of its
    # inputs, in float64 (sin at x = 1e7: a step of 2^-20 is 10 radians)
    most = LARGER * EPS32 * magnitude
    jumps = ((sigma[WIDE] > floor) & (sigma[WIDE] <= most) & (sigma[NARROW] > sigma[WIDE] / 2)
             & (16 * sigma[INSIDE] < sigma[NARROW]))  # fmt: skip
    if not jumps.any():
        return 0.0
    # the rounding it leaves, relative to each output's size (an output near 0 counted at
    # 2^-10 of the largest): float32's eps or less for a float32 path, far more where the
    # inputs are rounded coarser (np.round(x, 5) ** 2: 5e-6)
    share = np.maximum(magnitude, float(magnitude.max()) / 2**10)
    return float(np.max(sigma[WIDE][jumps] / share[jumps]))


def _own(a: np.ndarray, rel: float) -> np.ndarray:
    """Steps of ``rel`` of each element's binade times 1/sqrt(2) (0 for a 0): x + 6.3 h stays
    in x's float32 cell for rel = 2^-30. Not a power of two: on a short binary grid float64's
    products and sums may be exact, and float64 work that rounds at the other lines (where
    its terms cancel) would look smooth here, as float32 work does."""
    with np.errstate(all="ignore"):
        e = np.floor(np.log2(np.abs(a), where=a != 0, out=np.zeros_like(a)))
    return np.where(a != 0, np.exp2(e) * rel * math.sqrt(0.5), 0.0)


def _output(layer: Layer, tensors: Mapping[str, np.ndarray], options: Any,
            size: int | None) -> np.ndarray | None:  # fmt: skip
    """The forward's float64 output at ``tensors``, or None where it is not a finite float
    array (of ``size`` elements, when given) or the forward fails there."""
    try:
        with np.errstate(all="ignore"):
            y = np.asarray(layer.forward(tensors, options)[0])
    except UserCodeError:  # a line's point beyond the forward's domain (exp at 709.7 + 4e-3)
        return None
    if y.dtype.kind != "f" or (size is not None and y.size != size):
        return None
    y = y.astype(np.float64)
    return y if np.all(np.isfinite(y)) else None
