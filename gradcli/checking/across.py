"""The check's stage after every tensor's kinks: ties that reach beyond one tensor's examination.

- Partners nothing flagged (numeric/partners.py): the generic detector examines the coordinates
  that fail, so a tie's member whose analytical value equals its central difference (half of
  ``maximum``'s gradient at ``a == b``) was left out of its tie. The coordinates of a layer that
  declares no kinks that sit at a kink reaching a known tie's outputs are found by group
  testing and examined as failing ones are, and each tensor's tie groups rebuilt with them.
- Ties across tensors (numeric/joint.py): coordinates of several tensors at a kink that share
  an output are moved together, their gradients' sum held to that move's one-sided slopes.

- Pieces (numeric/pieces.py): a coordinate still failing whose value equals others' it
  interacts with (``maximum(minimum(a, b), c)`` at ``a == b == c``, where no coordinate alone
  reads a kink) passes when the group's gradient is a mix of the gradients of the pieces
  touching the point, read at points nudged into each.

All are bounded by what is left of ``--budget`` when their cost cannot be predicted (the
generic examination's), and a note says what was left out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcli.checking import intermediates
from gradcli.errors import mention
from gradcli.layers import REGISTRY

if TYPE_CHECKING:
    from gradcli.numeric import kinks, ties


def ties_across(p: Any, taken: dict[str, tuple], tolerance: Callable, declares: Callable,
                settle: Callable | None = None) -> dict[str, tuple]:  # fmt: skip
    """``taken``: name -> (mode, coords, grad, info, fix, refined), returned with the values put in
    place. ``p``: the check's Prepared; ``tolerance(p, name, grad, info)``: the tensor's
    tol(noise, ref); ``declares(engine)``: whether its kinks are declared (else detected);
    ``settle(p, name, grad, info, at)``: grad with a routing at the ties of a layer's maxima
    (checking/routing.py), once a tensor's ties were rebuilt with their partners."""
    own = [n for n, t in taken.items() if n in p.spec.tensors and p.engines[n] is p.engine]
    records = {n: taken[n][4].at if taken[n][4] is not None else None for n in own}
    if not any(r is not None and r.coords.size for r in records.values()):
        return taken
    from gradcli.numeric import balance, joint  # LAZY: see ARCHITECTURE.md, "Start-up"

    out = dict(taken)
    if not p.opts.composite_kinks:  # a network's end to end leaves its kinks to its layers
        # a built-in's declared kinks hold every tie's members, but a sample holds only some
        search = [n for n in own if not declares(p.engines[n]) or taken[n][1] is not None]
        _partners(p, out, records, search, tolerance, declares, settle)
    whole = [(n, r.whole, r.given) for n, r in records.items() if r is not None and r.whole]
    for n, count, given in whole:
        _whole_note(p, f"d{n}: {count:,}", given)
        if out[n][1] is None:  # a sample's ties are held as far as it went (its note says so)
            _unverified(p, n, count)
    for n, r in records.items():
        if r is not None and r.links.left_out:
            _unlinked(p, [n], r.links.left_out, r.links.given)
    if sum(r is not None and r.coords.size > 0 for r in records.values()) < 2:
        return out
    left = _left(p)
    sampled = frozenset(n for n in own if out[n][1] is not None)
    found = joint.enforce(p.engine, records, p.under_test, p.opts.coloring, left, sampled)
    if not any(declares(p.engines[n]) for n in own):  # else in the estimate already
        p.spent += found.seconds
    if found.unexamined:
        p.note(
            f"{found.unexamined:,} of {found.unexamined + found.groups:,} ties across tensors "
            f"were not checked together (each one's moves reach outputs of others, so each "
            f"takes copies of its own, and all of them needed more than the "
            f"{max(left, 0.0):.1f} s of {mention('budget')} they had): each of their "
            f"coordinates was checked alone ({mention('mode', 'full')} checks every one)"
        )
    if found.whole and not whole:  # else one tensor's one group holds them together already
        _whole_note(p, f"{found.whole:,}", left)
        for n, r in records.items():  # the groups span the tensors at the kinks
            if r is not None and r.coords.size and out[n][1] is None:
                _unverified(p, n, int(r.coords.size))
    if found.unlinked:
        _unlinked(p, [n for n, r in records.items() if r is not None and r.coords.size],
                  found.unlinked, left)  # fmt: skip
    if found.unbalanced:
        p.rules_unchecked += found.unbalanced
        p.note(
            f"{found.unbalanced:,} set{'s' if found.unbalanced > 1 else ''} of coordinates "
            f"at ties across tensors {'were' if found.unbalanced > 1 else 'was'} not moved "
            f"against each other holding every tie still (more than {balance.MOST:,} "
            f"coordinates, or {mention('budget')}): whether each tensor's gradient takes the "
            f"same tie rule there was not checked"
        )
    for n, (coords, values, noise) in found.values.items():
        _put(out, n, coords, values, noise)
    p.pinned = {n: c for n, c in found.pinned.items() if c.size}
    p.unjudged = found.groups > 0 and found.judged == 0
    return out


