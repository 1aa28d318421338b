"""The partners of a tie that nothing flagged.

The generic kink detector examines only the coordinates that fail, so a tie's member whose
analytical value happens to equal its central difference (half the gradient at ``maximum``'s
``a == b``) is never examined, and its tie is checked without it: a backward giving ``a`` half
and ``b`` all of a tie's gradient (1.5 in all) passed, each coordinate within its interval.

Such a member is a coordinate at a kink whose move reaches an output of a known one. It is
found by group testing, without a footprint: a set of candidates is moved together (each by
the set's step, with a fixed random sign so that two members cannot cancel), and the loss
restricted to the known ties' outputs is differenced one-sidedly on each side; a set whose
two slopes differ beyond the tolerance holds a kink there and is halved, one that agrees is
dropped whole (a dense smooth weight costs four copies). A set of one that still differs is
returned, to be examined as a failing coordinate is (numeric/kinks.py). Each set costs four
copies, all sets of one round in the same stacked calls: about 4 P log2 N copies for P
partners among N candidates.
"""

from __future__ import annotations

import math

import numpy as np

from gradcli.numeric import cost, ties
from gradcli.numeric.methods import one_sided, one_sided_noise

OFFSETS = (1, 2, -1, -2)
FLOOR = 64  # sets tested whatever the budget


def find(engine, name: str, candidates: np.ndarray, outputs: np.ndarray, h: np.ndarray, tol,
         budget: float = math.inf, floor: int = FLOOR
         ) -> tuple[np.ndarray, float, bool]:  # fmt: skip
    """(the ``candidates`` of ``name`` at a kink whose move reaches ``outputs`` (flat output
    indices), predicted seconds, whether the search finished within ``budget``). ``h``: the
    step of every coordinate of ``name``; ``tol(noise, slope)``: the tensor's tolerance;
    ``floor``: sets tested whatever the budget."""
    candidates = np.asarray(candidates, dtype=np.int64)
    if not candidates.size or not outputs.size:
        return np.zeros(0, dtype=np.int64), 0.0, True
    x = engine.t64[name].ravel()
    sign = np.random.default_rng(0).choice([-1.0, 1.0], size=x.size)
    mask = np.zeros(engine.g.size, dtype=bool)
    mask[outputs] = True
    g = np.where(mask, engine.g.ravel(), 0.0)
    each = set_seconds(engine)
    level, found, tested = [candidates], [], 0
    while level:
        if tested >= floor and (tested + len(level)) * each > budget:
            return _joined(found), tested * each, False
        tested += len(level)
        nxt = []
        for s, kinked in zip(level, _kinked(engine, name, level, h, sign, g, mask, tol),
                             strict=True):  # fmt: skip
            if kinked and s.size == 1:
                found.append(s)
            elif kinked:
                nxt += np.array_split(s, 2)
        level = nxt
    return _joined(found), tested * each, True


def set_seconds(engine) -> float:
    """Predicted seconds of testing one set (its four copies)."""
    return cost.copies_seconds(engine, len(OFFSETS), real=True)


def tested(count: int, positive: np.ndarray) -> int:
    """The sets ``find`` tests among ``count`` candidates when those at positions ``positive``
    are the ones at a kink (a set holding one is halved, as ``find`` halves it), map only:
    what the estimate counts (numeric/kinkplan.py)."""
    if not count:
        return 0
    held = np.zeros(count + 1, dtype=np.int64)  # held[k]: positives among the first k
    np.add.at(held, np.asarray(positive, dtype=np.int64) + 1, 1)
    held = np.cumsum(held)
    lo, hi = np.zeros(1, dtype=np.int64), np.full(1, count, dtype=np.int64)
    total = 0
    while lo.size:
        total += lo.size
        split = (held[hi] > held[lo]) & (hi - lo > 1)
        lo, hi = lo[split], hi[split]
        mid = lo + (hi - lo + 1) // 2  # np.array_split's halves: the first takes the odd one
        lo, hi = np.r_[lo, mid], np.r_[mid, hi]
    return int(total)


