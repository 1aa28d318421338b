"""Kinks: a finite difference across a point where the forward is not differentiable is no
derivative (relu at 0: the central difference reads 0.5 where the slope is 0 or 1, pytorch#114234).

A coordinate whose stencil meets a kink is checked one-sidedly, on a side whose points meet
none, by a second-order one-sided difference (exact on the linear pieces of relu, max-pool and
the hinge). At a kink itself both sides are clean and their slopes differ: the backward may
take any slope between them (torch's relu takes 0 at 0, an x >= 0 mask 1, abs 0), so the point
of that interval nearest the analytical value is the one compared. Nothing here can hide a
wrong gradient away from kinks: every value put in place is an honest finite difference of the
forward (or, at a kink itself, lies between two), and the other coordinates keep theirs.

A near-tie (values equal in exact arithmetic, apart by round-off: a kink 1 ulp ... 1e-10 away)
has no usable clean side: every halving crosses it, or the step that clears it reads mostly
round-off. It is read like a tie itself (``gapped``): at a step s with no kink between s and
2s, each side's slope between x + s and x + 2s, beyond the near kinks, output by output.

Who says where the kinks are:
- a built-in layer, through ``Layer.kinks`` (exact, cheap: its input's sign pattern, a window's
  argmax, the hinge's active set), for every coordinate whose stencil meets one;
- for any other layer (``--impl``, ``custom``) a detector, asked only about coordinates that
  still fail once smaller steps have ruled out truncation (numeric/refine.py): each side's
  one-sided difference at H/2 and H/4; a side is stable when the two agree within the
  tolerance. Both stable and apart by a gap that does not shrink with the step (the loss's, or
  output by output): a kink at x (any slope between passes). One stable, the other changing
  unlike it: a kink on the other side. Otherwise (curvature moves both sides alike) no
  verdict: the failure stands.
"""

from __future__ import annotations

import math
from dataclasses import field

import numpy as np

from gradcli.errors import UserCodeError
from gradcli.numeric import cost, methods, routes, ties
from gradcli.numeric.coloring import color_groups as by_color
from gradcli.numeric.incremental import INCREMENTAL_CHUNK
from gradcli.numeric.methods import METHODS, steps
from gradcli.records import record

# its one-sided points per coordinate (two sides, two steps, two points), and the two copies
# that find which outputs a coordinate at a kink moves (numeric/ties.py)
DETECTOR_POINTS = 10
DETECTOR_FLOOR = 64  # failing coordinates it examines whatever the budget (a sample's worth)
HALVINGS = 30  # a built-in's step shrinks at most this often to find a clean side
NEAR_ULPS = 2**20  # a side read beyond this many of x's last bits from x: no near-tie
SMALLEST_ULPS = 2.0**10  # nor below this many of x's last bits (x + h keeps 10 bits of h)
NEAR_HALVINGS = 10  # a tie's runner-up clean only this many halvings down: a near-tie
JUMP_SHRINK = 2.0**16  # a jump is read again this much closer to x (no continuous rise is)


@record
class KinkFix:
    """The one-sided values put in place of the stencil's at coordinates meeting a kink."""

    coords: np.ndarray  # flat indices whose stencil met a kink (checked one-sidedly)
    values: np.ndarray  # their one-sided derivatives
    noise_at: np.ndarray  # the round-off of each of those differences
    unchecked: int = 0  # kinks on both sides at every step tried: left to the stencil's value
    # at ties too large for every order, nothing the pieces read contradicts: their own value
    # (numeric/crowds.py)
    unverified: int = 0
    unexamined: int = 0  # failing coordinates the detector had no budget for: they still fail
    # their flat indices (the tail of the order it was given)
    left: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sampled: bool = False  # ``left`` left out of the comparison, as a sample's (else failing)
    seconds: float = 0.0  # the detector's predicted cost (what it took of --budget)
    at: ties.AtKink | None = None  # those at a kink itself, for the ties across tensors
    unplanned: float = 0.0  # predicted seconds of near-ties the estimate could not foresee
    # flat indices at a kink itself whose value, off the one-sided slopes, is the chained
    # backward's (``detected``'s ``chained``): kept as given
    chained: tuple[int, ...] = ()
    # (flat index, the loss's jump, the smallest move that read it) where the forward is not
    # continuous: a side whose change stays as its step halves (a floor at an integer), for a
    # hint (``detected``)
    jumps: tuple[tuple[int, float, float], ...] = ()

    @property
    def slopes(self) -> float:
        """The largest one-sided slope read at a kink itself (what the step resolved)."""
        if self.at is None or not self.at.coords.size:
            return 0.0
        return float(np.nanmax(np.abs(np.r_[self.at.lo, self.at.hi]), initial=0.0))

    @property
    def noise(self) -> float:
        """The largest of them (raises the tensor's atol like the rest of its round-off)."""
        return float(self.noise_at.max(initial=0.0))