def _unlinked(p: Any, names: list[str], count: int, given: float) -> None:
    """Links between a tie's members (numeric/links.py) the budget left out: how the tie
    shares out its gradient was not checked, so its tensors cannot pass. ``given``: the
    seconds the links had (what is left once they stopped says nothing of why they did)."""
    p.note(
        f"{count:,} pairs of tied coordinates ({', '.join('d' + n for n in names)}) were not "
        f"moved against each other (moving them all needed more than the "
        f"{max(given, 0.0):.1f} s of {mention('budget')} they had): how their ties share out "
        f"the gradient was not checked ({mention('mode', 'full')} checks every one)"
    )
    for n in names:
        p.unverified.setdefault(n, (
            f"d{n} is not verified at {count:,} pairs of tied coordinates whose share of their "
            f"tie's gradient was not checked within {mention('budget')} "
            f"({mention('mode', 'full')} checks every one)"
        ))  # fmt: skip


def pieces_at_ties(p: Any, taken: dict[str, tuple], tolerance: Callable, declares: Callable
                   ) -> dict[str, tuple]:  # fmt: skip
    """``taken`` with the values of numeric/pieces.py put in place at the groups of equal values
    whose gradient is a mix of the pieces' (a layer that declares no kinks)."""
    # a built-in says where its kinks are, or has none: smooth, its ties have one gradient
    # (embedding's and conv's search held a dozen arrays of every coordinate, for nothing);
    # so has a network of built-ins none of which has kinks (Layer.smooth)
    builtin = REGISTRY.get(p.engine.layer.name) is p.engine.layer or p.engine.layer.smooth
    if not p.random_forward and not builtin:
        taken = _chained_boundaries(p, taken, tolerance)
    if p.random_forward or declares(p.engine) or builtin:
        return taken
    own = [n for n, t in taken.items() if n in p.spec.tensors and p.engines[n] is p.engine]
    failing, silent, kinked, floors, rtol = {}, {}, {}, {}, math.inf
    for n in own:
        _, _, grad, info, fix, _ = taken[n]
        tol = tolerance(p, n, grad, info)
        noise = info.noise_at if p.opts.atol is None and info.noise_at is not None else 0.0
        floors[n] = tol(np.broadcast_to(noise, grad.shape), np.zeros(grad.shape))
        rtol = min(rtol, float(tol(np.zeros(1), np.ones(1))[0] - tol(np.zeros(1), np.zeros(1))[0]))
        a, v = np.asarray(p.under_test[n], dtype=np.float64), np.asarray(grad)
        bad = np.isfinite(v) & ~(np.abs(a - v) <= tol(noise, v))
        # a move that holds every tie still showed these wrong (numeric/balance.py): proof
        # enough, where a mix of the few pieces a large tie reads is not, nor its absence
        pinned = p.pinned.get(n, np.zeros(0, dtype=np.int64))
        settled = bool(bad.ravel()[pinned].any())
        bad.ravel()[pinned] = False
        failing[n] = np.flatnonzero(bad)
        if settled:
            # and where they fail, so does their tensor, whatever its other ties give: reading
            # every rank of their crowds took 23 s of a 28 s check of CS231n's net with masks
            # mixed across tensors
            failing[n] = silent[n] = kinked[n] = np.zeros(0, dtype=np.int64)
            continue
        # a coordinate whose central difference is exactly 0 may be the middle of three tied
        # values, which moves nothing alone: its tie is searched for a group no mix explains
        # (one at a kink, whose 0 may be a tie's share put in place, moves something: its
        # group is found from its silent member, if any)
        quiet = ((v == 0) & ~bad).ravel()
        kinked[n] = np.zeros(0, dtype=np.int64)
        if fix is not None:
            quiet[fix.coords] = False
            # one that passed at a kink took a slope between its two sides, alone; tied values
            # that each move something alone may still share out more than their tie gives
            # (every tied maximum given half the gradient: outside test t26 F7)
            kinked[n] = np.asarray(fix.coords, dtype=np.int64)[~bad.ravel()[fix.coords]]
        silent[n] = np.flatnonzero(quiet)
    whole = [n for n in own if chained_answer(p, n)]
    for n in whole:  # a network of built-ins: its kinks' values are its layers' own choices
        kinked[n] = np.zeros(0, dtype=np.int64)
    if p.opts.composite_kinks:
        # the chained backward of layers checked locally: at a kink of the composite it is
        # autodiff's value, no piece's sum (relu(x) - relu(-x) at 0); a network of your
        # relu, the same numbers as ours, failed end to end (outside test t27 N12)
        kinked = {n: np.zeros(0, dtype=np.int64) for n in kinked}
    accepted = _chained_ties(p, whole, failing, floors, rtol) if whole else {}
    if not any(f.size for f in (*failing.values(), *silent.values(), *kinked.values(),
                                *accepted.values())):  # fmt: skip
        return taken
    from gradcli.numeric import kinks, pieces  # LAZY

    left = _left(p)
    found = pieces.verify(p.engine, failing, silent, {n: p.under_test[n] for n in own}, floors,
                          rtol, left, large=p.opts.large_ties, kinked=kinked,
                          composite=p.opts.composite_kinks, across=p.unjudged)  # fmt: skip
    p.spent += found.seconds
    if found.unexamined:
        p.note(
            f"{_count(found.unexamined, 'failing coordinate')} at ties of equal values "
            f"{'were' if found.unexamined > 1 else 'was'} not "
            f"checked against the pieces touching the point ({max(left, 0.0):.1f} s of "
            f"{mention('budget')} was left): they fail as computed "
            f"({mention('mode', 'full')} checks every one)"
        )
    if found.unsearched:
        p.note(
            f"{_count(found.unsearched, 'coordinate')} that passed "
            f"{'sit' if found.unsearched > 1 else 'sits'} at ties of equal values not "
            f"searched for a tie no coordinate sees (the middle of three tied values moves "
            f"nothing alone): {max(left, 0.0):.1f} s of {mention('budget')} was left "
            f"({mention('mode', 'full')} searches every one)"
        )
    if found.thronged:
        p.note(
            f"{_count(found.thronged, 'coordinate')} that passed "
            f"{'are' if found.thronged > 1 else 'is'} tied with more than "
            f"{pieces.CANDIDATES} equal values, some of which interact: not searched for a tie "
            f"no coordinate sees (the middle of three tied values moves nothing alone)"
        )
    if found.crowded:  # (in the report only: the verdict is a layer's failure, and on stderr
        # it read as blaming ties for a wrong db beside zero biases: outside test t61b F3)
        text = (
            f"{found.crowded:,} failing coordinate{'s are' if found.crowded > 1 else ' is'} "
            f"tied with more than {pieces.MAX_TIED} interacting equal values (or share "
            f"{'their' if found.crowded > 1 else 'its'} value with more than "
            f"{pieces.CANDIDATES}; equal values, as zero biases and unit gammas are, are a "
            f"tie only where a max, a sort or a kink takes them): not read end to end, as a "
            f"layer's local check fails already: "
            f"{'they fail' if found.crowded > 1 else 'it fails'} as computed"
        )
        if text not in p.notes:
            p.notes.append(text)
    _crowd_notes(p, found)
    if found.refuted:
        p.note(
            f"at {found.refuted:,} tie{'s' if found.refuted > 1 else ''} of equal values "
            f"where an input moves nothing alone (the middle of three), the gradient is no "
            f"mix of the gradients of the pieces touching the point (read just inside each): "
            f"compared with the nearest mix"
        )
    out = dict(taken)
    for n, at in accepted.items():  # the answer's own value: it passes there
        if at.size:
            a = np.asarray(p.under_test[n], dtype=np.float64).ravel()[at]
            fix = out[n][4]
            held = at if fix is None else np.union1d(fix.coords, at)
            chained = (*(() if fix is None else fix.chained), *at.tolist())
            fix = (kinks.KinkFix(at, a, np.zeros(at.size), chained=chained) if fix is None
                   else dataclasses.replace(fix, coords=held, chained=chained))  # fmt: skip
            _put(out, n, at, a, np.zeros(at.size), fix)
    for n, (coords, values, noise) in found.values.items():
        fix = out[n][4]
        # a failing coordinate whose sides agreed (no kink read), to which every piece of its
        # tie read gives one value that it is off, is smooth there: it fails on its own central
        # difference, and is no kink (a CS231n net's db2 summed over the wrong axis, tied in
        # value with the zero biases, read '3 coordinates at a kink' and the hint 'db2 fails
        # only near kinks': outside test t71b F2); one the pieces explain, or left
        # unverified, keeps what they gave
        _, _, grad, info, _, _ = out[n]
        tol = tolerance(p, n, grad, info)
        a = np.asarray(p.under_test[n], dtype=np.float64).ravel()[coords]
        own = (np.isin(coords, found.smooth.get(n, ()))
               & ~np.isin(coords, () if fix is None else fix.coords)
               & ~(np.abs(a - values) <= tol(noise, values)))  # fmt: skip
        coords, values, noise = coords[~own], values[~own], noise[~own]
        if not coords.size:
            continue
        # counted as the README says, however nothing was compared there: no mix of the
        # pieces read, none read at all, or the budget cut the reading short (a 32x64 MLP's
        # coordinate 'not verified' had no "ties_unverified": outside test t70b F1)
        unverified = found.unverified.get(n, 0) + found.blind.get(n, 0) + found.short.get(n, 0)
        if fix is None:
            fix = kinks.KinkFix(coords, values, noise, unverified=unverified)
        else:
            held = np.zeros(out[n][2].size, dtype=bool)
            held[fix.coords] = held[coords] = True
            fix = dataclasses.replace(fix, coords=np.flatnonzero(held),
                                      unverified=fix.unverified + unverified)  # fmt: skip
        _put(out, n, coords, values, noise, fix)
    return out


