"""Kinks that central differences pass over: a screen of the coordinates that pass.

A custom layer's kink detector (numeric/kinks.py) examines the coordinates that fail. Across a
kink a short distance d from x (relu at x = 1e-12, ``maximum(a, b)`` at a - b = 1e-12, a
max-pool's runner-up 1e-12 below its maximum), the central difference reads the average of the
two pieces' slopes, off by J d / 2h from it (J the jump of the slope): a backward giving the
average (0.5 where ``np.isclose(x, 0)``) matches it to 1e-7 and passes, though the slope at x
is one piece's. What gives such a coordinate away is that its two one-sided differences,
forward (y(x + h) - y(x)) / h and backward (y(x) - y(x - h)) / h, disagree by about J, which
central differences have already evaluated but for the output at x itself. A smooth output's
disagreement is its curvature times the step, and shrinks with it; a kink's does not. So, per
coordinate, over the outputs it moves (each output's own: a max-pool element in windows of
upstream gradients of both signs cancels in the loss),

    delta(t) = sum |g (y(x + t) + y(x - t) - 2 y(x))| / t   (t sum |g y''| where smooth),
    bend = 2 delta(t) - delta(2 t)                          (O(t^3) where smooth; J at a kink),

read from the stencil's own points (t = h and 2h) for central4, free. For central, from its
points (t = h) and two more at +-h/2, for the coordinates whose delta(h) alone stands out:
beyond the tolerance, its round-off, and a thousandth of the central difference (a smooth
output's delta(h) is that share of it only where the output varies on a scale below 1,000
steps). A coordinate whose bend exceeds the tolerance, its round-off and a sixteenth of its
delta is examined by the detector as a failing one is: checked one-sidedly on a side that
crosses no kink where it finds one (an interval at a kink itself, so relu'(0) = 0, 0.5 or 1
still pass), else left to its central difference.
"""

from __future__ import annotations

import math

import numpy as np

from gradcli.numeric import cost
from gradcli.numeric.coloring import color_groups
from gradcli.numeric.methods import steps

# a coordinate's delta(h) against its central difference, |sum g (y(x + h) - y(x - h))| / 2h:
# a smooth output's share is h y'' / y', a kink's the jump against the two slopes' mean
# (relu's 2, abs's infinite). Below it central differences take no second look (a kink whose
# slopes differ by less than a thousandth of their mean hides at most half as much); outputs
# whose moves cancel in the loss only lower the central difference, and pass more to the
# second look
RELATIVE = 1e-3
# the share of delta that must stay as the step halves: the rest is curvature
KEPT = 1.0 / 16
# round-off of each output, in units of its |g y| (as Engine.noise_factor counts it), and the
# weights of each reading's points: y(x + t) + y(x - t) - 2 y(x) carries 4 of them
UNITS = 4.0
CONFIRM_FLOOR = 64  # coordinates confirmed at h/2 whatever the budget (a sample's worth)


def candidates(engine, name: str, bends, passing: np.ndarray, tol: np.ndarray,
               seconds: float = math.inf,
               coloring: bool = True) -> tuple[np.ndarray, np.ndarray, float]:  # fmt: skip
    """(flat indices whose one-sided differences disagree beyond what curvature and round-off
    explain, those the budget left unconfirmed, predicted seconds) among ``passing`` (a
    flat mask), ``tol`` the pass rule's tolerance per element (flat); ``bends`` the engine's
    readings (engine.Bends)."""
    h = steps(engine.t64[name].ravel(), engine.eps)
    unit = UNITS * engine.unit * bends.moved
    first = bends.sums[0] / h  # delta(h)
    if bends.sums.shape[0] > 1:  # central4: delta(2h) from its own points
        bend = 2 * first - bends.sums[1] / (2 * h)
        noise = (2 * 4 + 2) * unit / h
        return (np.flatnonzero(passing & _stands(bend, first, tol, noise)),
                np.zeros(0, dtype=np.int64), 0.0)
    # below a thousandth of the central difference: a smooth output's curvature times the step
    loud = passing & (first > tol + 4 * unit / h) & (bends.sums[0] > RELATIVE * bends.span / 2)
    idx = np.flatnonzero(loud)
    if not idx.size:
        return idx, idx, 0.0
    order = np.argsort(-(bends.sums[0][idx] / np.maximum(bends.span[idx], 1e-300)),
                       kind="stable")  # fmt: skip
    idx = idx[order]
    whole = confirm_seconds(engine, name, idx, coloring)
    take = idx.size if whole <= seconds else int(
        min(idx.size, max(CONFIRM_FLOOR, idx.size * max(seconds, 0.0) / whole)))  # fmt: skip
    idx, unconfirmed = np.sort(idx[:take]), np.sort(idx[take:])
    half = halves(engine, name, idx, h[idx] / 2, coloring) / (h[idx] / 2)  # delta(h/2)
    bend = 2 * half - first[idx]
    noise = (2 * 2 * 4 + 4) * unit[idx] / h[idx]
    kept = _stands(bend, first[idx], tol[idx], noise)
    return idx[kept], unconfirmed, confirm_seconds(engine, name, idx, coloring)