def _joined(found: list[np.ndarray]) -> np.ndarray:
    return np.sort(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)


def _kinked(engine, name: str, sets: list[np.ndarray], h, sign, g, mask, tol) -> np.ndarray:
    """Whether the loss restricted to the masked outputs has a kink along each set's move:
    its two one-sided slopes (the set's smallest step) differ beyond the tolerance."""
    x = engine.t64[name].ravel()
    n = len(sets)
    step = np.array([h[s].min() for s in sets])
    right, left, noise = np.zeros(n), np.zeros(n), np.zeros(n)
    per = max(1, engine._chunk(name, n) * len(engine.method.offsets) // len(OFFSETS))
    gy = engine.gy * mask
    for lo in range(0, n, per):
        part, hp = sets[lo : lo + per], step[lo : lo + per]
        c = len(part)
        rows = np.repeat(x[None, :], 1 + len(OFFSETS) * c, axis=0)
        for i, s in enumerate(part):
            for k, o in enumerate(OFFSETS):
                rows[1 + k * c + i, s] = x[s] + o * sign[s] * hp[i]
        d = engine.moved(name, rows).reshape(len(OFFSETS), c, -1)
        D = d @ g
        right[lo : lo + c] = one_sided(D[0], D[1], hp, 1)
        left[lo : lo + c] = one_sided(D[2], D[3], hp, -1)
        noise[lo : lo + c] = one_sided_noise(((d != 0).any(axis=0) * gy).sum(axis=1), hp)
    return np.abs(right - left) > tol(noise, right)


def find_by_tie(engine, name: str, candidates: np.ndarray, records: dict, h: np.ndarray, tol,
                budget: float = math.inf,
                after: float = 0.0) -> tuple[np.ndarray, float, int, int]:  # fmt: skip
    """``find`` one tie at a time (a sample's: the outputs of the known ties' groups, in a
    seeded order), until ``budget`` stops it: (partners found, predicted seconds, ties whose
    search finished, ties). A sample holds a few members of each of many ties: isolating every
    member outside it cost more than the check, and stopping part way left no tie complete,
    where a few complete ties catch a rule wrong at every tie. ``records``: name -> AtKink
    with its support (numeric/joint.supported), or None. ``after``: the predicted seconds of
    what each member found costs the caller next (its kink examined): a tie of 244 members
    costs that too, and the next tie is searched only where both fit (not in the seconds
    returned)."""
    outputs = _tie_outputs(records)
    found, spent, ahead, done = [], 0.0, 0.0, 0
    left = np.asarray(candidates, dtype=np.int64)
    for out in outputs:  # the floor's sets for the first tie only
        part, seconds, complete = find(engine, name, left, out, h, tol,
                                       budget - spent - ahead, 0 if done else FLOOR)  # fmt: skip
        spent += seconds
        if not complete:
            break
        done += 1
        found.append(part)
        ahead += after * part.size
        left = np.setdiff1d(left, part)
    return _joined(found), spent, done, len(outputs)


def _tie_outputs(records: dict) -> list[np.ndarray]:
    """Each tie's outputs (coordinates of any tensor sharing an output, transitively, are one
    tie): those holding the most known members first (a rule wrong at ties of three or four
    of a max-pool, right at ties of two, passed when the first searched was of two), then in
    an order drawn from a fixed seed."""
    pos, out, start = [], [], 0
    for r in records.values():
        if r is None or not r.coords.size or r.support is None:
            continue
        pos.append(start + r.support[0])
        out.append(r.support[1])
        start += r.coords.size
    if not pos:
        return []
    pos, out = np.concatenate(pos), np.concatenate(out)
    label = ties.groups(start, pos, out)[pos]
    order = np.argsort(label, kind="stable")
    cut = np.flatnonzero(np.diff(label[order])) + 1
    ties_ = [np.unique(part) for part in np.split(out[order], cut)]
    held = [np.unique(part).size for part in np.split(pos[order], cut)]
    drawn = np.random.default_rng(0).permutation(len(ties_))
    return [ties_[i] for i in drawn[np.argsort(-np.asarray(held)[drawn], kind="stable")]]
