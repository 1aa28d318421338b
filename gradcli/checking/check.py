"""The check, in named stages, producing one report (data, never printed here):

    prepare    -> the analytical side, the contract, the engines, the mode and the tolerances
    numerical  -> one tensor's numerical gradient (all coordinates, a sample, or a probe)
    kinks      -> the coordinates its stencil cannot decide (checking/kinkstage.py)
    compare    -> its elements against the analytical ones, under the pass rule, and
    diagnose   -> for a failing tensor, what the hints may use (checking/judging.py)

A mismatch is a result, not an exception; exceptions are broken preconditions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradcli.checking import across, blame, complex_recheck, intermediates, leftover, precision
from gradcli.checking.budget import (
    calls_before,
    declares_kinks,
    draw,
    estimate,
    over_budget,
    smooth,
    ties_across_tensors,
)
from gradcli.checking.compare import TensorResult
from gradcli.checking.compute import Computation, compute
from gradcli.checking.contract import (
    check_contract,
    forward_determinism,
    random_forward,
    still_deterministic,
)
from gradcli.checking.judging import compare_tensor, dtype_of, extras
from gradcli.checking.kinkstage import kinks_stage, settle
from gradcli.checking.prepared import CheckOptions, Prepared
from gradcli.checking.probe import DISAGREED, fallback, probe, sensitivity_note
from gradcli.checking.report import FLOAT32_FORWARD, CheckReport, default_tolerances
from gradcli.checking.soundness import refuse_overflow, refuse_step_overflow, refuse_zero_output
from gradcli.checking.tolerances import (
    FLAT_MOVES,
    compared,
    complex_ok,
    invariant,
    roundoff,
    tolerance,
    tolerances,
)
from gradcli.checking.userwork import (
    backward_against_builtin,
    complex_agrees,
    complex_safe,
    even_dropout,
    forward_against_builtin,
    forward_calls,
    one_example,
)
from gradcli.errors import OptionError, mention
from gradcli.inputs.spec import Spec
from gradcli.layers import REGISTRY
from gradcli.numeric import clock, cost, memory
from gradcli.numeric.engine import FAR_FACTORS, Engine, TensorNumerics
from gradcli.numeric.methods import EPS
from gradcli.numeric.sampling import sample_coordinates

# a user's call is counted at the power of 2 above its measured time: a note saying "about 2 s"
# of a backward sleeping 1.0 s read as the time measured (outside test t55a F3); the measured
# figure itself would make two runs' JSON differ
ROUNDED = "its measured time rounded up to a power of 2, so that runs decide alike"


def check(spec: Spec, opts: CheckOptions | None = None, **kw: Any) -> CheckReport:
    """Check ``spec``'s gradients (or ``opts.grads``, the user's answers): the report holds
    the verdict, each name's result, the analytical computation and the numerical gradients."""
    opts = dataclasses.replace(opts or CheckOptions(), **kw)
    # an overflow or a NaN is a finding (a result that fails, or a refusal), counted where the
    # values are compared: numpy's warnings about it would only add lines to stderr
    with np.errstate(all="ignore"):
        p = prepare(spec, opts)
        rng = np.random.default_rng(spec.seed)
        numeric: dict[str, np.ndarray] = {}
        results: dict[str, TensorResult] = {}
        builtin: dict[str, TensorResult] = {}
        spent = p.spent  # predicted seconds of the probes' calls and rechecks after a failed one
        taken: dict[str, tuple] = {}  # name -> (mode, coords, grad, info, fix, refined)
        for name in p.under_test:
            mode = "sample" if name in p.sampled else p.mode if p.mode == "probe" else "full"
            if mode == "probe":
                crossing = _crosses_kinks(p, name)
                found = crossing or probe(
                    p.engines[name], name, p.under_test[name], dtype_of(p, name), opts.method,
                    rng, extras(p, name), roundoff(p, name), _kinks_unknown(p, name))  # fmt: skip
                if not isinstance(found, str):
                    numeric[name] = np.full(p.under_test[name].shape, np.nan)
                    results[name] = found
                    continue
                if not crossing:  # (never probed, it saw nothing: a sample over --budget
                    # stands as an automatic check's does; an svm at 23,786 zero margins
                    # failed its right backward, outside test t38b F4)
                    p.probed[name] = found
                mode, seconds = recheck(p, name, found, spent, rng)
                spent += seconds
                p.spent += seconds
            if mode == "sample" and p.opts.mode == "auto" and not _crosses_kinks(p, name):
                _probe_beside(p, name, rng)
            coords, grad, info = numerical(p, name, mode, rng)
            taken[name] = leftover.sampled_kinks(p, name, mode, coords,
                                                 *kinks_stage(p, name, coords, grad, info))
        # a probe reads each tensor of a tie across tensors alone: at maximum(a, b)'s a == b,
        # a backward giving a half (a's central difference) and b all passed a's probe, and
        # b's elements alone lay within their kinks; where another tensor met kinks, the ones
        # its probe passed are checked element by element too, for the ties between them
        if p.mode == "probe" and any(_kinked(t[4]) for t in taken.values()):
            for name in [n for n in results if n in spec.tensors
                         and p.engines[n].layer is p.engine.layer]:  # fmt: skip
                del results[name], numeric[name]
                why = "passed, but another tensor's elements met kinks (ties across tensors)"
                mode, seconds = recheck(p, name, why, spent, rng)
                spent += seconds
                p.spent += seconds
                coords, grad, info = numerical(p, name, mode, rng)
                taken[name] = leftover.sampled_kinks(p, name, mode, coords,
                                                     *kinks_stage(p, name, coords, grad, info))
        if (not p.random_forward and not spec.layer.broadcasts and opts.grads is None
                and opts.contract):
            # state that changes every few calls shows only over many (t39a F1)
            late = still_deterministic(spec, p.comp.output)  # counted: calls_before
            if late is not None:
                p.contract = (*p.contract, late)
        taken = across.ties_across(p, taken, tolerance, declares_kinks, settle)
        taken = across.pieces_at_ties(p, taken, tolerance, declares_kinks)
        for name, (mode, coords, grad, info, fix, refined) in taken.items():
            numeric[name] = grad
            results[name], builtin_result = compare_tensor(p, name, mode, coords, grad, info, fix,
                                                           refined)  # fmt: skip
            if builtin_result is not None:
                builtin[name] = builtin_result
    results = {n: results[n] for n in p.under_test if n in results}  # the tensors' order
    complex_recheck.by_complex_step(
        p, results, numeric, builtin, lambda n: complex_ok(p, n),
        {n: t[3].noise_at if t[3].noise_at is not None else t[3].noise for n, t in taken.items()},
        check)  # fmt: skip
    blame.at_ties(p, results, numeric, builtin, check)
    beyond = p.spent - p.estimated
    # "estimated 4.9 s" must not become 33 s in silence; an estimate not said (2 s or less)
    # within the budget says nothing (4 lines on a passing relu of yours that ran 3 s: outside
    # test t49a N2); ten seconds beyond one are worth a line whatever it was (a forced sample
    # of relu(x + b) @ W estimated at 0.12 s ran 40 s in silence)
    said = p.mode != "probe" and (p.estimated > 2 or beyond > QUIET) or p.left() < 0
    if beyond > max(1.0, p.estimated) and said:
        left = f", from what was left of {mention('budget')}" if p.left() < math.inf else ""
        if p.left() < 0:  # its floors run whatever is left: say by how much it went over
            left = (f", over {mention('budget')} ({cost.shown(p.opts.budget)} s) by "
                    f"{cost.shown(-p.left())} s: each kind of that work runs a floor of it "
                    f"whatever is left")  # fmt: skip
        p.note(
            f"the work the comparison decided (failing coordinates rechecked at smaller steps "
            f"and for kinks, ties, a failed probe's recheck) counted about "
            f"{cost.shown(beyond)} s beyond the estimate of {cost.shown(p.estimated)} s{left} "
            f"(seconds the cost model predicts, as {mention('budget')} counts them, not timed)"
        )
    if (blind := sensitivity_note(results, p.under_test, p.atol, p.rtol)) is not None:
        p.notes.append(blind)
    if opts.atol is not None:  # an --atol above every value: its PASS compares nothing, and
        # -q printed it with no word (a sign-flipped dW of 2 under --atol 10: outside test t65c
        # F9); said as it is found, to stderr, -q too
        for name, r in results.items():
            top = float(np.max(np.abs(numeric.get(name, 0.0)), initial=0.0))
            if r.passed and name in numeric and top <= opts.atol:
                p.note(f"d{name}: every numerical value (up to {top:.3g}) is below "
                       f"{mention('atol')} {opts.atol:g}: its PASS compares nothing")
    numeric = {n: numeric[n] for n in p.under_test if n in numeric}
    return CheckReport(
        layer=spec.layer.name, dtype=spec.dtype, seed=spec.seed, method=opts.method,
        eps=p.engine.eps, atol=p.atol, rtol=p.rtol, mode=p.mode, results=results,
        notes=tuple(p.notes),
        not_checked=tuple(n for n in spec.grad_shapes if n not in p.under_test),
        builtin=builtin, forward=p.forward and p.forward.result,
        forward_drawn=p.forward.drawn if p.forward else (),
        forward_point=p.forward.point if p.forward else None, backward=p.backward,
        answers=opts.grads is not None, contract=p.contract, computation=p.comp, numeric=numeric,
        estimated_seconds=p.estimated, counted_seconds=p.spent,
        rules_unchecked=p.rules_unchecked,
    )  # fmt: skip


