"""What a built-in layer's declared kinks will cost to recheck, predicted before any copy runs.

``kinks.declared`` rechecks each coordinate whose stencil meets a kink once, on a clean side,
but where a side is not clean it halves the step and tries again (a max-pool element tied in
one window and within a step of its runner-up in an overlapping one), and each try moves its
own coordinates: the right side's, the left side's and both sides' of one try are grouped by
color apart, each group of calls with its unmoved copy. At a kink itself the tie groups then
take their own copies (numeric/ties.py). The layer's kink map says which try settles each
coordinate without running the forward, so the schedule is replayed here, map only, and each
try counted as ``kinks.moves`` will group it: the estimate is what the rechecks run (on
overlapping windows with runner-ups at many scales, counting every coordinate once in one
grouping predicted 36 copies where 169 ran).
"""

from __future__ import annotations

import numpy as np

from gradcli.numeric import blocks, cost, joint, kinks, links, partners, routes, ties

# the copies ties.slopes takes for all of a tensor's tie groups at once: the point and the
# two sides' two points of the groups' moves
SLOPES_COPIES = 1 + len(kinks.BOTH_SIDES)
# the user's forward at the point and three moved coordinates, against a loss's terms
# (Engine.structure)
TERMS_CHECK_COPIES = 4


def recheck_seconds(
    engine, name: str, coords: np.ndarray | None = None, coloring: bool = True
) -> tuple[float, int]:
    """(predicted seconds, coordinates) of the one-sided rechecks of the coordinates (of
    ``coords``, when sampled) whose stencil meets a kink the layer declares, as
    ``kinks.declared`` will run them (counted as cost.py counts the check: never timed)."""
    seconds, idx, at = _rechecks(engine, name, coords, coloring)
    return seconds + _ties_seconds(engine, name, at, coloring), int(idx.size)


def _rechecks(
    engine, name: str, coords: np.ndarray | None, coloring: bool
) -> tuple[float, np.ndarray, np.ndarray]:
    """(seconds of the rechecks but for their ties' copies, the coordinates rechecked, those
    of them at a kink itself), map only."""
    hit = kinks.met(engine, name)
    none = np.zeros(0, dtype=np.int64)
    if hit is None:
        return 0.0, none, none
    if coords is not None:
        keep = np.zeros(hit.size, dtype=bool)
        keep[np.asarray(coords, dtype=np.int64)] = True
        hit &= keep
    idx = np.flatnonzero(hit)
    if not idx.size:
        return 0.0, none, none
    seconds, at = 0.0, np.zeros(idx.size, dtype=bool)
    for right, left, both in schedule(engine, name, idx):
        for mask, points in ((right, 2), (left, 2), (both, len(kinks.BOTH_SIDES))):
            if mask.any():  # the points, and the unmoved copy of each call
                seconds += kinks.moves_seconds(engine, name, idx[mask], coloring, points)
                seconds += cost.copies_seconds(engine, 1, real=True)
        at |= both
    return seconds, idx, idx[at]


def members(engine, name: str, candidates: np.ndarray, known: np.ndarray, coloring: bool = True,
            outputs: np.ndarray | None = None) -> np.ndarray | None:  # fmt: skip
    """The ``candidates`` at a declared kink that move an output the ties at ``known`` move
    (or ``outputs``, flat output indices of the layer's): a sample's ties' members outside it,
    read off the layer's verified footprint or a loss's terms (numeric/ties.py), without a
    copy. None where neither says which outputs a coordinate moves: then they are searched
    for (numeric/partners.py), a copy per set of candidates (outside test t17 F5: 65 s of
    search at a max-pool's integer ties, where its footprint names each window's members)."""
    shape = ties.terms_of(engine, name, coloring)
    known = np.asarray(known, dtype=np.int64)
    if shape is None and ties.single_output(engine, name, coloring):
        return None
    if shape is None:
        shape = engine
    elif not known.size:  # the terms say nothing of the layer's outputs
        return None
    col = shape.colored(name)[0] if coloring else None
    if not hasattr(col, "windows"):
        return None
    none = np.zeros(0, dtype=np.int64)
    hit = kinks.met(engine, name)
    if hit is None:
        return none
    candidates = np.asarray(candidates, dtype=np.int64)
    candidates = candidates[hit[candidates]]  # kinks.declared examines no other
    if not candidates.size:
        return none
    reached = ties.declared_support(shape, name, col, known)[1]
    if shape is engine and outputs is not None:
        reached = np.union1d(reached, outputs)
    pos, out = ties.declared_support(shape, name, col, candidates)
    return np.unique(candidates[pos[np.isin(out, reached)]])


