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
# the lines' moves, in the lower precision's eps (2^-23 for float32, 2^-10 for float16): 8 and
# 2 of its cells a step, and 1/128 of one
WIDE, NARROW, FINE, INSIDE = 2.0**3, 2.0**1, 2.0**-1, 2.0**-7
# what a cubic leaves of an output along a line, against float64's rounding of it: float64 work
# leaves a few, a float32 path some 2^29 times its share of the output
ABOVE = 2.0**12
EPS32 = float(np.finfo(np.float32).eps)
LARGER = 2.0**10  # the lower precision's rounding of numbers up to this many times the outputs
MOST = 2.0**-8  # and no more than this share of them (float16's 2^10 eps would be all of them)
COLUMNS = 2**14  # output elements read, at most (a random choice of them): 6 x 2^14 floats a line
# forward calls: the point on float32's grid and the first line, all a float64 forward takes
# (nothing above its rounding there); the other three lines only where the first says float32
CALLS = 1 + len(MOVES)
MORE_CALLS = 3 * len(MOVES)
# float16's: the test of proportion below (the point, and two moves), its lines where it fails
HALF_CALLS = 3
# a float16 path's share of the largest output move, at least, that the test of proportion
# sees (a smooth output's own curvature over 2^-9 of x: about 0.1% at a curvature of 1)
PROPORTION = 0.01
HALF_REACH = 8.0  # the elements a float16 reading moves, |x| at most


def float32_jumps(layer: Layer, t64: Mapping[str, np.ndarray], options: Any,
                  dtype: Any = np.float32, fine: bool = True) -> float:  # fmt: skip
    """The rounding, relative to the outputs, where some output of ``layer``'s forward at
    float64 tensors ``t64`` jumps as ``dtype`` work does on a path its float64 work does not
    hide (module docstring), else 0. ``CALLS`` forward calls, ``MORE_CALLS`` more where the
    first line jumps; 0 where the forward returns no finite float output of one shape
    throughout, or a tensor lies beyond ``dtype``'s range. ``fine``: the jumps must stay at
    half a cell a step too, where curvature has shrunk 2^8 times again (a layernorm of 100 +
    N(0, 1), moved by 0.8 and 0.2 at float16's scale, is far from the rate 2^8 at some
    outputs); not asked where the forward is known to round (stacking's blind test), and only
    the size of its rounding is wanted, which may be coarser than float32's cells."""
    rng = np.random.default_rng(1)
    point = _on_grid(layer, t64, options, dtype, rng)
    if point is None:
        return 0.0
    grid, signs, base, y0 = point
    size = y0.size
    cols = np.arange(size) if size <= COLUMNS else rng.choice(size, COLUMNS, replace=False)
    found = _jumps(layer, options, grid, signs, base, y0, cols, dtype, fine)
    moved = [n for n, v in signs.items() if v.any()]
    if found and len(moved) > 1:
        # and along lines moving one tensor at a time: moving two tensors of a product at once
        # makes each output a parabola in the move, and a relu of it crossed among the moves
        # is no straight piece (a conv of a zero background with b = 0, read as float16 work:
        # its steps became 0.099 and no gradient resolved, outside test t44a F3); a path of the
        # lower precision jumps along its own inputs' lines
        found = max(_jumps(layer, options, grid, {m: v * (m == n) for m, v in signs.items()},
                           base, y0, cols, dtype, fine) for n in moved)  # fmt: skip
    return found


