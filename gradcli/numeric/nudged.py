"""Kinks of a loss that bend both ways at one point: where its one-sided slopes bound nothing.

At a kink of a single output (a loss of yours), a right gradient's coordinate lies between the
loss's two one-sided slopes only where the kinks meeting there all bend one way. Where a term
that raises the loss and one that lowers it meet at once (a row max with a negative upstream
weight beside relu units of positive ones, at a row of zeros), a piece both sides miss (the
max taken by this coordinate, every unit off) gives a value outside them: torch's gradient
was called "wrong" there (outside test t43a F4, F7).

Read along a line through a point nudged off x by about a step in every float tensor, the
kinks that met at x are crossed one at a time, each changing the slope by its own share.
Clarke's sum rule bounds what the pieces touching x give: the first slope plus any of those
shares, from the sum of the negative shares to the sum of the positive ones (a superset).
Where the shares have both signs, the two one-sided slopes at x are no bound on a right value.
"""

from __future__ import annotations

import numpy as np

from gradcli.numeric import methods

LINES = 3  # nudged lines read per coordinate
POINTS = 49  # points read along each
REACH = 24.0  # each spans this many steps on either side of the nudged point
SEED = 0x6E75646765
DRIFT = 1e-4  # relative: a slope read at the nudged point, a step off x in every tensor


def box(engine, name: str, moves: list[np.ndarray], h: np.ndarray,
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(lo, hi, both_ways) for each move of ``moves`` (flat indices of ``name`` moved together
    by steps ``h``, one each): the range the pieces touching x may give to its slope (Clarke's
    superset, read on LINES nudged lines), and whether kinks bending both ways were crossed
    on one of them. Costs LINES * (1 + POINTS) forward calls per move (``calls``)."""
    rng = np.random.default_rng(SEED)
    nudgeable = {n: t for n, t in engine.t64.items()
                 if np.issubdtype(t.dtype, np.floating) and t.size}  # fmt: skip
    t = np.linspace(-REACH, REACH, POINTS)
    dt = t[1] - t[0]
    g = engine.g.ravel()
    lo, hi = np.full(len(moves), np.inf), np.full(len(moves), -np.inf)
    both = np.zeros(len(moves), dtype=bool)
    # the line's points in stacked calls within --max-memory: the engine's chunk of copies of
    # ``name``, shared out over the copies of every tensor a point moves
    share = engine.t64[name].nbytes / max(1, sum(a.nbytes for a in nudgeable.values()))
    per = max(1, int(engine._chunk(name, POINTS) * len(engine.method.offsets) * share))
    for k, members in enumerate(moves):
        members = np.asarray(members, dtype=np.int64)
        for _ in range(LINES):
            base = {n: a.ravel() + methods.steps(a.ravel(), engine.eps)
                    * rng.standard_normal(a.size) for n, a in nudgeable.items()}  # fmt: skip
            # the members keep their common offset from x (a tie stays a tie along the line)
            start = engine.t64[name].ravel()[members]
            L = np.empty(POINTS)
            for lo_t in range(0, POINTS, per):
                part = t[lo_t : lo_t + per]
                rows = {}
                for n, b in base.items():
                    r = np.repeat(b[None, :], 1 + part.size, axis=0)
                    r[0] = engine.t64[n].ravel()  # the unmoved point, differenced against
                    rows[n] = r
                rows[name][1:, members] = start[None, :] + part[:, None] * h[k]
                L[lo_t : lo_t + part.size] = np.real(engine.moved_jointly(rows)) @ g
            slope = np.diff(L) / (dt * h[k])
            noise = 2 * methods.one_sided_noise(engine.gy.sum() + np.abs(L).max(), dt * h[k],
                                                engine.unit)  # fmt: skip
            jumps = np.diff(slope)
            jumps = jumps[np.abs(jumps) > 4 * noise]
            lo[k] = min(lo[k], slope[0] + jumps[jumps < 0].sum())
            hi[k] = max(hi[k], slope[0] + jumps[jumps > 0].sum())
            both[k] |= bool((jumps < 0).any() and (jumps > 0).any())
    return lo, hi, both


def calls(count: int) -> int:
    """Forward calls ``box`` makes for ``count`` moves."""
    return count * LINES * (1 + POINTS)
