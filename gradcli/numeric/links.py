"""A tie's members against each other: one member moved up and another down.

A tie group's sum and each member's own interval do not say how a tie shares out its gradient
when the group's joint move has two slopes: ``relu(a + b)`` at ``a + b == 0`` moves by 0 with
both down and by 2g with both up, each alone by 0 or g, so ``da = 0`` (a mask ``> 0``) with
``db = g`` (``>= 0``) met every interval, though one relu gives all its inputs the same piece:
``da = db = s g``, s in [0, 1]. Moving a up and b down leaves ``a + b`` where it is, on both
sides: ``da - db`` must be 0.

So the members of each group are linked, each to the next in the order of the first output
they reach (linked members share an output where they can), leaving out a link between members
already joined (a tree: one link per member at most), and along a link's move, +t on one member
and -t on the other, the difference of their gradients must lie between the move's two
one-sided slopes, taken output by output as a coordinate's interval is (numeric/kinks.py).
``maximum(a, b)`` at ``a == b`` gives [-1, 1] (any split passes), ``relu(a - b)`` [0, 2], a max
of three tied inputs [-1, 1] per link (any convex split). Links whose moves reach disjoint
outputs share copies (four: the second-order one-sided stencil on each side); a loss's links
take copies of their own, as many as the budget allows (at least FLOOR): the links left out
are counted, and the caller says what was not verified.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from gradcli.numeric import cost
from gradcli.numeric.methods import one_sided_noise, side_slope
from gradcli.numeric.union import Union
from gradcli.records import record

OFFSETS = (1, 2, -1, -2)
FLOOR = 64  # sets of links measured whatever the budget
ADDED = 1e-6  # relative: a link's slopes this close to its ends' own, added, join no tie


@record
class Links:
    """Pairs of positions (into a list of coordinates at a kink) and the interval of the
    difference of their gradients."""

    i: np.ndarray
    j: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    noise: np.ndarray
    left_out: int = 0  # links the budget left unmeasured
    seconds: float = 0.0  # predicted cost
    given: float = math.inf  # the seconds they had (a note says so when some were left out)

    @staticmethod
    def none() -> Links:
        empty = np.zeros(0, dtype=np.int64)
        return Links(empty, empty, np.zeros(0), np.zeros(0), np.zeros(0))

    def shifted(self, by: int) -> Links:
        """The same links with their positions moved by ``by`` (into a longer list)."""
        return Links(self.i + by, self.j + by, self.lo, self.hi, self.noise, self.left_out,
                     self.seconds, self.given)  # fmt: skip

    @staticmethod
    def joined(parts: list[Links]) -> Links:
        if not parts:
            return Links.none()
        cat = lambda f: np.concatenate([getattr(p, f) for p in parts])  # noqa: E731
        return Links(cat("i"), cat("j"), cat("lo"), cat("hi"), cat("noise"),
                     sum(p.left_out for p in parts), sum(p.seconds for p in parts),
                     min(p.given for p in parts))  # fmt: skip


def first_outputs(n: int, pos: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The smallest output each of ``n`` positions reaches (the support's (pos, out))."""
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, pos, out)
    return first


def chain(label: np.ndarray, first: np.ndarray, tensor: np.ndarray | None = None,
          known: tuple[np.ndarray, np.ndarray] | None = None,
          jump: np.ndarray | None = None):  # fmt: skip
    """(i, j): each member of a group (``label``; -1: in none) linked to the next in the order
    of its first output, then of ``jump`` (its right slope less its left, in size), then its
    tensor and its position, unless ``known`` links join the two already. Members of one kink
    jump alike (``relu(a + b) @ W`` at ``a + b == 0``: both by the unit's weight times its
    upstream gradient), so they are linked to each other: moving one up and the other down
    leaves their unit where it is, a straight line whose slope pins their difference. Linked
    across units, the two kinks bend opposite ways and bound little (nudged.loosened)."""
    n = label.size
    sets = Union(n)
    if known is not None:
        for a, b in zip(*known, strict=True):
            sets.join(a, b)
    t = np.zeros(n, dtype=np.int64) if tensor is None else tensor
    size = np.zeros(n) if jump is None else np.nan_to_num(np.abs(jump), nan=np.inf)
    order = np.lexsort((np.arange(n), t, size, first, label))
    order = order[label[order] >= 0]
    same = label[order[1:]] == label[order[:-1]]
    i, j = [], []
    for a, b in zip(order[:-1][same], order[1:][same], strict=True):
        if sets.join(a, b):
            i.append(int(a))
            j.append(int(b))
    return np.array(i, dtype=np.int64), np.array(j, dtype=np.int64)