def _jumps(layer: Layer, options: Any, grid: dict, signs: dict, base: dict, y0: np.ndarray,
           cols: np.ndarray, dtype: Any, fine: bool) -> float:  # fmt: skip
    """``float32_jumps`` along lines moving each element of ``grid`` by ``signs``."""
    unit = float(np.finfo(dtype).eps)
    size = y0.size
    point, y0 = y0, y0.ravel()[cols]
    t = np.array(MOVES)
    sigma, beyond, lines, moves = {}, {}, {}, {}
    for rel in (WIDE, NARROW, FINE, INSIDE) if fine else (WIDE, NARROW, INSIDE):
        # inside a cell: steps of each element's own size (a 0 stays); across cells: the
        # default step's rule, relative to max(1, |x|), times 1/sqrt(2): power-of-two moves
        # of an input below 1 land on its float32 grid (x = 1e-6, cells of 1e-13, moved by
        # multiples of 2^-40) and no rounding shows
        h = {n: (steps(a, rel * unit) * math.sqrt(0.5) if rel != INSIDE
                 else _own(a, rel * unit)) * signs[n] for n, a in grid.items()}  # fmt: skip
        moves[rel] = h
        D = np.empty((t.size, cols.size))
        for k, tk in enumerate(t):
            y = _output(layer, {**base, **{n: a + tk * h[n] for n, a in grid.items()}},
                        options, size)  # fmt: skip
            if y is None:
                return 0.0
            D[k] = y.ravel()[cols] - y0
        sigma[rel] = offgrid_noise(t, D)
        beyond[rel] = offgrid_noise(t, D, through_point=False)
        if rel == WIDE:
            magnitude = np.abs(y0) + np.max(np.abs(D), axis=0)
            # against the largest output's rounding, not each one's own: an output that
            # cancels to 0 (a relu's tied input, 1 - 1) carries the rounding of its terms
            floor = ABOVE * EPS * float(magnitude.max())
            # the lower precision's rounding of numbers the size of the outputs, or up to
            # 2^10 times larger: a residual of their own size is an output varying within
            # its resolution of the inputs, in float64 (sin at x = 1e7: 2^-20 is 10 radians)
            most = min(LARGER * unit, MOST) * magnitude
            if not np.any((sigma[WIDE] > floor) & (sigma[WIDE] <= most)):  # nothing: done
                return 0.0
        lines[rel] = D
        if rel == NARROW and not np.any(sigma[NARROW] > sigma[WIDE] / 2):  # curvature: done
            return 0.0
    jumps = ((sigma[WIDE] > floor) & (sigma[WIDE] <= most) & (sigma[NARROW] > sigma[WIDE] / 2)
             & (16 * sigma[INSIDE] < sigma[NARROW]))  # fmt: skip
    if fine:  # fewer cells crossed, as many jumps: half of them at least (kinks crossed
        # shrink faster: a relu network at float16's scale read 0.78 and 0.29 of the last)
        jumps &= sigma[FINE] > sigma[NARROW] / 2
    # and the jumps are between the moves too, not only between the point and the first:
    # these lines move by max(1, |x|), far beyond inputs of 1e-3, where a kink crossed
    # before the first move (a max of 0.0003 beside 0.0001, clip(x, -1e-3, 1e-3) at
    # 1.000001e-3) leaves the moves on one linear piece, offset from the point by the same
    # amount at every scale, as a jump is, and a max read as float16 work passed a gradient
    # routed to the runner-up (outside test t32a F1, F4); a rounding's cells are crossed
    # among the moves as well (at the finest line, 2 or 3 of them; a rounding coarser than
    # the cells, np.round(x, 5), at either line, where its quanta fall among the moves)
    # (at some output: where they all jump only at the point, it is a kink's bend there)
    among = (FINE,) if fine else (WIDE, NARROW)
    # (nor a line on two straight pieces, continuous: a kink crossed among the moves, which a
    # rounding's cells never leave: clip(x, -1e-3, 1e-3) at 0.0003, moved by 4e-4 .. 2e-3,
    # was float16 work, and its right backward did not match: outside test t32a F4)
    if not jumps.any():
        return 0.0
    for rel in among:
        seen = (4 * beyond[rel] > sigma[rel]) & (sigma[rel] > floor)
        if seen.any() and not _one_bend(t, lines[rel][:, seen], floor).all():
            break
    else:
        return 0.0
    # and the jumps are jumps: a continuous output with many kinks (a sort of 200 values a
    # row, whose ranks swap all along the line) is no straight piece either, yet read densely
    # its steps shrink with the spacing, where a rounding's cells jump by their whole size
    # (outside test t45a F2: a right np.sort read as float16 work could not resolve)
    order = np.flatnonzero(jumps)[np.argsort(-sigma[WIDE][jumps], kind="stable")]
    if not _discontinuous(layer, options, grid, base, point, cols[order], moves[NARROW], dtype):
        return 0.0
    # the rounding it leaves, relative to each output's size (an output near 0 counted at
    # 2^-10 of the largest): float32's eps or less for a float32 path, far more where the
    # inputs are rounded coarser (np.round(x, 5) ** 2: 5e-6)
    share = np.maximum(magnitude, float(magnitude.max()) / 2**10)
    return float(np.max(sigma[WIDE][jumps] / share[jumps]))


# (_discontinuous's calls come only where a line jumped, beyond CALLS and MORE_CALLS)
DENSE = 16  # points along a line read for where each output changes most
EXAMINED = 4  # outputs whose largest change is followed down
HALVINGS = 16  # ... by halving the interval that holds it, at least
MOST_HALVINGS = 48
KEPT = 0.5  # a jump keeps this share of its change over two more halvings (a slope: 1/4)