def partners_seconds(engine, name: str, coords: np.ndarray, coloring: bool = True) -> float:
    """Predicted seconds of what a sample's ties cost beyond its own coordinates (checking/
    across.py): their members outside the sample found (off the footprint for free, else
    searched), rechecked at their kinks, and the ties rebuilt with them. The sample is chosen
    on it: a max-pool's sample at integer ties, counted 0.6 s without it, ran 16 s (and
    stopped short of a budget the full check, 1.2 s, fitted)."""
    hit = kinks.met(engine, name)
    if hit is None:
        return 0.0
    _, idx, at = _rechecks(engine, name, coords, coloring)
    if not at.size:
        return 0.0
    candidates = np.setdiff1d(np.arange(hit.size), idx)
    found = members(engine, name, candidates, at, coloring)
    search = 0.0
    if found is None:  # searched: the sets holding a kink are halved, a copy per set
        found = _positives(engine, name, candidates, at, coloring)
        where = np.searchsorted(candidates, found)
        search = partners.tested(candidates.size, where) * partners.set_seconds(engine)
    more, _, also = _rechecks(engine, name, found, coloring)
    merged = np.union1d(at, also)
    rebuilt = merge_seconds(engine, name, merged.size, coloring)
    rebuilt += _ties_seconds(engine, name, merged, coloring)
    return search + more + _ties_seconds(engine, name, also, coloring) + rebuilt


def merge_seconds(engine, name: str, count: int, coloring: bool = True) -> float:
    """The copies of rebuilding a tensor's ties over ``count`` coordinates at a kink
    (checking/across.py), but for the tie groups' own (``_ties_seconds``): the outputs each
    moves, read off a verified footprint (or a loss's one output) for free, else found by
    moving each (two copies a coordinate), and the copies of the ties across tensors."""
    shape = ties.structure(engine, name, coloring) or ties.on_terms(engine, name, coloring)
    col = shape.colored(name)[0] if coloring else None
    free = ties.single_output(shape, name, coloring) or hasattr(col, "windows")
    return cost.copies_seconds(engine, (0 if free else 2 * count) + len(joint.OFFSETS), real=True)


def _positives(engine, name: str, candidates: np.ndarray, at: np.ndarray,
               coloring: bool) -> np.ndarray:  # fmt: skip
    """The candidates at a declared kink whose move the search will find (at most): those
    whose declared footprint, verified or not, reaches an output of the ties at ``at``, all
    of them where the layer declares none (or is a loss)."""
    hit = kinks.met(engine, name)
    found = candidates[hit[candidates]]
    if ties.single_output(engine, name, coloring):
        return found
    col = engine.declared_coloring(name)
    if not hasattr(col, "windows"):
        return found
    reached = ties.declared_support(engine, name, col, at)[1]
    pos, out = ties.declared_support(engine, name, col, found)
    return np.unique(found[pos[np.isin(out, reached)]])


def schedule(engine, name: str, idx: np.ndarray):
    """Each try of ``kinks.declared``'s halving: (right, left, both), masks over ``idx`` of
    the coordinates it settles on the right side alone, the left alone, both sides; then
    those no try settled (or only one side of, at a kink itself, or both only far down: see
    ``kinks.lone``), read as near-ties (``kinks.gapped``) where they can be. (Those a clean
    side read with too much round-off are read as near-ties too: counted once known.)"""
    todo, at = np.ones(idx.size, dtype=bool), np.zeros(idx.size, dtype=bool)
    hk = np.zeros(idx.size)
    for h, right, left, both in kinks.tries(engine, name, idx):
        todo &= ~(right | left | both)
        at |= both
        hk[both] = h[both]
        yield right, left, both
    left = kinks.lone(engine, name, idx, todo, at, hk)
    if left.any():
        rows = np.flatnonzero(left)
        near = np.zeros(idx.size, dtype=bool)
        near[rows[kinks.gapped(engine, name, idx[rows])[1]]] = True
        none = np.zeros(idx.size, dtype=bool)
        yield none, none, near