def moves(engine, name: str, idx: np.ndarray, h: np.ndarray, offsets: tuple[int, ...],
          coloring: bool = True, hull: bool = False, past=False):  # fmt: skip
    """(D, scale): D[k, j] = sum g * (y(x + offsets[k] h_j e_j) - y(x)) for each coordinate j
    of ``idx`` alone, and scale[j] = sum |g * y| over the outputs it moved. ``hull`` (offsets
    ``BOTH_SIDES``): also (lo, hi), the sums over the outputs j moves of the smaller and the
    larger of each output's two one-sided slopes (``_output_hull``; ``past``: the slopes
    beyond kinks within h, ``methods.beyond``, for all or per coordinate).

    As cheap as the check itself: through the layer's incremental path where it has one, else
    the coordinates of one color move together in one copy (their footprints are disjoint, so
    each output difference is its owner's alone: exact, kinks or not), else one copy each."""
    if coloring and engine.incremental(name) == "":
        D, scale = _incremental_moves(engine, name, idx, h, offsets)
        return (D, scale, *_loss_hull(D, h, past)) if hull else (D, scale)
    col = engine.colored(name)[0] if coloring else None
    if col is not None:
        return _colored_moves(engine, name, col, idx, h, offsets, hull, past)
    x = engine.t64[name].ravel()
    n = len(idx)
    D = np.zeros((len(offsets), n))
    scale = np.zeros(n)
    lo, hi = np.zeros(n), np.zeros(n)
    per = _per_chunk(engine, name, n, offsets)
    for start in range(0, n, per):
        part = idx[start : start + per]
        c = len(part)
        rows = np.repeat(x[None, :], 1 + len(offsets) * c, axis=0)
        for k, s in enumerate(offsets):
            rows[1 + k * c + np.arange(c), part] = x[part] + s * h[start : start + c]
        d = engine.moved(name, rows)
        D[:, start : start + c] = (d @ engine.g.ravel()).reshape(len(offsets), c)
        moved = (d != 0).reshape(len(offsets), c, -1).any(axis=0)
        scale[start : start + c] = (moved * engine.gy[None, :]).sum(axis=1)
        if hull:
            d = d.reshape(len(offsets), c, -1)
            low, high = _output_hull(d * engine.g.ravel(), h[start : start + c, None],
                                     _per(past, start, c))  # fmt: skip
            lo[start : start + c], hi[start : start + c] = low.sum(axis=1), high.sum(axis=1)
    return (D, scale, *_covering(D, h, lo, hi, past)) if hull else (D, scale)


# the four points of both sides' second-order one-sided differences, as moves takes them
BOTH_SIDES = (1, 2, -1, -2)


def _output_hull(c: np.ndarray, h, past=False):
    """Per output: the smaller and the larger of its two one-sided slopes, from ``c`` (4, ...)
    = g * (output moved by BOTH_SIDES' steps minus output)."""
    right = methods.side_slope(c[0], c[1], h, 1, past)
    left = methods.side_slope(c[2], c[3], h, -1, past)
    return np.minimum(right, left), np.maximum(right, left)


def _loss_hull(D: np.ndarray, h: np.ndarray, past=False):
    """One output (a loss): the interval between the loss's two one-sided slopes."""
    return _output_hull(D, h, past)


def _covering(D: np.ndarray, h: np.ndarray, lo: np.ndarray, hi: np.ndarray, past=False):
    """(lo, hi) widened to the loss's own two slopes: the same interval up to the order of the
    sums' round-off (the sum of the outputs' smaller slopes is at most the loss's smaller)."""
    low, high = _loss_hull(D, h, past)
    return np.minimum(lo, low), np.maximum(hi, high)


def _per(past, start: int, count: int):
    """``past`` for coordinates start ... start + count (a bool stands for all), as a column
    against the outputs of each."""
    return past if np.ndim(past) == 0 else np.asarray(past)[start : start + count, None]