def _discontinuous(layer: Layer, options: Any, grid: dict, base: dict, y0: np.ndarray,
                   cols: np.ndarray, h: dict, dtype: Any) -> bool:  # fmt: skip
    """Whether an output of ``cols`` (the EXAMINED that jump most) jumps along the line ``h``:
    read at DENSE points up to the widest move, its largest change between two of them is
    followed into the half that changes most, HALVINGS times or until no element crosses a
    quarter of its ``dtype`` cell there. A rounding's cell boundary keeps its whole jump
    however short the interval; a continuous output (a sort's ranks swapping, however many
    times, an abs crossing 0 between two points) changes in proportion to it once the
    interval lies within one of its pieces. DENSE + EXAMINED * (HALVINGS to MOST_HALVINGS)
    forward calls; True where the forward fails on the line (no reading against the jumps)."""
    size = y0.size
    base_y = y0.ravel()

    def at(t: float) -> np.ndarray | None:
        y = _output(layer, {**base, **{n: a + t * h[n] for n, a in grid.items()}}, options,
                    size)  # fmt: skip
        return None if y is None else y.ravel()[cols] - base_y[cols]

    t = np.arange(DENSE + 1) * (MOVES[-1] / DENSE)
    # halvings until no element crosses more than a quarter of its cell in the interval (the
    # lower precision's: an input of 1e-6 has cells 1e-13 wide, under moves of 1e-7)
    rate = max((float(np.max(np.abs(h[n])[a != 0] / _cells(a[a != 0], dtype)))
                for n, a in grid.items() if np.any(a != 0)), default=1.0)  # fmt: skip
    halvings = int(np.clip(np.ceil(np.log2(max(t[1] * rate, 1.0))) + 2, HALVINGS, MOST_HALVINGS))
    Y = np.zeros((t.size, cols.size))
    for k in range(1, t.size):
        y = at(float(t[k]))
        if y is None:
            return True
        Y[k] = y
    step = np.abs(np.diff(Y, axis=0))
    for c in np.argsort(-step.max(axis=0), kind="stable")[:EXAMINED]:
        k = int(np.argmax(step[:, c]))
        lo, hi, y_lo, y_hi = float(t[k]), float(t[k + 1]), Y[k, c], Y[k + 1, c]
        change = []
        for _ in range(halvings):
            mid = 0.5 * (lo + hi)
            y = at(mid)
            if y is None:
                return True
            if abs(y[c] - y_lo) >= abs(y_hi - y[c]):
                hi, y_hi = mid, y[c]
            else:
                lo, y_lo = mid, y[c]
            change.append(abs(y_hi - y_lo))
        # two halvings more: a continuous output's change falls to a quarter, a jump's stays
        if change[-1] > 0 and change[-1] > KEPT * change[-3]:
            return True
    return False


def _cells(a: np.ndarray, dtype: Any) -> np.ndarray:
    """The width of each (nonzero) element's cell in ``dtype``, as float64."""
    with np.errstate(all="ignore"):
        return np.spacing(np.abs(a).astype(dtype)).astype(np.float64)


def _one_bend(t: np.ndarray, D: np.ndarray, tol: float) -> np.ndarray:
    """Per column of ``D`` (an output's moves at ``t``, from 0 at the point): whether the
    points, the point included, lie on straight pieces that meet between two of them, to
    ``tol``: one piece, two, or three whose middle one holds 3 points at least (a clip's
    both bounds crossed along a line of 2e-3). A rounding's cells, off the moves' grid, leave
    no such line, and a jump between two flat pieces (np.round(x, 5)) is no meeting."""
    x = np.r_[0.0, t]
    Y = np.vstack([np.zeros((1, D.shape[1])), D])
    pieces = {(a, b): _line(x[a:b], Y[a:b], tol) for a in range(x.size)
              for b in range(a + 1, x.size + 1)}  # fmt: skip
    n = x.size
    out = pieces[0, n][1].copy()
    for i in range(1, n):
        out |= _meets(x, pieces[0, i], pieces[i, n], i, tol)
        for j in range(i + 3, n):  # (a middle piece of 3 points at least)
            out |= (_meets(x, pieces[0, i], pieces[i, j], i, tol)
                    & _meets(x, pieces[i, j], pieces[j, n], j, tol))  # fmt: skip
    return out