def _with_builtins_worst(coords: dict[str, np.ndarray], backward: Any,
                         under_test: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A sample's coordinates with, for each gradient your backward got wrong against the
    built-in one at the drawn points, the element where it was worst: one more coordinate,
    where a bug of one element shows (a sample of 64 of linear's 262,144 W missed dW[7, 300]
    negated, and the tensor failed 'not located' beside the element the comparison had named:
    outside test t54a F1)."""
    if backward is None:
        return coords
    out = dict(coords)
    for n in backward.failed:
        r = backward.results.get(n)
        if n not in out or r is None or len(r.worst_index) != under_test[n].ndim:
            continue
        flat = int(np.ravel_multi_index(r.worst_index, under_test[n].shape))
        out[n] = np.union1d(out[n], [flat]).astype(out[n].dtype)
    return out


# ---------------------------------------------------------------------------- prepare
QUIET = 10.0  # seconds beyond an estimate never said that still go without a note
SLOW_CALL = 0.01  # seconds a call of yours must take before its timing is a note
PROBE_POINTS = 2  # directions a probe reads (checking/probe.py), for its predicted cost


def prepare(spec: Spec, opts: CheckOptions) -> Prepared:
    """The analytical side, its contract, the engines, the mode within the budget and the
    tolerances; refusals (memory, overflow, a check of nothing) happen here, before any
    numerical gradient is taken."""
    default_atol, rtol = default_tolerances(spec.dtype, opts.method)
    atol = default_atol if opts.atol is None else opts.atol
    rtol = rtol if opts.rtol is None else opts.rtol
    memory.require(spec, opts.method, opts.max_memory)  # before the first forward
    user = REGISTRY.get(spec.layer.name) is not spec.layer  # code of yours: its calls timed
    comp = compute(spec, clock.for_calls() if user else None)
    refuse_overflow(spec, comp)
    refuse_step_overflow(spec, [n for n in comp.gradients if n in spec.tensors], opts.method,
                         opts.eps)  # fmt: skip
    # a forward of the user's drawing its own mask is refused for keeping none only once it
    # is known to draw it once: drawn anew at each call, that is the verdict (the contract's)
    own_mask = spec.layer.reference is not None
    if opts.refuse_constant and not own_mask:
        refuse_zero_output(spec, comp)
    # float32 numbers in a float64 check are held to float32's round-off (precision.py)
    levels = (precision.levels(spec, comp, answers=opts.grads is not None,
                               max_memory=opts.max_memory)
              or precision.float32_work(spec, tested(spec, comp, opts.grads),
                                        answers=opts.grads is not None))
    roundoff = {n: v.relative for n, v in levels.items()}
    run_contract = opts.grads is None and opts.contract
    first = {**comp.gradients, **{n: comp.intermediates["d" + n] for n in spec.layer.intermediates
                                  if "d" + n in comp.intermediates}}  # fmt: skip
    contract = (check_contract(spec, atol, rtol, roundoff, first=first, output=comp.output,
                               calls=forward_calls(spec))
                if run_contract else ())  # fmt: skip
    if opts.grads is not None and opts.contract and spec.layer.name == "custom":
        # a custom layer's forward checked on saved answers: its own contract, determinism
        contract = (forward_determinism(spec, comp.output, forward_calls(spec)),)
    # the perturbed copies get what the check's fixed arrays leave of --max-memory
    copies = memory.copies(spec, opts.max_memory, opts.method)
    random = random_forward(contract, spec.output_info.name) is not None
    if opts.refuse_constant and own_mask and not random:
        refuse_zero_output(spec, comp)
    engine = Engine(
        spec.layer, spec.tensors, spec.options, spec.grad_output,
        method=opts.method, eps=opts.eps, max_memory=copies, deterministic=not random,
    )  # fmt: skip
    engine.backward_seconds = comp.backward_seconds
    memory.require_measured(spec, opts.method, opts.max_memory, engine)  # a forward of yours
    agreement = forward_against_builtin(spec, comp, engine.unit)
    forward = agreement.result if agreement is not None else None
    builtin = REGISTRY.get(spec.layer.name)
    notes = list(spec.notes) + [lv.note for lv in levels.values() if lv.note]
    if agreement is not None and agreement.refused:
        k = len(agreement.refused)
        where = ("at the spec's tensors and the other points drawn"
                 if agreement.points or agreement.point is not None
                 else "at the spec's tensors alone")  # fmt: skip
        notes.append(
            f"your forward refused {'a point' if k == 1 else f'{k} points'} gradcli drew to "
            f"compare it with the built-in {spec.layer.name}'s away from the spec's tensors "
            f"(values outside its own domain: {agreement.refused[0]}); it was compared {where}"
        )
    if agreement is not None and agreement.roundoff:  # what was observed, not a precision
        notes.append(
            f"your forward and the built-in {spec.layer.name} differ here by more than 64 eps of "
            f"{spec.output_info.name}, but within the built-in's own round-off at these values "
            f"(about {agreement.roundoff / 8:.2g}, measured against extended precision and "
            f"with its inputs moved by one unit in their last place): the two agree to it"
        )
    # timed, the one part of the estimate that is: said so where a call is long enough to
    # matter (a millisecond is the clock's grain here: 2^-10 s was read of np.maximum, and
    # loop-free numpy was told it looked like a loop in Python, outside test t38a N3)
    slow = cost.user_call_seconds(engine)
    slow = slow if slow is not None and slow >= SLOW_CALL else None
    if slow is not None:
        notes.append(
            f"your forward takes up to {slow:.3g} s a call ({ROUNDED}), more than 3 times "
            f"what gradcli's cost model predicts for numpy at these sizes (a loop in Python, "
            f"or costly functions such as tanh and powers): time estimates and "
            f"{mention('budget')} use the time measured"
        )
    slow_back = cost.user_backward_seconds(engine)
    if slow_back is not None and slow_back >= SLOW_CALL:
        notes.append(
            f"your backward takes up to {slow_back:.3g} s a call ({ROUNDED}), more than 3 "
            f"times what gradcli predicts for numpy at these sizes: time estimates and "
            f"{mention('budget')} use the time measured"
        )
    # a forward computing in float32 somewhere: the tensors whose differences carry none of
    # its round-off, their engine (float64 steps) and tolerances (checking/mixed.py)
    engine64: Engine | None = None
    float64_paths: dict[str, tuple[float, float]] = {}
    float64_seconds = 0.0
    if engine.unit > EPS:  # a user's forward computing in float32 (numeric/stacking.py)
        # or float16, whose results it returns: named as what it is
        low = ("float16" if engine.unit >= float(np.finfo(np.float16).eps)
               and engine.unit_seen != "jumps" else "float32")  # fmt: skip
        # what was observed: the dtype it returns, or a float64 output blind to small moves
        kind = np.asarray(comp.output).dtype
        seen = (f"it returns {kind} for float64 inputs" if kind != np.float64 else
                f"it returns float64 but its output jumps by about "
                f"{max(engine.unit, precision.EPS32):.2g} of itself along lines through the "
                f"point, as a path through {low} beside float64 work does, or float64 work "
                f"rounding far larger numbers than the output's changes (log(1 - p) at p = "
                f"1 - 1e-11), or its inputs (np.round(x, 5))"
                if engine.unit_seen in ("jumps", "jumps16") else
                f"it returns float64 but carries {low}-sized round-off here: its output is "
                f"blind to moves of its tensors that {low} cannot hold")  # fmt: skip
        if forward is not None and forward.passed and builtin is not None:
            # float32 differences would blur what a float32 backward is checked against: the
            # built-in forward, which the user's agreed with at this point, is differenced
            engine = Engine(
                builtin, spec.tensors, spec.options, spec.grad_output,
                method=opts.method, eps=opts.eps, max_memory=copies,
            )  # fmt: skip
            notes.append(
                f"your forward computes in {low} ({seen}) and "
                f"agrees with the built-in {builtin.name} here: the numerical gradients "
                "difference the built-in forward, in float64"
            )
        else:
            from gradcli.checking import mixed  # LAZY: see ARCHITECTURE.md, "Start-up"

            default_atol, own_rtol = FLOAT32_FORWARD[opts.method]
            atol = default_atol if opts.atol is None else opts.atol
            rtol = own_rtol if opts.rtol is None else opts.rtol
            # the allowance only where float32 rounds: a bias added in float64 after a float32
            # matmul is exact at any step, and its sign flipped passed 'within noise' (t26 F4)
            engine64, exact, lines, float64_seconds = mixed.float64_paths(spec, opts, engine,
                                                                          copies)  # fmt: skip
            said = ""
            if engine64 is not None:
                own_atol, own_rtol64 = default_tolerances(spec.dtype, opts.method)
                own_rtol64 = own_rtol64 if opts.rtol is None else opts.rtol
                float64_paths = {n: (own_atol, own_rtol64) for n in exact}
                them = "it" if len(exact) == 1 else "each"
                said = (f"; the differences of {', '.join(f'd{n}' for n in exact)} carry none "
                        f"(the output follows {them} below {low}'s resolution, and the loss "
                        f"along up to {lines} of {'its' if len(exact) == 1 else 'their'} lines "
                        f"is smooth to float64's rounding): they take float64 steps (eps "
                        f"{engine64.eps:.2g}) and are held to atol "
                        f"{own_atol if opts.atol is None else opts.atol:g}, rtol {own_rtol64:g}")
            # coarser than float32's own (an input rounded to 1e-5): steps and round-off
            # for what was measured
            coarse = low == "float32" and engine.unit > 2 * precision.EPS32
            size = f"round-off of about {engine.unit:.2g}" if coarse else f"{low} round-off"
            notes.append(
                f"your forward computes in {low} ({seen}): its differences take "
                f"{'steps for it' if coarse else f'{low} steps'} (eps {engine.eps:.2g}) and "
                f"carry {size}, so they are held to atol {atol:g}, rtol {rtol:g}{said}"
            )
    if (agreement is not None and agreement.rounds and forward is not None and forward.passed
            and builtin is not None and engine.unit <= EPS):
        # their formula rounds more than ours (it agrees in extended precision): its
        # differences would carry that rounding over 1e-5 steps, so ours are differenced
        engine = Engine(builtin, spec.tensors, spec.options, spec.grad_output,
                        method=opts.method, eps=opts.eps, max_memory=copies)  # fmt: skip
        notes.append(
            f"your forward rounds more than the built-in {builtin.name} here "
            f"({agreement.rounds:.2g} off in {spec.output_info.name}; in extended precision "
            f"the two agree: a formula "
            f"that cancels, such as a one-pass variance E[x^2] - E[x]^2): the numerical "
            f"gradients difference the built-in forward"
        )
    if forward is not None and forward.passed and builtin is not None and builtin.kinks:
        # the user's forward is the built-in's here: its kinks are where the built-in says
        # (a missed one could only fail; a declared one a smooth forward lacks reads its slope)
        engine.declared_kinks = builtin.kinks
        engine.declared_maxima = builtin.maxima  # verified at the point (numeric/routes.py)
        # which of a loss's ties interact: its terms' footprint (numeric/ties.py)
        engine.declared_terms = builtin.terms
    elif (forward is not None and forward.passed and builtin is not None
          and builtin.kinks is None and builtin.maxima is None):
        # nor kinks where the built-in has none: a wrong naive conv's 6,144 failing dX were
        # examined for kinks, 2-3 times the right one's check (outside test t38a F2)
        engine.declared_smooth = True
    agrees = forward is not None and forward.passed and builtin is not None
    if agrees and not engine.layer.footprint:
        engine.declared_footprint = builtin.footprint  # verified before use, as any footprint
    if engine.layer is spec.layer:  # not the built-in standing in for a float32 forward
        complex_safe(spec, opts.method, engine)
    # a backward the contract found linear to float32's round-off only rounds to float32
    rounded = any(f.name == "linearity" and not f.passed and "float32" in f.detail
                  for f in contract)  # fmt: skip
    backward = (backward_against_builtin(spec, agreement, atol, rtol, rounded)
                if run_contract else None)  # fmt: skip
    if (single := one_example(spec)) is not None:
        notes.append(single)
    if (even := even_dropout(spec)) is not None:
        notes.append(even)
    under_test = tested(spec, comp, opts.grads)
    names = tuple(under_test)
    if not names:  # a check of nothing must not pass
        raise OptionError(
            "the answers hold no gradient of this spec's tensors "
            f"({', '.join(spec.layer.grad_names or spec.tensors)})",
            param="grads",
        )
    engines = engines_for(spec, names, engine, method=opts.method, eps=opts.eps, max_memory=copies)
    engines.update({n: engine64 for n in float64_paths if n in engines and engine64 is not None})
    full = {n: estimate(engines[n], n, opts.method, opts.coloring) for n in names}
    full = ties_across_tensors(full, engine, spec.tensors)
    # the whole calls already made: part of the check whatever its mode
    before = calls_before(spec, engine, opts.method, run_contract, agreement, backward)
    before += float64_seconds
    p = Prepared(
        spec, opts, comp, under_test, engine, engines, {n: e.groups for n, e in full.items()},
        {n: e.seconds for n, e in full.items()}, opts.mode, default_atol, atol, rtol, levels,
        contract,
    )  # fmt: skip
    p.forward, p.backward = agreement, backward
    p.float64_paths = {n: v for n, v in float64_paths.items() if n in engines}
    for text in notes:
        p.note(text)
    seconds = before + sum(p.estimates.values())
    run = dict(full)  # what each name's check will cost, as decided
    if p.mode == "sample" or (p.mode == "auto" and seconds > opts.budget):
        # drawn before any check runs, in the tensors' order, from the spec's seed
        coords = draw(under_test, opts.samples, np.random.default_rng(spec.seed))
        coords = _with_builtins_worst(coords, backward, under_test)
        sampled = {n: estimate(engines[n], n, opts.method, opts.coloring, coords[n])
                   for n in names}  # fmt: skip
        sampled = ties_across_tensors(sampled, engine, spec.tensors)
        chosen = set(names)
        if p.mode == "auto":
            chosen, note = over_budget(full, sampled, opts.budget, opts.samples, before=before)
            p.note(note)
        p.mode = "sample" if chosen else "full"
        p.sampled = {n: coords[n] for n in names if n in chosen}
        p.partners = {n: sampled[n].partners for n in chosen}
        run.update({n: sampled[n] for n in chosen})
    elif p.mode == "auto":
        p.mode = "full"
    p.spent = before + (sum(e.seconds for e in run.values()) if p.mode != "probe" else 0.0)
    p.estimated = p.spent
    # the README's promise: the estimate and a bar only for a long run
    slow = p.mode != "probe" and p.spent > 2
    if slow:
        # max_memory bounds the check's arrays, not the interpreter (README "Bounds")
        opts.notify(f"estimated {p.spent:.1f} s; arrays within "
                    f"{opts.max_memory / 2**20:.0f} MB ({mention('max_memory')})")  # fmt: skip
    total = sum(e.groups for e in run.values())
    advance = opts.progress(total) if opts.progress and slow else None
    for e in engines.values():
        e.progress = advance
    return p


def tested(
    spec: Spec, comp: Computation, grads: Mapping[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """What a check tests, tensors first, then intermediates: the user's answers (--grads),
    else the backward's gradients (with --impl, any intermediates' it returned too)."""
    given = {**comp.gradients, **intermediates.from_impl(spec, comp)} if grads is None else grads
    return {n: given[n] for n in (*spec.tensors, *spec.layer.intermediates) if n in given}


def engines_for(
    spec: Spec, names: tuple[str, ...], engine: Engine, **engine_kw: Any
) -> dict[str, Engine]:
    """The engine for each name: ``engine`` (the layer's) for a tensor, one on the layer's
    tail for an intermediate."""
    inter = tuple(n for n in names if n not in spec.tensors)
    own = {n: engine for n in names if n in spec.tensors}
    return own | intermediates.engines(spec, inter, **engine_kw)


# ---------------------------------------------------------------------------- numerical
def numerical(
    p: Prepared, name: str, mode: str, rng: np.random.Generator
) -> tuple[np.ndarray | None, np.ndarray, TensorNumerics]:
    """(the coordinates compared (None: all), the numerical gradient, how it was taken)."""
    coords = p.sampled.get(name) if mode == "sample" else None
    engine = p.engines[name]
    engine.screen_bends = _screens_bends(p, name)
    grad, info = engine.gradient(name, coloring=p.opts.coloring, coords=coords, rng=rng)
    # a forward's randomness moves outputs outside any footprint: its note would blame the
    # footprint for what the determinism finding already names
    if info.note and not p.random_forward:
        p.note(info.note)
    size = engine.t64[name].size if coords is None else len(coords)
    if p.opts.method == "complex" and name in p.spec.tensors and engine.layer is p.spec.layer:
        # every coordinate the complex step read, held to central differences (raises; its
        # cost is in the tensor's estimate: budget.estimate)
        complex_agrees(p.spec, name, grad, coords, engine)
    if info.unseen and tolerances(p, name, grad, info)[2]:
        # every output's round-off, counted where the footprints are unknown, would leave the
        # tensor unresolved: read which outputs each coordinate can move at all (and never
        # count fewer than it moved at its own step)
        info.noise = max(engine.reach_noise(name, coords), float(np.max(info.noise_at)))
        # (and again further out where unmoved outputs dominate: Engine.reach_at)
        p.spent += cost.copies_seconds(engine, (size + 1) * (1 + len(FAR_FACTORS)), real=True)
    if info.incremental and p.opts.method != "complex" and info.noise_at is not None:
        grad, info = _own_outputs(p, name, grad, info, coords, rng)
    other_path = info.coloring or info.incremental  # else whole passes are the path taken
    if (other_path and size <= PLAIN_RETRY and p.opts.method != "complex"
            and tolerances(p, name, grad, info)[2]):
        # the colored or incremental path rounds at what it adds up: attention with one key
        # at |X| ~ 1000 has dW_Q exactly 0, which it read as 1.2e-7 and 'could not resolve'
        # (t21 F5). Whole forward passes of a small tensor are taken where they read exactly
        # 0 at every coordinate and the loss stays where it is out to 4096 steps with 1/4096
        # of their round-off below atol (the flat rule: a bias absorbed at 3e40 is not)
        plain, seen = engine.gradient(name, coloring=False, coords=coords, rng=rng)
        p.spent += cost.copies_seconds(engine, 2 * size, real=True)
        read = plain.ravel() if coords is None else plain.ravel()[coords]
        read = read[np.isfinite(read)]
        flat_atol = p.tolerances_of(name)[0]
        if (read.size and not np.any(read) and seen.noise / FLAT_MOVES[-2] <= flat_atol
                and invariant(p, name, plain, coloring=False)):
            return coords, plain, seen
    return coords, grad, info


PLAIN_RETRY = 1024  # coordinates of an unresolved tensor differenced again by whole passes
OWN_OUTPUTS = 256  # coordinates an incremental path read too coarsely, differenced again
COARSE = 64  # too coarsely: to less than this many times its round-off


def _own_outputs(p: Prepared, name: str, grad: np.ndarray, info: TensorNumerics,
                 coords: np.ndarray | None,
                 rng: np.random.Generator) -> tuple[np.ndarray, TensorNumerics]:  # fmt: skip
    """``grad`` and ``info`` with the coordinates an incremental path read to less than
    COARSE times their round-off (OWN_OUTPUTS at most, within --budget) differenced again by
    whole forward passes, output by output: an incremental path differences whole losses,
    which round at their largest terms, where a whole pass's differences are each output's
    own. A batchnorm with gamma [1, 1e8, 1] read dx of the first feature, outputs of 1, with
    the round-off of the loss of 1e8 (0.05 for 0.3), and the built-in backward 'could not be
    resolved' (outside test t33b F4)."""
    n, own = grad.ravel(), np.asarray(info.noise_at, dtype=np.float64).ravel()
    # (and far above the default atol, where the round-off decides verdicts: a layernorm's dx
    # near 0 at 6e-7 is read well enough, and rereading it tripled the check's time)
    floor = 16 * p.tolerances_of(name)[0]
    with np.errstate(invalid="ignore"):
        coarse = np.isfinite(n) & (COARSE * own > np.abs(n)) & (own > floor)
    coarse &= compared(n.size, coords)
    idx = np.flatnonzero(coarse)
    if not idx.size or idx.size > OWN_OUTPUTS:
        return grad, info
    engine = p.engines[name]
    seconds = cost.copies_seconds(engine, 2 * idx.size, real=True)
    if seconds > p.left():
        return grad, info
    p.spent += seconds
    plain, seen = engine.gradient(name, coloring=False, coords=idx, rng=rng)
    # (a pass that moved no output read nothing: a bias absorbed beside 3e40 reads 0 there)
    at = np.asarray(seen.noise_at).ravel()[idx]
    better = idx[(at < own[idx]) & (at > 0)]
    if not better.size:
        return grad, info
    grad = grad.copy()
    grad.flat[better] = plain.ravel()[better]
    noise_at = np.asarray(info.noise_at, dtype=np.float64).copy()
    noise_at.flat[better] = np.asarray(seen.noise_at).ravel()[better]
    return grad, dataclasses.replace(info, noise_at=noise_at,
                                     noise=float(noise_at.max(initial=0.0)))


def _screens_bends(p: Prepared, name: str) -> bool:
    """Whether central differences of ``name`` also read where their two one-sided halves
    disagree (numeric/bends.py): a layer whose kinks nothing declares, whose forward gives the
    same output at every call, checked layer by layer (a network's end to end leaves its
    kinks to its layers)."""
    engine = p.engines[name]
    return not (declares_kinks(engine) or smooth(engine) or p.random_forward
                or p.opts.composite_kinks)  # fmt: skip


def _crosses_kinks(p: Prepared, name: str) -> str:
    """Why a probe of ``name`` cannot be read, or "": its +-1 direction moves every
    coordinate, so a stencil meeting a kink the layer declares is crossed, and a difference
    across a tie reads what a wrong backward gives there (CS231n's all-ties max-pool mask, +1
    and -1 on two tied maxima: 0 either way, which passed one window in four). Then every
    element is checked, the kinks one-sidedly."""
    engine = p.engines[name]
    if not declares_kinks(engine):
        return ""
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    hit = kinks.met(engine, name)
    if hit is None or not hit.any():
        return ""
    return f"would cross kinks the layer declares ({int(hit.sum()):,} coordinates)"


def _kinks_unknown(p: Prepared, name: str) -> bool:
    """A user's layer that does not say where its kinks are (not one that agreed with a
    built-in declaring them; a built-in says where its own are, or has none)."""
    engine = p.engines[name]
    if smooth(engine):  # a network of built-in layers none of which has kinks
        return False
    return REGISTRY.get(engine.layer.name) is not engine.layer and not declares_kinks(engine)


def _kinked(fix: Any) -> bool:
    at = getattr(fix, "at", None)
    return at is not None and at.coords.size > 0


def _probe_beside(p: Prepared, name: str, rng: np.random.Generator) -> None:
    """A sample that --budget chose for ``name`` reads two random directions over every
    coordinate too (a few calls): where they disagree, the sample's PASS is none (judging's
    ``unlocated``). tanh of 60,000 inputs with one element 1.5x off passed on 64 sampled
    coordinates, where such a probe saw it (outside test t44b F1). Another reason the probe
    gives (a kink it crossed, a direction it cannot read) leaves the sample as it was."""
    engine = p.engines[name]
    if engine.unit > EPS or p.random_forward:  # (its round-off is not a probe's: a right
        # tanh(x32 @ W32) failed its sample on it, outside test t45a F6)
        return
    found = probe(engine, name, p.under_test[name], dtype_of(p, name), p.opts.method,
                  np.random.default_rng([p.spec.seed, 0x70726F62]), extras(p, name),
                  roundoff(p, name), _kinks_unknown(p, name), kink_undecided=True)  # fmt: skip
    p.spent += cost.copies_seconds(engine, 4 * PROBE_POINTS * len(engine.method.offsets))
    if found == DISAGREED:
        p.probed[name] = found


def recheck(
    p: Prepared, name: str, why: str, spent: float, rng: np.random.Generator
) -> tuple[str, float]:
    """A probe that did not pass its tensor (``why``): (the mode its elements are checked in,
    its predicted seconds). Every element, unless that would exceed what is left of --budget
    and a sample is cheaper."""
    whole = p.estimates[name]
    sample = None
    if spent + whole > p.opts.budget:  # drawn only then, after the probes drew theirs
        coords = sample_coordinates(p.under_test[name].shape, p.opts.samples,
                                    p.under_test[name], rng)  # fmt: skip
        sampled = estimate(p.engines[name], name, p.opts.method, p.opts.coloring, coords)
        if sampled.seconds < whole:
            p.sampled[name], sample = coords, sampled.seconds
            p.partners[name] = sampled.partners
    mode, note = fallback(name, why, whole, spent, p.opts.budget, p.opts.samples, sample)
    p.note(note)
    return mode, whole if sample is None else sample