def _ties_seconds(engine, name: str, idx: np.ndarray, coloring: bool) -> float:
    """The copies of the tie groups among the coordinates at a kink itself (ties.enforce): the
    outputs each moves, read off a verified footprint for free or found by moving each (two
    copies per coordinate), then one set of copies for all groups of two or more, when any,
    and the sets of their members' links (numeric/links.py)."""
    if idx.size < 2:
        return 0.0
    terms = ties.structure(engine, name, coloring)
    if terms is not None:  # a user's loss: grouped by its terms, each group and link apart
        return structured_seconds(engine, terms, name, idx, coloring)
    engine = ties.on_terms(engine, name, coloring)
    if ties.single_output(engine, name, coloring):  # a loss: its ties told apart first
        return split_seconds(engine, idx.size) + cost.copies_seconds(engine, SLOPES_COPIES, True)
    col = engine.colored(name)[0] if coloring else None
    if not (col is not None and hasattr(col, "windows")):
        # moved one by one: a bounded worst case, groups (and a link per member) assumed
        found = cost.copies_seconds(engine, 2 * idx.size + 1, real=True)
        return (found + cost.copies_seconds(engine, SLOPES_COPIES, real=True)
                + links.seconds(engine, idx.size - 1))  # fmt: skip
    pos, out = ties.support(engine, name, idx, np.zeros(idx.size), coloring)
    label = ties.groups(idx.size, pos, out)
    if np.bincount(label, minlength=idx.size).max(initial=0) < 2:
        return 0.0  # every coordinate alone (relu's zeros): no copies
    if routes.routed(engine, name):
        return cost.copies_seconds(engine, SLOPES_COPIES, real=True)
    big = np.bincount(label, minlength=idx.size)[label] >= 2
    i, j = links.chain(np.where(big, label, -1), links.first_outputs(idx.size, pos, out))
    sets = len(links.packed(links.reach(i, j, pos, out), False))
    return cost.copies_seconds(engine, SLOPES_COPIES, real=True) + links.seconds(engine, sets)


def structured_seconds(engine, terms, name: str, idx: np.ndarray, coloring: bool) -> float:
    """The copies of a user's loss's ties grouped by the terms they move (ties.structure):
    the check that its forward adds up to the terms, then each group's four and each link's
    four through the user's forward (its one output is every group's)."""
    pos, out = ties.support(terms, name, idx, np.zeros(idx.size), coloring)
    label = ties.groups(idx.size, pos, out)
    count = np.bincount(label, minlength=idx.size)
    big = count[label] >= 2
    i, _ = links.chain(np.where(big, label, -1), links.first_outputs(idx.size, pos, out))
    groups = int((count >= 2).sum())
    built = cost.copies_seconds(engine, TERMS_CHECK_COPIES, real=True)
    slopes = cost.copies_seconds(engine, 1 + len(kinks.BOTH_SIDES) * groups, real=True)
    return built + (slopes + links.seconds(engine, i.size) if groups else 0.0)


def split_seconds(engine, members: int) -> float:
    """The tests that tell a loss's ``members`` ties apart (numeric/blocks.py) at the least:
    every pair of a few, else each member against the rest; the partners' search beyond
    depends on what the tests find (``unplanned``)."""
    return blocks.least_seconds(engine, members)


def unplanned(engine, name: str, at: ties.AtKink | None, coloring: bool = True) -> float:
    """Of the declared kinks' rechecks once run: the seconds of telling a loss's ties apart
    beyond what ``recheck_seconds`` planned (its partners' search), counted once known."""
    if at is None or at.coords.size < 2 or ties.structure(engine, name, coloring) is not None:
        return 0.0
    engine = ties.on_terms(engine, name, coloring)
    if not ties.single_output(engine, name, coloring):
        return 0.0
    return max(0.0, at.seconds - split_seconds(engine, at.coords.size))