def chained_answer(p: Any, name: str) -> bool:
    """CheckOptions.chained_kinks, for ``name``: whether its answer is the chained backward
    of the network's built-in layers everywhere (to 1e-9 of itself), as `check net`'s own and
    `compute net -o`'s are. Only then is autodiff's value accepted at a kink: an answer that
    differs anywhere is held to the slopes and every tie's sum, since accepting a tie's
    members that agree left the one that did not without its tie (a max-pool routing a tie to
    neither element passed, its twin agreeing on the other)."""
    if not p.opts.chained_kinks:
        return False
    a = np.asarray(p.under_test[name], dtype=np.float64)
    ours = np.asarray(intermediates.builtin(p.comp, name), dtype=np.float64)
    if a.shape != ours.shape or not (np.isfinite(a).all() and np.isfinite(ours).all()):
        return False
    scale = float(np.abs(ours).max(initial=0.0))
    return bool(np.all(np.abs(a - ours) <= 1e-9 * (np.abs(ours) + scale)))


def _chained_ties(p: Any, own: list[str], failing: dict[str, np.ndarray],
                  floors: dict[str, np.ndarray], rtol: float) -> dict[str, np.ndarray]:
    """CheckOptions.chained_kinks: the ``failing`` coordinates (taken out of it) whose value
    another coordinate shares (a tie, as numeric/pieces.py reads them) and whose answer is the
    chained backward's, each tensor's flat indices. The pieces read at a tie of a whole network
    need not hold autodiff's value (a crowd of them, no piece read: 'not verified'), which
    `check net` accepts of its chained backward as the layers' local checks decide."""
    shared = _shared(np.concatenate([np.real(p.engine.t64[n]).ravel() for n in own]))
    start, out = 0, {}
    for n in own:
        size = p.engine.t64[n].size
        at = failing[n]
        a = np.asarray(p.under_test[n], dtype=np.float64).ravel()[at]
        ours = np.asarray(intermediates.builtin(p.comp, n), dtype=np.float64).ravel()[at]
        tied = shared[start + at]
        start += size
        with np.errstate(invalid="ignore", over="ignore"):
            same = tied & (np.abs(a - ours) <= floors[n].ravel()[at] + rtol * np.abs(ours))
        out[n], failing[n] = at[same], at[~same]
    return out


