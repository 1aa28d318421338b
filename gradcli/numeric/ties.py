"""Tie groups: the coordinates at a kink that share an output are checked together.

At a tie (a max-pool window whose maximum is held by several elements, an svm score exactly at
its margin, a user's maximum(a, b) at a == b) each coordinate alone may take any slope between
its two one-sided ones, but not independently of the others: moving the whole group together
is a direction of its own (for a max, a smooth one: max(x+t, ..., x+t) = max + t), and the
gradient's sum over the group must lie between that direction's two one-sided slopes, taken
output by output (``hull``). A backward that gives the full gradient to every tied element
(CS231n's ``win == win.max()`` mask), or to none, meets each coordinate's interval and misses
the group's.

A group is found without knowing the layer: the coordinates at a kink whose moves reach a
common output (through the layer's verified footprint where it has one, else by moving each
alone), joined transitively. Its direction is evaluated with one copy per stencil point for
all groups at once, each output difference attributed to the group that owns it (one copy per
group when an output no group owns moved). The values compared are then the point nearest the
analytical gradient that lies in every coordinate's interval, has the group's sum in the
group's and each link between two members within its own (numeric/links.py: a sum does not say
how a tie shares its gradient out), found by numeric/nearest.py: unchanged when the backward is
consistent, off by the excess otherwise.
"""

from __future__ import annotations

import math
from dataclasses import field

import numpy as np

from gradcli.numeric import blocks, cost, links, nearest, nudged
from gradcli.numeric.links import Links
from gradcli.numeric.methods import one_sided_noise, side_slope
from gradcli.records import record


def single_output(engine, name: str, coloring: bool = True) -> bool:
    """A loss: every coordinate moves its one output (an incremental path is a loss's too), so
    sharing it says nothing of which ties belong together (numeric/blocks.py tells them)."""
    return int(np.prod(engine.out_shape)) == 1 or (coloring and engine.incremental(name) == "")


def on_terms(engine, name: str, coloring: bool = True):
    """The engine whose outputs tell ``name``'s ties apart: a loss that sums terms (svm's rows)
    through its verified terms (Engine.terms), whose separate outputs hold separate ties, so
    that its ties need not be told apart by search (numeric/blocks.py); else ``engine``."""
    sub = engine.terms(name) if coloring else None
    return engine if sub is None or isinstance(sub, str) else sub


def structure(engine, name: str, coloring: bool = True):
    """For a user's loss whose forward agreed with a built-in's that sums terms: the engine on
    the built-in's terms (Engine.structure), whose outputs say which of ``name``'s ties
    interact, so that they need not be told apart by search (numeric/blocks.py); else None.
    Structure only: each group's slopes are read through the user's forward, in copies of its
    own (its one output is every group's), so the verdict rests on the user's forward."""
    if not coloring or on_terms(engine, name, coloring) is not engine:
        return None
    if not single_output(engine, name, coloring):
        return None
    return engine.structure(name)


def terms_of(engine, name: str, coloring: bool = True):
    """The engine whose outputs are the terms of a loss that sums them, a built-in's verified
    ones or those of the built-in a user's loss implements (``structure``); else None."""
    mine = on_terms(engine, name, coloring)
    return mine if mine is not engine else structure(engine, name, coloring)


def support(engine, name: str, idx: np.ndarray, h: np.ndarray, coloring: bool = True):
    """(positions into ``idx``, output flat indices): the outputs each coordinate moves."""
    if single_output(engine, name, coloring):
        return np.arange(idx.size), np.zeros(idx.size, dtype=np.int64)
    col = engine.colored(name)[0] if coloring else None
    if col is not None and hasattr(col, "windows"):
        return declared_support(engine, name, col, idx)
    return _moved_support(engine, name, idx, h)


