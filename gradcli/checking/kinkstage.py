"""The kinks stage of one tensor's check: the coordinates the default stencil cannot decide.

Those whose stencil met a kink get a one-sided difference on a side that does not cross it;
those still failing are differenced at smaller steps (numeric/refine.py), and, for a layer
that does not say where its kinks are, examined for kinks (numeric/kinks.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcli.checking import across, intermediates, leftover
from gradcli.checking.budget import declares_kinks, smooth
from gradcli.checking.prepared import Prepared
from gradcli.checking.tolerances import tolerance, tolerances
from gradcli.errors import mention
from gradcli.numeric import refine
from gradcli.numeric.engine import Engine, TensorNumerics
from gradcli.numeric.methods import CONJUGATE, MIRRORS, get_method

if TYPE_CHECKING:
    from gradcli.numeric import kinks


def kinks_stage(
    p: Prepared, name: str, coords: np.ndarray | None, grad: np.ndarray, info: TensorNumerics
) -> tuple[np.ndarray, TensorNumerics, kinks.KinkFix | None, refine.Refined | None]:
    """The coordinates the default stencil cannot decide. Those whose stencil met a kink get a
    one-sided difference on a clean side, where a built-in layer says (``Layer.kinks``). Then
    the coordinates that fail are differenced at smaller steps (numeric/refine.py): a
    truncation error shrinks away as h^p, a bug's does not. For any other layer (and a
    built-in that declares none), the detector examines those still failing for kinks
    (numeric/kinks.py)."""
    engine, analytic = p.engines[name], p.under_test[name]
    fix = None
    declared = declares_kinks(engine)
    nowhere = smooth(engine)  # no kinks to look for
    if declared:  # its rechecks are in the estimate, within --budget
        from gradcli.numeric import kinkplan, kinks  # LAZY

        fix = kinks.declared(engine, name, analytic, coords, p.opts.coloring, p.left(),
                             tolerance(p, name, grad, info))  # fmt: skip
        # but for the search for a loss's ties' partners, and near-ties the round-off of a
        # clean side sent to be read as ties: counted once known
        p.spent += kinkplan.unplanned(engine, name, fix and fix.at, p.opts.coloring)
        p.spent += fix.unplanned if fix is not None else 0.0
        grad, info = _put(grad, info, fix)
    if fix is not None:  # at the ties of maxima: a routing, exactly (Layer.maxima)
        grad = settle(p, name, grad, info, fix.at)
    atol, rtol, _, noise = tolerances(p, name, grad, info)
    floor = atol if noise is None else np.maximum(atol, noise.ravel())
    seen = np.isfinite(grad).ravel()
    a, n = np.asarray(analytic, dtype=np.float64).ravel(), grad.ravel()

    def apart(v: np.ndarray) -> np.ndarray:  # compare's pass rule, failed where seen
        return seen & ~(np.abs(v - n) <= floor + rtol * np.abs(n))

    tol = tolerance(p, name, grad, info)
    # an answer of NaN or inf has no value a smaller step could approach: it fails as given
    # (20 halvings spent on a NaN read as 'still moving': outside test t23 F13)
    failing = apart(a) & np.isfinite(a)
    if fix is not None:  # a declared kink's value is a one-sided difference: not refined
        failing[fix.coords] = False
    mirror = None if declared or nowhere else _mirror(p, name, coords)
    # a one-sided method reads one side of a kink, which a wrong backward may match exactly
    # (all of a tie's gradient to each of its elements): where the other side's difference
    # disagrees, the coordinate is examined too (and refined on that side)
    other = np.zeros_like(failing) if mirror is None else seen & ~(
        np.abs(a - mirror.ravel()) <= floor + rtol * np.abs(mirror.ravel()))  # fmt: skip
    # a wrong backward fails at thousands of coordinates, each of which the rechecks below
    # take again (a custom batchnorm's: 30 s counted and 60 s run against an estimate of 5 s,
    # t14 B2); its verdict needs one failure confirmed and its hints a sample. So a few are
    # rechecked first, and when none of them is explained (confirmed at a smaller step, or at
    # a kink) the others fail as computed, as they would have
    # a coordinate that passes where its one-sided differences disagree as a kink's do, not
    # as curvature's (numeric/bends.py): examined for kinks as a failing one is
    bent, unscreened = _bent(p, name, info, seen & ~failing & ~other,
                             floor + rtol * np.abs(n))  # fmt: skip
    union = np.flatnonzero(failing | other)
    ways = [w for w, runs in (("at a smaller step", p.opts.method != "complex"),
                              ("at a kink", not (declared or nowhere))) if runs]  # fmt: skip
    forced = p.opts.mode not in ("auto", "probe")  # --mode full rechecks every one
    first = None
    if union.size > 2 * refine.SCREEN and ways and not (p.random_forward or forced):
        off = np.abs(a[union] - n[union])
        first = refine.screen(union, off / (np.broadcast_to(floor, n.shape)[union]
                                            + rtol * np.abs(n[union])), n[union])  # fmt: skip
    if first is not None:
        said: list[str] = []
        only = np.zeros_like(failing)
        only[first] = True
        *got, explained = _rechecked(p, name, grad, info, fix, failing & only, other & only, n,
                                     mirror, tol, declared or nowhere, said, bent[:0])  # fmt: skip
        if not explained:
            for text in said:
                p.note(text)
            rest = union.size - first.size
            # every coordinate was compared; what the automatic mode skips is only the
            # recheck ("an explicit --mode full" read as a mode not in use where the table
            # showed 384/384 checked, outside test t59b F3; "add --mode full" read as wrong
            # beside the JSON's "mode": "full", outside test t60a F4)
            p.note(
                f"d{name}: {first.size} of its {union.size:,} failing coordinates were "
                f"rechecked (the worst, and others spread over the tensor) and none was "
                f"explained {' or '.join(ways)}, so the other {rest:,} fail as computed "
                f"(every {'sampled ' if p.mode == 'sample' else ''}coordinate was compared; "
                f"{mention('mode', 'full')} given explicitly "
                f"rechecks every failing one too)"
            )
            # (every one counts as tried: none is refined late, _late)
            got[3] = dataclasses.replace(got[3], tried=np.union1d(got[3].tried, union))
            return tuple(got)  # type: ignore[return-value]
    said = []
    *got, _ = _rechecked(p, name, grad, info, fix, failing, other, n, mirror, tol,
                         declared or nowhere, said, bent)  # fmt: skip
    for text in said:
        p.note(text)
    out = leftover.unscreened_out(p, name, info, got[2], unscreened)
    if unscreened.size:
        got[2] = got[2] if out is None else out
        fate = ("left out as a sample leaves them, their central differences no evidence "
                "there" if out is not None else "they were not examined for kinks their "
                "central differences may straddle")
        p.note(
            f"d{name}: {unscreened.size:,} coordinates that passed, whose one-sided "
            f"differences disagreed, were not differenced at half the step to tell a kink from "
            f"curvature (what was left of {mention('budget')} did not fit them): {fate} "
            f"({mention('mode', 'full')} examines every one)"
        )
    return tuple(got)  # type: ignore[return-value]


def _bent(p: Prepared, name: str, info: TensorNumerics, passing: np.ndarray,
          tol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(flat indices, those left unconfirmed for the budget) of the coordinates among
    ``passing`` whose one-sided differences disagree as across a kink (numeric/bends.py)."""
    if info.bends is None or not passing.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    from gradcli.numeric import bends  # LAZY: see ARCHITECTURE.md, "Start-up"

    found, left_out, seconds = bends.candidates(p.engines[name], name, info.bends, passing,
                                                np.broadcast_to(tol, passing.shape), p.left(),
                                                p.opts.coloring)  # fmt: skip
    p.spent += seconds
    return found, left_out


