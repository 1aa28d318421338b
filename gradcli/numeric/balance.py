"""Ties across tensors held still: one coordinate moved against another so that no tie moves.

``relu(x @ W + b)`` with a unit at 0: moving ``b_j`` up by 1 and ``x_0`` by ``-W_j / |W_j|^2``
leaves the unit's pre-activation where it is (to first order), so the loss is linear along
that move, its two one-sided slopes equal. Every valid gradient (one slope ``s`` in [0, 1] per
tied unit, shared by every tensor) gives that move exactly that slope: the tied unit's part,
``s * (its pre-activation's move)``, is 0 whatever ``s`` is. A backward taking ``db`` from
``a >= 0`` and ``dx`` from ``a > 0`` gives it ``g`` more, and meets each coordinate's interval,
each tie group's sum and every link (which move one tensor, or every member by the same step)
all the same. So does a maxout routing a tie to one branch for ``dx`` and to the other for
``dW``: moving ``x_0`` and ``W2``'s column so that ``x_0 @ W1`` and ``x_0 @ W2`` move together
leaves the tie in place, and the answer's ``G . v`` is the sum of two branches' parts.

The claim needs each output to be regular (or its negative: ``max`` of smooth pieces, a convex
function of smooth ones): there the two one-sided slopes along a move are the largest and the
smallest value any valid gradient gives it, so equal slopes pin it down. Where an output sums
kinks of both orientations (``relu(a) - relu(b)``), two tied units could move in opposite
directions whose slopes cancel, and a valid gradient may not give the common slope. So a move
counts only where every output is linear along it at the point and at points nudged around it
in the plane of the two coordinates (each a piece touching the point, as numeric/pieces.py
reads them), each with the same slope: a pair of tied units moving against each other shows
there as a slope that changes from one piece to the next, and the pair is left alone.

The moves are found two ways. Where every tied output is a hinge, flat on one side of each
coordinate's move (``relu``, a max against a constant), the two one-sided slopes of each
coordinate alone give its tie's move signed (``g * delta``: the side that is not flat), and the
moves holding every tie still are the null space of those rows over the coordinates at them:
``relu(x @ W + b)`` with zero rows of ``x`` and ``b = 0`` moves every zero row by ``u`` and
``b`` by ``-W.T u``; a few random such moves are read. Elsewhere (``maximum(x @ W1, x @ W2)``,
whose two sides both slope) a coordinate is moved against one partner of another tensor.
For a pair (p, q) sharing an output at a kink of both, each output's jump (its right slope less
its left) along ``e_p`` and ``e_q`` gives the weight: a single tie's jump along ``e_p + mu e_q``
is ``|delta_p + mu delta_q|``, 0 for ``mu = -delta_p / delta_q``, so ``mu = +-J_p / J_q`` are
the candidates, and the move must show it (every output linear) before anything is judged.
The value compared is then the point nearest the values the other checks compare whose
``G_p + mu G_q`` is that slope: the analytical values themselves, up to round-off, for a valid
gradient.
"""

from __future__ import annotations

import math

import numpy as np

from gradcli.numeric import cost, nearest
from gradcli.numeric.methods import one_sided, one_sided_noise

OFFSETS = (1, 2, -1, -2)  # the second-order one-sided stencil, right then left
ANGLES = 8  # the nudged points around a move (pieces touching the point)
NUDGE = 8  # how far they lie, in steps of the move (their stencils stay in their piece)
PAIR_COPIES = (2 + 2 + 2 * ANGLES) * len(OFFSETS)  # a pair's, at most
FLOOR = 16  # pairs examined whatever the budget
MOVES = 4  # random moves read in a null space
SIGN_MOVES = 8  # random moves that tell the signs of a tie's coordinates (a max of two)
MOST_SIGNS = 12  # coordinates of one tie whose signs are sought (2 ** 11 patterns)
MOST = 1024  # coordinates of ties across tensors whose null space is sought
CLEAR = 1e-4  # a miss beyond this share of the move's values is no round-off: shown wrong
# ... of a move found from the pieces' gradients (_pieced), whose slack its slope carries
# beside its noise: at 1e-4 of the terms such a move sums, most of which cancel, torch's
# backward 1e-3 off at dx[1, 0] of a zero row (every unit tied) passed (outside test t56a F1),
# its misses 6e-6 ... 9e-5 of them where a right answer's are below 1e-8. (The null space's
# and the aligned moves keep CLEAR: a right answer's missed them by 4e-6 at integer data,
# outside test t57a F2.)
CLEAR_MOVE = 1e-6
SLACK = 1e-3  # a piece's slope may differ from the point's by the curvature over a nudge