def declared_support(engine, name: str, col, idx: np.ndarray):
    """The outputs each coordinate owns under the footprint ``col`` (a coloring with windows),
    one color at a time: (positions into ``idx``, output flat indices)."""
    x = engine.t64[name]
    position = np.full(x.size + 1, -1, dtype=np.int64)  # flat index -> place in idx; [-1]: none
    position[idx] = np.arange(idx.size)
    t = np.unravel_index(idx, x.shape)
    per = np.stack([ti % p for ti, p in zip(t, col.periods, strict=True)], axis=1)
    pos, out = [], []
    for r in np.unique(per, axis=0):
        own = position[col.owner(tuple(int(v) for v in r))]  # -1 (no owner) reads -1
        hit = np.flatnonzero(own >= 0)
        pos.append(own[hit])
        out.append(hit)
    return np.concatenate(pos), np.concatenate(out)


def _moved_support(engine, name: str, idx: np.ndarray, h: np.ndarray):
    """One copy per coordinate and side (stacked, chunked): the outputs that changed."""
    x = engine.t64[name].ravel()
    shape = engine.t64[name].shape
    pos, out = [], []
    per = max(1, engine._chunk(name, idx.size) // 2)
    for lo in range(0, idx.size, per):
        part = idx[lo : lo + per]
        c = len(part)
        rows = np.repeat(x[None, :], 1 + 2 * c, axis=0)
        rows[1 + np.arange(c), part] = x[part] + h[lo : lo + c]
        rows[1 + c + np.arange(c), part] = x[part] - h[lo : lo + c]
        y = engine.forward_stack(name, rows.reshape((len(rows),) + shape)).real
        y = y.reshape(len(rows), -1)
        moved = ((y[1 : 1 + c] != y[:1]) | (y[1 + c :] != y[:1])).nonzero()
        pos.append(lo + moved[0])
        out.append(moved[1])
    return np.concatenate(pos), np.concatenate(out)


def groups(n: int, pos: np.ndarray, out: np.ndarray) -> np.ndarray:
    """A label per coordinate (0 ... n-1): coordinates sharing an output, transitively, share
    one (the smallest position among them)."""
    label = np.arange(n)
    if not pos.size:
        return label
    order = np.argsort(out, kind="stable")
    pos, out = pos[order], out[order]
    starts = np.flatnonzero(np.r_[True, out[1:] != out[:-1]])
    while True:  # propagate the smallest label through shared outputs until nothing changes
        least = np.minimum.reduceat(label[pos], starts)
        per_pair = np.repeat(least, np.diff(np.r_[starts, pos.size]))
        new = label.copy()
        np.minimum.at(new, pos, per_pair)
        new = new[new]  # follow the chain one more link each round
        if np.array_equal(new, label):
            return label
        label = new


def owners(out_size: int, pos: np.ndarray, out: np.ndarray, gid: np.ndarray) -> np.ndarray:
    """The group (``gid`` per position, -1: none) that owns each output, -1 where none does or
    where two groups reach it (a loss's separate ties share its one output): such an output
    moved sends the groups to copies of their own."""
    owner = np.full(out_size, -1, dtype=np.int64)
    owner[out] = gid[pos]
    mine = gid[pos] >= 0
    top = np.full(out_size, -1, dtype=np.int64)
    np.maximum.at(top, out[mine], gid[pos][mine])
    low = np.full(out_size, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(low, out[mine], gid[pos][mine])
    owner[(top >= 0) & (low != top)] = -1
    return owner


def slopes(engine, name: str, idx: np.ndarray, h: np.ndarray, label: np.ndarray,
           pos: np.ndarray, out: np.ndarray, past=None):  # fmt: skip
    """For each group of at least two (its label): (low, high, noise), the interval of the
    group's sum along its sum direction, from second-order one-sided differences with the
    group's smallest step (beyond the kinks within it, ``methods.beyond``, for a group holding
    a near-tie: ``past`` per coordinate), taken output by output (``hull``). ``pos``, ``out``:
    the outputs each coordinate moves, None for groups known apart whose moves share the
    outputs (a user's loss, whose ties ``structure`` told apart): each group then takes copies
    of its own."""
    keys, inverse, count = np.unique(label, return_inverse=True, return_counts=True)
    big = count >= 2
    if not big.any():
        return {}
    gid = np.where(big[inverse], inverse, -1)  # group of each coordinate (-1: alone)
    step = np.full(keys.size, np.inf)
    np.minimum.at(step, inverse, h)
    beyond = np.zeros(keys.size, dtype=bool)
    if past is not None:
        np.logical_or.at(beyond, inverse, np.asarray(past, dtype=bool))
    offsets = (1, 2, -1, -2)
    many = np.flatnonzero(big)
    if pos is None:
        return _separately(engine, name, idx, gid, many, step, offsets, beyond)
    owner = owners(int(np.prod(engine.out_shape)), pos, out, gid)  # the group of each output
    x = engine.t64[name].ravel()
    g = engine.g.ravel()
    D = np.zeros((len(offsets), keys.size))
    scale = np.zeros(keys.size)
    rows = np.repeat(x[None, :], 1 + len(offsets), axis=0)
    moving = gid >= 0
    for k, s in enumerate(offsets):
        rows[1 + k, idx[moving]] += s * step[gid[moving]]
    d = engine.moved(name, rows)
    if np.any(d[:, owner < 0] != 0):  # an output no group owns moved: one copy per group
        return _separately(engine, name, idx, gid, many, step, offsets, beyond)
    keep = owner >= 0
    for k in range(len(offsets)):
        D[k] = np.bincount(owner[keep], weights=(d[k] * g)[keep], minlength=keys.size)
    moved = (d != 0).any(axis=0) * engine.gy
    scale = np.bincount(owner[keep], weights=moved[keep], minlength=keys.size)
    lo, hi = hull(d[:, keep] * g[keep], step[owner[keep]], beyond[owner[keep]])
    low = np.bincount(owner[keep], weights=lo, minlength=keys.size)
    high = np.bincount(owner[keep], weights=hi, minlength=keys.size)
    return _finish(keys, many, D, scale, step, beyond, low, high)


def _separately(engine, name, idx, gid, many, step, offsets, beyond):
    """Each group of ``many`` moved in copies of its own, the groups' copies stacked."""
    x = engine.t64[name].ravel()
    D = np.zeros((len(offsets), step.size))  # one per group, as step (a group alone: unused)
    scale, low, high = np.zeros(D.shape[1]), np.zeros(D.shape[1]), np.zeros(D.shape[1])
    order = np.argsort(gid, kind="stable")
    cut = np.searchsorted(gid[order], np.r_[many, many + 1])
    per = max(1, engine._chunk(name, many.size) * len(engine.method.offsets) // len(offsets))
    for lo in range(0, many.size, per):
        part = many[lo : lo + per]
        c = part.size
        rows = np.repeat(x[None, :], 1 + len(offsets) * c, axis=0)
        for q in range(c):
            members = idx[order[cut[lo + q] : cut[lo + q + many.size]]]
            for k, s in enumerate(offsets):
                rows[1 + k * c + q, members] += s * step[part[q]]
        d = engine.moved(name, rows).reshape(len(offsets), c, -1)
        D[:, part] = d @ engine.g.ravel()
        scale[part] = ((d != 0).any(axis=0) * engine.gy).sum(axis=1)
        lo, hi = hull(d * engine.g.ravel(), step[part, None], beyond[part, None])
        low[part], high[part] = lo.sum(axis=1), hi.sum(axis=1)
    return _finish(np.arange(step.size), many, D, scale, step, beyond, low, high)


def hull(c: np.ndarray, step, past=False) -> tuple[np.ndarray, np.ndarray]:
    """Per output: the smaller and the larger of its two one-sided slopes along a move, from
    ``c`` (4, ...) = g * (the output moved by steps 1, 2, -1, -2 minus the output). Each output
    may take either side's piece whatever the others take (each is its own relu, its own
    window), so a group's sum lies between the sums of these, as a coordinate's own value
    does (kinks.py): the loss's two slopes bound it only where every output bends the same
    way. relu(x W) at integer x has rows whose tied units a move of the row sends to pieces
    of opposite signs of g: torch's value (relu'(0) = 0) lay outside the loss's slopes there,
    and the sum's projection made a blend of pieces the reference."""
    right = side_slope(c[0], c[1], step, 1, past)
    left = side_slope(c[2], c[3], step, -1, past)
    return np.minimum(right, left), np.maximum(right, left)


def _finish(keys, many, D, scale, step, beyond, low, high):
    """Each group's (low, high, noise): the outputs' hull widened to the loss's own two
    slopes (the same interval up to the order of the sums' round-off)."""
    right = side_slope(D[0], D[1], step, 1, beyond)
    left = side_slope(D[2], D[3], step, -1, beyond)
    noise = one_sided_noise(scale, step)
    low = np.minimum(low, np.minimum(right, left))
    high = np.maximum(high, np.maximum(right, left))
    return {int(G): (low[G], high[G], noise[G]) for G in many}


@record
class AtKink:
    """One tensor's coordinates at a kink itself, as the check across tensors needs them
    (numeric/joint.py): a tie may hold coordinates of several tensors (``maximum(a, b)``)."""

    coords: np.ndarray  # flat indices
    h: np.ndarray  # the step their two sides were taken with
    lo: np.ndarray  # each one's interval
    hi: np.ndarray
    label: np.ndarray  # its tie group within the tensor
    sums: dict[int, tuple[float, float]] = field(default_factory=dict)  # a group's interval
    support: tuple[np.ndarray, np.ndarray] | None = None  # (positions, outputs), once found
    seconds: float = 0.0  # predicted cost of telling a loss's ties apart and of their links
    whole: int = 0  # coordinates of a loss's ties the budget left in one group
    # a near-tie's step (its kinks within it, read beyond them: numeric/kinks.gapped), 0 for
    # a tie itself: how far below a window's maximum an element counts as tied (routes.py)
    near: np.ndarray | None = None
    links: Links = field(default_factory=Links.none)  # its members against each other
    given: float = math.inf  # the seconds telling a loss's ties apart had (the notes say it)
    sides: tuple[np.ndarray, np.ndarray] | None = None  # each one's (right, left) loss slopes


def enforce(engine, name: str, idx: np.ndarray, h: np.ndarray, a: np.ndarray,
            right: np.ndarray, left: np.ndarray, coloring: bool = True,
            budget: float = math.inf, past: np.ndarray | None = None,
            linked: bool = True, planned: bool = False,
            sides: tuple[np.ndarray, np.ndarray] | None = None, read: bool = False):  # fmt: skip
    """The values to compare at ``idx``, coordinates at a kink itself (both sides clean): each
    in its own interval [right, left], each tie group's sum in the group's and each link
    between two members in its own. Returns (values, noise per coordinate, the AtKink record).
    ``budget``: seconds for telling a loss's ties apart (numeric/blocks.py; a group it leaves
    unsplit is checked whole) and for the links (numeric/links.py; ``linked``: whether they
    are needed; ``planned``: what the caller's estimate holds already, numeric/kinkplan.py,
    the first tests that tell a loss's ties apart and the links it plans, is not charged to
    ``budget``: the search stopped at its planned share, with the whole of ``budget`` still
    left). ``past``: the near-ties among them, read beyond the kinks within their step.
    ``sides``: each one's (right, left) slopes of the loss, where known (``right`` and
    ``left`` above may be an interval's two ends): links whose slopes are their ends' own,
    added, bound nothing more (numeric/links.py). ``read``: the detector read each of them
    (numeric/kinks.py, ten points and its lines each): their links, four copies a pair, cost a
    fraction of that, and are measured whatever is left of ``budget`` (a right relu(x) @ W on 8
    digits' 4,981 zeros: 38 s counted to find the kinks, none left for their 4,461 links, less
    than 1 s, and the check was 'not verified': outside tests t47a F2, t46a F6)."""
    lo, hi = np.minimum(right, left), np.maximum(right, left)
    values = np.clip(a, lo, hi)
    noise = np.zeros(idx.size)
    near = None if past is None else np.where(past, h, 0.0)
    if idx.size < 2:
        return values, noise, AtKink(idx, h, lo, hi, np.arange(idx.size), near=near,
                                     sides=sides)  # fmt: skip
    mine = on_terms(engine, name, coloring)
    shape = structure(engine, name, coloring)
    pos, out = support(shape or mine, name, idx, h, coloring)
    label = np.unique(groups(idx.size, pos, out), return_inverse=True)[1].ravel()
    spent, whole = 0.0, 0
    single = single_output(mine, name, coloring)
    if single and shape is None:
        budget += blocks.least_seconds(mine, idx.size) if planned else 0.0
        label, spent, whole = blocks.split(mine, {name: idx}, h, label, budget)
    if shape is None:
        found = slopes(mine, name, idx, h, label, pos, out, past)
    else:  # each group read through the user's forward, in copies of its own
        found = slopes(mine, name, idx, h, label, None, None, past)
    sums = {G: (min(r, l), max(r, l)) for G, (r, l, _) in found.items()}
    for G, (_, _, nz) in found.items():
        noise[label == G] = np.maximum(noise[label == G], nz)
    tied = np.isin(label, list(found)) & linked
    i, j = links.chain(np.where(tied, label, -1), links.first_outputs(idx.size, pos, out),
                       jump=hi - lo)  # fmt: skip
    if shape is not None:  # the links' moves reach the loss's one output
        pos, out = support(mine, name, idx, h, coloring)
    # the links of a loss told apart by search are counted once run (kinkplan.unplanned)
    ahead = planned and (shape is not None or not single)
    pairs = links.measure(mine, {name: idx}, h, i, j, pos, out, single,
                          math.inf if read else budget - spent, past, ahead, sides)  # fmt: skip
    spent += pairs.seconds
    np.maximum.at(noise, pairs.i, pairs.noise)
    np.maximum.at(noise, pairs.j, pairs.noise)
    values = nearest.nearest(a, lo, hi, [layer(label, sums)], pairs)
    if np.any(values != a):  # a move's one slope binds: it must hold at nudged points too
        most = nudged.affordable(mine, budget - spent)
        sums, pairs, lines, (lo, hi) = nudged.loosened(mine, name, idx, h, a, lo, hi, label,
                                                       sums, pairs, most)  # fmt: skip
        spent += cost.copies_seconds(mine, nudged.calls(lines), real=True)
        values = nearest.nearest(a, lo, hi, [layer(label, sums)], pairs)
    # the terms' outputs are not the layer's: the ties across tensors find their own
    found_support = (pos, out) if mine is engine else None
    return values, noise, AtKink(idx, h, lo, hi, label, sums, found_support, spent, whole,
                                 near=near, links=pairs, given=budget, sides=sides)  # fmt: skip


def layer(label: np.ndarray, sums: dict[int, tuple[float, float]]):
    """The tie groups with a sum's interval as nearest.nearest takes them: (a group per
    position, -1: none; each group's low, high)."""
    keys = np.array(sorted(sums), dtype=np.int64)
    where = np.full(int(label.max(initial=-1)) + 1, -1, dtype=np.int64)
    where[keys] = np.arange(keys.size)
    gid = where[label] if label.size else label
    low = np.array([sums[int(G)][0] for G in keys], dtype=np.float64)
    high = np.array([sums[int(G)][1] for G in keys], dtype=np.float64)
    return gid, low, high