def _rechecked(
    p: Prepared, name: str, grad: np.ndarray, info: TensorNumerics, fix: Any,
    failing: np.ndarray, other: np.ndarray, n: np.ndarray, mirror: np.ndarray | None,
    tol: Callable[[np.ndarray, np.ndarray], np.ndarray], declared: bool, said: list[str],
    bent: np.ndarray,
) -> tuple[np.ndarray, TensorNumerics, Any, refine.Refined, bool]:  # fmt: skip
    """The failing coordinates (``failing``; ``other``: those a one-sided method's other side
    fails) differenced at smaller steps, then, for a layer that declares no kinks, those still
    failing examined for kinks, and after them those that passed but bend (``bent``, flat
    indices: numeric/bends.py): (grad, info, fix, refined, whether any was explained, or its
    value moved at smaller steps). The notes go to ``said``."""
    engine, analytic = p.engines[name], p.under_test[name]
    # an automatic check may leave out, as a sample does, failing coordinates a kink at x
    # explains as well as a bug does (central differences read how far apart their sides lie)
    # (so may a network's end to end, whose kinks its layers' local checks read: a right CNN of
    # yours on digits over a zero background failed there as 'not verified' at 272 failing
    # coordinates --budget left unexamined, every layer passing: outside test t44a F2)
    sampling = p.opts.mode == "auto" and (info.bends is not None or p.opts.composite_kinks)
    order = np.flatnonzero(failing)
    if sampling:  # the smaller steps' budget, too, goes to those a bug shows at first
        order = leftover.budget_order(p, name, info, order, n, tol)[0]
    refined = _refine(p, name, order, np.flatnonzero(other), n, mirror, tol, said,
                      sampling)  # fmt: skip
    grad, info = _put(grad, info, refined)
    failing = failing | other
    failing[refined.cleared] = False
    failing = np.flatnonzero(failing)
    # explained, or led by smaller steps beyond the tolerance from the default step's values:
    # its truncation matters, and the others' values would be quoted as that step left them
    led = refined.led
    moved = led.size > 0 and bool(np.any(np.abs(refined.led_values - n[led]) > tol(
        np.zeros(led.size), refined.led_values)))  # fmt: skip
    explained = refined.cleared.size > 0 or moved
    bent = bent[~np.isin(bent, failing)]
    if declared or not (failing.size or bent.size) or p.random_forward:
        said += _unsettled(name, refined, None)
        return _led(grad, refined, fix), info, fix, refined, explained
    # unpredictable before the comparison, so bounded by what is left of --budget (a forced
    # mode has none to keep)
    left = p.left()
    from gradcli.numeric import kinks  # LAZY

    chained = None
    if across.chained_answer(p, name):
        chained = intermediates.builtin(p.comp, name)
    # the failing first: a budget that fits only some leaves out those that passed
    lookalike, drawn = failing[:0], np.zeros(failing.size, dtype=np.int64)
    if sampling:
        failing, lookalike, drawn = leftover.budget_order(p, name, info, failing, n, tol)
        # and those that passed but bend in an order drawn, not the tensor's first rows
        bent = np.random.default_rng(p.spec.seed).permutation(bent)
    examined = np.concatenate([failing, bent])
    fix = kinks.detected(engine, name, analytic, grad, examined, tol, p.opts.coloring,
                         left, any_slope=p.opts.composite_kinks, chained=chained)  # fmt: skip
    p.spent += fix.seconds
    passed_out = min(fix.unexamined, bent.size)
    failed_out = fix.unexamined - passed_out
    whole = kinks.examine_seconds(engine, name, examined, p.opts.coloring) if fix.unexamined \
        else 0.0
    out = fix.left[np.isin(fix.left, lookalike)]
    sampled = sampling and out.size == failed_out
    budget_left = (f"(examining all would take about {whole:.1f} s, {max(left, 0.0):.1f} s of "
                   f"{mention('budget')} was left)")
    full = f"({mention('mode', 'full')} examines every one)"
    if failed_out:
        head = (f"d{name}: {failed_out:,} of {failing.size:,} failing coordinates were not "
                f"examined for kinks {budget_left}")
    if failed_out and sampled:
        shares = leftover.shares(failing.size - failed_out, drawn)
        # an automatic check samples what --budget does not fit, as it samples a tensor too
        # large for it: the ones left out are a random share of those whose values a kink
        # explains as well as a bug, and are not compared (a right relu of yours at 4,852
        # exact zeros failed as 'not verified' where --budget cut the examination: outside
        # test t38b F1)
        said.append(
            f"{head}: each lies between its two one-sided differences, as a slope at a kink "
            f"may; the {failing.size - failed_out:,} examined ({shares}) are compared, those "
            f"left out as a sample leaves them {full}"
        )
    elif failed_out:  # only a budget leaves some out
        out = fix.left[np.isin(fix.left, failing)]
        said.append(f"{head}: they fail as computed, unexamined {full}")
        # where nothing else fails them, the budget is why they are not verified (a relu of
        # yours at 4,852 exact zeros was said to fail at 'ties of more than 4 interacting
        # equal values': outside test t38b F1)
        p.unverified.setdefault(name, (
            f"d{name} is not verified at {failed_out:,} failing coordinate"
            f"{'s' if failed_out > 1 else ''} that {mention('budget')} left unexamined for "
            f"kinks {full}"))  # fmt: skip
    bent_out = fix.left[np.isin(fix.left, bent)] if sampled else fix.left[:0]
    if passed_out:
        # a central difference across a kink within the step reads the two pieces' mean,
        # which a wrong rule gives (np.isclose(x, 0) taken for relu's tie): no evidence in an
        # automatic check, which leaves them out as a sample's (they passed 'as computed':
        # t40a F9, F10)
        fate = ("left out as a sample leaves them, their central differences no evidence "
                "there" if sampled else "their central differences stand")
        said.append(
            f"d{name}: {passed_out:,} of {bent.size:,} coordinates that passed, whose "
            f"one-sided differences disagreed as across a kink, were not examined for kinks "
            f"{budget_left}: {fate} {full}"
        )
    fix = dataclasses.replace(fix, unexamined=failed_out,
                              left=np.concatenate([out, bent_out]) if sampled else out,
                              sampled=sampled and bool(out.size + bent_out.size))
    said += _unsettled(name, refined, fix)
    grad, info = _put(grad, info, fix)
    return _led(grad, refined, fix), info, fix, refined, explained or fix.coords.size > 0


