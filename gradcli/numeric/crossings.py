"""Ties across tensors no move holds still: each tie's part, read where a line crosses it.

A unit tied in every row (a zero column of ``W1`` with ``b1 = 0``) beside zero rows of ``x``
fed to ``relu(x @ W1 + b1) @ W2``: the tied pre-activations' directions span every move of
their coordinates, so no move holds every tie still (numeric/balance.py), and each output sums
several of them (through ``W2``), so no output is one hinge whose share could be solved for.
A backward taking ``dW1`` from ``a > 0`` and ``db1`` from ``a >= 0`` passed there (fuzzed
two-layer nets). Valid gradients are still one slope ``t_h`` in [0, 1] per tie, shared by
every tensor: ``G = g_0 + sum_h t_h C_h``, ``C_h`` the tie's part of the gradient.

Each ``C_h`` shows where a line crosses tie h: along ``y(s) = x + nu + s d`` (``nu`` a small
offset, ``d`` a direction, both random over the tied coordinates) the loss bends once at each
tie, at ``s_h = -<a_h, nu> / <a_h, d>``, apart for a generic ``nu``. The bends are found on a
grid of the loss along the line, each read again on finer grids until it is one; the gradient
read between two bends less the one before is ``+-C_h``. From the line's first piece, ``g_0``,
the valid gradients are ``g_0 + sum_i u_i D_i`` with every ``u_i`` in [0, 1] (a tie the line
turns on, ``u = t``; one it turns off, ``u = 1 - t``), and the answer must be one of them: a
bounded least squares whose residual beyond its tolerance shows it wrong. Where the line's
last piece is not the one the point enters along ``d`` (a bend beyond its reach), or two bends
stay within one cell of the finest grid, nothing is judged.
"""

from __future__ import annotations

import math

import numpy as np

from gradcli.numeric import nearest

GRID = 129  # loss values along the line, first pass
SPAN = 64.0  # the line reaches this many offsets (nu's size) either way
NU = 1 / 8  # the offset's size, in steps
FINER = 33  # points a bent stretch is read again at
DEPTH = 10  # finer passes, at most
NARROW = 1e-6  # ... until each stretch is this narrow, relative to the line's reach
BENT = 1e-4  # a slope change below this share of the slopes is curvature, not a bend
SHRINK = 8  # a gradient's stencil, this much shorter than the gap it is read in (in s)
REL = 1e-3  # the fit's tolerance, relative to the values it adds (curvature over the line)
MARGIN = 10.0  # a residual this many times its tolerance is no solver's shortfall
MOST = 64  # bends judged at most
LINES = 4  # lines read, at most, for two that judge


def judge(reader, at: np.ndarray, values: np.ndarray, shown: np.ndarray,
          copies: float) -> int:  # fmt: skip
    """Your answer at the positions ``at`` (``reader.analytic``, else ``values``) held to the
    gradients one share per tie gives, read along a line (``reader``: numeric/balance.py's
    _Reader), and where it misses them, along a second line too: two bends a line took for one
    (their shares tied together) would fail a right answer, and two lines do not merge the same
    ties. ``values`` is moved to the nearest valid gradient and ``shown`` set where both lines
    show a residual beyond doubt. ``copies``: forward copies left. Returns 1 when it judged."""
    given = reader.analytic[at] if reader.analytic is not None else values[at]
    before = reader.copies
    judged: list[tuple[np.ndarray, np.ndarray]] = []
    for seed in range(LINES):  # until two lines judged (a line may read nothing)
        got = _line(reader, at, given, seed, copies - (reader.copies - before))
        if got is not None:
            judged.append(got)
            if not got[1].any():
                return 1  # a line whose shares give the answer: nothing shown
        if len(judged) == 2:
            break
    if len(judged) < 2:
        return int(bool(judged))
    fit, bad = judged[0]
    values[at] = fit
    shown[at[bad]] = True
    return 1