def packed(reach: list[np.ndarray], single: bool) -> list[np.ndarray]:
    """The links (``reach``: the outputs each one's move reaches) in sets whose moves reach
    disjoint outputs, first fit (a loss: one link a set)."""
    if single:
        return [np.array([k]) for k in range(len(reach))]
    if not reach:
        return []
    width = int(max((int(r.max()) for r in reach if r.size), default=-1)) + 1
    if len(reach) * width > PACK_CELLS:
        return _packed_sets(reach)
    # each set's outputs as a row of a table: a link's first free set is one vectorized
    # test (Python sets took 53 s for 5,000 links of a 64x32x128 MLP: outside test t71a F6)
    used = np.zeros((min(len(reach), 64), width), dtype=bool)
    count = 0
    home = np.empty(len(reach), dtype=np.int64)
    for k, r in enumerate(reach):
        clash = used[:count, r].any(axis=1) if r.size else np.zeros(count, dtype=bool)
        free = np.flatnonzero(~clash)
        s = int(free[0]) if free.size else count
        if s == count:
            if count == len(used):
                used = np.vstack([used, np.zeros_like(used)])
            count += 1
        used[s, r] = True
        home[k] = s
    order = np.argsort(home, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(home[order])) + 1)


PACK_CELLS = 1 << 26  # links times outputs in packed()'s table, at most (64 MB of booleans)


def _packed_sets(reach: list[np.ndarray]) -> list[np.ndarray]:
    """packed(), with Python sets: where its table would not fit."""
    sets: list[list[int]] = []
    used: list[set[int]] = []
    for k, r in enumerate(reach):
        mine = set(r.tolist())
        for s, taken in enumerate(used):
            if not taken & mine:
                sets[s].append(k)
                taken |= mine
                break
        else:
            sets.append([k])
            used.append(mine)
    return [np.array(s) for s in sets]


def seconds(engine, sets: int) -> float:
    """Predicted seconds of measuring ``sets`` sets of links (one unmoved copy a call)."""
    return cost.copies_seconds(engine, len(OFFSETS) * sets + (1 if sets else 0), real=True)