def _led(grad: np.ndarray, refined: refine.Refined, fix: Any) -> np.ndarray:
    """``grad`` with the values the smaller steps led to where they led away from the
    analytical gradient (it fails there either way) and no kink's value stands."""
    at = refined.led
    if fix is not None and fix.coords.size:
        keep = ~np.isin(at, fix.coords)
        at, values = at[keep], refined.led_values[keep]
    else:
        values = refined.led_values
    if not at.size:
        return grad
    grad = grad.copy()
    grad.flat[at] = values
    return grad


def settle(p: Prepared, name: str, grad: np.ndarray, info: TensorNumerics, at) -> np.ndarray:
    """``grad`` with a routing's values at the ties of a layer's maxima (checking/routing.py)
    among ``at`` (numeric/ties.AtKink), under the tensor's tolerances."""
    from gradcli.checking import routing  # LAZY: see ARCHITECTURE.md, "Start-up"

    atol, rtol, _, noise = tolerances(p, name, grad, info)
    floor = atol if noise is None else np.maximum(atol, noise.ravel())
    return routing.settle(p.engines[name], name, p.under_test[name], grad, at, atol, rtol,
                          floor, p.note)[0]  # fmt: skip


def _refine(
    p: Prepared, name: str, failing: np.ndarray, other: np.ndarray, n: np.ndarray,
    mirror: np.ndarray | None, tol: Callable[[np.ndarray, np.ndarray], np.ndarray],
    said: list[str], sampling: bool = False,
) -> refine.Refined:  # fmt: skip
    """The failing coordinates confirmed at smaller steps, on the method's side and, for a
    one-sided method, on the other side's where that disagreed; ``cleared``: every coordinate
    confirmed on each side it failed on."""
    if not (failing.size or other.size) or p.random_forward:  # np.union1d: numpy.ma, 10 ms
        return refine.Refined(failing[:0], np.zeros(0), np.zeros(0))
    engine, analytic, left = p.engines[name], p.under_test[name], p.left()
    mine = refine.refine(engine, name, failing, analytic, n, tol,
                         coloring=p.opts.coloring, seconds=left)  # fmt: skip
    theirs = refine.Refined(other[:0], np.zeros(0), np.zeros(0))
    if mirror is not None and other.size:
        theirs = refine.refine(engine, name, other, analytic, mirror.ravel(), tol,
                               method=get_method(MIRRORS[p.opts.method]),
                               coloring=p.opts.coloring, seconds=left - mine.seconds)  # fmt: skip
    p.spent += mine.seconds + theirs.seconds
    tried = np.union1d(failing, other)
    ok = (~np.isin(tried, failing) | np.isin(tried, mine.coords)) & (
        ~np.isin(tried, other) | np.isin(tried, theirs.coords))  # fmt: skip
    unexamined = mine.unexamined + theirs.unexamined
    if unexamined:
        said.append(
            f"d{name}: {unexamined:,} of {tried.size:,} failing coordinates were not "
            f"differenced at smaller steps ({max(left, 0.0):.1f} s of {mention('budget')} was "
            f"left): they fail as computed unless a kink explains them"
            f"{', or a sample leaves them out (see below)' if sampling else ''} "
            f"({mention('mode', 'full')} refines every one)"
        )
    return dataclasses.replace(mine, cleared=tried[ok], unsettled=mine.unsettled + theirs.unsettled,
                               moving=np.union1d(mine.moving, theirs.moving),
                               halvings=max(mine.halvings, theirs.halvings),
                               tried=tried)  # fmt: skip