def _meets(x: np.ndarray, left: tuple[Any, np.ndarray], right: tuple[Any, np.ndarray],
           at: int, tol: float) -> np.ndarray:  # fmt: skip
    """Per column: both pieces straight, and their lines meeting between x[at - 1] and x[at]
    (a point alone meets any line)."""
    (lc, lok), (rc, rok) = left, right
    ok = lok & rok
    if lc is None or rc is None:
        return ok
    a, b = x[at - 1], x[at]
    lo = lc[0] * a + lc[1] - (rc[0] * a + rc[1])
    hi = lc[0] * b + lc[1] - (rc[0] * b + rc[1])
    return ok & ((lo * hi <= 0) | (np.minimum(np.abs(lo), np.abs(hi)) <= tol))


def _line(x: np.ndarray, Y: np.ndarray, tol: float) -> tuple[Any, np.ndarray]:
    """((slope, intercept) per column, or None for a point alone; whether each column's
    points at ``x`` lie on its line, to ``tol``)."""
    if x.size < 2:
        return None, np.ones(Y.shape[1], dtype=bool)
    A = np.stack([x, np.ones(x.size)], axis=1)
    with np.errstate(all="ignore"):
        coef = np.linalg.lstsq(A, Y, rcond=None)[0]
        return coef, np.all(np.abs(A @ coef - Y) <= tol, axis=0)


def float16_jumps(layer: Layer, t64: Mapping[str, np.ndarray], options: Any) -> float:
    """``float32_jumps`` for float16 paths, read only where a test of proportion says an
    output's move at 2^-9 of each element is not 32 times its move at 2^-14 (inside the
    element's float16 cell: a float16 path does not move there) by PROPORTION of the largest
    move: a float16 branch beside float64 work, ``tanh(x16) + x``, is invisible at float32's
    moves, and a backward dropping it passed (outside test t29a F1). HALF_CALLS forward calls,
    and the lines' where it fails (a curved output too: sin(1e4 x))."""
    point = _on_grid(layer, t64, options, np.float16, np.random.default_rng(2))
    if point is None:
        return 0.0
    grid, signs, base, y0 = point
    moved = []
    for rel in (2.0**-14, 2.0**-9):
        y = _output(layer, {**base, **{n: a + _own(a, rel) * math.sqrt(2) * signs[n]
                                       for n, a in grid.items()}}, options, y0.size)  # fmt: skip
        if y is None:
            return 0.0
        moved.append(y - y0)
    inside, beyond = moved
    # against the largest move, not each output's own: where an output's first-order move
    # cancels, its curvature is all that is left (a layernorm's)
    scale = float(np.abs(beyond).max(initial=0.0))
    if not scale > ABOVE * EPS * float(np.abs(y0).max(initial=0.0)):
        return 0.0
    if not np.any(np.abs(beyond - 32 * inside) > PROPORTION * scale):
        return 0.0
    return float32_jumps(layer, t64, options, np.float16)


def _on_grid(layer: Layer, t64: Mapping[str, np.ndarray], options: Any, dtype: Any,
             rng: np.random.Generator) -> tuple[dict, dict, dict, np.ndarray] | None:  # fmt: skip
    """(the float tensors put on ``dtype``'s grid, each element's direction (_signs), every
    tensor at that point, the forward's output there), or None where a tensor lies beyond
    ``dtype``'s range, nothing would move, or the output is no finite float array."""
    grid: dict[str, np.ndarray] = {}
    for n in [n for n, a in t64.items() if a.dtype.kind == "f"]:
        with np.errstate(all="ignore"):
            grid[n] = t64[n].astype(dtype).astype(np.float64)
        if not np.all(np.isfinite(grid[n])):  # beyond its range (or not finite)
            return None
    signs = {n: _signs(rng, a, dtype) for n, a in grid.items()}
    if not any(v.any() for v in signs.values()):
        return None
    base = {**t64, **grid}
    y0 = _output(layer, base, options, None)
    return None if y0 is None else (grid, signs, base, y0)


def _signs(rng: np.random.Generator, a: np.ndarray, dtype: Any) -> np.ndarray:
    """Each element's direction, up or down; for float16, 0 (not moved) beyond HALF_REACH:
    its cells there are a sixteenth and more wide, as wide as the scale a float64 output
    varies on (a layernorm of 100 + N(0, 1), read as float16 work, passed a forward with
    another variance)."""
    signs = rng.choice([-1.0, 1.0], size=a.shape)
    return signs if dtype != np.float16 else np.where(np.abs(a) <= HALF_REACH, signs, 0.0)


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
