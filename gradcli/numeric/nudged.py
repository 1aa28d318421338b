"""Kinks that bend both ways at one point: where its one-sided slopes bound nothing.

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

The same holds for a tie's moves in a layer with outputs of its own (``loosened``): a link
moving two zeros of a row of ``relu(x) @ W`` apart crosses two units' kinks, bending opposite
ways where their weights times the upstream gradient differ in sign, and its one-sided slopes
are no bound either (outside test t45a F7). Where they bend one way (a max's tie, a relu's
inputs moved against each other) the one-sided slopes stay the bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from gradcli.numeric import cost, methods
from gradcli.numeric.links import Links

LINES = 3  # nudged lines read per coordinate
POINTS = 49  # points read along each
REACH = 24.0  # each spans this many steps on either side of the nudged point
SEED = 0x6E75646765
SPAN = 4.0  # nudges (standard deviations) the line reaches either way, at least
DRIFT = 1e-4  # relative: a slope read at the nudged point, a step off x in every tensor
ROUNDS = 4  # reads of LINES lines a binding move may take
MOST = 64  # binding moves of a tensor's ties read on nudged lines, at most
FLOOR = 16  # ... whatever the budget
SHARE = 1e-7  # relative: a miss below this share of a move's slopes is round-off, not binding


def box(engine, name: str, moves: list[np.ndarray], h: np.ndarray,
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(lo, hi, both_ways) for each move of ``moves`` (flat indices of ``name`` moved together
    by steps ``h``, one each): the range the pieces touching x may give to its slope (Clarke's
    superset, read on LINES nudged lines), and whether kinks bending both ways were crossed
    on one of them. The members keep their common offset from x (a tie stays a tie along the
    line). Costs LINES * (1 + POINTS) forward calls per move (``calls``)."""
    each = [{name: (np.asarray(m, dtype=np.int64), np.ones(len(m)))} for m in moves]
    return read(engine, each, h, name, nudge_members=False)