def _unsettled(name: str, refined: refine.Refined, fix: Any) -> list[str]:
    """The note on the coordinates still moving at the smallest step, but for those a kink
    explained since (it said 'they fail as computed' of coordinates that then passed at
    kinks)."""
    moving = refined.moving
    if fix is not None and fix.coords.size:
        moving = moving[~np.isin(moving, fix.coords)]
    if fix is not None and fix.sampled:  # left out as a sample's: they fail as nothing
        # (a PASS said of them that they 'fail as computed': outside test t41a N4)
        moving = moving[~np.isin(moving, fix.left)]
    count = moving.size
    if not count:
        return []
    return [
        f"d{name}: the finite differences of {count:,} failing coordinate"
        f"{'s were' if count > 1 else ' was'} still moving after {refine.HALVINGS} "
        f"halvings of the step, neither settling nor at the rate of truncation (a layer "
        f"varying on a scale far below the step, eps * max(1, |x|), or round-off): "
        f"{'they fail' if count > 1 else 'it fails'} as computed "
        f"({mention('method', 'complex')} has no step to shrink)"
    ]


def _put(grad: np.ndarray, info: TensorNumerics, fix: Any) -> tuple[np.ndarray, TensorNumerics]:
    """``grad`` and ``info`` with the values (and their round-off) a recheck put in place."""
    if fix is None or not fix.coords.size:
        return grad, info
    grad = grad.copy()
    grad.flat[fix.coords] = fix.values
    noise_at = None
    if info.noise_at is not None:  # the rechecks' stencils' own round-off, element by element
        noise_at = info.noise_at.copy()
        noise_at.flat[fix.coords] = np.maximum(noise_at.flat[fix.coords], fix.noise_at)
    # a refinement reads no kink: only the kinks' fix raises the slopes the step resolved
    slopes = max(info.kink_slopes, getattr(fix, "slopes", 0.0))
    info = dataclasses.replace(info, noise=max(info.noise, fix.noise), noise_at=noise_at,
                               kink_slopes=slopes)  # fmt: skip
    return grad, info


def _mirror(p: Prepared, name: str, coords: np.ndarray | None) -> np.ndarray | None:
    """For a one-sided method on a layer that declares no kinks: the other side's difference at
    the same coordinates (what central differences cost in all), else None. The complex step
    is one-sided at a kink that compares complex values (np.maximum), so it has one too."""
    other = MIRRORS.get(p.opts.method)
    if other is None:
        return None
    e = p.engines[name]
    # (the same forward at the same point: its precision, read once, is the main engine's)
    mirror = Engine(e.layer, e.t64, e.options, e.g, method=other, eps=p.opts.eps,
                    max_memory=e.max_memory, unit=e.unit)  # fmt: skip
    if other == "complex":
        mirror.method = CONJUGATE
    return mirror.gradient(name, coloring=p.opts.coloring, coords=coords)[0]
