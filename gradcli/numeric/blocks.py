"""Ties of a single output, split by which coordinates interact.

Tie groups join the coordinates at a kink that reach a common output (numeric/ties.py). A layer
with a single output (a loss) gives every coordinate that output, so all of its ties formed one
group whose sum alone was held to a slope: ``sum(relu(a - b))`` with ``a == b`` at i and j, and
a backward giving tie i one upstream gradient too many and tie j one too few, passed.

Which coordinates belong together is read off the loss itself. Near a kink the loss is, to
first order, a positively homogeneous function of the move; a part X of the coordinates is
independent of a part Y when that function is additive across them: L'(s X + t Y) =
L'(s X) + L'(t Y) for the four signs s, t (each set moved with a fixed random sign per
coordinate, one-sided second-order slopes at a common step). ``maximum(a, b)`` at ``a == b``
is not (1 moving both, 2 for the two alone), two separate ties are. The members are first cut
apart where the ones before a point in flat-index order are additive with the ones after it
(``_cut``: ties side by side, a row's, come apart in a few tests each). A part of three then
has every pair tested; of up to PAIRWISE, each member against the rest of its part (those
coupled form one group); beyond, every member is tested against the rest of its part, and one
that interacts finds a partner by halving the others (the half that interacts, else the
other), every member's search in the same stacked calls, until no group found interacts with
the rest (``_join``). The groups are the members joined by the interactions found; a member
whose partner could not be found joins every coupled member (a group too large only weakens
its check). At most about m + P log2 m tests of 8 to 16 copies for P coupled members among m,
bounded by ``budget``: a group the budget leaves unsplit is checked whole.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import numpy as np

from gradcli.numeric import cost
from gradcli.numeric.methods import one_sided, one_sided_noise
from gradcli.numeric.union import Union

# a group of two split apart loses nothing its two intervals do not say, but one tensor's ties
# must be told apart for the ties across tensors to hold them whole (numeric/joint.py)
MIN_SIZE = 2
FLOOR = 32  # tests run whatever the budget
PAIRWISE = 6  # up to this many members every pair is tested (15 tests), the search beyond
SIGNS = ((1, 1), (1, -1), (-1, 1), (-1, -1))
AGAINST_REST = 256  # members tested against the rest at once (each holds a set of m - 1)
CUT_TRIES = 4  # points near a part's middle tried for a cut, one a round
ROWS = 12  # per test: 4 joint directions, 2 of one set alone (the other's read once), 2 points


def least_seconds(engine, members: int) -> float:
    """The tests that tell ``members`` ties apart at the least: every pair of a few, else each
    member against the rest (the partners' search beyond depends on what they find)."""
    m = members
    tests = m * (m - 1) // 2 if m <= PAIRWISE else m
    return cost.copies_seconds(engine, tests * ROWS, real=True) if m >= 2 else 0.0


def split(engine, coords: Mapping[str, np.ndarray], h: np.ndarray, label: np.ndarray,
          budget: float = math.inf) -> tuple[np.ndarray, float, int]:  # fmt: skip
    """(labels, predicted seconds, coordinates of the groups ``budget`` left whole) for the
    concatenation of ``coords`` (each tensor's flat indices, in the mapping's order; ``h`` their
    steps; ``label`` their current groups): each group of at least MIN_SIZE split into the
    parts that interact, labels renumbered 0 ... k-1."""
    names = list(coords)
    tensor = np.repeat(np.arange(len(names)), [coords[n].size for n in names])
    idx = np.concatenate([np.asarray(coords[n], dtype=np.int64) for n in names])
    sign = np.random.default_rng(0).choice([-1.0, 1.0], size=idx.size)
    each = cost.copies_seconds(engine, ROWS, real=True)
    out = np.asarray(label).copy()
    spent, whole = 0.0, 0
    keys, count = np.unique(label, return_counts=True)
    for G in keys[count >= MIN_SIZE]:
        members = np.flatnonzero(label == G)
        t = float(h[members].min())
        probe = _Probe(engine, names, tensor, idx, sign, t)
        parts, tests = _components(members, probe, each, budget - spent)
        spent += tests * each
        if parts is None:
            whole += members.size
            continue
        out[members] = out.max() + 1 + parts
    return np.unique(out, return_inverse=True)[1].ravel(), spent, whole


def partners(engine, known: Mapping[str, np.ndarray], name: str, candidates: np.ndarray,
             t: float, budget: float = math.inf) -> tuple[np.ndarray, float, bool]:  # fmt: skip
    """(the ``candidates`` of ``name`` (flat indices) whose moves interact with those of the
    ``known`` coordinates at a kink (each tensor's flat indices), predicted seconds, whether
    the search finished within ``budget``), for a loss: its one output is every coordinate's,
    so what reaches it says nothing (every exact zero of an L1 term did, and was searched
    for, one by one: 4 copies each, far past --budget: outside tests t38b F1, t39a F4). A set
    of candidates moved together that is additive with the known ones holds none, and is
    dropped whole; one that is not is halved (about P log2 N tests for P partners among N).
    Sets of one that interact are returned, to be examined as failing coordinates are."""
    candidates = np.asarray(candidates, dtype=np.int64)
    names = list(dict.fromkeys([*known, name]))
    sizes = [engine.t64[n].size for n in names]
    start = dict(zip(names, np.cumsum([0, *sizes[:-1]]).tolist(), strict=True))
    tensor = np.repeat(np.arange(len(names)), sizes)
    idx = np.concatenate([np.arange(k, dtype=np.int64) for k in sizes])
    anchor = np.concatenate([start[n] + np.asarray(c, dtype=np.int64) for n, c in known.items()])
    if not candidates.size or not anchor.size:
        return candidates[:0], 0.0, True
    sign = np.random.default_rng(0).choice([-1.0, 1.0], size=idx.size)
    probe = _Probe(engine, names, tensor, idx, sign, t)
    each = cost.copies_seconds(engine, ROWS, real=True)
    level, found, tests = [start[name] + candidates], [], 0
    while level:
        if tests >= FLOOR and (tests + len(level)) * each > budget:
            return _flat(found, start[name]), tests * each, False
        tests += len(level)
        chunks = np.array_split(np.arange(len(level)), -(-len(level) // AGAINST_REST))
        hit = np.concatenate([probe.interacts([(level[i], anchor) for i in part])
                              for part in chunks])  # fmt: skip
        nxt = []
        for s, yes in zip(level, hit, strict=True):
            if yes and s.size == 1:
                found.append(s)
            elif yes:
                nxt += np.array_split(s, 2)
        level = nxt
    return _flat(found, start[name]), tests * each, True


def _flat(found: list[np.ndarray], start: int) -> np.ndarray:
    return (np.concatenate(found) - start) if found else np.zeros(0, dtype=np.int64)


def _components(members: np.ndarray, probe: _Probe, each: float, budget: float):
    """(a component number per member or None when the budget ran out, tests run)."""
    m = members.size
    sets = Union(m)
    tests = 0

    def run(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray | None:
        nonlocal tests
        if tests >= FLOOR and (tests + len(pairs)) * each > budget:
            return None
        tests += len(pairs)
        # a chunk at a time: m sets of m - 1 at once held 16 m^2 bytes (an L1 term on 8,103
        # zeros of a pruned weight took 2.1 GB, past --max-memory: outside test t38b F2)
        return np.concatenate([
            probe.interacts([(members[pairs[i][0]], members[pairs[i][1]]) for i in part])
            for part in np.array_split(np.arange(len(pairs)), -(-len(pairs) // AGAINST_REST))
        ])  # fmt: skip

    # in the order of their flat indices (a tensor's ties side by side: a row's, a window's;
    # equal flat indices of several tensors next to each other: maximum(a, b)'s pairs)
    order = np.lexsort((probe.tensor[members], probe.idx[members]))
    pieces = _cut(order, probe.idx[members[order]], run)
    if pieces is None:
        return None, tests
    # the small parts' tests in one call: every pair of three, each of a few against the rest
    # of its part (those coupled form one tie: no point near its middle cut it, and a tie too
    # large only weakens its check), each of many by _join
    asked, joins = [], []
    for piece in pieces:
        piece = np.sort(piece)
        if piece.size <= 3:
            for i in range(piece.size):
                for j in range(i + 1, piece.size):
                    asked.append((piece[[i]], piece[[j]]))
                    joins.append((piece[i], piece[[j]]))
        elif piece.size <= PAIRWISE:
            for i in range(piece.size):
                asked.append((piece[[i]], np.delete(piece, i)))
                joins.append((piece[i], piece))
        elif not _join(piece, run, sets):
            return None, tests
    hit = run(asked) if asked else np.zeros(0, dtype=bool)
    if hit is None:
        return None, tests
    coupled = {}
    for (i, piece), yes in zip(joins, hit, strict=True):
        if yes and piece.size == 1:
            sets.join(int(i), int(piece[0]))
        elif yes:
            coupled.setdefault(int(piece[0]), []).append(int(i))
    for many in coupled.values():
        for i in many[1:]:
            sets.join(many[0], i)
    return sets.labels(), tests


def _cut(order: np.ndarray, flat: np.ndarray, run) -> list[np.ndarray] | None:
    """The members (positions, ``order``ed) cut where the part before a point and the part
    after it are additive, again within each part, a cut near the middle first (CUT_TRIES
    points): separate ties side by side in the order come apart in about two tests each,
    where each member against the rest and a partner's halving took log2 m (CS231n's svm loss
    at 312 margins of 0 was not told apart within 3 s: outside test t40a F3). A part no point
    cuts is left whole for ``_join``. ``flat``: their flat indices, in that order: the points
    of the middle half tried first where the next index is farthest (a row's ties lie
    together; a middle inside a row of five blocked four points beside it). None: the budget
    ran out."""
    done, todo = [], [(order, flat, 0)]
    while todo:
        # a part is whole when it is small (its pairs cost less than tries) or no point
        # tried cut it: every point of a few, CUT_TRIES of many
        whole = [t.size <= 3 or tries >= _points(t.size).size
                 or (t.size > PAIRWISE and tries >= CUT_TRIES) for t, _, tries in todo]
        done += [t for (t, _, _), w in zip(todo, whole, strict=True) if w]
        todo = [x for x, w in zip(todo, whole, strict=True) if not w]
        if not todo:
            break
        at = [_point(f, tries) for _, f, tries in todo]
        hit = run([(t[:k], t[k:]) for (t, _, _), k in zip(todo, at, strict=True)])
        if hit is None:
            return None
        nxt = []
        for (t, f, tries), k, yes in zip(todo, at, hit, strict=True):
            nxt += [(t, f, tries + 1)] if yes else [(t[:k], f[:k], 0), (t[k:], f[k:], 0)]
        todo = nxt
    return done


def _points(size: int) -> np.ndarray:
    """The points tried for a cut of a part of ``size`` members (a cut at k: the first k
    against the rest): its middle half."""
    return np.arange(1, size) if size <= 3 else np.arange(size // 4, size - size // 4 + 1)


def _point(flat: np.ndarray, tries: int) -> int:
    """The ``tries``-th point tried for a cut of a part whose members have the flat indices
    ``flat``: the largest gap in ``flat`` first, then the nearest the middle."""
    points = _points(flat.size)
    gap = flat[points] - flat[points - 1]
    return int(points[np.lexsort((np.abs(points - flat.size / 2), -gap))[tries]])


def _join(everyone: np.ndarray, run, sets: Union) -> bool:
    """Join in ``sets`` the members (positions) of one part no cut split, more than PAIRWISE
    of them, that interact: each against the rest, and a partner found by halving. False: the
    budget ran out."""
    m = everyone.size
    hit = run([(everyone[[i]], everyone[np.arange(m) != i]) for i in range(m)])
    if hit is None:
        return False
    coupled = everyone[hit]  # the others are ties of their own (a lone kink)
    pending = [coupled[[i]] for i in range(coupled.size)]
    while pending:
        # each part still interacting with the other coupled members finds one partner there
        # by halving their order (the halves of a fixed tree, each one's slopes read once): the
        # half that interacts, else the other
        span = [(0, coupled.size) for _ in pending]
        while True:
            asked, moves = [], []
            for k, (c, (lo, hi)) in enumerate(zip(pending, span, strict=True)):
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    a, b = np.setdiff1d(coupled[lo:mid], c), np.setdiff1d(coupled[mid:hi], c)
                    if a.size and b.size:
                        break
                    lo, hi = (mid, hi) if b.size else (lo, mid)
                span[k] = (lo, hi)
                if hi - lo > 1:
                    whole_b = b.size == hi - mid  # a tree node itself: read once for all
                    asked.append((c, b if whole_b else a))
                    moves.append((k, (mid, hi) if whole_b else (lo, mid),
                                  (lo, mid) if whole_b else (mid, hi)))  # fmt: skip
            if not asked:
                break
            hit = run(asked)
            if hit is None:
                return False
            for (k, yes_span, no_span), yes in zip(moves, hit, strict=True):
                span[k] = yes_span if yes else no_span
        for c, (lo, _) in zip(pending, span, strict=True):
            q = int(coupled[lo])
            # q in c itself: no half answered (noise, cancelling interactions): all together
            for r in ([q] if q not in c else coupled):
                sets.join(int(c[0]), int(r))
        roots = np.array([sets.find(int(i)) for i in coupled])
        parts = [coupled[roots == r] for r in np.unique(roots)]
        if len(parts) < 2:
            break
        hit = run([(c, np.setdiff1d(coupled, c)) for c in parts])
        if hit is None:
            return False
        pending = [c for c, yes in zip(parts, hit, strict=True) if yes]
    return True


def _key(members: np.ndarray) -> bytes:
    """A set of member positions as a key of 16 bytes (the set itself, m of them for each of m
    members, held 8 m^2 bytes in the cache)."""
    return hashlib.blake2b(np.sort(members).tobytes(), digest_size=16).digest()


class _Probe:
    """The loss's one-sided slopes along moves of sets of coordinates, at one step."""

    def __init__(self, engine, names, tensor, idx, sign, t):
        self.engine, self.names, self.tensor, self.idx = engine, names, tensor, idx
        self.sign, self.t = sign, t
        self.alone: dict[tuple[bytes, int], tuple[float, float]] = {}  # (_key, sign): slope

    def interacts(self, tests: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Whether each (X, Y) of member positions is not additive for some pair of signs."""
        dirs, want = [], {}
        for x, y in tests:
            dirs += [(x, y, s, u) for s, u in SIGNS]
            for sel in (x, y):
                for s in (1, -1):
                    key = (_key(sel), s)
                    if key not in self.alone and key not in want:
                        want[key] = len(dirs)
                        dirs.append((sel, None, s, 0))
        right, noise = self._slopes(dirs)
        for key, k in want.items():
            self.alone[key] = (right[k], noise[k])
        hit = np.zeros(len(tests), dtype=bool)
        k = 0
        for i, (x, y) in enumerate(tests):
            kx, ky = _key(x), _key(y)
            for s, u in SIGNS:
                rx, nx = self.alone[(kx, s)]
                ry, ny = self.alone[(ky, u)]
                gap = right[k] - rx - ry
                ref = max(abs(right[k]), abs(rx), abs(ry))
                hit[i] |= abs(gap) > 4 * (noise[k] + nx + ny) + 1e-8 * ref
                k += 1
            while k < len(dirs) and dirs[k][1] is None:  # the sets' own slopes, already read
                k += 1
        return hit

    def _slopes(self, dirs) -> tuple[np.ndarray, np.ndarray]:
        """The right slope along each direction and its round-off."""
        engine = self.engine
        per = max(1, engine._chunk(self.names[0], len(dirs)) * len(engine.method.offsets) // 2)
        right, scale = np.zeros(len(dirs)), np.zeros(len(dirs))
        g = engine.g.ravel()
        for lo in range(0, len(dirs), per):
            part = dirs[lo : lo + per]
            d = engine.moved_jointly(self._rows(part)).reshape(2, len(part), -1)
            D = d @ g
            right[lo : lo + len(part)] = one_sided(D[0], D[1], self.t, 1)
            scale[lo : lo + len(part)] = ((d != 0).any(axis=0) * engine.gy).sum(axis=1)
        return right, one_sided_noise(scale, self.t, engine.unit)
    def _rows(self, dirs) -> dict[str, np.ndarray]:
        """The unmoved point, each direction at one step, then each at two."""
        engine, c = self.engine, len(dirs)
        rows = {n: np.repeat(engine.t64[n].ravel()[None, :], 1 + 2 * c, axis=0)
                for n in self.names}  # fmt: skip
        for i, (x, y, s, u) in enumerate(dirs):
            for sel, sgn in ((x, s), (y, u)):
                if sel is None or sgn == 0:
                    continue
                for t, n in enumerate(self.names):
                    mine = sel[self.tensor[sel] == t]
                    if not mine.size:
                        continue
                    move = sgn * self.sign[mine] * self.t
                    rows[n][1 + i, self.idx[mine]] += move
                    rows[n][1 + c + i, self.idx[mine]] += 2 * move
        return rows