def _shared(values: np.ndarray) -> np.ndarray:
    """Whether each of ``values`` is held by another of them too (a tie, as numeric/pieces.py
    reads them)."""
    order = np.argsort(values, kind="stable")  # np.unique would import numpy.ma (start-up)
    equal = values[order][1:] == values[order][:-1]
    shared = np.zeros(values.size, dtype=bool)
    shared[order[1:][equal]] = shared[order[:-1][equal]] = True
    return shared


def _chained_boundaries(p: Any, taken: dict[str, tuple], tolerance: Callable
                        ) -> dict[str, tuple]:  # fmt: skip
    """The boundary gradients of a network's answer (--grads: dL/d of a layer's output) that
    are the chained backward's (CheckOptions.chained_kinks), accepted where they fail at a
    value another coordinate of that output shares, as _chained_ties accepts the inputs' and
    parameters': `compute net -o`'s own archive failed at drelu2.out[0, 0, 0, 0], a relu's 0
    tied in a stride-1 max-pool's window beside an svm margin at 0, both one-sided slopes 0
    and autodiff's -0.5 (the layers' own choices), while `check net` passes (outside test
    t55b F1)."""
    from gradcli.numeric import kinks  # LAZY

    out = dict(taken)
    for n, (_, c, grad, info, fix, _) in taken.items():
        if n in p.spec.tensors or not chained_answer(p, n):
            continue
        values = np.real(p.engines[n].t64[n]).ravel()  # the layer's output there
        tol = tolerance(p, n, grad, info)
        noise = info.noise_at if p.opts.atol is None and info.noise_at is not None else 0.0
        a = np.asarray(p.under_test[n], dtype=np.float64)
        v = np.asarray(grad)
        bad = (np.isfinite(v) & ~(np.abs(a - v) <= tol(noise, v))).ravel()
        if c is not None:
            keep = np.zeros(bad.size, dtype=bool)
            keep[c] = True
            bad &= keep
        at = np.flatnonzero(bad & _shared(values))
        if not at.size:
            continue
        # (the answer is the chained backward everywhere: chained_answer)
        got = a.ravel()[at]
        chained = (*(() if fix is None else fix.chained), *at.tolist())
        fix = (kinks.KinkFix(at, got, np.zeros(at.size), chained=chained) if fix is None
               else dataclasses.replace(fix, coords=np.union1d(fix.coords, at), chained=chained))
        _put(out, n, at, got, np.zeros(at.size), fix)
    return out