class _Reader:
    """Moves of the positions of a tie across tensors (global positions over ``names``' coords)
    read output by output: the loss's part (g times the output), right and left slopes."""

    def __init__(self, engine, names, coords, h, analytic=None):
        self.engine, self.names, self.coords, self.h = engine, names, coords, h
        self.analytic = analytic  # the gradient under test at the positions, where given
        self.start = np.r_[0, np.cumsum([c.size for c in coords])]
        self.tensor = np.repeat(np.arange(len(names)), [c.size for c in coords])
        self.copies = 0
        # the positions whose answer lies off its own interval (check's ``failing``): a line's
        # miss one tensor of those explains is that tensor's alone (crossings._blamed)
        self.failing: np.ndarray | None = None
        self.at: np.ndarray | None = None  # the positions at ties, and what each alone
        self.reach: np.ndarray | None = None  # moves output by output (check sets them)

    def read(self, moves: list[np.ndarray], steps, base: np.ndarray | None = None):
        """``moves``: dense weight vectors over the positions, each read with its step from
        the point (plus ``base``, offsets over the positions): (right, left, noise), each
        (len(moves), outputs), and the loss's round-off along each move."""
        engine, m = self.engine, len(moves)
        # each move times its step, (m, positions): one offset's m copies moved at once
        scaled = np.asarray(steps, dtype=np.float64)[:, None] * np.stack(moves)
        rows = {}
        for t, n in enumerate(self.names):
            mine = slice(self.start[t], self.start[t + 1])
            r = np.repeat(engine.t64[n].ravel()[None, :], 1 + len(OFFSETS) * m, axis=0)
            if base is not None:
                r[:, self.coords[t]] += base[mine]
            for k, s in enumerate(OFFSETS):
                r[1 + k * m:1 + (k + 1) * m, self.coords[t]] += s * scaled[:, mine]
            rows[n] = r
        self.copies += len(OFFSETS) * m + (base is not None)
        d = engine.moved_jointly(rows) * engine.g.ravel()
        d = d.reshape(len(OFFSETS), m, -1)
        steps = np.asarray(steps, dtype=np.float64)[:, None]
        right = one_sided(d[0], d[1], steps, 1)
        left = one_sided(d[2], d[3], steps, -1)
        # each output's round-off, and the loss's largest term's: a tied relu's output is 0
        big = engine.gy.max(initial=0.0) + np.abs(d).max(initial=0.0)
        noise = 4 * one_sided_noise(engine.gy[None, :] + np.abs(d).max(axis=0) + big, steps,
                                    engine.unit)  # fmt: skip
        # the loss's own, along each move: what a sum over its outputs carries
        total = 4 * one_sided_noise(engine.gy.sum() + np.abs(d).sum(axis=(0, 2)), steps[:, 0],
                                    engine.unit)  # fmt: skip
        return right, left, noise, total

    def alone(self, at: np.ndarray, steps: np.ndarray, base: np.ndarray | None = None):
        """Each position of ``at`` moved alone by its step (``steps``, one each), from
        ``base``: (right, left, noise), each (positions, outputs), 32 moves a read (a read
        copies every tensor once per move)."""
        right, left, nz = [], [], []
        each = 32 if not at.size else min(32, max(1, self.per_copy() // len(OFFSETS)))
        for lo in range(0, at.size, each):
            part = slice(lo, lo + each)
            moves = [np.where(np.arange(self.tensor.size) == i, 1.0, 0.0) for i in at[part]]
            r, le, n, _ = self.read(moves, steps[part], base)
            right.append(r)
            left.append(le)
            nz.append(n)
        return np.concatenate(right), np.concatenate(left), np.concatenate(nz)

    def per_copy(self) -> int:
        """Copies of the tied tensors one call may stack within --max-memory."""
        e = self.engine
        one = e.forward_bytes + 2 * sum(e.t64[n].nbytes for n in self.names)
        return int(max(1, e.max_memory // max(1, one)))

    def step(self, w: np.ndarray) -> float:
        """The step along ``w`` that moves no position by more than its own step."""
        on = w != 0
        return float(np.min(self.h[on] / np.abs(w[on])))


def check(engine, names, coords, h, pos, out, gid, values, budget: float = math.inf,
          analytic: np.ndarray | None = None,
          whole: dict[int, np.ndarray] | None = None,
          failing: np.ndarray | None = None):  # fmt: skip
    """``values``: the values the other checks compare at the positions (the analytical ones
    where they meet every interval), changed in place where a move holding every tie still pins
    their sum down and they miss it. ``analytic``: the gradient under test at the positions,
    where given: a move it meets shows nothing wrong. ``whole``: tensor (its index in
    ``names``) -> its whole gradient under test, for the tensors a sample drew from (their
    broadcast-aligned moves take every coordinate of an index, in the sample or not).
    ``failing``: the positions whose answer lies off its own interval (crossings.py's blame).
    Returns (noise per position, the positions it showed wrong beyond doubt, moves examined,
    moves the budget left out, predicted seconds)."""
    reader = _Reader(engine, names, coords, np.asarray(h, dtype=np.float64), analytic)
    reader.failing = failing
    noise = np.zeros(values.size)
    shown = np.zeros(values.size, dtype=bool)
    at = np.flatnonzero((gid >= 0) & np.isfinite(values))
    if at.size < 2 or np.unique(reader.tensor[at]).size < 2:
        return noise, shown, 0, 0, 0.0
    one = cost.copies_seconds(engine, 1, real=True)
    if at.size > MOST or one * len(OFFSETS) * at.size > budget:
        # too many to read each alone: the moves of broadcast-aligned coordinates against each
        # other only (x[:, j] against the bias b[j] of relu(x + b))
        judged = _aligned(reader, at, values, noise, shown, max(budget, 0.0) / one, whole)
        return noise, shown, judged, int(not judged), one * reader.copies
    right, left, nz = reader.alone(at, reader.h[at])
    reader.at, reader.reach = at, np.abs(right) + np.abs(left)
    jump = np.abs(right - left) > 16 * nz  # (positions at, outputs)
    examined = _null(reader, at, right, left, nz, jump, values, noise, shown)
    pairs_left = budget - one * reader.copies
    done, undone = _pairs(reader, at, right, left, nz, jump, values, noise, shown, pairs_left)
    if not examined + done and _single_hinges(reader, at, right, left, nz, jump, budget):
        done = _shares(at, right, left, nz, jump, values, shown)
    if not examined + done and one * (reader.copies + len(OFFSETS) * HULL_MOVES) <= budget:
        done = _hull(reader, at, right, left, jump, values, shown)
    # and a tensor against one broadcast against it, index by index: a bias at its zero start
    # added to two zero rows of x moves both rows' units, and the null space's few random
    # moves of every position missed the rows' masks apart from b's (outside test t49a F3)
    aligned = _aligned(reader, at, values, noise, shown,
                       max(budget / one - reader.copies, 0.0), whole)  # fmt: skip
    done += aligned
    if not shown.any():
        # outputs that sum several tied units (relu(x @ W1 + b1) @ W2): the moves holding every
        # tie still, from the pieces' gradients, even where a broadcast-aligned move was judged:
        # one such move of x[:, j] against b[j] left a zero row's other moves unread, and a
        # backward 1e-3 off at x[1, 0] passed, as did dX, dW1 from a > 0 beside db1 from a >= 0
        # at 4 ties (outside test t57a F3)
        judged, cut = _pieced(reader, at, values, noise, shown,
                              max(budget / one - reader.copies, 0.0))  # fmt: skip
        examined += judged
        # cut short: counted as left out, so that a note says so (mixed masks passed at
        # --budget 1 with nothing said: outside test t53a F1)
        undone += int(cut and not shown.any())
        # where no move at all was judged, each tie's part (crossings.py: one share per tie; a
        # max of three tied values split evenly, right, is no share on a line crossing two of
        # its ties: so, as before, not where an aligned move was judged)
        if not shown.any() and not aligned:
            from gradcli.numeric import crossings  # LAZY: only at ties across tensors

            done += crossings.judge(reader, at, values, shown,
                                    max(budget / one - reader.copies, 0.0))  # fmt: skip
    return noise, shown, examined + done, undone, one * reader.copies


SHARE_WORK = 4e8  # multiply-adds the shares may take
SHARE_MARGIN = 10.0  # a residual this many times its tolerance is no solver's shortfall


def _single_hinges(reader, at, right, left, nz, jump, budget: float) -> bool:
    """Whether each tied output is a hinge of one pre-activation (relu(a)), which two of its
    coordinates moved against each other by their moves of it hold still, and not a max of
    several inputs (max(a, b, c), whose tie splits among them: a's share and b's differ), which
    no such move holds: one move per tied output, read once."""
    tied = np.flatnonzero(jump.any(axis=0))
    m = (right + left)[:, tied]
    moves, outs = [], []
    for k, o in enumerate(tied):
        on = np.flatnonzero(jump[:, o] & (m[:, k] != 0))
        if on.size < 2:
            continue
        p, q = on[0], on[1]
        w = np.zeros(reader.tensor.size)
        w[at[p]], w[at[q]] = 1.0 / m[p, k], -1.0 / m[q, k]
        moves.append(w * (reader.h[at[p]] * abs(m[p, k])))
        outs.append(o)
    if not moves:
        return False
    one = cost.copies_seconds(reader.engine, 1, real=True)
    if one * (reader.copies + len(OFFSETS) * len(moves)) > budget:
        return False
    r, le, n, _ = reader.read(moves, [reader.step(w) for w in moves])
    k = np.arange(len(moves))
    o = np.asarray(outs)
    scale = np.abs(r[k, o]) + np.abs(le[k, o])
    return bool(np.all(np.abs(r[k, o] - le[k, o]) <= 16 * n[k, o] + 1e-6 * scale))


def _shares(at, right, left, nz, jump, values, shown) -> int:
    """Where every tied output is a hinge (flat on one side of each coordinate's move: relu of
    a smooth pre-activation), a valid gradient gives each tied output one share s in [0, 1] of
    its move, the same in every tensor: at each tied position p, the answer is its smooth
    outputs' slopes plus sum_o s_o (right + left)[p, o]. The shares nearest the answer (a
    bounded least squares, numpy's own) must reproduce it: a dead unit's dW from a > 0 with db
    from a >= 0 asks s = 0 of W and 1 of b (t25 F2, where no move holds every tie still).
    Returns 1 when it judged."""
    tied = np.flatnonzero(jump.any(axis=0))
    if not tied.size:
        return 0
    r, le, n = right[:, tied], left[:, tied], nz[:, tied]
    on = jump[:, tied]
    if np.any(on & (np.minimum(np.abs(r), np.abs(le)) > 16 * n + 1e-12 * np.abs(r - le))):
        return 0  # a side of some tied output slopes both ways: no hinge
    m = r + le  # (positions, tied outputs): g times each tied pre-activation's move
    if m.size * nearest.SHARE_STEPS > SHARE_WORK:
        return 0  # a second or more of it: the random moves below read what they can
    base = right.sum(axis=1) - r.sum(axis=1)  # the smooth outputs' slopes
    target = values[at] - base
    s = nearest.shares(m, target)
    resid = m @ s - target
    tol = (16 * nz.sum(axis=1) + CLEAR * (np.abs(values[at]) + np.abs(m).sum(axis=1)
                                          + np.abs(base)) + 1e-300)  # fmt: skip
    bad = np.abs(resid) > SHARE_MARGIN * tol
    if bad.any():
        values[at] = m @ s + base
        shown[at[bad]] = True
    return 1


HULL_MOVES = 32  # random moves of every tied position, where no move holds every tie still


def _hull(reader, at, right, left, jump, values, shown) -> int:
    """Where no move holds every tie still (every pre-activation of a dead unit tied: a zero
    column of W with b = 0, or W = 0, and dW from a > 0 with db from a >= 0 passed, t25 F2):
    random moves of every tied position, along each of which a valid gradient gives each
    output a slope between its two one-sided ones (a hinge's share s in [0, 1] of its move,
    a max's convex mix: the whole range for a single hinge or a sum of same-facing ones). Only
    where every tied output's jumps face one way, coordinate by coordinate (relu(a) - relu(b)
    faces both, and its valid gradients leave that range). Returns the moves judged."""
    tied = np.flatnonzero(jump.any(axis=0))
    if not tied.size:
        return 0
    facing = (right - left)[:, tied] * jump[:, tied]
    if np.any((facing > 0).any(axis=0) & (facing < 0).any(axis=0)):
        return 0
    rng = np.random.default_rng(at.size + 1)
    moves = []
    for k in range(HULL_MOVES):
        w = np.zeros(values.size)
        # every other move about one tie: the positions sharing a tied output with one of
        # them (a unit's W column and bias), where a mix shows against fewer other outputs
        near = np.ones(at.size, dtype=bool)
        if k % 2:
            seed = int(rng.integers(at.size))
            near = (jump[:, tied] & jump[seed, tied]).any(axis=1)
        w[at[near]] = rng.standard_normal(int(near.sum()))
        if np.unique(reader.tensor[at[w[at] != 0]]).size >= 2:
            moves.append(w)
    if not moves:
        return 0
    steps = [reader.step(w) for w in moves]
    r, le, _, total = reader.read(moves, steps)
    judged = 0
    for k, w in enumerate(moves):
        lo = float(np.minimum(r[k], le[k]).sum())
        hi = float(np.maximum(r[k], le[k]).sum())
        given = float(values[at] @ w[at])
        size = float(np.abs(values[at] * w[at]).sum()) + abs(lo) + abs(hi)
        miss = given - min(max(given, lo), hi)
        judged += 1
        if abs(miss) > CLEAR * size + 16 * float(total[k]):
            values[at] -= miss / float(w[at] @ w[at]) * w[at]
            shown[at] = True
    return judged


ALIGNED = 16  # indices of a broadcast-aligned pair of tensors moved against each other, at most
ALIGNED_FLOOR = 4  # ... whatever the budget


def _aligned(reader, at, values, noise, shown, copies: float,
             whole: dict[int, np.ndarray] | None = None) -> int:  # fmt: skip
    """Where the tied coordinates are too many to read each alone (MOST): for each pair of
    tensors one of which broadcasts against the other's last axes (a bias ``b`` of shape
    ``(D,)`` added to ``x`` of shape ``(N, D)``; equal shapes too), every tied ``x[..., j]`` moved
    one way and ``b[j]`` the other, or both the same way (``x - b``): such a move holds the
    ties ``x + b`` makes at j still, and ``_judge`` pins its slope where every output is linear
    along it, at the point and around it (else nothing is judged). ``relu(x + b) @ W`` on 8
    digits' 5,196 zeros with dx from ``>= 0`` and db from ``> 0`` passed, the tie rule across
    tensors unchecked (outside test t48a F1). Up to ALIGNED indices a pair, spread over them,
    within ``copies`` (at least ALIGNED_FLOOR). Returns the moves judged.

    A tensor in ``whole`` was sampled: the members of an index's ties outside the sample are
    unknown, and moving ``b[j]`` against the sampled ``x[n, j]`` alone crossed the others'
    kinks, so nothing was judged and the mixed masks passed sampled at ``--budget 1`` (t48a
    F1). There every ``x[..., j]`` moves, tied or not: ``x + b`` still does not (``_whole``)."""
    whole = whole or {}
    if reader.reach is None:  # no single reads: no slack from them
        reader.at, reader.reach = at, np.zeros((at.size, reader.engine.g.size))
    shapes = [reader.engine.t64[n].shape for n in reader.names]
    tied = np.zeros(reader.tensor.size, dtype=bool)
    tied[at] = True
    per = (2 + 2 * ANGLES) * len(OFFSETS) + 2  # a move's copies in _judge, at most
    judged = tried = 0
    for ta, sa in enumerate(shapes):
        for tb, sb in enumerate(shapes):
            if ta == tb or len(sb) > len(sa) or tuple(sa[len(sa) - len(sb):]) != tuple(sb):
                continue
            if len(sb) == len(sa) and ta > tb:
                continue  # an equal-shaped pair once
            size = int(np.prod(sb)) if sb else 1
            a_pos = np.arange(reader.start[ta], reader.start[ta + 1])
            b_pos = np.arange(reader.start[tb], reader.start[tb + 1])
            a_idx = reader.coords[ta] % size
            b_idx = reader.coords[tb]
            a_tied, b_tied = a_idx[tied[a_pos]], b_idx[tied[b_pos]]
            if ta in whole or tb in whole:  # a sample's: an index tied on either side
                both = np.union1d(a_tied, b_tied)
            else:
                both = np.intersect1d(a_tied, b_tied)
            if not both.size:
                continue
            pick = both[np.linspace(0, both.size - 1, min(ALIGNED, both.size)).astype(int)]
            for j in np.unique(pick):
                for sign in (-1.0, 1.0):
                    if tried >= ALIGNED_FLOOR and (tried + 1) * per > copies:
                        return judged
                    tried += 1
                    if ta in whole or tb in whole:
                        judged += _whole(reader, values, noise, shown, {
                            ta: (np.arange(j, int(np.prod(sa)), size) if ta in whole
                                 else reader.coords[ta][(a_idx == j) & tied[a_pos]], 1.0),
                            tb: (np.array([j]) if tb in whole
                                 else b_idx[(b_idx == j) & tied[b_pos]], sign),
                        }, whole)  # fmt: skip
                        continue
                    w = np.zeros(values.size)
                    w[a_pos[(a_idx == j) & tied[a_pos]]] = 1.0
                    w[b_pos[(b_idx == j) & tied[b_pos]]] = sign
                    judged += _judge(reader, w, values, noise, shown)
    return judged


def _whole(reader, values, noise, shown, move: dict[int, tuple[np.ndarray, float]],
           whole: dict[int, np.ndarray]) -> int:  # fmt: skip
    """``_judge`` along a move of coordinates some of which lie outside the positions (``move``:
    tensor -> (its flat indices, their weight)), read by a reader of their own: those outside
    start at the gradient under test (``whole``, a sampled tensor's), and what the move shows
    is put back at the positions it shares with ``reader``."""
    from gradcli.numeric.kinks import one_sided_step  # LAZY: kinks reads far more than this

    engine = reader.engine
    coords, h, back, given, weight = [], [], [], [], []
    for t, n in enumerate(reader.names):
        idx, wt = move.get(t, (np.zeros(0, dtype=np.int64), 0.0))
        idx = np.unique(np.asarray(idx, dtype=np.int64))
        mine = reader.coords[t]
        at = np.full(idx.size, -1, dtype=np.int64)  # its position in reader, if it has one
        if mine.size:
            order = np.argsort(mine, kind="stable")
            k = np.searchsorted(mine[order], idx).clip(max=mine.size - 1)
            at = np.where(mine[order][k] == idx, reader.start[t] + order[k], -1)
        step = one_sided_step(engine, n)[idx] / 4  # the detector's (across.py's) at a kink
        h.append(np.where(at >= 0, reader.h[np.maximum(at, 0)], step))
        if t in whole:
            given.append(whole[t].ravel()[idx])
        else:  # every coordinate a position of reader's
            inner = reader.analytic if reader.analytic is not None else values
            given.append(inner[np.maximum(at, 0)])
        coords.append(idx)
        back.append(at)
        weight.append(np.full(idx.size, wt))
    back = np.concatenate(back)
    ana = np.concatenate(given)
    sub = _Reader(engine, reader.names, coords, np.concatenate(h),
                  ana if reader.analytic is not None else None)  # fmt: skip
    sub.at = np.arange(back.size)
    rows = np.searchsorted(reader.at, np.maximum(back, 0)).clip(max=reader.at.size - 1)
    known = (back >= 0) & (reader.at[rows] == back)
    sub.reach = np.where(known[:, None], reader.reach[rows], 0.0)
    put = np.where(back >= 0, values[np.maximum(back, 0)], np.nan)
    ok = (back >= 0) & np.isfinite(put)
    vals = np.where(ok, put, ana)
    nz, sh = np.zeros(back.size), np.zeros(back.size, dtype=bool)
    done = _judge(sub, np.concatenate(weight), vals, nz, sh)
    reader.copies += sub.copies
    values[back[ok]] = vals[ok]
    noise[back[ok]] = np.maximum(noise[back[ok]], nz[ok])
    shown[back[ok]] |= sh[ok]
    return done


LOOSE = 1e-6  # a near-null move's crossing, relative to its slopes, beyond which it is no move


def _judge(reader, w, values, noise, shown, loose: bool = False,
           resolve: np.ndarray | None = None) -> int:
    """Move along ``w`` (weights over the positions): where every output is linear along it,
    at the point and at the pieces around it, the answer's ``G . w`` must be the loss's slope.
    ``values`` is moved to the nearest point that gives it. Returns 1 when it was judged.

    ``loose``: ``w`` holds every tie still only up to the round-off of the pieces' gradients it
    was found from (``_pieced``): each tied hinge h still moves by a little ``u_h``, and a valid
    gradient's slope may differ from the loss's by up to ``sum_h |c_h u_h|``. The two one-sided
    slopes at the point differ by those terms; their difference, times a margin for terms that
    cancel, is the slack (where it stays below LOOSE of the slopes, else nothing is judged).

    ``resolve`` (per output, or None): the jumps the nudged points must tell apart, a pair's
    own (_pairs). Where their slack (the curvature over a nudge) cannot, nothing is judged: two
    ties of a single output, one of x and one of W1, weighted 1 and -1723 so that their jumps
    cancel at the point, read alike at every nudged point within a slack of 1723 times W1's
    slope, and torch's backward was held to a slope no piece has (outside test t55b F2)."""
    step = reader.step(w)
    right, left, nz, total = reader.read([w], [step])
    right, left, nz = right[0], left[0], nz[0]
    # each output's own size of slope along w, from each coordinate's alone: a tied unit's
    # output is 0 and its slope along w too, up to the curvature over a nudge
    scale = np.abs(right) + np.abs(left) + np.abs(w[reader.at]) @ reader.reach
    spread = np.abs(right - left)
    if not loose and np.any(spread > 16 * nz + 1e-9 * scale):
        return 0  # a tie moves: its pieces give different slopes
    on = np.flatnonzero(w)
    rng = np.random.default_rng(on.size)
    # the other tied positions are nudged too: the pieces the move's own plane enters are not
    # all that touch the point. Units of one tied row moving both ways along the move, their
    # parts cancelling at the point (c_1 + c_2 = -c_4 with integer weights), slope alike at
    # every point of the plane, yet torch's piece (every unit off) gives the move another
    # slope, and its backward failed (outside test t55b F2)
    rest = (np.zeros(0, dtype=np.int64) if reader.at is None
            else np.setdiff1d(reader.at, on))  # fmt: skip
    # ... and the plane alone as well: with every other position nudged as far, the two ties a
    # pair's move crosses (their jumps cancelling at the point) sat on opposite sides at all
    # eight points, one unit on, never both off, and torch's backward of a relu net on
    # integers failed at a slope no piece of its own gives (t57a's gen.py, seed 2)
    # (a pair's own plane: a move of more positions nudges them at random signs anyway)
    plane = ANGLES if on.size == 2 and rest.size else 0
    for k in range(plane + ANGLES):
        d = np.zeros(w.size)
        if on.size == 2:
            theta = 2 * math.pi * k / ANGLES + 0.3
            d[on] = (math.cos(theta), math.sin(theta))
        else:
            d[on] = rng.choice((-1.0, 1.0), on.size)
        if k >= plane:
            d[rest] = rng.choice((-1.0, 1.0), rest.size)
        base = NUDGE * d * reader.h  # each position by NUDGE of its own steps
        r, le, n, _ = reader.read([w], [step], base)
        tol = 16 * n[0] + SLACK * scale
        if resolve is not None and np.any(4 * tol > resolve):
            return 0  # a jump of the pair's own size would pass unseen
        if np.any(np.abs(r[0] - le[0]) > tol) or np.any(np.abs(r[0] - right) > tol):
            return 0  # ties moving against each other: no slope is pinned down
    slack = 0.0
    if loose:
        slack = 4 * math.sqrt(on.size) * float(spread.sum())
        if slack > LOOSE * float(scale.sum()):
            return 0  # crossing ties too far to pin a slope down
    slope = float(right.sum())
    wiggle = float(total[0]) + slack / 16
    miss = float(values[on] @ w[on]) - slope
    size = float(np.abs(values[on] * w[on]).sum()) + abs(slope)
    if abs(miss) <= 16 * wiggle:
        return 1  # the values meet it already: left as they are
    given = reader.analytic
    tol = (CLEAR_MOVE if loose else CLEAR) * size + 16 * wiggle
    if given is not None and abs(float(given[on] @ w[on]) - slope) <= tol:
        # the answer meets it: what missed is the values the intervals and sums moved it to,
        # which assume one kink a coordinate (torch's own backward of CS231n's two-layer net,
        # a coordinate of x at two tied units: outside test t43a F1); the pieces judge them
        return 1
    norm = float(w @ w)
    values[on] -= miss / norm * w[on]
    noise[on] = np.maximum(noise[on], 16 * wiggle * np.abs(w[on]) / norm)
    if abs(miss) > tol:
        shown[on] = True
    return 1


def _null(reader, at, right, left, nz, jump, values, noise, shown) -> int:
    """Moves holding every tie still: the null space of each tied output's move (``g *
    delta``, signed up to the output's own sign) over the positions. A hinge's is ``right +
    left`` (one of them 0); elsewhere each coordinate gives its size, ``|right - left|``, and
    a few random moves of them all its signs (``_signs``). An output neither gives holds
    still by not moving its coordinates at all."""
    tied = np.flatnonzero(jump.any(axis=0))
    if not tied.size:
        return 0
    size = (np.abs(right - left)[:, tied] * jump[:, tied]).T  # (tied outputs, positions at)
    # a hinge's move (one side flat) is signed already: right + left, its one sloping side
    guess = np.sign((right + left)[:, tied]).T
    signs = _signs(reader, at, size, tied, np.where(guess == 0, 1.0, guess))
    unknown = ~np.isfinite(signs).all(axis=1)
    free = ~jump[:, tied[unknown]].any(axis=1)  # positions that may move
    rows = np.where(np.isfinite(signs), size * signs, 0.0)
    if not free.any():
        return 0
    rows = rows[:, free] / np.maximum(np.abs(rows[:, free]).max(axis=1, keepdims=True), 1e-300)
    rows = rows * reader.h[at][free][None, :]  # in steps: each position's own scale
    _, sv, vt = np.linalg.svd(rows, full_matrices=True)
    rank = int(np.sum(sv > 1e-9 * (sv[0] if sv.size else 1.0)))
    basis = vt[rank:]
    if not basis.shape[0]:
        return 0
    rng = np.random.default_rng(at.size)
    judged = 0
    for _ in range(MOVES):
        u = np.zeros(at.size)
        u[free] = rng.standard_normal(basis.shape[0]) @ basis
        u[np.abs(u) < 1e-9 * np.abs(u).max()] = 0.0
        if np.unique(reader.tensor[at[u != 0]]).size < 2:
            continue  # one tensor's moves: its own ties' links and sums see them
        w = np.zeros(values.size)
        w[at] = u * reader.h[at]
        judged += _judge(reader, w, values, noise, shown)
    return judged


PIECES = 4  # nudged points read at a time for the pieces' null space
MOST_PIECES = 64  # ... at most
RANK = 1e-4  # a singular value below this share of the largest is a piece's curvature
STABLE = 3  # batches of pieces that add no rank before the rank is taken as found
PIECE_NUDGE = 32  # a piece's point, in steps off the point (Gaussian in each position)
PIECE_SHRINK = 4  # ... read by steps this much smaller than the position's


def _pieced(reader, at, values, noise, shown, copies: float) -> tuple[int, bool]:
    """Moves holding every tie still, from the gradients of the pieces around the point: an
    output summing several tied hinges (``relu(x @ W1 + b1) @ W2`` at a zero row of ``x`` with
    ``b1 = 0``: seven units in each output) shows in its jumps no single tie's move, and
    ``_null``'s rows, built on one, missed ``db1`` from ``a >= 0`` beside ``dx`` and ``dW1`` from
    ``a > 0`` at every budget (outside test t51a F1). Each output's gradient over the positions,
    read at random points nudged off the point (each inside a piece touching it), changes from
    one piece to another only along its tied hinges' normals: the moves orthogonal to every
    change seen hold every tie still. Pieces are read PIECES at a time until the changes' rank
    stops growing; a move that still crosses a tie (a piece not read) is not judged by
    ``_judge``, which reads it linear at the point and around it first. ``copies``: forward
    copies left. Returns (the moves judged, whether ``copies`` cut the pieces short of a
    rank that held)."""
    per = 2 * len(OFFSETS) * at.size  # a piece's copies
    if copies < _pieces_floor(at):
        return 0, True
    rng = np.random.default_rng(at.size + 2)
    h = reader.h[at]
    first: dict[int, np.ndarray] = {}  # output -> its gradient at the first piece that read it
    gram = np.zeros((at.size, at.size))
    rank, read, steady = -1, 0, 0
    cut = False  # copies ran out before the rank held
    while read + PIECES <= MOST_PIECES:
        if (read + PIECES) * per > copies - MOVES * (2 + 2 * ANGLES) * len(OFFSETS):
            cut = True
            break
        for _ in range(PIECES):
            base = np.zeros(values.size)
            # (Gaussian: no sum of them ties again, as +-1 nudges of quantized weights did) far
            # and read close: a stencil that crosses a tie loses its output's row, and eight
            # tied units an output lost most (a zero row's eighth tied direction never showed)
            base[at] = PIECE_NUDGE * rng.standard_normal(at.size) * h
            # at tau and 2 tau: a piece's gradient moves with its curvature, the extrapolation
            # to the point does not (exactly, on a piece of a quadratic: relu(x @ W1 + b1))
            r, le, n = reader.alone(at, h / PIECE_SHRINK, base)
            r2, le2, n2 = reader.alone(at, h / PIECE_SHRINK, 2 * base)
            read += 1
            inside = np.all((np.abs(r - le) <= 16 * n + SLACK * (np.abs(r) + np.abs(le)))
                            & (np.abs(r2 - le2) <= 16 * n2 + SLACK * (np.abs(r2) + np.abs(le2))),
                            axis=0)  # fmt: skip
            for o in np.flatnonzero(inside):
                grad = (r[:, o] + le[:, o] - 0.5 * (r2[:, o] + le2[:, o])) * h  # in steps
                if o not in first:
                    first[o] = grad
                    continue
                # scaled by the output's own gradient, not the change's: a change that is
                # the piece's curvature alone stays as small as it is
                row = grad - first[o]
                top = max(np.abs(grad).max(), np.abs(first[o]).max())
                if top > 0:
                    gram += np.outer(row / top, row / top)
        vals, vecs = np.linalg.eigh(gram)
        now = int(np.sum(vals > RANK**2 * max(vals[-1], 1e-300)))
        # a tie whose pieces the random points happened not to split shows in no change: the
        # rank must hold over STABLE batches (a zero row's 12 tied directions read 11 after
        # two batches alike, and every move found crossed the twelfth)
        steady = steady + 1 if now == rank else 0
        rank = now
        if steady >= STABLE or now == at.size:
            break
    if not gram.any() or rank >= at.size:
        return 0, cut
    basis = vecs[:, vals <= RANK**2 * max(vals[-1], 1e-300)].T
    judged = 0
    for _ in range(MOVES):
        u = rng.standard_normal(basis.shape[0]) @ basis
        u[np.abs(u) < 1e-9 * np.abs(u).max()] = 0.0
        if np.unique(reader.tensor[at[u != 0]]).size < 2:
            continue  # one tensor's moves: its own ties' links and sums see them
        w = np.zeros(values.size)
        w[at] = u * h
        judged += _judge(reader, w, values, noise, shown, loose=True)
    return judged, cut


def _pieces_floor(at: np.ndarray) -> int:
    """The copies ``_pieced`` needs at least: two batches of pieces and the moves' reads."""
    return 2 * len(OFFSETS) * at.size * 2 * PIECES + MOVES * (2 + 2 * ANGLES) * len(OFFSETS)


def _signs(reader, at, size, outputs, guess) -> np.ndarray:
    """Each output's coordinates' signs (+-1; NaN where unknown) that make its jumps along
    SIGN_MOVES random moves of every position ``|sum_i v_i s_i size_i|``: a single tie's (a
    max of two pieces). ``size``: (outputs, positions at), 0 off it; ``guess``: the signs
    tried first (a hinge's), else every pattern of up to MOST_SIGNS coordinates. A wrong
    pattern costs nothing but the move: a move that does not hold a tie still is not judged."""
    rng = np.random.default_rng(at.size + 1)
    rho = rng.standard_normal((SIGN_MOVES, at.size))
    moves, steps = [], []
    for r in rho:
        w = np.zeros(reader.tensor.size)
        w[at] = r * reader.h[at]
        moves.append(w)
        steps.append(reader.step(w))
    right, left, nz, _ = reader.read(moves, steps)
    seen = np.abs(right - left)[:, outputs].T  # (outputs, moves)
    slack = 16 * nz[:, outputs].T
    out = np.where(size != 0, np.nan, 0.0)
    for k in range(size.shape[0]):
        on = np.flatnonzero(size[k])
        if not on.size:
            continue
        terms = size[k, on][None, :] * (rho[:, on] * reader.h[at][on][None, :])  # (moves, on)
        tol = 1e-5 * np.abs(terms).sum(axis=1).max() + slack[k].max()
        if np.abs(np.abs(terms @ guess[k, on]) - seen[k]).max() <= tol:
            out[k, on] = guess[k, on]
            continue
        if on.size > MOST_SIGNS:
            continue
        bits = (np.arange(2 ** (on.size - 1))[:, None] >> np.arange(on.size - 1)) & 1
        pattern = np.c_[np.ones(bits.shape[0]), 1 - 2 * bits]  # (patterns, on)
        fit = np.abs(pattern @ terms.T)  # (patterns, moves)
        err = np.abs(fit - seen[k][None, :]).max(axis=1)
        best = np.argsort(err)[:2]
        if err[best[0]] <= tol and (best.size < 2 or err[best[1]] > 100 * tol):
            out[k, on] = pattern[best[0]]
    return out


def _pairs(reader, at, right, left, nz, jump, values, noise, shown, budget: float):
    """Each position moved against one partner of another tensor sharing its tied outputs,
    weighted by the ratio of their jumps there (both signs tried): (judged, left out)."""
    tensor = reader.tensor[at]
    chosen = []
    for a in range(at.size):
        others = [b for b in range(at.size) if tensor[b] != tensor[a]
                  and np.array_equal(jump[a], jump[b]) and jump[a].any()]  # fmt: skip
        if others:
            b = min(others, key=lambda b: (tensor[b], b))
            key = (min(a, b), max(a, b))
            if key not in chosen:
                chosen.append(key)
    each = cost.copies_seconds(reader.engine, PAIR_COPIES, real=True)
    count = len(chosen) if each * len(chosen) <= budget else int(
        min(len(chosen), max(FLOOR, max(budget, 0.0) / each)))  # fmt: skip
    judged = 0
    for a, b in chosen[:count]:
        k = jump[a]
        ja, jb = (right[a] - left[a])[k], (right[b] - left[b])[k]
        ratio = np.abs(ja / jb)
        if np.ptp(ratio) > 1e-6 * ratio.max():
            continue  # no one weight holds every shared tie still
        need = np.full(jump.shape[1], np.inf)
        need[k] = np.minimum(np.abs(ja), np.abs(jb) * ratio)
        for mu in (-float(ratio[0]), float(ratio[0])):
            w = np.zeros(values.size)
            w[at[a]], w[at[b]] = 1.0, mu
            if _judge(reader, w, values, noise, shown, resolve=need):
                judged += 1
                break
    return judged, len(chosen) - count
