"""What --budget leaves unexamined for kinks, and how an automatic check samples it.

A layer of yours whose kinks are found by the detector (numeric/kinks.py) has its failing
coordinates examined one by one, as far as --budget goes. An automatic check samples what the
budget does not fit, as it samples a tensor too large for it: the coordinates examined first
are those no kink at x explains (their value outside the two one-sided differences central
differences read, numeric/bends.py), then by turns the worst and one drawn from the spec's
seed; those left over, each between its two sides as a slope at a kink may be, are left out of
the comparison as a sample leaves out what it did not draw, and the verdict says "sample
mode". Under any other rule (a probe's recheck, a one-sided method) they fail as computed, and
a tensor failing only there is not verified (a right relu of yours at 4,852 exact zeros failed
as 'not verified': outside test t38b F1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from gradcli.checking.prepared import Prepared
from gradcli.numeric.engine import TensorNumerics


def budget_order(p: Prepared, name: str, info: TensorNumerics, failing: np.ndarray,
                 n: np.ndarray, tol: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(``failing``, flat indices, in the order the rechecks take them while --budget lasts
    (the smaller steps, then the kink detector); those of them a sample may leave out; in
    that order, how each was taken: 0 first, 1 for failing most, 2 drawn at random). First
    those no kink at x explains (their value farther from the central difference than half
    the spread of its two one-sided differences, numeric/bends.py: a bug's), then by turns
    the one that fails by most tolerances and one drawn from the spec's seed: what the budget
    leaves out holds no bug that shows on its own, and as many of the others were drawn at
    random as were taken for failing most (a threshold mask x > 1e-7, wrong at 5 of 787, was
    left out whole when the worst alone were examined: outside test t40a F2)."""
    from gradcli.numeric import bends, kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    off = np.abs(np.asarray(p.under_test[name], dtype=np.float64).ravel()[failing]
                 - n[failing])  # fmt: skip
    allowed = tol(np.zeros(failing.size), n[failing])
    excess = np.nan_to_num(off / allowed, nan=np.inf)
    # a slope between the two sides lies within half their spread of the central difference
    # (relu'(0) = 1.4 lay within the spread, and was left out: outside test t40a F1)
    # (a network's end to end reads no bends: its layers' local checks read every kink)
    sure = (~(off <= 0.5 * bends.spread(p.engines[name], name, info.bends)[failing] + allowed)
            if info.bends is not None else np.zeros(failing.size, dtype=bool))  # fmt: skip
    # then those whose value is none a kink sits on at x (0, a value another coordinate holds,
    # a whole number of 1/256ths): between their sides, a kink a step away is as likely as
    # one at x (relu's x > 1e-8 mask at 8 inputs of 1e-13 was left out with 1,390 exact
    # zeros: outside test t41a F2)
    odd = ~sure & ~kinks.on_kink_values(p.engines[name], name, failing)
    order = np.lexsort((-excess, ~odd, ~sure))  # the sure, then the odd, each by excess
    head = int(sure.sum() + odd.sum())
    rest = order[head:]
    drawn = np.random.default_rng(p.spec.seed).permutation(rest.size)
    # each one's first turn: 2k as the k-th worst, 2k + 1 as the k-th drawn
    turn = np.minimum(2 * np.arange(rest.size), 2 * np.argsort(drawn) + 1)
    by = np.argsort(turn, kind="stable")
    rest, how = rest[by], 1 + (turn % 2)[by]
    return (failing[np.concatenate([order[:head], rest])], failing[~sure],
            np.concatenate([np.zeros(head, dtype=np.int64), how]))


def shares(examined: int, how: np.ndarray) -> str:
    """How the ``examined`` first of ``budget_order``'s order were taken (``how``: 0 first,
    1 for failing most, 2 drawn), in words."""
    counts = np.bincount(how[:examined], minlength=3)
    first, worst, at_random = (int(c) for c in counts[:3])
    return (f"{first:,} no kink at x explains or off any value a kink sits on, {worst:,} "
            f"failing most, {at_random:,} drawn at random")


def sampled_kinks(p: Prepared, name: str, mode: str, coords: np.ndarray | None,
                  grad: np.ndarray, info: TensorNumerics, fix: Any, refined: Any) -> tuple:
    """(mode, coords, grad, info, fix, refined): the failing coordinates an automatic
    check's --budget left unexamined for kinks (``fix.left``) left out of the comparison,
    as a sample leaves out the coordinates it did not draw (their values not a number, as
    a sample's are), and the check's mode a sample's."""
    left = np.zeros(0, dtype=np.int64) if fix is None or not fix.sampled else fix.left
    if not left.size:
        return mode, coords, grad, info, fix, refined
    size = p.under_test[name].size
    coords = np.setdiff1d(np.arange(size) if coords is None else coords, left)
    grad = np.array(grad, dtype=np.float64)
    grad.flat[left] = np.nan
    p.mode = "sample"
    return "sample", coords, grad, info, fix, refined


def unscreened_out(p: Prepared, name: str, info: TensorNumerics, fix: Any,
                   unscreened: np.ndarray) -> Any:
    """The kink fix with ``unscreened`` (flat indices that passed, bending, the budget left
    unconfirmed) left out of an automatic check's comparison as a sample's, or None where
    they stand: another mode, or failing coordinates left over that fail as computed (the
    tensor cannot pass then). A central difference across a kink within the step reads the
    two pieces' mean, which a wrong rule gives (relu's np.isclose(x, 0) at x = 1e-13 passed a
    full check at --budget 1: outside test t40a F10)."""
    if not unscreened.size or p.opts.mode != "auto" or info.bends is None:
        return None
    from gradcli.numeric import kinks  # LAZY

    if fix is None:
        empty = np.zeros(0, dtype=np.int64)
        return kinks.KinkFix(empty, np.zeros(0), np.zeros(0), left=unscreened, sampled=True)
    if fix.left.size and not fix.sampled:
        return None
    return dataclasses.replace(fix, left=np.union1d(fix.left, unscreened), sampled=True)


def failing(p: Prepared, name: str, grad: np.ndarray, atol: float, rtol: float,
            noise: np.ndarray | None, coords: np.ndarray | None) -> np.ndarray:
    """The flat indices of ``name`` (among ``coords``) that fail the pass rule."""
    a = np.asarray(p.under_test[name], dtype=np.float64).ravel()
    n = np.asarray(grad, dtype=np.float64).ravel()
    floor = atol if noise is None else np.maximum(atol, np.asarray(noise).ravel())
    bad = ~(np.abs(a - n) <= floor + rtol * np.abs(n))
    if coords is not None:
        keep = np.zeros(bad.size, dtype=bool)
        keep[np.asarray(coords, dtype=np.int64)] = True
        bad &= keep
    return np.flatnonzero(bad)


def only_at(p: Prepared, name: str, grad: np.ndarray, atol: float, rtol: float,
            noise: np.ndarray | None, coords: np.ndarray | None, at: np.ndarray) -> bool:
    """Whether every coordinate of ``name`` that fails the pass rule is among ``at``."""
    bad = failing(p, name, grad, atol, rtol, noise, coords)
    return bool(bad.size) and bool(np.isin(bad, at).all())