def spread(engine, name: str, bends) -> np.ndarray:
    """delta(h) per coordinate (flat): how far apart its two one-sided differences lie,
    summed over the outputs (a kink's jump of slope; curvature times the step where smooth).
    A failing value farther than half of it from the central difference (their mean) lies
    between no two slopes of the coordinate's sides: no kink at x explains it."""
    return bends.sums[0] / steps(engine.t64[name].ravel(), engine.eps)


def _stands(bend: np.ndarray, delta: np.ndarray, tol: np.ndarray,
            noise: np.ndarray) -> np.ndarray:  # fmt: skip
    """Where the part of the disagreement that does not shrink with the step is a kink's."""
    return (bend > tol + noise) & (bend > KEPT * delta)


def halves(engine, name: str, idx: np.ndarray, t: np.ndarray,
           coloring: bool = True) -> np.ndarray:  # fmt: skip
    """sum over the outputs of |g (y(x + t) + y(x - t) - 2 y(x))| for each coordinate of
    ``idx`` alone (steps ``t``): the coordinates of one color (a verified footprint: disjoint
    outputs) in one copy per side, each output read for its owner, else one copy each."""
    x = engine.t64[name].ravel()
    g = np.abs(engine.g.ravel())
    col = engine.colored(name)[0] if coloring else None
    if col is not None and hasattr(col, "owner"):
        return _colored_halves(engine, name, col, idx, t, g)
    out = np.zeros(idx.size)
    per = max(1, engine._chunk(name, idx.size))
    for start in range(0, idx.size, per):
        part, tp = idx[start : start + per], t[start : start + per]
        c = part.size
        rows = np.repeat(x[None, :], 1 + 2 * c, axis=0)
        rows[1 + np.arange(c), part] = x[part] + tp
        rows[1 + c + np.arange(c), part] = x[part] - tp
        d = engine.moved(name, rows)  # y(row) - y(x)
        out[start : start + c] = np.abs(d[:c] + d[c:]) @ g
    return out


def _colored_halves(engine, name: str, col, idx: np.ndarray, t: np.ndarray,
                    g: np.ndarray) -> np.ndarray:  # fmt: skip
    x, shape = engine.t64[name].ravel(), engine.t64[name].shape
    position = np.full(x.size + 1, -1, dtype=np.int64)  # flat index -> place in idx; [-1]: none
    position[idx] = np.arange(idx.size)
    groups = color_groups(col.periods, shape, idx)
    out = np.zeros(idx.size)
    per = max(1, engine._chunk(name, len(groups)))
    for start in range(0, len(groups), per):
        part = groups[start : start + per]
        c = len(part)
        rows = np.repeat(x[None, :], 1 + 2 * c, axis=0)
        for i, where in enumerate(part):
            rows[1 + i, idx[where]] = x[idx[where]] + t[where]
            rows[1 + c + i, idx[where]] = x[idx[where]] - t[where]
        d = engine.moved(name, rows)
        for i, where in enumerate(part):
            first = np.unravel_index(int(idx[where[0]]), shape)
            residues = tuple(int(r) % p for r, p in zip(first, col.periods, strict=True))
            own = position[col.owner(residues)]  # -1 (no owner) reads position[-1] = -1
            keep = own >= 0
            bent = np.abs(d[i] + d[c + i]) * g
            out += np.bincount(own[keep], weights=bent[keep], minlength=idx.size)
    return out


def confirm_seconds(engine, name: str, idx: np.ndarray, coloring: bool = True) -> float:
    """Predicted seconds of ``halves`` at the coordinates ``idx``."""
    if not idx.size:
        return 0.0
    col = engine.colored(name)[0] if coloring else None
    groups = len(color_groups(col.periods, engine.t64[name].shape, idx)) \
        if col is not None and hasattr(col, "owner") else idx.size
    return cost.copies_seconds(engine, 2 * groups, real=True)
