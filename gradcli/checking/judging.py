"""One tensor's verdict: its numerical gradient against the analytical one under the pass
rule, then the rules that turn a failure into "not verified" (round-off, kinks left
unexamined, ties read as one group) or a pass into "cannot resolve" (a step within the
forward's own noise, zeros the difference swallowed), and what the hints may read.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcli.checking import across, diagnose, intermediates, leftover
from gradcli.checking.compare import TensorResult, compare
from gradcli.checking.contract import lower_precision
from gradcli.checking.hint import Hint
from gradcli.checking.prepared import Prepared
from gradcli.checking.probe import unlocated
from gradcli.checking.report import default_tolerances
from gradcli.checking.soundness import largest, step_underflows
from gradcli.checking.tolerances import (
    FAILING_MEASURED,
    advice_for,
    below_atol,
    compared,
    float64_work,
    reach_of,
    tiny_inputs,
    tolerances,
    within_terms,
)
from gradcli.layers.base import options_dict
from gradcli.numeric import cost, refine
from gradcli.numeric.engine import TensorNumerics
from gradcli.numeric.methods import EPS, RESOLVE_MARGIN, steps

if TYPE_CHECKING:
    from gradcli.numeric import kinks


def compare_tensor(
    p: Prepared,
    name: str,
    mode: str,
    coords: np.ndarray | None,
    grad: np.ndarray,
    info: TensorNumerics,
    fix: kinks.KinkFix | None = None,
    refined: refine.Refined | None = None,
) -> tuple[TensorResult, TensorResult | None]:
    """(the result under the pass rule, and with --grads our own backward's against the same
    numerical gradient)."""
    spec, opts, analytic = p.spec, p.opts, p.under_test[name]
    atol, rtol, unresolved, noise = tolerances(p, name, grad, info, final=True)
    underflows = step_underflows(p.engines[name], name, opts.method)
    if unresolved and not underflows and _resolved_failures(p, name, grad, info, atol, rtol,
                                                            noise, coords, refined):  # fmt: skip
        unresolved = ""
    unresolved = underflows or unresolved
    shown, held = atol, np.zeros(0, dtype=np.int64)
    if not unresolved:
        grad, noise, refined = _late(p, name, grad, atol, rtol, noise, coords, fix, refined)
        # (a kink's sides decided theirs; the smaller steps only confirmed theirs within the
        # atol, which a quadratic's sign-flipped 5e-10 sat under: outside test t37b F1)
        settled = [np.zeros(0, dtype=np.int64)] + ([] if fix is None else
                                                   [np.asarray(fix.coords, dtype=np.int64)])
        # (the table and JSON show the tensor's atol: those held below it are counted apart)
        shown = atol
        atol, noise, held = below_atol(p, name, grad, info, atol, rtol, noise, coords,
                                       np.concatenate(settled))  # fmt: skip
    if unresolved:
        unresolved = f"cannot resolve d{name} at this step: {unresolved}"
        if fix is not None and fix.coords.size and "round-off" in unresolved:
            # what reads as round-off beside kinks may be a jump (an argmax picking between
            # tied values of different weights: outside test t65b F6)
            unresolved += (f"; or, at the {fix.coords.size} coordinates met at a kink, the "
                           f"forward jumps rather than bends (an argmax choosing between tied "
                           f"values): there it has no derivative to read")  # fmt: skip
    elif refined is not None and refined.noisy.size:
        grad = _set_aside(p, name, grad, refined, atol, rtol, noise, coords, fix)
    promised = (analytic.size if coords is None
                else coords.size if fix is not None and fix.sampled  # (leftover.sampled_kinks)
                else max(min(opts.samples, analytic.size),  # (and the built-in's worst)
                         p.sampled[name].size if name in p.sampled else 0))  # fmt: skip
    theirs, chained = grad, 0
    if across.chained_answer(p, name) and fix is not None and fix.coords.size:
        grad, theirs, late = _chained(p, name, grad, fix.coords, atol, rtol, noise)
        accepted = np.union1d(np.asarray(fix.chained, dtype=np.int64), late)
        chained = int(np.isin(accepted, fix.coords if coords is None else coords).sum())
    result = compare(
        name, analytic, grad, atol, rtol, coords=coords, promised=promised, noise=noise,
        unresolved=unresolved, mode=mode, numerics=info, top=opts.top,
        letters=list(spec.info(name).index), context=lambda: {**diagnosis(p, name),
                                                              **_kink_sides(fix)},
        kinks=0 if fix is None else int(fix.coords.size),
        kinks_unchecked=0 if fix is None else fix.unchecked,
        ties_unverified=0 if fix is None else fix.unverified,
        kink_at=() if fix is None else tuple(fix.coords.tolist()),
        refined=0 if refined is None else int(refined.cleared.size),
        refined_halvings=0 if refined is None else refined.halvings, kinks_chained=chained,
        **extras(p, name),
    )  # fmt: skip
    result = dataclasses.replace(result, atol=shown, held_at=tuple(held.tolist()),
                                 kinks_left_out=int(fix.left.size) if fix is not None
                                 and fix.sampled else 0)  # fmt: skip
    if not result.passed and not unresolved and (why := within_terms(p, name, grad)):
        result = _unresolved(result, f"cannot resolve d{name} at this step: {why}")
    if not result.passed and not unresolved and refined is not None and refined.noisy.size:
        why = _noisy(p, name, grad, refined, atol, rtol, noise, coords, fix)
        if why:
            result = _unresolved(result, why)
    # (those a kink's one-sided reading decided since are read values: not moving)
    moving = np.zeros(0, dtype=np.int64) if refined is None else refined.moving
    if fix is not None and fix.coords.size:
        moving = moving[~np.isin(moving, fix.coords)]
    jumped = any(getattr(h, "cause", None) == "jump" for h in result.hints)
    if (not result.passed and not unresolved and moving.size and not jumped
            and leftover.only_at(p, name, grad, atol, rtol, noise, coords, moving)):
        # every failure still moving as the step halved, neither settling nor at the rate of
        # truncation: no value was read to compare, so no mismatch either (a layernorm of eps
        # 1e-60 at a constant row, right as torch's, read 'wrong' at slopes of 1e30 that its
        # steps of 1e-12 could never approach: outside test t55a F1); a forward that jumps
        # there moves so too, and the jump is its cause
        result = _unresolved(result, (
            f"cannot resolve d{name} at any step: at every failing coordinate the finite "
            f"differences were still moving after {refine.HALVINGS} halvings, neither settling "
            f"nor at the rate of truncation (the layer varies on a scale far below the step)"))
    if result.passed and opts.method != "complex" and not p.random_forward:
        why = _within_own_noise(p, name, grad, info, atol, rtol, coords) or _zeros_swallowed(
            p, name, grad, info, np.maximum(atol, 0.0 if noise is None else noise), coords,
            kinked=fix is not None and bool(fix.coords.size) or info.kink_slopes > 0)
        if why:
            result = _unresolved(result, f"cannot resolve d{name} at this step: {why}")
    if p.random_forward:  # differences of noise: no hint reads a cause there, and nothing
        # passes on them (a dropout drawing its mask anew passed dx at a relative error of 1)
        result = dataclasses.replace(result, hints=())
        result = _unresolved(result, f"cannot check d{name}: your forward is not "
                                     f"deterministic, and its finite differences are noise")
    if p.mode == "probe" or name in p.probed:  # (an automatic sample's probe too)
        result = unlocated(result, p.probed.get(name))
    if name in p.unverified and result.passed:  # a PASS must not rest on what was not checked
        result = _unresolved(result, p.unverified[name])
    elif (name in p.unverified and not result.passed and not unresolved and fix is not None
          and not fix.sampled and fix.left.size
          and leftover.only_at(p, name, grad, atol, rtol, noise, coords, fix.left)):  # fmt: skip
        # failing only where --budget left the kinks unexamined: not verified, no mismatch (a
        # right relu of yours was 'does not match' at a kink's central difference)
        result = _unresolved(result, p.unverified[name])
    elif (name in p.untold and not result.passed and not unresolved and fix is not None
          and fix.coords.size
          and leftover.only_at(p, name, grad, atol, rtol, noise, coords, fix.coords)):  # fmt: skip
        # failing only at kinks whose ties were checked as one group: torch's own backward of
        # CS231n's two-layer net at zeros of quantized inputs failed 'does not match' at
        # --budget 1, its group's sum taken across ties of both signs (outside test t43a F1)
        result = _unresolved(result, p.unverified[name])
    elif (not result.passed and not unresolved and fix is not None and fix.coords.size
          and (why := _bends_both_ways(p, name, grad, atol, rtol, noise, coords, fix))):
        # the kink-slope hints read the bounds this found unsound: none of them stands
        result = dataclasses.replace(_unresolved(result, why), hints=(why,))
    coarse = getattr(opts.grads, "coarse", {}).get(name) if opts.grads is not None else None
    if coarse is not None and not result.passed and _coarse_explains(
            p, name, grad, atol, rtol, noise, coords, coarse):  # fmt: skip
        # a float16 answer of the right dx failed 'suspicious' with no word of its dtype
        # (outside test t55a F7)
        lost = ("its fractions are lost" if coarse.kind in "iu" else
                "its rounding, about 5e-4 of each value, is beyond this check's tolerance")
        why = (f"your d{name} was given as {coarse}: {lost}; save it as float64 (or float32 "
               f"under a float32 spec)")  # fmt: skip
        result = dataclasses.replace(result, hints=(Hint(why, "answer-dtype"), *result.hints))
    ours = None
    # (a custom layer's answers have no backward of ours beside them: its gradients are they)
    if opts.grads is not None and spec.layer.name != "custom":
        own = intermediates.builtin(p.comp, name)
        if theirs is grad and fix is not None and fix.coords.size:
            # the values at kinks were read for your answer (the pieces' nearest to it), not
            # for ours, which takes its own side there: the chained backward is held there as
            # `check net` holds it (torch's answers read 'the chained backward's dc.W does not
            # match' beside a check net that passes it: outside test t55b F3), and the built-in
            # as its own check holds it (relu's x >= 0 answers read 'built-in dx does not
            # match': outside test t65b F3)
            theirs = grad.copy()
            theirs.flat[fix.coords] = np.asarray(own).flat[fix.coords]
        ours = compare(name, own, theirs, atol, p.rtol,
                       coords=coords, unresolved=unresolved, noise=noise, top=1)  # fmt: skip
        if not ours.passed and not unresolved and not p.random_forward:
            theirs = _refined_for(p, name, own, theirs, atol, noise, coords)
            ours = compare(name, own, theirs, atol, p.rtol,
                           coords=coords, unresolved=unresolved, noise=noise, top=1)  # fmt: skip
        if (not ours.passed and unresolved and _resolved_failures(
                p, name, theirs, info, atol, rtol, noise, coords, refined, answer=own)):
            # ours fails where the step resolves it: a mismatch, as an answer's would be
            ours = dataclasses.replace(ours, unresolved="")
    return result, ours


def _tolerance(atol: float, rtol: float) -> Any:
    """tol(noise, ref): a coordinate's tolerance given its stencil's round-off, for refine."""
    return lambda nz, ref: np.maximum(atol, nz) + rtol * np.abs(ref)


def _refined_for(p: Prepared, name: str, own: np.ndarray, grad: np.ndarray, atol: float,
                 noise: np.ndarray | None, coords: np.ndarray | None) -> np.ndarray:
    """``grad`` with the coordinates where our own backward ``own`` fails it confirmed at
    smaller steps against ``own``, as an answer's failures are against the answer: the
    numerical values were refined only as far as your answer needed, and a layernorm at eps
    1e-12 read 'built-in dx does not match' (5.65e-05) where your dx was 1.5x off and ours is
    torch's (outside test t57a F7)."""
    a = np.asarray(own, dtype=np.float64).ravel()
    n = np.asarray(grad, dtype=np.float64).ravel()
    floor = np.maximum(atol, np.broadcast_to(0.0 if noise is None else noise, grad.shape).ravel())
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~(np.abs(a - n) <= floor + p.rtol * np.abs(n)) & np.isfinite(a) & np.isfinite(n)
    bad &= compared(n.size, coords)
    idx = np.flatnonzero(bad)
    if not idx.size:
        return grad
    got = refine.refine(p.engines[name], name, idx, own, n, _tolerance(atol, p.rtol),
                        coloring=p.opts.coloring, seconds=p.left())  # fmt: skip
    p.spent += got.seconds
    if not got.coords.size:
        return grad
    out = np.array(grad, dtype=np.float64, copy=True)
    out.flat[got.coords] = got.values
    return out