def _crowd_notes(p: Any, found: Any) -> None:
    """What the directions read at ties too large for every order said (numeric/crowds.py)."""
    from gradcli.numeric import pieces  # LAZY

    large = (f"more than {pieces.MAX_TIED} interacting equal values (or more than "
             f"{pieces.CANDIDATES})")  # fmt: skip
    if found.crowds:
        p.note(
            f"at {found.crowds:,} tie{'s' if found.crowds > 1 else ''} of {large}, the "
            f"gradient is a mix of the gradients of pieces touching the point, read along a "
            f"few directions into them: verified there"  # (said so: t67b F4)
        )
    if found.contradicted:
        p.note(
            f"at {found.contradicted:,} tie{'s' if found.contradicted > 1 else ''} of {large}, "
            f"the pieces read along a few directions contradict the gradient (beyond what "
            f"every one gives at a coordinate, or off the one slope all give to moving the "
            f"tied values together): compared with the nearest mix of those pieces"
        )

    def first(n: str) -> str:
        """The first coordinate left so, as tables name it (the check table's worst element
        is one that passed: nothing was compared at these)."""
        at = found.held_at.get(n)
        if at is None or not at.size:
            return ""
        from gradcli.checking.places import index_text  # LAZY

        idx = np.unravel_index(int(at[0]), np.shape(p.under_test[n]))
        return f", the first d{n}{index_text(list(p.spec.info(n).index), idx)}"

    for n, count in found.unverified.items():
        p.note(
            f"d{n}: {count:,} coordinate{'s' if count > 1 else ''} at ties of {large}: no mix "
            f"of the pieces read along a few directions, and none of them contradicts "
            f"{'them' if count > 1 else 'it'}: not verified (\"ties_unverified\")"
        )
        # no PASS on them: a wrong dW1 of relu(relu(x @ W1) @ W2), relu'(0) = -1 at the outer
        # relu and 2.69 off, passed so, as did torch's 1e-3 off at a zero row (outside tests
        # t59a F1, t58a F1); valid rules the directions do not reach read 'not verified' too
        p.unverified.setdefault(n, (
            f"d{n} is not verified at {_count(count, 'coordinate')}{first(n)}, at ties of "
            f"{large}: the pieces read along a few directions hold no mix giving your values "
            f"there, nor contradict them (your tie rule was not judged)"
        ))  # fmt: skip
    unread = (  # nothing compared: the tensor cannot pass
        (found.blind, "failing coordinate", "no piece touching the point was read (no direction "
         "entered one, or too many equal values)", "where no piece touching the point was read"),
        (found.short, "coordinate", f"no mix of the pieces read along a few directions, and "
         f"{mention('budget')} ran out before the moves that bound every right value were read",
         f"whose examination {mention('budget')} cut short"),
    )  # fmt: skip
    for n, at in found.mixed.items():
        # no PASS on a tie rule nothing checked across tensors: dx from a > 0 beside dW1 from
        # a >= 0 in a two-layer relu net passed (outside test t73a F1)
        p.unverified.setdefault(n, (
            f"d{n} is not verified at {_count(at.size, 'coordinate')} at ties across tensors "
            f"(one tie rule for every tensor was not read there)"
        ))  # fmt: skip
    if found.mixed:
        p.note(
            f"at ties across {', '.join('d' + n for n in found.mixed)}, which no move held "
            f"together, no one mix of the pieces read (whole tensors moved, one or two at a "
            f"time) gives every tensor's values, as one tie rule for every tensor does: a rule "
            f"that differs between tensors (a > 0 for one, a >= 0 for another)? Each tensor's "
            f"values lie between their own one-sided slopes, so none fails alone"
        )
    for counts, noun, why, where in unread:
        for n, count in counts.items():
            p.note(f"d{n}: {_count(count, noun)} at ties of {large}: {why}, so nothing was "
                   f"compared there")  # fmt: skip
            p.unverified.setdefault(n, (
                f"d{n} is not verified at {_count(count, 'coordinate')}{first(n)}, at ties of "
                f"{large}, {where} (your tie rule was not judged)"
            ))  # fmt: skip


