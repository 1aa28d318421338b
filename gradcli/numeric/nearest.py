"""The values compared at the coordinates at a kink: the point nearest the analytical gradient
that meets everything the one-sided differences said there.

Each coordinate's interval, each tie group's sum (numeric/ties.py; a tie across tensors holds
whole ties of each, numeric/joint.py: sums of sums) and each link's difference
(numeric/links.py) are convex sets; their intersection holds every valid gradient, and the
point of it nearest the analytical one is found by Dykstra's alternating projections, each
set's projection exact: a layer of disjoint groups is clip(a - lam_G, lo, hi) with each
group's shift lam_G found by bisection (all groups at once), a set of links sharing no member
moves each link's two ends apart or together by half its excess. Started at the analytical
gradient, which it returns untouched when it meets every set: a consistent backward is never
moved.
"""

from __future__ import annotations

import math

import numpy as np

from gradcli.numeric.links import Links

ROUNDS = 200
BISECTIONS = 100


def nearest(a: np.ndarray, lo: np.ndarray, hi: np.ndarray,
            layers: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
            links: Links | None = None) -> np.ndarray:  # fmt: skip
    """The point nearest ``a`` with every entry in [lo, hi], each group of each layer ((a
    group per position, -1: none; each group's low, high)) summing within its interval and
    each link's difference within its own."""
    a = np.asarray(a, dtype=np.float64)
    sets = [lambda v, ly=ly: _groups(v, lo, hi, *ly) for ly in layers] or [
        lambda v: np.clip(v, lo, hi)
    ]
    if links is not None and links.i.size:
        sets += [lambda v, m=m: _links(v, links, m) for m in _matchings(links)]
    if len(sets) == 1:
        return sets[0](a)
    x = a.copy()
    inc = [np.zeros(a.size) for _ in sets]
    tiny = 1e-15 * max(1.0, float(np.abs(a).max(initial=0.0)))
    for _ in range(ROUNDS):
        start = x
        for k, project in enumerate(sets):
            y = project(x + inc[k])
            inc[k] = x + inc[k] - y
            x = y
        if np.all(np.abs(x - start) <= tiny):
            break
    return x


def _groups(v, lo, hi, gid, low, high) -> np.ndarray:
    """Every entry clipped to [lo, hi] and each group's sum brought within [low, high] by a
    shift of its entries (the sum falls as the shift grows)."""
    w = np.clip(v, lo, hi)
    mine = np.flatnonzero(gid >= 0)
    if not mine.size:
        return w
    G = gid[mine]
    total = np.bincount(G, weights=w[mine], minlength=low.size)
    over, under = total > high, total < low
    bad = (over | under)[G]
    if not bad.any():
        return w
    m, G = mine[bad], G[bad]
    target = np.where(over, high, low)
    top = np.full(low.size, -np.inf)
    bottom = np.full(low.size, np.inf)
    np.minimum.at(bottom, G, v[m] - hi[m])
    np.maximum.at(top, G, v[m] - lo[m])
    bottom[~np.isfinite(bottom)], top[~np.isfinite(top)] = 0.0, 0.0  # groups within already
    for _ in range(BISECTIONS):
        mid = (bottom + top) / 2
        s = np.bincount(G, weights=np.clip(v[m] - mid[G], lo[m], hi[m]), minlength=low.size)
        big = s > target
        bottom, top = np.where(big, mid, bottom), np.where(big, top, mid)
    w[m] = np.clip(v[m] - ((bottom + top) / 2)[G], lo[m], hi[m])
    return w


def _links(v, links: Links, m: np.ndarray) -> np.ndarray:
    """The links ``m`` (no two share a member) each brought within its interval."""
    i, j = links.i[m], links.j[m]
    diff = v[i] - v[j]
    excess = diff - np.clip(diff, links.lo[m], links.hi[m])
    w = v.copy()
    w[i] -= excess / 2
    w[j] += excess / 2
    return w


def _matchings(links: Links) -> list[np.ndarray]:
    """The links in sets sharing no member (a tree's: a few), greedily."""
    color = np.zeros(links.i.size, dtype=np.int64)
    used: dict[int, set[int]] = {}
    for k, (a, b) in enumerate(zip(links.i.tolist(), links.j.tolist(), strict=True)):
        taken = used.setdefault(a, set()) | used.setdefault(b, set())
        c = 0
        while c in taken:
            c += 1
        color[k] = c
        used[a].add(c)
        used[b].add(c)
    return [np.flatnonzero(color == c) for c in range(int(color.max(initial=-1)) + 1)]


SHARE_STEPS = 4000  # iterations of ``shares``' bounded least squares (accelerated)


def shares(m: np.ndarray, target: np.ndarray, steps: int = SHARE_STEPS) -> np.ndarray:
    """The shares ``s`` in [0, 1] nearest ``m s = target`` (FISTA on the box, from 1/2 each):
    one share per tie of a valid gradient (numeric/balance.py's hinges, numeric/crossings.py's
    ties crossed on a line)."""
    s = y = np.full(m.shape[1], 0.5)
    lip = float(np.linalg.norm(m, 2) ** 2) or 1.0
    t = 1.0
    for _ in range(steps):
        nxt = np.clip(y - (m.T @ (m @ y - target)) / lip, 0.0, 1.0)
        t2 = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y, s, t = nxt + (t - 1) / t2 * (nxt - s), nxt, t2
    return s