def _coarse_explains(p: Prepared, name: str, grad: np.ndarray, atol: float, rtol: float,
                     noise: np.ndarray | None, coords: np.ndarray | None, coarse: np.dtype,
                     ) -> bool:  # fmt: skip
    """Whether every failing element of an answer given in ``coarse`` (float16, integers) lies
    within that dtype's rounding of the numerical value: the dtype is the whole story. An
    answer 2x off saved as float16 was told only of its rounding (outside test t57a F4)."""
    bad = leftover.failing(p, name, grad, atol, rtol, noise, coords)
    a = np.asarray(p.under_test[name], dtype=np.float64).ravel()[bad]
    n = np.asarray(grad, dtype=np.float64).ravel()[bad]
    room = 1.0 if coarse.kind in "iu" else 2.0**-10 * np.abs(n) + 2.0**-24
    return bool(bad.size) and bool(np.all(np.abs(a - n) <= room))


LATE_NEAR = 256  # coordinates passing only under their round-off that _late refines, at most


def _late(p: Prepared, name: str, grad: np.ndarray, atol: float, rtol: float,
          noise: np.ndarray | None, coords: np.ndarray | None, fix: kinks.KinkFix | None,
          refined: refine.Refined | None,
          ) -> tuple[np.ndarray, np.ndarray | None, refine.Refined | None]:  # fmt: skip
    """(grad, noise, refined) with the coordinates that fail only under the final round-off
    differenced at smaller steps too: the round-off measured on their own lines
    (tolerances._measured_passing) is below the model's that passed them at the kinks stage,
    and their truncation was never examined. exp at 600 + 30 N(0, 1) under central4, whose
    step is 0.44 there, read 1.3e-4 off at 12 elements of its right backward, which failed
    once the measured round-off stopped overflowing (outside test t35b F4)."""
    if p.opts.method == "complex" or p.random_forward or noise is None:
        return grad, noise, refined
    a = np.asarray(p.under_test[name], dtype=np.float64).ravel()
    n = grad.ravel()
    floor = np.maximum(atol, np.broadcast_to(noise, grad.shape).ravel())
    with np.errstate(invalid="ignore", over="ignore"):
        off = np.abs(a - n)
        late = ~(off <= floor + rtol * np.abs(n)) & np.isfinite(a) & np.isfinite(n)
        # and where the smaller steps confirmed a quarter of the tensor or more (the default
        # step's truncation rules it), those passing only under their round-off, which it may
        # have brought near a wrong answer: a groupnorm at 1e4 under central4 (a step of 7 on
        # a spread of 1) read its dX of 8.94 as 0.25, and an answer of 0 passed there (outside
        # test t37a F7)
        seen = n.size if coords is None else len(coords)
        if refined is not None and 4 * refined.cleared.size >= max(seen, 2):
            near = (off > atol + rtol * np.abs(n)) & ~late & np.isfinite(a) & np.isfinite(n)
            near[np.flatnonzero(near)[LATE_NEAR:]] = False
        else:
            near = np.zeros(n.size, dtype=bool)
        late |= near
    late &= compared(n.size, coords)
    for done in (None if fix is None else fix.coords, None if refined is None else refined.tried):
        if done is not None:
            late[np.asarray(done, dtype=np.int64)] = False
    idx = np.flatnonzero(late)
    if not idx.size:
        return grad, noise, refined
    got = refine.refine(p.engines[name], name, idx, p.under_test[name], n, _tolerance(atol, rtol),
                        coloring=p.opts.coloring, seconds=p.left())  # fmt: skip
    p.spent += got.seconds
    # led away from the answer, of those that passed: the values the smaller steps read stand
    led = near[got.led] if got.led.size else np.zeros(0, dtype=bool)
    if led.any():
        grad = grad.copy()
        grad.flat[got.led[led]] = got.led_values[led]
    # held to the round-off that failed them, not to the model's that confirms at smaller
    # steps (a layernorm's dx beside a feature of 1e6 10% off was confirmed under it)
    with np.errstate(invalid="ignore", over="ignore"):
        held = (np.abs(a[got.coords] - got.values)
                <= floor[got.coords] + rtol * np.abs(got.values))  # fmt: skip
    got = dataclasses.replace(got, coords=got.coords[held], values=got.values[held],
                              noise_at=got.noise_at[held])  # fmt: skip
    if not got.coords.size and not got.noisy.size:
        return grad, noise, refined
    if got.coords.size:
        grad = grad.copy()
        grad.flat[got.coords] = got.values
    if refined is None:
        return grad, noise, dataclasses.replace(got, cleared=got.coords, tried=idx)
    join = {f: np.union1d(getattr(refined, f), getattr(got, f))
            for f in ("cleared", "moving", "noisy", "swallowed", "tried")}
    join["cleared"] = np.union1d(join["cleared"], got.coords)
    return grad, noise, dataclasses.replace(
        refined, coords=np.concatenate([refined.coords, got.coords]),
        values=np.concatenate([refined.values, got.values]),
        noise_at=np.concatenate([refined.noise_at, got.noise_at]),
        halvings=max(refined.halvings, got.halvings), **join)


