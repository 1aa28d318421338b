"""Kinks: a finite difference across a point where the forward is not differentiable is no
derivative (relu at 0: the central difference reads 0.5 where the slope is 0 or 1, pytorch#114234).

A coordinate whose stencil meets a kink is checked one-sidedly, on a side whose points meet
none, by a second-order one-sided difference (exact on the linear pieces of relu, max-pool and
the hinge). At a kink itself both sides are clean and their slopes differ: the backward may
take any slope between them (torch's relu takes 0 at 0, an x >= 0 mask 1, abs 0), so the point
of that interval nearest the analytical value is the one compared. Nothing here can hide a
wrong gradient away from kinks: every value put in place is an honest finite difference of the
forward (or, at a kink itself, lies between two), and the other coordinates keep theirs.

Who says where the kinks are:
- a built-in layer, through ``Layer.kinks`` (exact, cheap: its input's sign pattern, a window's
  argmax, the hinge's active set), for every coordinate whose stencil meets one;
- for any other layer (``--impl``, ``custom``) a detector, asked only about coordinates that
  fail: each side's one-sided difference at H/2 and H/4; a side is stable when the two agree
  within the tolerance. Both stable and disagreeing: a kink at x (any slope between passes).
  Both stable and agreeing where the central difference did not: the stencil crossed a kink
  nearby. One stable: a kink on the other side. Neither: no verdict, the failure stands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gradcli.numeric import cost, methods, ties
from gradcli.numeric.coloring import color_groups as by_color
from gradcli.numeric.incremental import INCREMENTAL_CHUNK
from gradcli.numeric.methods import METHODS, steps

# its one-sided points per coordinate (two sides, two steps, two points), and the two copies
# that find which outputs a coordinate at a kink moves (numeric/ties.py)
DETECTOR_POINTS = 10
DETECTOR_FLOOR = 64  # failing coordinates it examines whatever the budget (a sample's worth)
HALVINGS = 30  # a built-in's step shrinks at most this often to find a clean side


@dataclass(frozen=True)
class KinkFix:
    """The one-sided values put in place of the stencil's at coordinates meeting a kink."""

    coords: np.ndarray  # flat indices whose stencil met a kink (checked one-sidedly)
    values: np.ndarray  # their one-sided derivatives
    noise_at: np.ndarray  # the round-off of each of those differences
    unchecked: int = 0  # kinks on both sides at every step tried: left to the stencil's value
    unexamined: int = 0  # failing coordinates the detector had no budget for: they still fail
    seconds: float = 0.0  # the detector's predicted cost (what it took of --budget)
    at: ties.AtKink | None = None  # those at a kink itself, for the ties across tensors

    @property
    def noise(self) -> float:
        """The largest of them (raises the tensor's atol like the rest of its round-off)."""
        return float(self.noise_at.max(initial=0.0))


def _moves(engine, name: str, idx: np.ndarray, h: np.ndarray, offsets: tuple[int, ...],
           coloring: bool = True):  # fmt: skip
    """(D, scale): D[k, j] = sum g * (y(x + offsets[k] h_j e_j) - y(x)) for each coordinate j
    of ``idx`` alone, and scale[j] = sum |g * y| over the outputs it moved.

    As cheap as the check itself: through the layer's incremental path where it has one, else
    the coordinates of one color move together in one copy (their footprints are disjoint, so
    each output difference is its owner's alone: exact, kinks or not), else one copy each."""
    if coloring and engine.incremental(name) == "":
        return _incremental_moves(engine, name, idx, h, offsets)
    col = engine.colored(name)[0] if coloring else None
    if col is not None:
        return _colored_moves(engine, name, col, idx, h, offsets)
    x = engine.t64[name].ravel()
    n = len(idx)
    D = np.zeros((len(offsets), n))
    scale = np.zeros(n)
    per = _per_chunk(engine, name, n, offsets)
    for lo in range(0, n, per):
        part = idx[lo : lo + per]
        c = len(part)
        rows = np.repeat(x[None, :], 1 + len(offsets) * c, axis=0)
        for k, s in enumerate(offsets):
            rows[1 + k * c + np.arange(c), part] = x[part] + s * h[lo : lo + c]
        d = engine.moved(name, rows)
        D[:, lo : lo + c] = (d @ engine.g.ravel()).reshape(len(offsets), c)
        moved = (d != 0).reshape(len(offsets), c, -1).any(axis=0)
        scale[lo : lo + c] = (moved * engine.gy[None, :]).sum(axis=1)
    return D, scale