def read(engine, moves: list[dict[str, tuple[np.ndarray, np.ndarray]]], h: np.ndarray,
         name: str, again: int = 0, nudge_members: bool = True,
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """``box`` for moves that may weigh their members and span tensors (each move: tensor ->
    (flat indices, weights)), ``name`` the tensor whose chunk sizes the stacked calls.
    ``nudge_members``: the members are nudged too, so that kinks between them (a link's two
    ends, each its own relu at 0) are crossed one at a time. ``again``: reads of these moves
    before this one (each reads new lines).

    A kink the line does not reach keeps the state the nudge gave it, and its share is
    missing from the range: a zero row of x fed to ``relu(x @ W + b)`` with ``b = 0`` and
    weights of 0.05 puts unit k's kink about ``|nudge of x @ W + b| / |W[i, k]|``, twenty
    nudges along x[0, i]'s line, beyond its SPAN, and torch's 0 for x[0, i] fell outside the
    range read. The two lines nudged opposite ways end in opposite states of such a kink, so
    where their end slopes differ the line is read again REACHES times as long, up to LONGER
    times (``calls`` counts the first read only), and the ranges read are joined."""
    lo, hi, both, short = _read(engine, moves, h, name, again, nudge_members)
    h = np.asarray(h, dtype=np.float64)
    for r in range(1, LONGER + 1):
        todo = np.flatnonzero(short)
        if not todo.size:
            break
        l2, h2, b2, s2 = _read(engine, [moves[k] for k in todo], h[todo], name, again + r,
                               nudge_members, REACHES**r)  # fmt: skip
        lo[todo], hi[todo] = np.minimum(lo[todo], l2), np.maximum(hi[todo], h2)
        both[todo] |= b2
        short[:] = False
        short[todo] = s2
    return lo, hi, both


REACHES = 16  # a line read again where it fell short is this many times as long
LONGER = 1  # ... at most this many times


def _read(engine, moves, h: np.ndarray, name: str, again: int, nudge_members: bool,
          longer: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``read``'s lines once, ``longer`` times SPAN at least: (lo, hi, both, short), ``short``
    where the lines nudged opposite ways end in different slopes (a kink not reached)."""
    rng = np.random.default_rng((SEED, again) if again else SEED)
    nudgeable = {n: t for n, t in engine.t64.items()
                 if np.issubdtype(t.dtype, np.floating) and t.size}  # fmt: skip
    t = np.linspace(-REACH, REACH, POINTS)
    dt = t[1] - t[0]
    g = engine.g.ravel()
    # the lines' points in stacked calls within --max-memory, several lines a call: the
    # engine's chunk of copies of ``name``, shared out over the copies of every tensor moved
    share = engine.t64[name].nbytes / max(1, sum(a.nbytes for a in nudgeable.values()))
    per = max(1, int(engine._chunk(name, POINTS) * len(engine.method.offsets) * share))
    L = np.empty((len(moves), LINES, POINTS))
    steps = np.empty(len(moves))
    rows: dict[str, list[np.ndarray]] = {n: [] for n in nudgeable}
    where: list[tuple[int, int, int, int]] = []  # (move, line, first point, points) per part
    held = 0

    def flush():
        nonlocal held
        if not held:
            return
        stacked = {n: np.concatenate([engine.t64[n].ravel()[None, :], *r]) for n, r in rows.items()}
        d = np.real(engine.moved_jointly(stacked)) @ g  # row 0: x, differenced against
        at = 0
        for k, line, first, count in where:
            L[k, line, first : first + count] = d[at : at + count]
            at += count
        for r in rows.values():
            r.clear()
        where.clear()
        held = 0

    for k, move in enumerate(moves):
        # the line reaches SPAN of the nudges off the members' own point: the kinks that meet
        # at x lie about a nudge away along it, however small the move's step
        nudge = max(float(np.max(methods.steps(engine.t64[n].ravel()[m], engine.eps) / np.abs(w)))
                    for n, (m, w) in move.items())  # fmt: skip
        steps[k] = max(float(h[k]), longer * SPAN * nudge / REACH)
        for line in range(LINES):
            # the second line nudged the opposite way: a curved loss's slopes drift with the
            # nudge (its Hessian times it), and the two lines' ranges hold the point's
            if line % 2 == 0:
                off = {n: methods.steps(a.ravel(), engine.eps) * rng.standard_normal(a.size)
                       for n, a in nudgeable.items()}  # fmt: skip
            sign = -1.0 if line % 2 else 1.0
            base = {n: a.ravel() + sign * off[n] for n, a in nudgeable.items()}
            start = {n: (base[n] if nudge_members else engine.t64[n].ravel())[m]
                     for n, (m, _) in move.items()}  # fmt: skip
            first = 0
            while first < POINTS:
                part = t[first : first + min(per - held, POINTS - first)]
                for n, b in base.items():
                    r = np.repeat(b[None, :], part.size, axis=0)
                    if n in move:
                        m, w = move[n]
                        r[:, m] = start[n][None, :] + part[:, None] * (steps[k] * w)[None, :]
                    rows[n].append(r)
                where.append((k, line, first, part.size))
                held += part.size
                first += part.size
                if held >= per:
                    flush()
    flush()
    slope = np.diff(L, axis=2) / (dt * steps)[:, None, None]
    noise = 2 * methods.one_sided_noise(engine.gy.sum() + np.abs(L).max(axis=2),
                                        dt * steps[:, None], engine.unit)  # fmt: skip
    jumps = np.diff(slope, axis=2)
    jumps = np.where(np.abs(jumps) > 4 * noise[:, :, None], jumps, 0.0)
    # from the slope at the nudged point, each kink crossed on the way out either way: a
    # curved loss drifts below the jumps' threshold and the line's end slopes are off by it
    # (CS231n's two-layer net's softmax: a right dX missed the range by 0.2%)
    mid = (POINTS - 1) // 2 - 1  # the slope just left of the nudged point (t = -0.5)
    shares = np.concatenate([-jumps[:, :, :mid], jumps[:, :, mid:]], axis=2)
    lo = (slope[:, :, mid] + np.minimum(shares, 0).sum(axis=2)).min(axis=1)
    hi = (slope[:, :, mid] + np.maximum(shares, 0).sum(axis=2)).max(axis=1)
    both = ((jumps < 0).any(axis=2) & (jumps > 0).any(axis=2)).any(axis=1)
    # the two lines nudged opposite ways: their end slopes differ by the curvature over two
    # nudges (DRIFT) where every kink at x was crossed, by a share where one was not
    ends = slope[:, :2][:, :, [0, -1]]
    tol = 8 * noise[:, :2].max(axis=1)[:, None] + DRIFT * np.abs(ends).max(axis=1)
    short = (np.abs(ends[:, 0] - ends[:, 1]) > tol).any(axis=1) if LINES > 1 else both & False
    return lo, hi, both, short


def calls(count: int) -> int:
    """Forward calls ``box`` makes for ``count`` moves."""
    return count * LINES * (1 + POINTS)


def loosened(engine, name: str, idx: np.ndarray, h: np.ndarray, a: np.ndarray,
             lo_each: np.ndarray, hi_each: np.ndarray, label: np.ndarray,
             sums: dict[int, tuple[float, float]], pairs: Links, most: int = MOST,
             ) -> tuple[dict[int, tuple[float, float]], Links, int,
                        tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """The tie groups' sums and the links (numeric/ties.py, links.py) of ``name``'s
    coordinates at a kink ``idx`` (steps ``h``, interval [``lo_each``, ``hi_each``] and group
    ``label`` each): each interval the analytical ``a`` misses widened to what the pieces
    touching x may give its move, where kinks bending both ways meet along it. Two zeros of one
    row of ``relu(x) @ W``, one moved up and the other down, may give a slope of one sign on
    both sides (each unit's weight times its upstream gradient, of opposite signs): yet
    relu'(0) = 0 for both, a right value, gives the move 0. Reads the ``most`` moves (at most
    MOST) ``a`` misses by most. A coordinate's own interval is one such move too: a coordinate
    of x meeting two tied units, one moved up and one down, lies beyond its own one-sided
    slopes when right (torch's backward of CS231n's two-layer net at quantized inputs, hidden
    units [2, 3, 8], failed 'does not match': trimE's repro of t43a F1). Returns (sums, links,
    moves read: ``calls`` each, each coordinate's (lo, hi))."""
    groups = sorted(sums)
    members = [np.flatnonzero(label == G) for G in groups]
    bounds = np.array([sums[G] for G in groups], dtype=np.float64).reshape(-1, 2)
    single = np.arange(idx.size)
    value = np.r_[np.array([a[m].sum() for m in members]), a[pairs.i] - a[pairs.j], a]
    low = np.r_[bounds[:, 0], pairs.lo, lo_each]
    high = np.r_[bounds[:, 1], pairs.hi, hi_each]
    noise = np.r_[np.zeros(len(groups)), pairs.noise, np.zeros(idx.size)]
    first_single = len(groups) + pairs.i.size

    def move_of(k: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], float]:
        if k < len(groups):
            m, w = members[k], np.ones(members[k].size)
        elif k < first_single:
            q = k - len(groups)
            m, w = np.array([pairs.i[q], pairs.j[q]]), np.array([1.0, -1.0])
        else:
            m, w = single[k - first_single : k - first_single + 1], np.ones(1)
        return {name: (idx[m], w)}, float(h[m].min()) / 4

    low, high, count = widened(engine, value, low, high, noise, move_of, most)
    if not count:
        return sums, pairs, 0, (lo_each, hi_each)
    sums = {G: (float(low[k]), float(high[k])) for k, G in enumerate(groups)}
    links = replace(pairs, lo=low[len(groups):first_single], hi=high[len(groups):first_single])
    return sums, links, count, (low[first_single:], high[first_single:])


def widened(engine, value: np.ndarray, low: np.ndarray, high: np.ndarray, noise: np.ndarray,
            move_of: Callable[[int], tuple[dict[str, tuple[np.ndarray, np.ndarray]], float]],
            most: int = MOST, rounds: int = ROUNDS) -> tuple[np.ndarray, np.ndarray, int]:
    """[``low``, ``high``] (copies) with each interval ``value`` misses (beyond ``noise``)
    widened to what the pieces touching x may give its move (``move_of(k)``: the move and its
    step), where kinks bending both ways meet along it; the ``most`` (at most MOST) that miss
    by most, each read again up to ``rounds`` times while it still misses. Returns (low, high,
    moves read: ``calls`` each)."""
    low, high = np.array(low, dtype=np.float64), np.array(high, dtype=np.float64)
    miss = _miss(value, low, high, noise)
    binding = np.flatnonzero(miss > 0)
    if not binding.size:
        return low, high, 0
    binding = binding[np.argsort(-miss[binding], kind="stable")[: min(most, MOST)]]
    moves, steps = zip(*(move_of(int(k)) for k in binding), strict=True)
    moves, steps = list(moves), np.array(steps)
    name = next(iter(moves[0]))  # the tensor whose chunk sizes the stacked calls
    wide_lo, wide_hi = low[binding].copy(), high[binding].copy()
    now_lo, now_hi = wide_lo.copy(), wide_hi.copy()
    bent = np.zeros(binding.size, dtype=bool)
    todo, count = np.arange(binding.size), 0
    for r in range(rounds):  # kinks a line crosses within one of its points blur: read again
        lo, hi, both = read(engine, [moves[q] for q in todo], steps[todo], name, r)
        count += todo.size
        bent[todo] |= both
        wide_lo[todo] = np.minimum(wide_lo[todo], lo)
        wide_hi[todo] = np.maximum(wide_hi[todo], hi)
        # kinks bending one way: the one-sided slopes are the bound (a max's tie)
        now_lo = np.where(bent, wide_lo, low[binding])
        now_hi = np.where(bent, wide_hi, high[binding])
        # read again only where kinks bent both ways: one-way lines stay one way
        todo = np.flatnonzero(bent & (_miss(value[binding], now_lo, now_hi, noise[binding]) > 0))
        if not todo.size:
            break
    low[binding], high[binding] = now_lo, now_hi
    return low, high, count


def affordable(engine, budget: float) -> int:
    """The binding moves ``widened`` may read within ``budget`` seconds (FLOOR to MOST)."""
    each = cost.copies_seconds(engine, calls(1), real=True)
    return int(min(MOST, max(FLOOR, budget / max(each, 1e-12))))


def _miss(v: np.ndarray, lo: np.ndarray, hi: np.ndarray, noise) -> np.ndarray:
    """How far each value lies beyond its interval, less its noise and SHARE of its size."""
    ref = np.maximum(np.abs(lo), np.abs(hi))
    return np.abs(v - np.clip(v, lo, hi)) - noise - SHARE * ref