def _line(reader, at: np.ndarray, given: np.ndarray, seed: int, copies: float):
    """(the nearest valid gradient, where the answer ``given`` misses it beyond doubt) read
    along one random line (``seed``), or None where nothing could be judged."""
    P = at.size
    h = reader.h[at]
    rng = np.random.default_rng((at.size, seed))
    d = rng.standard_normal(P) * h
    nu = NU * rng.standard_normal(P) * h
    span = SPAN * NU
    spent = 0

    def losses(s: np.ndarray) -> np.ndarray:
        nonlocal spent
        spent += s.size
        return _losses(reader, at, [nu + t * d for t in s])

    s = np.linspace(-span, span, GRID)
    L = losses(s)
    noise = 4 * reader.engine.unit * (float(reader.engine.gy.sum()) + float(np.abs(L).max()))
    bends = _bends(s, L, noise)
    if bends is None:
        return None
    # each stretch read again until it is narrow: two bends apart by more than a few of its
    # cells fall in stretches of their own (at three passes, bends 0.003 apart on a line of 16
    # stayed one, and a right backward failed: its two ties could take no shares of their own)
    for _ in range(DEPTH):
        finer = []
        for lo, hi in bends:
            if hi - lo <= NARROW * span:
                finer.append((lo, hi))
                continue
            t = np.linspace(lo, hi, FINER)
            got = _bends(t, losses(t), noise)
            if got is None:
                return None
            # none: the finer grid's round-off hides it, and it stays as read (a second line
            # is read before any answer is shown wrong: two lines do not merge the same ties)
            finer += got or [(lo, hi)]
        if finer == bends:
            break
        bends = finer
        if len(bends) > MOST or spent > copies:
            return None
    if not bends:
        return None
    # the gradient between two bends, and beyond the first and last
    edges = [-span] + [0.5 * (lo + hi) for lo, hi in bends] + [span]
    width = min(hi - lo for lo, hi in bends)
    gaps = [0.5 * (a + b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    # (the line's ends are no bends: the first and last gaps reach to their one bend)
    gaps[0], gaps[-1] = edges[1] - 0.25 * span, edges[-2] + 0.25 * span
    room = [min(abs(g - a) if k else math.inf, abs(b - g) if k < len(gaps) - 1 else math.inf)
            for k, (g, a, b) in enumerate(zip(gaps, edges[:-1], edges[1:], strict=True))]
    if min(room) < 4 * width or (len(gaps) + 2) * 4 * P + spent > copies:
        return None  # two bends too close to read a gradient between them
    grads, nz = [], []
    for g, r in zip(gaps, room, strict=True):
        got = _gradient(reader, at, nu + g * d, r, h)
        if got is None:
            return None
        grads.append(got[0])
        nz.append(got[1])
    # every bend within reach: the line's ends are the pieces the point enters along -d, +d
    scale = max(float(np.abs(np.array(grads)).max()), 1e-300)
    for side, end in ((-1.0, grads[0]), (1.0, grads[-1])):
        got = _gradient(reader, at, side * 0.25 * span * d, 0.25 * span, h)
        if got is None or np.abs(got[0] - end).max() > REL * scale + 16 * (got[1] + nz[0]).max():
            return None
    g0 = grads[0]
    D = np.diff(np.array(grads), axis=0).T  # (positions, bends)
    target = given - g0
    u = nearest.shares(D, target)
    fit = g0 + D @ u
    read = 16 * np.max(np.array(nz), axis=0)
    tol = read + REL * (np.abs(given) + np.abs(D).sum(axis=1) + np.abs(g0))
    bad = np.abs(given - fit) > MARGIN * tol
    return _blamed(reader, at, given, g0, D, tol, fit, bad)


def _blamed(reader, at, given, g0, D, tol, fit, bad):
    """(fit, bad) with the blame put on one tensor where the answer's other tensors alone are
    one valid gradient and that one fails on its own (``reader.failing``: its answer off what
    the other checks allow). A sign flipped db in a conv net missed every share, and the least
    squares spread its residual over the right dWc too, which failed with it, its tie rule
    blamed (outside test t72b F1). Sound as blame: no valid gradient gives the whole answer,
    one gives all but that tensor's part, so its part is wrong."""
    failing = reader.failing
    tensor = reader.tensor[at]
    if failing is None or not bad.any() or np.unique(tensor[bad]).size < 2:
        return fit, bad
    for u in np.unique(tensor[failing[at]]).tolist():
        keep = tensor != u  # (never empty: the bad span two tensors)
        share = nearest.shares(D[keep], given[keep] - g0[keep])
        refit = g0 + D @ share
        off = np.abs(given - refit) > MARGIN * tol
        if not off[keep].any() and off[~keep].any():
            return refit, off
    return fit, bad


def _losses(reader, at: np.ndarray, points: list[np.ndarray]) -> np.ndarray:
    """The loss (every output's part summed) at each of ``points`` (offsets over the
    positions ``at``), less the loss at the point, 64 points a call at most (within
    --max-memory)."""
    engine = reader.engine
    out = []
    each = min(64, reader.per_copy())
    for lo in range(0, len(points), each):
        part = points[lo : lo + each]
        rows = {}
        for t, n in enumerate(reader.names):
            mine = (at >= reader.start[t]) & (at < reader.start[t + 1])
            idx = reader.coords[t][at[mine] - reader.start[t]]
            r = np.repeat(engine.t64[n].ravel()[None, :], 1 + len(part), axis=0)
            for k, p in enumerate(part):
                r[1 + k, idx] += p[mine]
            rows[n] = r
        reader.copies += len(part)
        out.append((engine.moved_jointly(rows) * engine.g.ravel()).sum(axis=1))
    return np.concatenate(out)


def _bends(s: np.ndarray, L: np.ndarray, noise: float) -> list[tuple[float, float]] | None:
    """The stretches of ``s`` (each two cells) where the loss ``L`` bends; None where the
    bends touch the ends (one may lie beyond)."""
    ds = s[1] - s[0]
    slope = np.diff(L) / ds
    jump = np.abs(np.diff(slope))
    floor = 64 * noise / ds + BENT * float(np.abs(slope).max(initial=0.0))
    at = np.flatnonzero(jump > floor)  # a bend within cells at and at + 1
    if not at.size:
        return []
    if at[0] == 0 or at[-1] == jump.size - 1:
        return None
    out: list[tuple[float, float]] = []
    run = [at[0]]
    for k in at[1:]:
        if k == run[-1] + 1:
            run.append(k)
            continue
        out.append((float(s[run[0]]), float(s[run[-1] + 2])))
        run = [k]
    out.append((float(s[run[0]]), float(s[run[-1] + 2])))
    return out


def _gradient(reader, at: np.ndarray, point: np.ndarray, room: float, h: np.ndarray):
    """The loss's gradient over the positions at ``point`` (offsets over them), each read with
    a stencil SHRINK times shorter than ``room`` (the line's distance to the nearest bend, in
    s) in its own steps, and its round-off; None where a stencil crossed a bend anyway (its
    two sides disagree)."""
    for k in range(RETRIES):  # a stencil that crossed a bend anyway: shorter ones
        got = _read(reader, at, point, room / SHRINK / SHRINK**k * h)
        if got is not None:
            return got
    return None


RETRIES = 3


def _read(reader, at: np.ndarray, point: np.ndarray, step: np.ndarray):
    base = np.zeros(reader.tensor.size)
    base[at] = point
    r, le, n = (v.sum(axis=1) for v in reader.alone(at, step, base))
    if np.any(np.abs(r - le) > 16 * n + 1e-6 * (np.abs(r) + np.abs(le))):
        return None
    return 0.5 * (r + le), n