def _count(n: int, noun: str) -> str:
    """``1 coordinate``, ``2 coordinates``."""
    return f"{n:,} {noun}{'s' if n != 1 else ''}"


def _unverified(p: Any, n: str, count: int) -> None:
    p.untold.add(n)
    p.unverified.setdefault(n, (
        f"d{n} is not verified at {_count(count, 'coordinate')} at a kink of a single output, "
        f"whose ties were not told apart within {mention('budget')} ({mention('mode', 'full')}, "
        f"given, tells them apart whatever {mention('budget')}, and may take far longer: the "
        f"check's own mode reads full when it sampled nothing)"
    ))  # fmt: skip


def _whole_note(p: Any, count: str, given: float) -> None:
    p.note(
        f"{count} coordinates at a kink of a single output were not told apart into separate "
        f"ties (telling them apart needed more than the {max(given, 0.0):.1f} s of "
        f"{mention('budget')} it had): their ties were checked as one group, where wrong sums "
        f"of opposite signs at two ties cancel ({mention('mode', 'full')}, given, tells them all "
        f"apart whatever {mention('budget')})"
    )


def _left(p: Any, planned: float = 0.0) -> float:
    """What is left of --budget, and of ``planned`` seconds the estimate holds already (the
    planner chose them, over the budget or not: they run whole); a negative ``planned``: what
    ran beyond them and is not yet in ``p.spent``, taken from what is left (a sample's search
    for its ties' members counted 54 s, and the detector then had the whole budget again for
    the 1,217 members found, 112 s counted: 100 s of a check estimated at 0.23 s under
    --budget 60, outside test t45a N3)."""
    left = p.left()
    return left + planned if planned <= 0 else max(left, 0.0) + planned