def _chained(
    p: Prepared, name: str, grad: np.ndarray, at: np.ndarray, atol: float, rtol: float,
    noise: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(``grad`` with the answer's own value where it fails at a coordinate ``at`` a kink but
    is the chained backward's there, the same for the chained backward itself, the flat
    indices so accepted): CheckOptions.chained_kinks. The detector accepted those it read at a
    kink itself, but the ties across tensors and the pieces may have put in values since.
    Where several layers' kinks meet, the chain rule's value may lie outside the whole
    network's one-sided slopes, and `check net` accepts it of its own chained backward (the
    layers' local checks decide those coordinates): the same numbers read from a file get the
    same verdict."""
    ours = np.asarray(intermediates.builtin(p.comp, name), dtype=np.float64).ravel()[at]
    a = np.asarray(p.under_test[name], dtype=np.float64).ravel()[at]
    n = grad.ravel()[at]
    floor = atol if noise is None else np.maximum(atol, np.asarray(noise).ravel()[at])
    with np.errstate(invalid="ignore", over="ignore"):
        same = np.abs(a - ours) <= floor + rtol * np.abs(ours)
        failing = ~(np.abs(a - n) <= floor + rtol * np.abs(n))
    accepted = same & failing & np.isfinite(n)
    mine = grad.copy()
    mine.flat[at[accepted]] = a[accepted]
    theirs = grad
    if p.opts.grads is not None:  # our own backward's row, beside the user's answers
        theirs = grad.copy()
        theirs.flat[at] = np.where(np.isfinite(n), ours, n)
    return mine, theirs, at[accepted]


def _resolved_failures(p: Prepared, name: str, grad: np.ndarray, info: TensorNumerics,
                       atol: float, rtol: float, noise: np.ndarray | None,
                       coords: np.ndarray | None, refined: refine.Refined | None,
                       answer: np.ndarray | None = None) -> bool:  # fmt: skip
    """Whether a tensor the step cannot resolve as a whole fails at elements it resolves: each
    one's own round-off (info.noise_at) RESOLVE_MARGIN below its size, its error beyond its
    tolerance. A batchnorm with gamma[2] = 1e8 reads dbeta[2] to 0.08 and the others to 1e-10,
    and a sign-flipped dbeta was only 'cannot resolve' (outside test t30b F4): a failure there
    is a mismatch, said so (and the others' round-off in a note). Only where the model's
    round-off is the whole story: a float64 forward (no coarser rounding measured), inputs
    not far below the step, and no element the smaller steps left undecided. ``answer``:
    another answer than the one under test (our own backward's, beside --grads), not noted."""
    own = info.noise_at
    if own is None or not float64_work(p, name) or tiny_inputs(p, name):
        return False
    a = np.asarray(p.under_test[name] if answer is None else answer, dtype=np.float64).ravel()
    n, own = grad.ravel(), np.asarray(own, dtype=np.float64).ravel()
    # (and the outputs it may move, which a step below their last bit leaves where they are:
    # a linear's dW beside a feature of 1.7e15 reads 0.72 for -0.26 there, moving nothing)
    own = np.maximum(own, reach_of(info, grad.shape).ravel())
    floor = np.maximum(atol, 0.0 if noise is None else np.asarray(noise).ravel())
    with np.errstate(invalid="ignore", over="ignore"):
        clear = (np.abs(a - n) > floor + rtol * np.abs(n)) & np.isfinite(n) & np.isfinite(a)
        clear &= own * RESOLVE_MARGIN <= np.abs(n)
    clear &= compared(n.size, coords)
    if refined is not None:
        clear[np.union1d(refined.noisy, refined.moving).astype(np.int64)] = False
    clear |= _far_beyond(p, name, a, n, floor, rtol, coords, refined, info) & ~clear
    k = int(clear.sum())
    if k and answer is None:
        p.note(f"d{name}: the round-off of its finite differences is not far below its largest "
               f"gradient at some elements, but {k:,} other{'s' if k > 1 else ''}, which the "
               f"step resolves, fail{'' if k > 1 else 's'} beyond {'their' if k > 1 else 'its'}"
               f" tolerance: a mismatch")  # fmt: skip
    return bool(k)


FAR_BEYOND = 64  # times its measured round-off that an error is a mismatch whatever the model


def _far_beyond(p: Prepared, name: str, a: np.ndarray, n: np.ndarray, floor: np.ndarray,
                rtol: float, coords: np.ndarray | None, refined: refine.Refined | None,
                info: TensorNumerics) -> np.ndarray:  # fmt: skip
    """Which elements fail by FAR_BEYOND times the round-off measured along their own lines
    (Engine.coordinate_noise; FAILING_MEASURED of them at most, the furthest off first, within
    --budget), with the share the outputs they leave unmoved may hide: y = 1e8 a + b reads db
    to 0.007 where the model says 0.07, and a db of 1.6 negated, off by 3.2, was only 'cannot
    resolve' (outside test t36b F2)."""
    out = np.zeros(n.size, dtype=bool)
    engine = p.engines[name]
    if p.opts.method == "complex" or name not in engine.t64 or info.noise_at is None:
        return out
    with np.errstate(invalid="ignore", over="ignore"):
        off = np.abs(a - n)
        failing = (off > floor + rtol * np.abs(n)) & np.isfinite(n) & np.isfinite(a)
    failing &= compared(n.size, coords)
    if refined is not None:
        failing[np.union1d(refined.noisy, refined.moving).astype(np.int64)] = False
    idx = np.flatnonzero(failing)
    idx = idx[np.argsort(-off[idx], kind="stable")[:FAILING_MEASURED]]
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    seconds = kinks.moves_seconds(engine, name, idx, p.opts.coloring, 16)
    if not idx.size or seconds > p.left():
        return out
    p.spent += seconds
    measured = engine.coordinate_noise(name, idx, p.opts.coloring)
    at = np.asarray(info.noise_at, dtype=np.float64).ravel()[idx]
    hidden = engine.unmoved_share(reach_of(info, np.shape(info.noise_at)).ravel()[idx], at)
    out[idx] = np.isfinite(measured) & (off[idx] > FAR_BEYOND * (measured + hidden))
    return out


BOTH_WAYS_MOST = 64  # failing coordinates read on nudged lines (numeric/nudged.py), at most


def _bends_both_ways(p: Prepared, name: str, grad: np.ndarray, atol: float, rtol: float,
                     noise: np.ndarray | None, coords: np.ndarray | None, fix: Any) -> str:
    """Why a failure at kinks is not verified rather than a mismatch (the loss: a layer's
    outputs summed with the upstream gradient, or a loss's one output):
    every coordinate failing lies at a kink (``fix.coords``) and within what the pieces
    touching the point may give it, as does its tie group's sum (numeric/nudged.py), and kinks
    bending both ways meet along it or its group's move. There the loss's one-sided slopes,
    which the kinks stage held the coordinate and the group's sum to, bound nothing. "" where
    a value leaves even that range, or every kink read bends one way (a regular loss: relu's
    slope 2 at a unit alone, a max's tied inputs each given the whole gradient, still fail)."""
    engine = p.engines[name]
    if p.random_forward:
        return ""
    failing = leftover.failing(p, name, grad, atol, rtol, noise, coords)
    if not failing.size or not np.isin(failing, fix.coords).all():
        return ""
    if np.isin(failing, p.pinned.get(name, ())).any():
        # a move holding every tie still pinned its slope down and the answer missed it:
        # shown wrong, whatever the kinks along other moves bound (a relu rule mixed across
        # tensors at 4 ties passed, then read "not verified": outside test t57a F3)
        return ""
    count = failing.size
    a = np.asarray(p.under_test[name], dtype=np.float64).ravel()
    n = np.asarray(grad, dtype=np.float64).ravel()
    if failing.size > BOTH_WAYS_MOST:
        worst = np.argsort(-np.abs(a - n)[failing], kind="stable")[:BOTH_WAYS_MOST]
        failing = np.sort(failing[worst])
    moves = [np.array([j]) for j in failing] + _groups_of(fix.at, failing)
    from gradcli.numeric import kinks, nudged  # LAZY: see ARCHITECTURE.md, "Start-up"

    step = kinks.one_sided_step(engine, name)
    h = np.array([step[m].min() / 4 for m in moves])
    lo, hi, both = nudged.box(engine, name, moves, h)
    p.spent += cost.copies_seconds(engine, nudged.calls(len(moves)), real=True)
    sums = np.array([a[m].sum() for m in moves])
    ref = np.maximum(np.abs(lo), np.abs(hi))
    # (read a step off x in every tensor: its slopes move by about as much, relatively)
    floor = atol if noise is None else max(atol, float(np.max(noise)))
    inside = np.abs(sums - np.clip(sums, lo, hi)) <= floor + (rtol + nudged.DRIFT) * ref
    if not (inside.all() and both.any()):
        return ""
    # (not "your values are plausible": a tie rule mixed across tensors lands here too, and
    # nothing here says yours is right: outside test t56a F3)
    # (a layer with many outputs too, through the upstream gradient's sum: relu(relu(x @ W1)
    # @ W2) with relu'(0) = 1 in both, right, failed 'does not match' with a ties hint at
    # nested kinks: outside test t58a F2)
    single = " of a single output" if engine.g.size == 1 else ""
    return (f"d{name} is not verified at {count:,} coordinate{'s' if count != 1 else ''} at "
            f"kinks{single} where kinks bending both ways meet: there the loss's "
            f"one-sided slopes (and those of moving tied values together) bound no right value, "
            f"so neither yours nor any other could be confirmed or refuted (a tie rule that "
            f"differs between tensors, relu's a > 0 in one and a >= 0 in another, is one "
            f"cause to rule out; parts checked as layers with outputs of their own are judged "
            f"output by output)")


def _groups_of(at: Any, failing: np.ndarray) -> list[np.ndarray]:
    """The tie groups (of two or more, ``AtKink.label``) holding a failing coordinate: flat
    indices of each."""
    if at is None or not at.coords.size:
        return []
    coords, label = np.asarray(at.coords, dtype=np.int64), np.asarray(at.label)
    held = np.unique(label[np.isin(coords, failing)])
    groups = [coords[label == g] for g in held]
    return [m for m in groups if m.size >= 2]


def _unresolved(result: TensorResult, why: str) -> TensorResult:
    """``result`` unresolved for ``why``, its reading and first hint saying so (as compare's
    own: a reading of errors that are round-off, 'good' or 'wrong', would mislead)."""
    if result.nonfinite:  # not finite says more, and first
        return dataclasses.replace(result, unresolved=why)
    hints = tuple(h for h in result.hints if getattr(h, "text", h) != result.reason)
    # (a tie no piece was read at is not verified, not beyond the step's resolution: t54a F3)
    band = "not verified" if " is not verified" in why else "cannot resolve"
    return dataclasses.replace(result, unresolved=why, band=band, hints=(why, *hints))


def _undecided(p: Prepared, name: str, grad: np.ndarray, refined: refine.Refined, atol: float,
               rtol: float, noise: np.ndarray | None, coords: np.ndarray | None,
               fix: Any = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(the flat indices failing, those of the smaller steps' undecided that no kink's
    one-sided reading decided since)."""
    a = np.asarray(p.under_test[name], dtype=np.float64).ravel()
    n = grad.ravel()
    floor = atol if noise is None else np.maximum(atol, noise.ravel())
    bad = ~(np.abs(a - n) <= floor + rtol * np.abs(n))
    bad &= compared(n.size, coords)
    undecided = refined.noisy
    if fix is not None and fix.coords.size:
        undecided = undecided[~np.isin(undecided, fix.coords)]
    return np.flatnonzero(bad), undecided


def _set_aside(p: Prepared, name: str, grad: np.ndarray, refined: refine.Refined, atol: float,
               rtol: float, noise: np.ndarray | None, coords: np.ndarray | None,
               fix: Any = None) -> np.ndarray:  # fmt: skip
    """``grad`` with the failing coordinates no step resolves given the answer's values, where
    others fail decided: the tensor fails on those, and its worst element is one of them (a
    wrong dx in rows of ordinary outputs was shown as 'dx[0, 5]: numeric 0' in a row of 1e39,
    an element read at round-off: outside test t47a F3). A note counts them."""
    at, undecided = _undecided(p, name, grad, refined, atol, rtol, noise, coords, fix)
    if fix is not None and fix.jumps:  # a jump read there decides it (a hint names it)
        undecided = undecided[~np.isin(undecided, [j[0] for j in fix.jumps])]
    aside = at[np.isin(at, undecided)]
    if not aside.size or aside.size == at.size:
        return grad
    grad = grad.copy()
    grad.flat[aside] = np.asarray(p.under_test[name], dtype=np.float64).ravel()[aside]
    p.note(
        f"d{name}: {aside.size:,} failing element{'s' if aside.size > 1 else ''} the step "
        f"cannot resolve (the outputs' round-off covers the difference: outputs far larger "
        f"than the elements' share) left out of the comparison; the others fail as read"
    )
    return grad


def _noisy(p: Prepared, name: str, grad: np.ndarray, refined: refine.Refined, atol: float,
           rtol: float, noise: np.ndarray | None, coords: np.ndarray | None,
           fix: Any = None) -> str:  # fmt: skip
    """Why the step cannot resolve ``name`` ("" when it can): every element that fails is one
    whose measured round-off kept the smaller steps from deciding it (refine.Refined.noisy),
    so the failure says nothing of the gradient. Not one a kink's one-sided reading decided
    since (a sign-flipped |x| at 1e-15 read 'cannot resolve' where its sides read -1 and 1)."""
    n = grad.ravel()
    at, undecided = _undecided(p, name, grad, refined, atol, rtol, noise, coords, fix)
    if not at.size or not np.isin(at, undecided).all():
        return ""
    if np.isin(at, refined.swallowed).all() and not np.any(n[at]):
        return (
            f"cannot resolve d{name} at this step: every difference of {at.size:,} failing "
            f"coordinate{'s' if at.size > 1 else ''} read exactly 0, the step moving the "
            f"outputs by less than their last bit, while they move further out (outputs far "
            f"larger than the elements' share: a loss of 1e11); "
            f"{advice_for(p, name)}"
        )
    if np.isin(at, refined.swallowed).all():  # some read their outputs' last bits instead
        return (
            f"cannot resolve d{name} at this step: at {at.size:,} failing "
            f"coordinate{'s' if at.size > 1 else ''} the step moves the outputs by less "
            f"than their last bit (the differences read 0, or the outputs' rounding: outputs "
            f"far larger than the elements' share, a loss of 1e11); "
            f"{advice_for(p, name)}"
        )
    return (
        f"cannot resolve d{name} at any step: the round-off of {at.size:,} failing "
        f"coordinate{'s' if at.size > 1 else ''}, measured, outweighs the truncation left at "
        f"every smaller step (a forward whose outputs carry the rounding of far larger "
        f"numbers: x - mean at |x| = 1e11); "
        f"{advice_for(p, name)}"
    )


def _within_own_noise(p: Prepared, name: str, grad: np.ndarray, info: TensorNumerics,
                      atol: float, rtol: float, coords: np.ndarray | None) -> str:
    """Why a passing tensor's elements are not verified ("" when they are): elements that pass
    only under their finite differences' own round-off (info.noise_at), where that round-off
    reaches half their size and is 64 times central's atol (what the tolerance calls negligible:
    an element of a few atol says little by its size; a squared hinge's mean over 1600
    elements reads those of 6e-7 to 2e-6). central4's step moves an mse of 1.7e11 (one
    prediction of 1e6) in jumps of its last bit, 3e-5, which read the other predictions'
    slopes to about 0.45: an answer twice the right one at each passed (outside test t31a
    F1). Asked of float64 forwards only: a forward computing in float32 rounds every small
    element so, and its tolerances allow for that (FLOAT32_FORWARD)."""
    at = info.noise_at
    if at is None or not float64_work(p, name):
        return ""
    # (a tensor the step does not resolve as a whole was decided by the rules that said so:
    # an upstream gradient of ones through a softmax, 0 in theory, is judged at its terms)
    if not info.noise * RESOLVE_MARGIN <= largest(grad, info.kink_slopes):
        return ""
    a = np.asarray(p.under_test[name], dtype=np.float64).ravel()
    n, own = grad.ravel(), np.asarray(at, dtype=np.float64).ravel()
    base = atol + rtol * np.abs(n)
    # (64 of central's atol: a one-sided method's is 100 times it, and a dW of 1e-4 beside a
    # column of 1e4, read to 1.7e-4 by forward differences, passed zeroed: outside test t35a
    # F1, F4)
    negligible = 64 * min(atol, default_tolerances(p.spec.dtype, "central")[0])
    with np.errstate(invalid="ignore"):
        # (where that round-off is what passes them: not the answer's own last bits)
        off = np.abs(a - n)
        only = (off > base) & (off <= base + own) & (own > negligible) & (2 * own >= np.abs(n))
    only &= compared(n.size, coords)
    k = int(only.sum())
    if not k:
        return ""
    return (f"{k:,} element{'s' if k > 1 else ''} pass{'' if k > 1 else 'es'} only under "
            f"the round-off of {'their' if k > 1 else 'its'} finite differences (up to "
            f"{float(own[only].max()):.2g}, half {'their' if k > 1 else 'its'} size or more: "
            f"the step moves outputs far larger than {'their' if k > 1 else 'its'} share); "
            f"{advice_for(p, name)}")


SWALLOWED_MOST = 1024  # elements read exactly 0 that _zeros_swallowed examines, at most


def _zeros_swallowed(p: Prepared, name: str, grad: np.ndarray, info: TensorNumerics,
                     floor: np.ndarray | float, coords: np.ndarray | None,
                     kinked: bool = False) -> str:  # fmt: skip
    """Why a passing tensor's 0 readings are no reading ("" when they are): elements both
    sides put at 0 whose outputs round beyond their tolerance (info.noise_reach) and whose
    stencils moved L by less than its last bit, where it moves further out at a slope beyond
    that tolerance (refine.swallowed). An mse with one prediction of 1e6, a loss of 1.7e11,
    reads 0 at the other predictions, and an answer of zeros there passed where the right one
    cannot be resolved (outside test t31a F1)."""
    reach = reach_of(info, grad.shape).ravel()
    a = np.asarray(p.under_test[name], dtype=np.float64).ravel()
    n = grad.ravel()
    t = np.broadcast_to(floor, grad.shape).ravel()
    both = (n == 0) & (a == 0) & compared(n.size, coords)
    # (not where the point itself is a kink: relu at W = 0 moves on one side only, out there)
    if not kinked and (why := _far_slope(p, name, both, n, coords)):
        return why
    zero = both & (reach > t)
    idx = np.flatnonzero(zero)
    if not idx.size:
        return ""
    idx = idx[np.argsort(-reach[idx], kind="stable")[:SWALLOWED_MOST]]
    engine = p.engines[name]
    got, seconds = refine.swallowed(engine, name, idx, engine.method, p.opts.coloring, t[idx],
                                    p.left(), zero=True)  # fmt: skip
    p.spent += seconds
    if not got.any():
        return ""
    k = int(got.sum())
    return (f"{k:,} element{'s' if k > 1 else ''} read exactly 0 where the step moves the "
            f"outputs by less than their last bit, while they move further out at a slope "
            f"beyond the tolerance (outputs far larger than the elements' share: a loss of "
            f"1e11); an answer of 0 there is not verified; "
            f"{advice_for(p, name)}")


FAR_STEPS = 4096  # steps out at which _far_slope reads a tensor whose differences all read 0
FAR_READ = 64  # coordinates it reads, at most (the largest first)


def _far_slope(p: Prepared, name: str, both: np.ndarray, n: np.ndarray,
               coords: np.ndarray | None) -> str:  # fmt: skip
    """Why a tensor whose every compared element reads 0 on both sides is not verified ("" when
    it is): central differences FAR_STEPS steps out read a slope far beyond their own rounding,
    so the default step moved its outputs by less than their last bit. A linear at x ~ 1e-12
    moves z by 6e-18 at W's step: its dW of 4e-12 read 0 everywhere, and an answer of zeros
    passed where the right one could not be resolved (outside test t39a F2). A flat loss (a
    dead relu) or one even about the point (mse at a perfect fit) reads 0 out there too."""
    seen = np.broadcast_to(compared(n.size, coords), n.shape)
    idx = np.flatnonzero(both)
    if not idx.size or not np.array_equal(both, seen):  # every compared element
        return ""
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"
    from gradcli.numeric.refine import all_rounding

    engine = p.engines[name]
    if name not in engine.t64 or p.opts.method == "complex":
        return ""
    idx = idx[:FAR_READ]
    cost = kinks.moves_seconds(engine, name, idx, p.opts.coloring, 2)
    if cost > p.left():
        return ""
    p.spent += cost
    x = engine.t64[name].ravel()[idx]
    h = FAR_STEPS * steps(x, engine.eps)
    D, _ = kinks.moves(engine, name, idx, h, (-1, 1), p.opts.coloring)
    read = np.abs(D[1] - D[0]) / (2 * h)
    # the loss's rounding at x and out there, and x +- h's own (x's last bits at the slope
    # read out there: mse at a perfect fit reads 1e-17 of it, its gradient 0)
    moved = (np.abs(D[0]) + np.abs(D[1])) * (1 + np.abs(x) / h)
    rounding = 16 * (all_rounding(engine) + max(engine.unit, EPS) * moved) / (2 * h)
    # and the two sides agree: a slope, not a kink or a tie out there (clip at its bounds)
    right, left = D[1] / h, -D[0] / h
    sided = np.abs(right - left) <= 0.25 * np.maximum(np.abs(right), np.abs(left))
    far = (read > rounding) & sided
    if not far.any():
        return ""
    top = float(read[far].max())
    return (f"every element reads exactly 0 at this step, while {FAR_STEPS} steps out a "
            f"slope of up to {top:.2g} is read: the step moves the outputs by less than their "
            f"last bit, and an answer of 0 there is not verified; {advice_for(p, name)}")


def dtype_of(p: Prepared, name: str) -> str:
    return "float32" if lower_precision(p.spec.dtype, p.under_test[name]) else p.spec.dtype


def extras(p: Prepared, name: str) -> dict[str, Any]:
    level = p.levels.get(name)
    return {"roundoff": None if level is None else level.relative,
            "roundoff_source": "" if level is None else level.source,
            "intermediate": name not in p.spec.tensors}  # fmt: skip


# ---------------------------------------------------------------------------- diagnose
def _kink_sides(fix: kinks.KinkFix | None) -> dict[str, Any]:
    """The coordinates at a kink itself, for a hint: their flat indices, the two one-sided
    slopes read there and their tie groups."""
    at = None if fix is None else fix.at
    jumps = {} if fix is None or not fix.jumps else {"jumps": fix.jumps}
    if at is None or not at.coords.size:
        return jumps
    # the loss's own two slopes where read (a tie's interval sums each output's: wider, and
    # no slope the forward has, though a value beyond it lies beyond them too)
    slopes = {} if at.sides is None else {"kink_slopes": at.sides}
    return {"kink_sides": (at.coords, at.lo, at.hi, at.label), **slopes, **jumps}


def diagnosis(p: Prepared, name: str) -> dict[str, Any]:
    """What the hints may use about tensor ``name`` (built only for a failing tensor): the
    causes a recomputation reproduced (checking/hypotheses.py), the layer's geometry."""
    spec = p.spec
    if name in spec.layer.intermediates:
        return intermediates.context(spec, name)
    ctx = diagnose.context(spec.layer, spec.shapes, spec.options, name, spec.grad_output)
    if p.session is None:  # imported here: a passing check never needs the hypotheses
        from gradcli.checking.hypotheses import Session

        p.session = Session(spec, p.under_test, p.comp.output)
    if name in spec.tensors:  # (an L2 term's gradient is a multiple of its own value)
        ctx["value"] = spec.tensors[name]
        ctx["reg"] = options_dict(spec.options).get("reg")
    ctx["verified"] = p.session.explain(name)
    ctx["recomputed"] = p.session.builtin_ok
    if name in p.pinned:  # moves of these tensors together, holding every tie still, missed
        ctx["tie_rule"] = [n for n in p.under_test if n in p.pinned]  # (the spec's order)
    return ctx