def _per_chunk(engine, name: str, groups: int, offsets: tuple[int, ...]) -> int:
    """Groups per stacked call: the engine's chunk, rescaled to this stencil's rows."""
    rows = len(engine.method.offsets)
    return max(1, engine._chunk(name, groups) * rows // max(1, len(offsets)))


def color_groups(engine, name: str, idx: np.ndarray, col) -> list[np.ndarray]:
    """Positions into ``idx`` grouped by color (one group: one perturbed copy per offset)."""
    return by_color(col.periods, engine.t64[name].shape, idx)


def _colored_moves(engine, name: str, col, idx: np.ndarray, h: np.ndarray,
                   offsets: tuple[int, ...]):  # fmt: skip
    x = engine.t64[name].ravel()
    shape = engine.t64[name].shape
    n, g = len(idx), engine.g.ravel()
    D = np.zeros((len(offsets), n))
    scale = np.zeros(n)
    position = np.full(x.size + 1, -1, dtype=np.int64)  # flat index -> place in idx; [-1]: none
    position[idx] = np.arange(n)
    groups = color_groups(engine, name, idx, col)
    per = _per_chunk(engine, name, len(groups), offsets)
    for lo in range(0, len(groups), per):
        part = groups[lo : lo + per]
        c = len(part)
        rows = np.repeat(x[None, :], 1 + len(offsets) * c, axis=0)
        for k, s in enumerate(offsets):
            for i, where in enumerate(part):
                rows[1 + k * c + i, idx[where]] = x[idx[where]] + s * h[where]
        d = engine.moved(name, rows).reshape(len(offsets), c, -1)
        for i, where in enumerate(part):
            first = np.unravel_index(int(idx[where[0]]), shape)
            residues = tuple(int(t) % p for t, p in zip(first, col.periods, strict=True))
            own = position[col.owner(residues)]  # -1 (no owner) reads position[-1] = -1
            keep = own >= 0
            for k in range(len(offsets)):
                D[k] += np.bincount(own[keep], weights=(d[k, i] * g)[keep], minlength=n)
            moved = (d[:, i] != 0).any(axis=0) * engine.gy
            scale += np.bincount(own[keep], weights=moved[keep], minlength=n)
    return D, scale


def _incremental_moves(engine, name: str, idx: np.ndarray, h: np.ndarray,
                       offsets: tuple[int, ...]):  # fmt: skip
    """The losses through ``Layer.perturbed``: the unmoved point too, through the same path,
    so that both sides of each difference are rounded alike."""
    x = engine.t64[name].ravel()
    D = np.zeros((len(offsets), len(idx)))
    for lo in range(0, len(idx), INCREMENTAL_CHUNK):
        part, hp = idx[lo : lo + INCREMENTAL_CHUNK], h[lo : lo + INCREMENTAL_CHUNK]
        base = engine.layer.perturbed(name, engine.cache, engine.g, part, x[part])
        for k, s in enumerate(offsets):
            at = engine.layer.perturbed(name, engine.cache, engine.g, part, x[part] + s * hp)
            D[k, lo : lo + len(part)] = np.real(np.asarray(at) - base)
    return D, np.full(len(idx), float(engine.gy.sum()))


def one_sided(engine, name: str, idx: np.ndarray, h: np.ndarray, side: int, coloring=True):
    """(slope, noise) on ``side`` (+1 or -1) at each coordinate of ``idx`` alone:
    (4 (L(x + h) - L(x)) - (L(x + 2h) - L(x))) / 2h, mirrored for the left side."""
    D, scale = _moves(engine, name, idx, h, (side, 2 * side), coloring)
    return methods.one_sided(D[0], D[1], h, side), methods.one_sided_noise(scale, h)


def _step(engine, name: str) -> np.ndarray:
    """The one-sided stencils' step: central differences' (the complex step's 1e-20 has no
    real digits to difference)."""
    eps = engine.eps if engine.method.name in ("central", "forward", "backward") else None
    return steps(engine.t64[name].ravel(), eps or METHODS["central"].auto_eps)


def _reach(engine, name: str) -> tuple[np.ndarray, np.ndarray]:
    """How far the method's stencil moves each coordinate to the right and to the left."""
    m, x = engine.method, engine.t64[name].ravel()
    h = steps(x, engine.eps)
    if m.name == "complex":  # x + ih: no real point but x; a kink matters only at x itself
        return np.zeros_like(h), np.zeros_like(h)
    return max(max(m.offsets), 0) * h, min(min(m.offsets), 0) * h


def between(a: np.ndarray, right: np.ndarray, left: np.ndarray) -> np.ndarray:
    """At a kink every slope between the two one-sided ones is a (Clarke) subgradient: torch's
    relu takes 0 at 0, an x >= 0 mask 1, abs takes 0 between -1 and 1. The value compared is
    the point of that interval nearest the analytical one (itself when it lies inside)."""
    return np.clip(a, np.minimum(right, left), np.maximum(right, left))


def met(engine, name: str) -> np.ndarray | None:
    """Flat mask of the coordinates whose stencil, at the engine's step, meets a kink the
    built-in layer declares (None: it declares none for ``name``). Asked by the estimate and
    by the recheck: computed once per engine and step."""
    key = f"{name}@{engine.eps!r}"  # a sweep moves the step of one engine
    if key not in engine.kinks_met:
        engine.kinks_met[key] = _met(engine, name)
    hit = engine.kinks_met[key]
    return None if hit is None else hit.copy()  # the caller's to change


def kink_map(engine):
    """Where the layer's kinks are: its own ``Layer.kinks``, or the built-in's it implements
    (``engine.declared_kinks``, set by the check once the user's forward agreed with it)."""
    return engine.declared_kinks or engine.layer.kinks


def _met(engine, name: str) -> np.ndarray | None:
    kinks_of, x = kink_map(engine), engine.t64.get(name)
    if kinks_of is None or x is None:
        return None
    right, left = _reach(engine, name)
    hit = None
    for step in (np.zeros(x.size), right, left):
        m = kinks_of(name, engine.t64, engine.options, step.reshape(x.shape))
        if m is None:
            return None
        m = np.asarray(m, dtype=bool).ravel()
        hit = m if hit is None else hit | m
    return hit


def declared(
    engine, name: str, analytic: np.ndarray, coords: np.ndarray | None, coloring: bool = True
) -> KinkFix | None:
    """A built-in layer's own kinks for tensor ``name``: every coordinate (of ``coords``, when
    sampled) whose stencil meets one, checked one-sidedly on a clean side."""
    hit = met(engine, name)
    if hit is None:
        return None
    x = engine.t64[name]
    kinks_of = kink_map(engine)

    def meets(step: np.ndarray) -> np.ndarray:
        m = kinks_of(name, engine.t64, engine.options, step.reshape(x.shape))
        return np.asarray(m, dtype=bool).ravel()

    idx = np.flatnonzero(_within(hit, coords))
    if not idx.size:
        return KinkFix(idx, np.zeros(0), np.zeros(0))
    h = _step(engine, name)[idx]
    a = np.asarray(analytic, dtype=np.float64).ravel()[idx]
    values = np.full(idx.size, np.nan)
    noise = np.zeros(idx.size)
    todo = np.ones(idx.size, dtype=bool)
    at = np.zeros(idx.size, dtype=bool)  # at the kink itself: both sides clean
    right, left, hk = (np.zeros(idx.size) for _ in range(3))
    for _ in range(HALVINGS):
        if not todo.any():
            break
        full = np.zeros(x.size)
        full[idx] = 2 * h
        plus = ~meets(full)[idx] & todo
        full[idx] = -2 * h
        minus = ~meets(full)[idx] & todo
        slopes = {}
        for side, clean in ((1, plus), (-1, minus)):
            if clean.any():
                s, nz = one_sided(engine, name, idx[clean], h[clean], side, coloring)
                slopes[side] = np.full(idx.size, np.nan)
                slopes[side][clean] = s
                noise[clean] = np.maximum(noise[clean], nz)
        for side, clean in ((1, plus & ~minus), (-1, minus & ~plus)):
            values[clean] = slopes[side][clean] if clean.any() else values[clean]
        both = plus & minus  # at the kink itself: any slope between the two sides'
        if both.any():
            at |= both
            right[both], left[both], hk[both] = slopes[1][both], slopes[-1][both], h[both]
        todo &= ~(plus | minus)
        h = np.where(todo, h / 2, h)
    record = None
    if at.any():  # each coordinate within its interval, each tie group's sum within its own
        values[at], nz, record = ties.enforce(engine, name, idx[at], hk[at], a[at], right[at],
                                              left[at], coloring)  # fmt: skip
        noise[at] = np.maximum(noise[at], nz)
    return KinkFix(idx[~todo], values[~todo], noise[~todo], int(todo.sum()), at=record)


def _within(hit: np.ndarray, coords: np.ndarray | None) -> np.ndarray:
    if coords is None:
        return hit
    keep = np.zeros(hit.size, dtype=bool)
    keep[np.asarray(coords, dtype=np.int64)] = True
    return hit & keep


def recheck_seconds(
    engine, name: str, coords: np.ndarray | None = None, coloring: bool = True
) -> tuple[float, int]:
    """(predicted seconds, coordinates) of the one-sided rechecks a built-in layer's declared
    kinks will take for ``name`` (counted as cost.py counts the check: never timed). Both
    sides are counted, each two points per coordinate, as at a kink itself."""
    hit = met(engine, name)
    if hit is None:
        return 0.0, 0
    idx = np.flatnonzero(_within(hit, coords))
    return moves_seconds(engine, name, idx, coloring, points=4), int(idx.size)


def moves_seconds(engine, name: str, idx: np.ndarray, coloring: bool, points: int) -> float:
    """Predicted seconds of ``points`` one-sided points at each coordinate of ``idx``, grouped
    as ``_moves`` groups them."""
    if not idx.size:
        return 0.0
    if coloring and engine.incremental(name) == "":
        return cost.incremental_seconds(engine, idx.size * points * 3 // 2, True, name)  # + base
    col = engine.colored(name)[0] if coloring else None
    groups = len(color_groups(engine, name, idx, col)) if col is not None else idx.size
    return cost.copies_seconds(engine, groups * points, real=True)


def detected(
    engine, name: str, analytic: np.ndarray, numeric: np.ndarray, failing: np.ndarray, tol,
    coloring: bool = True, seconds: float = math.inf, any_slope: bool = False,
) -> KinkFix:  # fmt: skip
    """The detector for a layer that declares no kinks, at the ``failing`` flat indices: as
    many of them as ``seconds`` allow (predicted), at least ``DETECTOR_FLOOR``; the others
    keep their failure (``unexamined``). ``any_slope``: at a kink (both sides stable, apart)
    the analytic value stands, whatever it is (a network's end to end, where kinks of several
    layers meet and the layers' local checks decide)."""
    failing = np.asarray(failing, dtype=np.int64)
    idx = failing[: affordable(engine, name, failing, coloring, seconds)]
    unexamined = int(failing.size - idx.size)
    if not idx.size:
        return KinkFix(idx, np.zeros(0), np.zeros(0), unexamined=unexamined)
    spent = moves_seconds(engine, name, idx, coloring, points=DETECTOR_POINTS)
    a = np.asarray(analytic, dtype=np.float64).ravel()[idx]
    n = np.asarray(numeric, dtype=np.float64).ravel()[idx]
    H = _step(engine, name)[idx]
    slope, noise = {}, np.zeros(idx.size)
    for side in (1, -1):
        half, nz = one_sided(engine, name, idx, H / 2, side, coloring)
        quarter, nz4 = one_sided(engine, name, idx, H / 4, side, coloring)
        slope[side] = (half, quarter)
        noise = np.maximum(noise, np.maximum(nz, nz4))
    t = tol(noise, slope[1][1])  # the tensor's tolerance, raised by these stencils' round-off

    def stable(side: int) -> np.ndarray:
        half, quarter = slope[side]
        return np.abs(half - quarter) <= t  # moving beyond the noise as the step halves: not

    right, left = slope[1][1], slope[-1][1]
    sr, sl = stable(1), stable(-1)
    both = sr & sl
    apart = np.abs(right - left) > t
    at_kink = both & apart  # the slopes differ on the two sides: either may be the gradient
    crossed = both & ~apart & (np.abs(n - (right + left) / 2) > t)  # the stencil reached one
    one = sr ^ sl  # a kink within H/2 on the unstable side
    pick = between(a, right, left)
    record = None
    if any_slope:
        pick[at_kink] = a[at_kink]
    elif at_kink.any():  # each tie group's sum within its own interval too
        pick[at_kink], nz, record = ties.enforce(
            engine, name, idx[at_kink], H[at_kink] / 4, a[at_kink], right[at_kink],
            left[at_kink], coloring,
        )  # fmt: skip
        noise[at_kink] = np.maximum(noise[at_kink], nz)
    value = np.where(sr, right, left)
    value = np.where(at_kink, pick, np.where(crossed, (right + left) / 2, value))
    kink = at_kink | crossed | one
    return KinkFix(idx[kink], value[kink], noise[kink], unexamined=unexamined, seconds=spent,
                   at=record)  # fmt: skip


def examine_seconds(engine, name: str, failing: np.ndarray, coloring: bool) -> float:
    """Predicted seconds of examining every one of ``failing``."""
    return moves_seconds(engine, name, failing, coloring, points=DETECTOR_POINTS)


def affordable(engine, name: str, failing: np.ndarray, coloring: bool, seconds: float) -> int:
    """How many of the ``failing`` coordinates the detector examines: all that its predicted
    cost fits in ``seconds``, at least DETECTOR_FLOOR (examined in chunks, like the check)."""
    n = failing.size
    full = examine_seconds(engine, name, failing, coloring)
    if full <= seconds:
        return n
    return int(min(n, max(DETECTOR_FLOOR, n * max(seconds, 0.0) / full)))