def _put(out: dict[str, tuple], n: str, coords: np.ndarray, values: np.ndarray,
         noise: np.ndarray, fix: kinks.KinkFix | None = None) -> None:  # fmt: skip
    """Put ``values`` in place at ``coords`` of tensor ``n``, their round-off raising its own
    (and ``fix``, when given, in place of the tensor's). A sampled tensor keeps its sample: a
    tie's member outside it shaped its tie's values, and is not compared itself."""
    mode, c, grad, info, old, refined = out[n]
    if c is not None:
        keep = np.isin(coords, c)
        coords, values, noise = coords[keep], values[keep], noise[keep]
        if fix is not None:
            fix = dataclasses.replace(fix, coords=fix.coords[np.isin(fix.coords, c)])
    grad = grad.copy()
    grad.flat[coords] = values
    noise_at = None
    if info.noise_at is not None:
        noise_at = info.noise_at.copy()
        noise_at.flat[coords] = np.maximum(noise_at.flat[coords], noise)
    top = max(info.noise, float(np.max(noise, initial=0.0)))
    slopes = info.kink_slopes if fix is None else max(info.kink_slopes, fix.slopes)
    info = dataclasses.replace(info, noise=top, noise_at=noise_at, kink_slopes=slopes)
    out[n] = (mode, c, grad, info, old if fix is None else fix, refined)


def _partners(p: Any, out: dict[str, tuple], records: dict, names: list[str],
              tolerance: Callable, declares: Callable,
              settle: Callable | None) -> None:  # fmt: skip
    """Examine the coordinates of ``names`` at a kink whose moves reach the known ties'
    outputs, and rebuild each tensor's record (and tie groups) with those found: by the
    layer's declared kinks where it has them (a sample's ties' members outside it, read off
    its footprint or a loss's terms where it has them, else searched for; near-ties read as
    ties), else by the detector. A sample's share of this is in its estimate
    (``p.partners``, numeric/kinkplan.py): not taken from what is left of --budget, and only
    what exceeds it is counted beyond."""
    from gradcli.numeric import blocks, joint, kinkplan, kinks, partners, ties  # LAZY

    engine, coloring = p.engine, p.opts.coloring
    reach = []
    for n, r in records.items():
        if r is not None and r.coords.size:
            records[n] = joint.supported(engine, n, r, coloring)
            reach.append(records[n].support[1])
    outputs = np.unique(np.concatenate(reach))
    for n in names:
        mode, coords, grad, info, fix, _ = out[n]
        planned = p.partners.get(n, 0.0) if coords is not None else 0.0
        used = 0.0  # predicted seconds of what ran, against what was planned
        known = np.zeros(0, dtype=np.int64) if fix is None else fix.coords
        seen = np.isfinite(grad.ravel())
        if coords is not None:  # a sampled tie's members left out of the sample belong to it
            seen[np.setdiff1d(np.arange(grad.size), coords)] = True
        candidates = np.setdiff1d(np.flatnonzero(seen), known)
        tol = tolerance(p, n, grad, info)
        h = kinks.one_sided_step(engine, n) / 4  # the detector's slopes' step at a kink
        given = _left(p, planned)
        found = None
        if declares(p.engines[n]):  # no search where the footprint or terms name them
            at = np.zeros(0, dtype=np.int64) if records[n] is None else records[n].coords
            found = kinkplan.members(engine, n, candidates, at, coloring, outputs)
        if found is not None:
            spent, complete = 0.0, True
        elif ties.single_output(engine, n, coloring):  # a loss: those that interact
            at = {m: r.coords for m, r in records.items() if r is not None and r.coords.size}
            found, spent, complete = blocks.partners(engine, at, n, candidates,
                                                     float(np.min(h)), given)  # fmt: skip
            if not complete and coords is not None:  # a sample's ties: on the members found
                _searched_part(p, n, given)
                complete = True
        elif coords is not None:  # a sample: a few ties complete, the rest on those examined
            # each member found is then examined for its kink by the detector, where the
            # layer declares none: its cost is the tie's too (its ten points, its lines and
            # ties: twice the ten, measured on t45a's sparse relu(x) @ W)
            each = 0.0 if declares(p.engines[n]) else 2 * kinks.examine_seconds(
                engine, n, np.zeros(1, dtype=np.int64), coloring)
            found, spent, done, total = partners.find_by_tie(engine, n, candidates, records, h,
                                                             tol, given, each)  # fmt: skip
            complete = True
            if done < total:
                _searched_part(p, n, given, f"{total - done:,} of {total:,} ")
        else:
            found, spent, complete = partners.find(engine, n, candidates, outputs, h, tol, given)
        used += spent
        if not complete:
            p.note(
                f"d{n}: the search for coordinates tied with those at a kink stopped (its next "
                f"round needed more than was left of the {max(given, 0.0):.1f} s of "
                f"{mention('budget')} it had): the ties were checked with the members found "
                f"({mention('mode', 'full')} searches them all)"
            )
            p.unverified.setdefault(n, (
                f"d{n} is not verified at its kinks, whose ties' members were not all searched "
                f"for within {mention('budget')} ({mention('mode', 'full')} searches them all)"
            ))  # fmt: skip
        more = None
        if found.size and declares(p.engines[n]):
            more = kinks.declared(engine, n, p.under_test[n], found, coloring,
                                  _left(p, planned - used), tol)  # fmt: skip
            if more is not None:  # else no map for this tensor
                used += kinkplan.recheck_seconds(engine, n, found, coloring)[0]
                p.spent += more.unplanned
        elif found.size:
            more = kinks.detected(engine, n, p.under_test[n], grad, found, tol, coloring,
                                  _left(p, planned - used))  # fmt: skip
            used += more.seconds
        if more is not None and more.at is not None and more.at.coords.size:
            used += _merge(p, out, records, n, more.at, settle, _left(p, planned - used),
                           read=not declares(p.engines[n]))  # fmt: skip
        p.spent += max(0.0, used - planned)