def _per_chunk(engine, name: str, groups: int, offsets: tuple[int, ...]) -> int:
    """Groups per stacked call: the engine's chunk, rescaled to this stencil's rows."""
    rows = len(engine.method.offsets)
    return max(1, engine._chunk(name, groups) * rows // max(1, len(offsets)))


def color_groups(engine, name: str, idx: np.ndarray, col) -> list[np.ndarray]:
    """Positions into ``idx`` grouped by color (one group: one perturbed copy per offset)."""
    return by_color(col.periods, engine.t64[name].shape, idx)


def _colored_moves(engine, name: str, col, idx: np.ndarray, h: np.ndarray,
                   offsets: tuple[int, ...], hull: bool = False, past=False):  # fmt: skip
    x = engine.t64[name].ravel()
    shape = engine.t64[name].shape
    n, g = len(idx), engine.g.ravel()
    D = np.zeros((len(offsets), n))
    scale = np.zeros(n)
    lo, hi = np.zeros(n), np.zeros(n)
    position = np.full(x.size + 1, -1, dtype=np.int64)  # flat index -> place in idx; [-1]: none
    position[idx] = np.arange(n)
    groups = color_groups(engine, name, idx, col)
    per = _per_chunk(engine, name, len(groups), offsets)
    for start in range(0, len(groups), per):
        part = groups[start : start + per]
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
            if hull:  # each output's slopes with its owner's step
                mine = own[keep]
                low, high = _output_hull(d[:, i, keep] * g[keep], h[mine],
                                         past if np.ndim(past) == 0 else np.asarray(past)[mine])
                lo += np.bincount(own[keep], weights=low, minlength=n)
                hi += np.bincount(own[keep], weights=high, minlength=n)
    return (D, scale, *_covering(D, h, lo, hi, past)) if hull else (D, scale)


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
    D, scale = moves(engine, name, idx, h, (side, 2 * side), coloring)
    return methods.one_sided(D[0], D[1], h, side), methods.one_sided_noise(scale, h, engine.unit)


def both_sides(engine, name: str, idx: np.ndarray, h: np.ndarray, coloring=True, past=False):
    """(right, left, lo, hi, noise) at each coordinate of ``idx`` alone, in the four copies
    of the two sides' ``one_sided``: the loss's slopes on each side, and the interval of the
    slopes the backward may take at a kink, output by output. Each output's piece may be
    either side's, whatever the others take: a coordinate in two overlapping max-pool windows
    of upstream gradients +1 and -1, tied in both, moves the loss by 0 (right: both windows
    rise) or 0 (left: neither), while torch's first-element rule gives it one window's +1 or
    -1; its interval is [-1, 1], the loss's [0, 0]. With one output per coordinate (relu, a
    loss's terms) they are the same interval. ``past``: each side's slope beyond the kinks
    within h (a near-tie's: ``methods.beyond``)."""
    D, scale, lo, hi = moves(engine, name, idx, h, BOTH_SIDES, coloring, hull=True, past=past)
    right = methods.side_slope(D[0], D[1], h, 1, past)
    left = methods.side_slope(D[2], D[3], h, -1, past)
    return right, left, lo, hi, methods.one_sided_noise(scale, h)


def one_sided_step(engine, name: str) -> np.ndarray:
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


def _met(engine, name: str) -> np.ndarray | None:
    kinks_of, x = engine.kink_map(), engine.t64.get(name)
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


def _meets(engine, name: str):
    """The layer's kink map for ``name`` as flat masks: meets(step, start=None)."""
    kinks_of, x = engine.kink_map(), engine.t64[name]

    def meets(step: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        begin = None if start is None else start.reshape(x.shape)
        m = kinks_of(name, engine.t64, engine.options, step.reshape(x.shape), begin)
        return np.asarray(m, dtype=bool).ravel()

    return meets


def tries(engine, name: str, idx: np.ndarray):
    """Each try of the halving, map only (``declared`` runs it, numeric/kinkplan.py counts
    it): (h, right, left, both), the step of each coordinate of ``idx`` and masks of those
    it settles on the right side alone, the left alone, both sides (at a kink itself). The
    step halves at most HALVINGS times and never below SMALLEST_ULPS of x's spacing: a
    smaller one keeps too few digits of x + h (at a step below half of it x + h is x, and
    its difference reads 0, a slope of no side)."""
    meets, size = _meets(engine, name), engine.t64[name].size
    h = one_sided_step(engine, name)[idx]
    floor = SMALLEST_ULPS * np.spacing(np.abs(engine.t64[name].ravel()[idx]))
    todo = np.ones(idx.size, dtype=bool)
    # at a kink itself (a tie) and near another on one side (a window's runner-up within the
    # step: only overlapping windows hold both): the clean side alone is one end of its
    # interval, so the step halves until both sides are clean (the last try takes one side,
    # which ``declared`` reads as a near-tie where it can: ``lone``)
    itself = at_itself(engine, name, idx)
    for attempt in range(HALVINGS):
        if not todo.any():
            return
        full = np.zeros(size)
        full[idx] = 2 * h
        plus = ~meets(full)[idx] & todo
        full[idx] = -2 * h
        minus = ~meets(full)[idx] & todo
        last = (h / 2 < floor) | (attempt == HALVINGS - 1)
        single = itself & (plus ^ minus) & ~last
        plus, minus = plus & ~single, minus & ~single
        yield h.copy(), plus & ~minus, minus & ~plus, plus & minus
        todo &= ~(plus | minus) & ~last  # a coordinate past its last try is left
        h = np.where(todo, h / 2, h)


def at_itself(engine, name: str, idx: np.ndarray) -> np.ndarray:
    """Which coordinates of ``idx`` sit at a kink (a tie itself), map only."""
    return _meets(engine, name)(np.zeros(engine.t64[name].size))[idx]


def lone(engine, name: str, idx: np.ndarray, todo: np.ndarray, at: np.ndarray,
         hk: np.ndarray) -> np.ndarray:  # fmt: skip
    """Of ``idx`` once the halving is done: those it left (``todo``), those at a kink itself
    it read on one side only (the last try's), one end of their interval, and those at a kink
    itself whose two sides were clean only at a step ``hk`` NEAR_HALVINGS below the default
    (a runner-up that close is a near-tie: moved with the coordinates it is tied with, that
    step's round-off, as large as their outputs, swamped the tie's sum): read as near-ties
    where they can be (``gapped``)."""
    h0 = one_sided_step(engine, name)[idx]
    return todo | (at_itself(engine, name, idx) & ~at) | (at & (hk < h0 / 2**NEAR_HALVINGS))


def gapped(engine, name: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(step, found) for coordinates of ``idx`` no clean side can check (a near-tie: kinks
    closer than any step whose round-off the tolerance allows): the largest step s of the
    halving with no kink in (s, 2s] on either side, map only. Beyond the kinks within s, each
    side's points x + s and x + 2s lie on one linear piece (``methods.beyond``): the pieces
    meeting at the near-tie, as at a tie."""
    meets, size = _meets(engine, name), engine.t64[name].size
    s = one_sided_step(engine, name)[idx]
    floor = SMALLEST_ULPS * np.spacing(np.abs(engine.t64[name].ravel()[idx]))
    found = np.zeros(idx.size, dtype=bool)
    for _ in range(HALVINGS):
        if (found | (s < floor)).all():
            break
        step, start = np.zeros(size), np.zeros(size)
        ok = ~found
        for side in (1, -1):
            step[idx], start[idx] = 2 * side * s, side * s
            ok &= ~meets(step, start)[idx]
        found |= ok & (s >= floor)
        s = np.where(found, s, s / 2)
    return s, found


def declared(
    engine, name: str, analytic: np.ndarray, coords: np.ndarray | None, coloring: bool = True,
    seconds: float = math.inf, tol=None,
) -> KinkFix | None:  # fmt: skip
    """A built-in layer's own kinks for tensor ``name``: every coordinate (of ``coords``, when
    sampled) whose stencil meets one, checked one-sidedly on a clean side. ``seconds``: what
    is left of the budget for telling a loss's ties apart (the rest is in the estimate:
    numeric/kinkplan.py). ``tol(noise, ref)``: the tensor's pass rule; a clean side whose
    step is so small that its round-off takes more than an eighth of it (a near-tie: values
    equal in exact arithmetic, apart by round-off) is read as a tie instead (``gapped``)."""
    hit = met(engine, name)
    if hit is None:
        return None
    idx = np.flatnonzero(_within(hit, coords))
    if not idx.size:
        return KinkFix(idx, np.zeros(0), np.zeros(0))
    a = np.asarray(analytic, dtype=np.float64).ravel()[idx]
    values = np.full(idx.size, np.nan)
    noise = np.zeros(idx.size)
    todo = np.ones(idx.size, dtype=bool)
    at = np.zeros(idx.size, dtype=bool)  # at the kink itself: both sides clean
    lo, hi, hk = (np.zeros(idx.size) for _ in range(3))  # hk: the step each was read at
    sr, sl = np.full(idx.size, np.nan), np.full(idx.size, np.nan)  # the loss's own two slopes
    for h, right, left, both in tries(engine, name, idx):
        for side, clean in ((1, right), (-1, left)):
            if clean.any():
                values[clean], noise[clean] = one_sided(engine, name, idx[clean], h[clean],
                                                        side, coloring)  # fmt: skip
                hk[clean] = h[clean]
        if both.any():  # at the kink itself: any slope between the two sides', per output
            at |= both
            sr[both], sl[both], lo[both], hi[both], noise[both] = both_sides(
                engine, name, idx[both], h[both], coloring)  # fmt: skip
            hk[both] = h[both]
        todo &= ~(right | left | both)
    past, unplanned = _near_ties(engine, name, idx, tol, coloring, todo, at, values, noise,
                                 lo, hi, hk, a)  # fmt: skip
    record = None
    if at.any():  # each coordinate within its interval, each tie group's sum within its own
        # enforce takes an interval's two ends in either order: lo and hi are one
        values[at], nz, record = ties.enforce(engine, name, idx[at], hk[at], a[at], lo[at],
                                              hi[at], coloring, seconds, past[at],
                                              not routes.routed(engine, name),
                                              planned=True, sides=(sr[at], sl[at]))  # fmt: skip
        noise[at] = np.maximum(noise[at], nz)
    return KinkFix(idx[~todo], values[~todo], noise[~todo], int(todo.sum()), at=record,
                   unplanned=unplanned)  # fmt: skip


def _near_ties(engine, name: str, idx: np.ndarray, tol, coloring: bool, todo: np.ndarray,
               at: np.ndarray, values: np.ndarray, noise: np.ndarray, lo: np.ndarray,
               hi: np.ndarray, hk: np.ndarray,
               a: np.ndarray) -> tuple[np.ndarray, float]:  # fmt: skip
    """The coordinates left unchecked by the halving (``lone``), or read by it at a halved
    step whose round-off takes more than an eighth of the tolerance (the default step's is
    the check's own), read as ties at the ``gapped`` step where there is one (``at``, ``lo``,
    ``hi``, ``hk`` updated in place): (past, unplanned), which are read beyond their near
    kinks, and the predicted seconds of those the estimate could not foresee (the round-off
    is known only once read)."""
    past = np.zeros(idx.size, dtype=bool)
    ref = np.where(at, np.maximum(np.abs(lo), np.abs(hi)), np.abs(values))
    noisy = np.zeros(idx.size, dtype=bool)
    if tol is not None:
        halved = ~todo & (hk < one_sided_step(engine, name)[idx])
        noisy = halved & (noise > tol(np.zeros(idx.size), ref) / 8)
        # a clean side that tells the gradient under test wrong by far more than its round-off
        # is a finding, not a near-tie: an svm margin 1e-6 away, read at central4's tolerance,
        # became a tie whose interval admitted a mask that ignored the margin (a side read
        # that far from its kink is no round-off apart from it)
        far = hk >= NEAR_ULPS * np.spacing(np.abs(engine.t64[name].ravel()[idx]))
        noisy &= at | ~far | (np.abs(a - values) <= 4 * noise + tol(noise, ref))
    planned = lone(engine, name, idx, todo, at, hk)  # the estimate's (numeric/kinkplan.py)
    retry = np.flatnonzero(planned | noisy)
    if not retry.size:
        return past, 0.0
    s, found = gapped(engine, name, idx[retry])
    rows, s = retry[found], s[found]
    if not rows.size:
        return past, 0.0
    _, _, lo[rows], hi[rows], noise[rows] = both_sides(engine, name, idx[rows], s, coloring,
                                                       past=True)  # fmt: skip
    hk[rows], at[rows], past[rows], todo[rows] = s, True, True, False
    unforeseen = rows[~planned[rows]]
    return past, moves_seconds(engine, name, idx[unforeseen], coloring, len(BOTH_SIDES))


def _within(hit: np.ndarray, coords: np.ndarray | None) -> np.ndarray:
    if coords is None:
        return hit
    keep = np.zeros(hit.size, dtype=bool)
    keep[np.asarray(coords, dtype=np.int64)] = True
    return hit & keep


def moves_seconds(engine, name: str, idx: np.ndarray, coloring: bool, points: int) -> float:
    """Predicted seconds of ``points`` one-sided points at each coordinate of ``idx``, grouped
    as ``moves`` groups them."""
    if not idx.size:
        return 0.0
    if coloring and engine.incremental(name) == "":
        return cost.incremental_seconds(engine, idx.size * points * 3 // 2, True, name)  # + base
    col = engine.colored(name)[0] if coloring else None
    groups = len(color_groups(engine, name, idx, col)) if col is not None else idx.size
    return cost.copies_seconds(engine, groups * points, real=True)


READ_ALONE = 64  # failing coordinates read one by one where some leave the forward's domain


def _reads(engine, name: str, k: int, h: float, coloring: bool) -> bool:
    """Whether coordinate ``k``'s one-sided reads stay in the forward's domain."""
    try:
        _read(engine, name, np.array([k], dtype=np.int64), np.array([h]), coloring)
    except UserCodeError:
        return False
    return True


def detected(
    engine, name: str, analytic: np.ndarray, numeric: np.ndarray, failing: np.ndarray, tol,
    coloring: bool = True, seconds: float = math.inf, any_slope: bool = False,
    chained: np.ndarray | None = None,
) -> KinkFix:  # fmt: skip
    """The detector for a layer that declares no kinks, at the ``failing`` flat indices: as
    many of them as ``seconds`` allow (predicted), at least ``DETECTOR_FLOOR``, in the order
    given; the others (``left``) keep their failure (``unexamined``). ``any_slope``: at a
    kink (both sides stable, apart) the analytic value stands, whatever it is (a network's
    end to end, where kinks of several layers meet and the layers' local checks decide).
    ``chained``: the chained backward of a network of built-in layers (the user's answers are
    checked): at a kink, an analytic value equal to it stands, and only the others are held
    to the slopes and their ties."""
    failing = np.asarray(failing, dtype=np.int64)
    k = affordable(engine, name, failing, coloring, seconds)
    idx, rest = np.sort(failing[:k]), failing[k:]
    unexamined = int(rest.size)
    if not idx.size:
        return KinkFix(idx, np.zeros(0), np.zeros(0), unexamined=unexamined, left=rest)
    spent = moves_seconds(engine, name, idx, coloring, points=DETECTOR_POINTS)
    a = np.asarray(analytic, dtype=np.float64).ravel()[idx]
    H = one_sided_step(engine, name)[idx]
    try:
        right, left, lo, hi, noise, half = _read(engine, name, idx, H, coloring)
    except UserCodeError:
        # a side of some coordinate leaves the forward's domain (a sqrt at 1e-7 checked by
        # the complex step: a wrong answer there was refused as bad input, exit 2, outside
        # test t63b F5): those are read at no kink, their failure stands; the others as ever
        readable = [k for j, k in enumerate(idx[:READ_ALONE].tolist())
                    if _reads(engine, name, k, H[j], coloring)]  # fmt: skip
        if not readable:
            return KinkFix(idx[:0], np.zeros(0), np.zeros(0), seconds=spent)
        return detected(engine, name, analytic, numeric, np.array(readable, dtype=np.int64),
                        tol, coloring, seconds, any_slope, chained)  # fmt: skip
    jumps, seconds_jumps = _jumps(engine, name, idx, H, right, left, half, noise, coloring)
    spent += seconds_jumps
    model = noise * H / 4  # the modelled round-off of L (times the step: the step's own)
    at_kink, one = _verdicts(right, left, half, lo, hi, tol(noise, right))
    # the round-off model (a few eps of each output moved) misses outputs computed from far
    # larger numbers: a confident classifier's loss of 1e-9 is log(1 + 1e-9), rounded at the
    # 1, so its one-sided slopes jitter by far more than the model's noise and may read as two
    # stable sides apart: a kink, where any value between passes (a wrong one too). So a
    # coordinate read at a kink has its round-off measured along its line, and the kink must
    # stand against that as well
    cand = np.flatnonzero(at_kink | one)
    if cand.size:
        sigma = _measured(engine, name, idx[cand], H[cand] / 4, coloring)
        spent += moves_seconds(engine, name, idx[cand], coloring, points=2 * LINE_POINTS)
        noise[cand] = np.maximum(noise[cand], methods.one_sided_noise(sigma, H[cand] / 4, 1.0))
        at_kink[cand], one[cand] = _verdicts(
            right[cand], left[cand], {s: half[s][cand] for s in (1, -1)}, lo[cand], hi[cand],
            tol(noise[cand], right[cand]),
        )  # fmt: skip
    # both sides stable at H/4 and H/2 place a kink within H/2 of x, not at x (README "Kinks")
    settled, lost, seconds_closer = _closer(engine, name, idx, H, model, noise, right, left,
                                            lo, hi, half, at_kink, one, tol, coloring)  # fmt: skip
    spent += seconds_closer
    # a kink read at a value within the step of 0 but not 0 may be 0's, a step away, below
    # what the loss's round-off resolves: the slope there is one side's, not any between (an
    # L1 term's zeroed sign at w = 1e-12, summed into a loss, passed a full check: outside
    # test t41a F4); a kink anywhere else may be at x (|x - c| with c = x)
    odd = at_kink & ~settled & near_zero(engine, name, idx)
    if odd.any():
        side = np.where(np.abs(a - right) <= np.abs(a - left), right, left)
        lo[odd], hi[odd] = side[odd], side[odd]
    pick = between(a, lo, hi)
    record = None
    same = np.zeros_like(at_kink)
    if chained is not None:  # autodiff's own value: no tie to share it out
        ours = np.asarray(chained, dtype=np.float64).ravel()[idx]
        same = at_kink & (np.abs(a - ours) <= tol(noise, ours))
    kept = at_kink if any_slope else same  # where the analytic value stands
    pick[kept] = a[kept]
    held = at_kink & ~kept
    accepted = idx[same & ~(np.abs(a - between(a, lo, hi)) <= tol(noise, a))]  # said so
    if held.any():  # each tie group's sum within its own interval too
        pick[held], nz, record = ties.enforce(
            engine, name, idx[held], H[held] / 4, a[held], lo[held], hi[held],
            coloring, seconds - spent, sides=(right[held], left[held]), read=True,
        )  # fmt: skip
        noise[held] = np.maximum(noise[held], nz)
        spent += record.seconds
    sr = np.abs(half[1] - right) <= tol(noise, right)  # the side whose value one puts in
    value = np.where(at_kink, pick, np.where(sr, right, left))
    kink = (at_kink | one | settled) & ~lost
    return KinkFix(idx[kink], value[kink], noise[kink], unexamined=unexamined, seconds=spent,
                   at=record, chained=tuple(accepted.tolist()), left=rest,
                   jumps=jumps)  # fmt: skip


def on_kink_values(engine, name: str, idx: np.ndarray) -> np.ndarray:
    """Whether each coordinate's value (flat indices ``idx`` of ``name``) is one a kink at x
    sits on: 0, a value another coordinate of the layer's float tensors holds (a tie, a
    maximum's), or a whole number of 1/256ths (integer and quantized data: a hinge's margin);
    never a value within the step of 0 but 0 itself (relu's, abs's kink may lie there, a step
    away: ten weights of 1e-12 share their value, and are no tie)."""
    x = np.real(engine.t64[name]).ravel()[idx]
    values = np.sort(np.concatenate([np.real(t).ravel() for t in engine.t64.values()
                                     if np.issubdtype(t.dtype, np.inexact)]))  # fmt: skip
    shared = (np.searchsorted(values, x, side="right") - np.searchsorted(values, x)) > 1
    whole = (x == 0) | shared | (x * 256 == np.round(x * 256))
    return whole & ~near_zero(engine, name, idx)


def near_zero(engine, name: str, idx: np.ndarray) -> np.ndarray:
    """Whether each coordinate's value is within its one-sided step of 0, but not 0: a kink
    at 0 (relu's, abs's) lies between its sides."""
    x = np.real(engine.t64[name]).ravel()[idx]
    return (x != 0) & (np.abs(x) < one_sided_step(engine, name)[idx])


def _jumps(engine, name: str, idx: np.ndarray, H: np.ndarray, right: np.ndarray,
           left: np.ndarray, half: dict, noise: np.ndarray,
           coloring: bool) -> tuple[tuple[tuple[int, float, float], ...], float]:  # fmt: skip
    """((flat index, jump, the smallest move that read it), ...; predicted seconds) where a
    side's one-sided slope doubles as its step halves, far beyond its round-off, and the loss
    moves by the same J again at a step JUMP_SHRINK times smaller (the slope
    (4 D(t) - D(2 t)) / 2t of a step D = J is 3 J / 2t): no slope at all but a forward that is
    not continuous there (a floor at an integer read 'numeric 209884': a jump of 1 over 2h,
    outside test t38b N6). A continuous forward steeper than the step (tanh(1e7 x)) moves alike
    at H/4 and H/2, and far less at the smaller step: no jump (it was called one: outside test
    t41a F1)."""
    x = np.abs(engine.t64[name].ravel()[idx])
    out: dict[int, tuple[int, float, float]] = {}
    seconds = 0.0
    for side, at4 in ((1, right), (-1, left)):
        ks = np.flatnonzero((np.abs(at4) > 1e3 * np.maximum(noise, 1e-300))
                            & (np.abs(at4 - 2 * half[side]) <= 1e-3 * np.abs(at4)))  # fmt: skip
        if not ks.size:
            continue
        moved = at4[ks] * (H[ks] / 4)  # 3 J / 2, at H/4 and H/2 alike
        t = np.maximum(H[ks] / 4 / JUMP_SHRINK,
                       SMALLEST_ULPS * np.finfo(np.float64).eps * np.maximum(x[ks], 1.0))
        slope, _ = one_sided(engine, name, idx[ks], t, side, coloring)
        seconds += moves_seconds(engine, name, idx[ks], coloring, points=2)
        same = np.abs(slope * t - moved) <= 1e-2 * np.abs(moved)  # the same jump, far closer
        for k, m, tk in zip(ks[same], moved[same], t[same], strict=True):
            out.setdefault(int(idx[k]), (int(idx[k]), float(side * m * 2 / 3), float(tk)))
    return tuple(out.values()), seconds


def _read(engine, name: str, idx: np.ndarray, H: np.ndarray, coloring: bool):
    """(right, left, lo, hi, noise, half): both sides' slopes and the output-wise interval at
    H/4, and each side's slope at H/2 (``half[side]``), with their modelled round-off."""
    right, left, lo, hi, noise = both_sides(engine, name, idx, H / 4, coloring)
    half = {}
    for side in (1, -1):
        half[side], nz = one_sided(engine, name, idx, H / 2, side, coloring)
        noise = np.maximum(noise, nz)
    return right, left, lo, hi, noise, half


# the closest step a kink is read at, relative to the default one: a kink at x = 0 itself has
# no float between it and x, so some floor stops the halving there (2^-80 of 6e-6 is 5e-30)
CLOSEST = 2.0**-80
# the closer reading is taken only this much closer than the detector's (H/4): less gains
# little, and a forward of unit outputs has its round-off at about that step already
CLOSER = 16.0


def _closer(engine, name: str, idx: np.ndarray, H: np.ndarray, model: np.ndarray,
            noise: np.ndarray, right: np.ndarray, left: np.ndarray, lo: np.ndarray,
            hi: np.ndarray, half: dict, at_kink: np.ndarray, one: np.ndarray, tol,
            coloring: bool) -> tuple[np.ndarray, np.ndarray, float]:  # fmt: skip
    """The candidate kinks (``at_kink``, ``one``) whose slopes moved as the step halved read
    again as close to x as the round-off allows, the readings updated in place: (settled, no
    kink within that step, both sides agree there; lost, neither agreeing nor a kink there:
    not verified; predicted seconds).

    Two stable sides place a kink within H/2 of x, not at x: one at 0 read from x = 1e-13
    moves the crossing side's slope by 3 gap x / H between H/2 and H/4, 1e-7 of it, within
    the tolerance, and a sign-flipped |x| and an inverted relu passed between the two sides.
    A kink at x itself moves neither side (the pieces are lines: only round-off), so only the
    candidates whose slopes moved beyond 4 times their modelled round-off are read again. The closer
    step is the smallest where x + h keeps SMALLEST_ULPS of h's bits (CLOSEST of H at x = 0)
    and the modelled round-off (``model``: the slopes' times the step) takes a sixteenth of
    the tolerance; the model misses outputs computed from far larger numbers, so the
    round-off is measured along the line at that step (``_measured``) and the step raised to
    where that fits too (``noise``, the detector's at H/4, where the line did not move). A
    coordinate whose step is then not CLOSER than H/4 keeps the detector's reading (nothing
    closer is resolved: a near-tie), as does one read at a kink again (the kink is at x as
    far as any step resolves: its ties are read at H/4)."""
    settled = np.zeros(idx.size, dtype=bool)
    lost = np.zeros(idx.size, dtype=bool)
    # beyond the modelled round-off, not the measured: at x = 1e-20 the kink at 0 moves the
    # slope by 5e-15, below what the lines 6 H/4 long measured (their values' own rounding)
    model_noise = model / (H / 4)
    moved = (np.abs(half[1] - right) > 4 * model_noise) | (np.abs(half[-1] - left)
                                                            > 4 * model_noise)  # fmt: skip
    cand = np.flatnonzero((at_kink | one) & moved)
    if not cand.size:
        return settled, lost, 0.0
    x = np.abs(engine.t64[name].ravel()[idx[cand]])
    t0 = tol(np.zeros(cand.size), right[cand])
    floor = np.maximum(SMALLEST_ULPS * np.spacing(x), CLOSEST * H[cand])
    h = np.maximum(floor, 16 * model[cand] / t0)
    near = CLOSER * h <= H[cand] / 4
    cand, h, t0 = cand[near], h[near], t0[near]
    if not cand.size:
        return settled, lost, 0.0
    spent = moves_seconds(engine, name, idx[cand], coloring, points=2 * LINE_POINTS)
    sigma = _measured(engine, name, idx[cand], h, coloring)
    # a line that never moved: a flat piece (relu below 0), or a step below the rounding of
    # larger numbers inside the forward ((x + 1e3) - 1e3); the round-off measured at H/4 (of
    # lines 6 H/4 long, so larger than at the closer step) tells: the step where that fits
    flat = ~np.isfinite(sigma)
    sigma[flat] = (noise[cand] * H[cand] / 4)[flat] / methods.one_sided_noise(1.0, 1.0, 1.0)
    h = np.maximum(h, 16 * methods.one_sided_noise(sigma, 1.0, 1.0) / t0)
    near = CLOSER * h <= H[cand] / 4
    rows, h, sigma = cand[near], h[near], sigma[near]
    if not rows.size:
        return settled, lost, spent
    spent += moves_seconds(engine, name, idx[rows], coloring, points=DETECTOR_POINTS - 2)
    # a power of two, as every step: x + s h exact for the stencil's small integers s
    Hc = 4 * np.exp2(np.ceil(np.log2(h)))
    r, lf, low, high, nz, fine = _read(engine, name, idx[rows], Hc, coloring)
    nz = np.maximum(nz, methods.one_sided_noise(sigma, Hc / 4, 1.0))
    t = tol(nz, r)
    kink, side = _verdicts(r, lf, fine, low, high, t)
    agree = ((np.abs(fine[1] - r) <= t) & (np.abs(fine[-1] - lf) <= t)
             & (np.abs(r - lf) <= t) & (np.abs(fine[1] - fine[-1]) <= t))  # fmt: skip
    settled[rows] = agree & ~kink & ~side
    lost[rows] = ~(agree | kink | side)
    new = rows[~kink]  # at a kink again: the detector's reading stands
    keep = ~kink
    right[new], left[new], lo[new], hi[new], noise[new] = r[keep], lf[keep], low[keep], \
        high[keep], nz[keep]
    for s in (1, -1):
        half[s][new] = fine[s][keep]
    H[new] = Hc[keep]
    at_kink[new], one[new] = False, side[keep]
    return settled, lost, spent


def _verdicts(right, left, half, lo, hi, t):  # fmt: skip
    """(at a kink, a kink within H on one side) from the two sides' slopes at H/4 (``right``,
    ``left``) and H/2 (``half``), the output-wise interval (lo, hi), and the tolerance ``t``
    (the tensor's, raised by these stencils' round-off)."""
    # moving beyond the noise as the step halves: not stable
    sr, sl = np.abs(half[1] - right) <= t, np.abs(half[-1] - left) <= t
    # a smooth function's two second-order one-sided slopes share their leading error
    # (-h^2 f'''/3): they agree but for an h^3 term, and each side's change as the step halves
    # is the other's. A kink is what breaks that symmetry beyond the tolerance: two stable
    # sides whose gap does not shrink as the step halves (curvature's shrinks 8x), or whose
    # pieces differ output by output (a max-pool element in windows of opposite upstream
    # gradients): any slope between may be the gradient; or one unstable side whose change is
    # not the other's (it crosses a kink the other does not). Curvature alone (both sides
    # moving alike) is no kink: the failure stands
    gap_half, gap = np.abs(half[1] - half[-1]), np.abs(right - left)
    apart = (gap > t) & (2 * gap >= gap_half)
    at_kink = sr & sl & (apart | (hi - lo > t))
    changes = np.abs((half[1] - right) - (half[-1] - left))
    one = (sr ^ sl) & (changes > t)  # a kink within H on the unstable side
    return at_kink, one


# points on each side's line where a candidate kink's round-off is measured, off the step grid
# and unlike each other (methods.offgrid_moves)
LINE_POINTS = 6
RIGHT_MOVES = methods.offgrid_moves((2, 3, 5, 7, 11, 13))
LEFT_MOVES = tuple(-t for t in methods.offgrid_moves((17, 19, 23, 29, 31, 37)))


def _measured(engine, name: str, idx: np.ndarray, h: np.ndarray, coloring: bool) -> np.ndarray:
    """A bound on the round-off of L near each coordinate (as ``unit * scale`` bounds an
    output's in methods.one_sided_noise), from its lines x + t h, t from 1 to 6 steps and
    fractions (RIGHT_MOVES), and x - t h (LEFT_MOVES): the larger of two readings.

    Their spread (one standard deviation, what a cubic leaves: methods.offgrid_noise), off
    the grid: on the equally spaced x + k h (ECnoise, methods.line_noise) a confident
    classifier's loss, rounded at the 1 and moving some of its last bits and a fraction at
    every step, drifts evenly and reads as smooth (2e-22 where its spread is 4e-18), and two
    sides apart by that round-off were a kink. A kink crossed within 6 h raises one line's spread
    but not the clean line's, and a kink at x itself leaves both on linear pieces: the two
    lines' spreads pooled where they agree within 4x (each line leaves 3 of its 7 points to
    the rounding, and the smaller of two such estimates fell short by 2x and more once in
    five: round-off read as kinks), else the smaller. Times sqrt(3), a bound as the model's is:
    a rounding uniform over +-a has a standard deviation of a / sqrt(3).

    And the largest isolated jump along the two lines joined through x (flat, a jump, flat
    again): L rounded at a far larger number is a staircase at these steps, flat where no
    spread shows (the stair beside x too: apart, each line read flat), and a kink's line
    never goes flat again once it has moved. A line that never moves says nothing of its
    round-off: inf."""
    D = moves(engine, name, idx, h, RIGHT_MOVES + LEFT_MOVES, coloring)[0]
    right, left = D[:LINE_POINTS], D[LINE_POINTS:]
    r = methods.offgrid_noise(np.array(RIGHT_MOVES), right)
    lf = methods.offgrid_noise(np.array(LEFT_MOVES), left)
    agree = np.maximum(r, lf) <= 4 * np.minimum(r, lf)
    spread = np.where(agree, np.sqrt((r**2 + lf**2) / 2), np.minimum(r, lf))
    line = np.vstack([left[::-1], np.zeros((1, idx.size)), right])  # from x - 6 h to x + 6 h
    sigma = np.maximum(math.sqrt(3) * spread, _isolated_jumps(line[1:] - line[0]))
    sigma[~np.any(D, axis=0)] = np.inf
    return sigma


def _isolated_jumps(D: np.ndarray) -> np.ndarray:
    """The largest change between successive points of each column's line that is flat on
    both sides (the changes before and after it exactly 0), else 0; ``D[k - 1]``: L at the
    k-th point of the line minus L at its start."""
    s = np.diff(np.vstack([np.zeros((1, D.shape[1])), D]), axis=0)
    alone = (s[1:-1] != 0) & (s[:-2] == 0) & (s[2:] == 0)
    return np.where(alone, np.abs(s[1:-1]), 0.0).max(axis=0, initial=0.0)


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