def measure(engine, coords: Mapping[str, np.ndarray], h: np.ndarray, i: np.ndarray,
            j: np.ndarray, pos: np.ndarray, out: np.ndarray, single: bool,
            budget: float = math.inf, past: np.ndarray | None = None,
            planned: bool = False,
            alone: tuple[np.ndarray, np.ndarray] | None = None) -> Links:  # fmt: skip
    """The interval of each link's difference: ``coords`` each tensor's flat indices, in the
    mapping's order (the positions number their concatenation), ``h`` their steps, (``pos``,
    ``out``) the outputs each position moves, ``single``: a loss (every link apart), ``past``:
    the near-ties, read beyond the kinks within their step (``methods.beyond``). ``planned``:
    the links are in the caller's estimate already (numeric/kinkplan.py), so ``budget`` is
    what is left beyond them (charged to it again, a user's svm's 49 links were left out at
    --budget 0.3 and the check could not pass). ``alone``: each position's own (right, left)
    slopes: a link whose move's two slopes are its ends' own, added (``right_i - left_j``,
    ``left_i - right_j``), joins two kinks that do not interact (two zeros of a row of
    ``relu(x) @ W``, two units of their own), and bounds nothing beyond its ends' intervals."""
    if not i.size:
        return Links.none()
    names = list(coords)
    tensor = np.repeat(np.arange(len(names)), [coords[n].size for n in names])
    idx = np.concatenate([np.asarray(coords[n], dtype=np.int64) for n in names])
    t = np.minimum(h[i], h[j])
    beyond = np.zeros(i.size, dtype=bool) if past is None else past[i] | past[j]
    outs = reach(i, j, pos, out)
    sets = packed(outs, single)
    each = seconds(engine, 1)
    count = len(sets)
    budget += seconds(engine, count) if planned else 0.0
    if seconds(engine, count) > budget:
        count = int(min(count, max(FLOOR, max(budget, 0.0) / each)))
    lo, hi, noise, R, L = (np.full(i.size, np.nan) for _ in range(5))
    go = sets[:count]
    per = max(1, engine._chunk(names[0], len(go)) // len(OFFSETS))
    stray: list[np.ndarray] = []
    for start in range(0, len(go), per):
        part = go[start : start + per]
        d = engine.moved_jointly(_rows(engine, names, tensor, idx, i, j, t, part))
        d = d.reshape(len(OFFSETS), len(part), -1)
        for s, links in enumerate(part):
            if not _attribute(engine, d[:, s], links, outs, t, beyond, lo, hi, noise, R, L):
                stray.append(links)
    for links in stray:  # an output none of the set's links reaches moved: one link a copy
        for k in links:
            d = engine.moved_jointly(_rows(engine, names, tensor, idx, i, j, t, [np.array([k])]))
            _attribute(engine, d, np.array([k]), None, t, beyond, lo, hi, noise, R, L)
    left_out = sum(s.size for s in sets[count:])
    spent = seconds(engine, count) + seconds(engine, sum(s.size for s in stray))
    keep = np.isfinite(lo)
    if alone is not None:
        _widen_added(lo, hi, noise, R, L, i, j, keep, *alone)
    return Links(i[keep], j[keep], lo[keep], hi[keep], noise[keep], left_out, spent, budget)


def _widen_added(lo, hi, noise, R, L, i, j, keep, right, left) -> None:
    """``measure``'s links whose slopes (``R``, ``L``) are their ends' own added, widened in
    place to what their ends' intervals allow."""
    own_lo, own_hi = np.minimum(right, left), np.maximum(right, left)
    with np.errstate(invalid="ignore"):
        scale = np.abs(right[i]) + np.abs(left[i]) + np.abs(right[j]) + np.abs(left[j])
        near = lambda u, v: np.abs(u - v) <= 4 * noise + ADDED * scale  # noqa: E731
        added = keep & near(R, right[i] - left[j]) & near(L, left[i] - right[j])
    lo[added] = np.minimum(lo[added], own_lo[i[added]] - own_hi[j[added]])
    hi[added] = np.maximum(hi[added], own_hi[i[added]] - own_lo[j[added]])


def reach(i, j, pos, out) -> list[np.ndarray]:
    """The outputs each link's two members reach."""
    if not i.size:
        return []
    order = np.argsort(pos, kind="stable")
    top = int(max(i.max(), j.max(), pos.max(initial=0))) + 2
    cut = np.searchsorted(pos[order], np.arange(top))
    mine = lambda p: out[order[cut[p] : cut[p + 1]]]  # noqa: E731
    return [np.union1d(mine(a), mine(b)) for a, b in zip(i, j, strict=True)]


def _rows(engine, names, tensor, idx, i, j, t, sets) -> dict[str, np.ndarray]:
    """The unmoved point, then each set's links moved by each offset: row 1 + k c + s."""
    c = len(sets)
    moved = sorted(set(tensor[np.r_[i, j]].tolist()))
    rows = {names[m]: np.repeat(engine.t64[names[m]].ravel()[None, :], 1 + len(OFFSETS) * c,
                                axis=0) for m in moved}  # fmt: skip
    for s, links in enumerate(sets):
        for ends, sign in ((i, 1.0), (j, -1.0)):
            p = ends[links]
            for m in moved:
                mine = tensor[p] == m
                for k, o in enumerate(OFFSETS):
                    rows[names[m]][1 + k * c + s, idx[p[mine]]] += sign * o * t[links[mine]]
    return rows


def _attribute(engine, d, links, outs, t, beyond, lo, hi, noise, R=None, L=None) -> bool:
    """Each link's interval from ``d`` (4, out): output by output, each output's two slopes
    (times its upstream gradient) summed, widened to the whole move's. False when an output
    no link of the set reaches moved (the support missed it)."""
    g = engine.g.ravel()
    owner = np.full(g.size, -1, dtype=np.int64)
    if outs is None:
        owner[:] = 0
    else:
        for m, k in enumerate(links):
            owner[outs[k]] = m
        if np.any(d[:, owner < 0] != 0):
            return False
    keep = owner >= 0
    step, far = t[links][owner[keep]], beyond[links][owner[keep]]
    c = d[:, keep] * g[keep]
    right, left = side_slope(c[0], c[1], step, 1, far), side_slope(c[2], c[3], step, -1, far)
    n = links.size
    low = np.bincount(owner[keep], weights=np.minimum(right, left), minlength=n)
    high = np.bincount(owner[keep], weights=np.maximum(right, left), minlength=n)
    r = np.bincount(owner[keep], weights=right, minlength=n)
    l_ = np.bincount(owner[keep], weights=left, minlength=n)
    lo[links] = np.minimum(low, np.minimum(r, l_))
    hi[links] = np.maximum(high, np.maximum(r, l_))
    if R is not None:  # the move's own two slopes
        R[links], L[links] = r, l_
    moved = (d[:, keep] != 0).any(axis=0) * engine.gy[keep]
    scale = np.bincount(owner[keep], weights=moved, minlength=n)
    noise[links] = one_sided_noise(scale, t[links], engine.unit)
    return True