def _searched_part(p: Any, n: str, given: float, which: str = "") -> None:
    """A sample's search for its ties' members stopped: a note, not a failure (a sample leaves
    coordinates out; its ties are held on the members it found)."""
    p.note(
        f"d{n}: the members of {which or 'some '}ties outside those examined were not all "
        f"searched for (the search needed more than the {max(given, 0.0):.1f} s of "
        f"{mention('budget')} it had): those ties were checked on the members found, as a "
        f"sample checks what it drew ({mention('mode', 'full')} searches them all)"
    )


def _merge(p: Any, out: dict[str, tuple], records: dict, n: str, new: ties.AtKink,
           settle: Callable | None = None, budget: float = math.inf,
           read: bool = False) -> float:  # fmt: skip
    """Tensor ``n``'s coordinates at a kink with ``new`` ones: tie groups found again over
    all of them, their values put in place. ``budget``: the seconds its links may take
    (``read``: the detector read every one, and their links are measured whatever the budget,
    numeric/ties.enforce). Returns its predicted seconds."""
    from gradcli.numeric import kinkplan, kinks, routes, ties  # LAZY

    engine = p.engine
    old = records.get(n)
    parts = [r for r in (old, new) if r is not None]
    idx = np.concatenate([r.coords for r in parts])
    h = np.concatenate([r.h for r in parts])
    lo = np.concatenate([r.lo for r in parts])
    hi = np.concatenate([r.hi for r in parts])
    # near-ties (numeric/kinks.gapped) read beyond the kinks within their step
    near = np.concatenate([np.zeros(r.coords.size) if r.near is None else r.near for r in parts])
    a = np.asarray(p.under_test[n], dtype=np.float64).ravel()[idx]
    sides = None  # the loss's own two slopes, where every part read them
    if all(r.sides is not None for r in parts):
        sides = tuple(np.concatenate([r.sides[k] for r in parts]) for k in (0, 1))
    seconds = kinkplan.merge_seconds(engine, n, idx.size, p.opts.coloring)
    values, noise, records[n] = ties.enforce(engine, n, idx, h, a, lo, hi, p.opts.coloring,
                                             budget - seconds, near > 0,
                                             not routes.routed(engine, n),
                                             sides=sides, read=read)  # fmt: skip
    seconds += records[n].seconds
    fix = out[n][4]
    if fix is None:
        fix = kinks.KinkFix(idx, values, noise, at=records[n])
    else:
        fix = dataclasses.replace(fix, coords=np.union1d(fix.coords, idx), at=records[n])
    _put(out, n, idx, values, noise, fix)
    if settle is not None:  # the rebuilt ties of a layer's maxima: a routing, exactly
        mode, c, grad, info, fix, refined = out[n]
        routed = settle(p, n, grad, info, records[n])
        out[n] = (mode, c, np.where(np.isfinite(grad), routed, grad), info, fix, refined)
    return seconds
