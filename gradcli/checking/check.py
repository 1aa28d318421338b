"""The check, in named stages, producing one report (data, never printed here):

    prepare    -> the analytical side, the contract, the engines, the mode and the tolerances
    numerical  -> one tensor's numerical gradient (all coordinates, a sample, or a probe)
    compare    -> its elements against the analytical ones, under the pass rule
    diagnose   -> for a failing tensor, what the hints may use (built only when asked)

A mismatch is a result, not an exception; exceptions are broken preconditions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcli.checking import across, diagnose, intermediates, leftover, precision
from gradcli.checking.budget import (
    calls_before,
    declares_kinks,
    draw,
    estimate,
    over_budget,
    smooth,
    ties_across_tensors,
)
from gradcli.checking.compare import TensorResult, compare
from gradcli.checking.compute import Computation, compute
from gradcli.checking.contract import (
    check_contract,
    lower_precision,
    random_forward,
    still_deterministic,
)
from gradcli.checking.prepared import CheckOptions, Prepared
from gradcli.checking.probe import fallback, probe, sensitivity_note, unlocated
from gradcli.checking.report import (
    FLOAT32_FORWARD,
    CheckReport,
    default_tolerances,
)
from gradcli.checking.soundness import (
    largest,
    refuse_overflow,
    refuse_step_overflow,
    refuse_zero_output,
    step_underflows,
)
from gradcli.checking.tolerances import (
    FAILING_MEASURED,
    FLAT_MOVES,
    advice_for,
    below_atol,
    compared,
    float64_work,
    invariant,
    reach_of,
    roundoff,
    tiny_inputs,
    tolerance,
    tolerances,
    within_terms,
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
from gradcli.numeric import clock, cost, memory, refine
from gradcli.numeric.engine import FAR_FACTORS, Engine, TensorNumerics
from gradcli.numeric.methods import (
    CONJUGATE,
    EPS,
    MIRRORS,
    RESOLVE_MARGIN,
    get_method,
    steps,
)
from gradcli.numeric.sampling import sample_coordinates

if TYPE_CHECKING:
    from gradcli.numeric import kinks

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
                    p.engines[name], name, p.under_test[name], _dtype_of(p, name), opts.method,
                    rng, _extra(p, name), roundoff(p, name), _kinks_unknown(p, name))  # fmt: skip
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
    beyond = p.spent - p.estimated
    if beyond > max(1.0, p.estimated):  # "estimated 4.9 s" must not become 33 s in silence
        left = f", from what was left of {mention('budget')}" if p.left() < math.inf else ""
        p.note(
            f"the work the comparison decided (failing coordinates rechecked at smaller steps "
            f"and for kinks, ties, a failed probe's recheck) counted about "
            f"{cost.shown(beyond)} s beyond the estimate of {cost.shown(p.estimated)} s{left} "
            f"(seconds the cost model predicts, as {mention('budget')} counts them, not timed)"
        )
    if (blind := sensitivity_note(results, p.under_test, p.atol, p.rtol)) is not None:
        p.notes.append(blind)
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
    )  # fmt: skip


# ---------------------------------------------------------------------------- prepare
SLOW_CALL = 0.01  # seconds a call of yours must take before its timing is a note


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
    if agreement is not None and agreement.roundoff:  # what was observed, not a precision
        notes.append(
            f"your forward and the built-in {spec.layer.name} differ here by more than 64 eps of "
            f"{spec.output_info.name}, but within the built-in's own round-off at these values "
            f"(about {agreement.roundoff / 8:.2g}, measured against extended precision): the "
            f"two agree to it"
        )
    # timed, the one part of the estimate that is: said so where a call is long enough to
    # matter (a millisecond is the clock's grain here: 2^-10 s was read of np.maximum, and
    # loop-free numpy was told it looked like a loop in Python, outside test t38a N3)
    slow = cost.user_call_seconds(engine)
    slow = slow if slow is not None and slow >= SLOW_CALL else None
    if slow is not None:
        notes.append(
            f"your forward takes about {slow:.3g} s a call, more than 3 times what gradcli's "
            f"cost model predicts for numpy at these sizes (a loop in Python, or costly "
            f"functions such as tanh and powers): time estimates and {mention('budget')} use "
            f"the time measured"
        )
    slow_back = cost.user_backward_seconds(engine)
    if slow_back is not None and slow_back >= SLOW_CALL:
        notes.append(
            f"your backward takes about {slow_back:.3g} s a call, more than 3 times what "
            f"gradcli predicts for numpy at these sizes: time estimates and {mention('budget')} "
            f"use the time measured"
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
        complex_agrees(p.spec, name, grad, coords)
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


# ---------------------------------------------------------------------------- kinks
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
            p.note(
                f"d{name}: {rest:,} of {union.size:,} failing coordinates were not rechecked: "
                f"none of the {first.size} rechecked first (the worst, and others spread over "
                f"the tensor) was explained {' or '.join(ways)}, so the others fail as "
                f"computed ({mention('mode', 'full')}, given explicitly, rechecks every one)"
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
    sampling = p.opts.mode == "auto" and info.bends is not None
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


# ---------------------------------------------------------------------------- compare
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
    promised = (analytic.size if coords is None
                else coords.size if fix is not None and fix.sampled  # (leftover.sampled_kinks)
                else min(opts.samples, analytic.size))  # fmt: skip
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
        **_extra(p, name),
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
    if p.mode == "probe":
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
    ours = None
    if opts.grads is not None:
        ours = compare(name, intermediates.builtin(p.comp, name), theirs, atol, p.rtol,
                       coords=coords, unresolved=unresolved, noise=noise, top=1)  # fmt: skip
    return result, ours


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

    def tol(nz: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return np.maximum(atol, nz) + rtol * np.abs(ref)

    got = refine.refine(p.engines[name], name, idx, p.under_test[name], n, tol,
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
    if not got.coords.size:
        return grad, noise, refined
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
                       coords: np.ndarray | None,
                       refined: refine.Refined | None) -> bool:  # fmt: skip
    """Whether a tensor the step cannot resolve as a whole fails at elements it resolves: each
    one's own round-off (info.noise_at) RESOLVE_MARGIN below its size, its error beyond its
    tolerance. A batchnorm with gamma[2] = 1e8 reads dbeta[2] to 0.08 and the others to 1e-10,
    and a sign-flipped dbeta was only 'cannot resolve' (outside test t30b F4): a failure there
    is a mismatch, said so (and the others' round-off in a note). Only where the model's
    round-off is the whole story: a float64 forward (no coarser rounding measured), inputs
    not far below the step, and no element the smaller steps left undecided."""
    own = info.noise_at
    if own is None or not float64_work(p, name) or tiny_inputs(p, name):
        return False
    a = np.asarray(p.under_test[name], dtype=np.float64).ravel()
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
    if k:
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


def _unresolved(result: TensorResult, why: str) -> TensorResult:
    """``result`` unresolved for ``why``, its reading and first hint saying so (as compare's
    own: a reading of errors that are round-off, 'good' or 'wrong', would mislead)."""
    if result.nonfinite:  # not finite says more, and first
        return dataclasses.replace(result, unresolved=why)
    hints = tuple(h for h in result.hints if getattr(h, "text", h) != result.reason)
    return dataclasses.replace(result, unresolved=why, band="cannot resolve",
                               hints=(why, *hints))  # fmt: skip


def _noisy(p: Prepared, name: str, grad: np.ndarray, refined: refine.Refined, atol: float,
           rtol: float, noise: np.ndarray | None, coords: np.ndarray | None,
           fix: Any = None) -> str:  # fmt: skip
    """Why the step cannot resolve ``name`` ("" when it can): every element that fails is one
    whose measured round-off kept the smaller steps from deciding it (refine.Refined.noisy),
    so the failure says nothing of the gradient. Not one a kink's one-sided reading decided
    since (a sign-flipped |x| at 1e-15 read 'cannot resolve' where its sides read -1 and 1)."""
    a = np.asarray(p.under_test[name], dtype=np.float64).ravel()
    n = grad.ravel()
    floor = atol if noise is None else np.maximum(atol, noise.ravel())
    bad = ~(np.abs(a - n) <= floor + rtol * np.abs(n))
    bad &= compared(n.size, coords)
    at = np.flatnonzero(bad)
    undecided = refined.noisy
    if fix is not None and fix.coords.size:
        undecided = undecided[~np.isin(undecided, fix.coords)]
    if not at.size or not np.isin(at, undecided).all():
        return ""
    if np.isin(at, refined.swallowed).all():
        return (
            f"cannot resolve d{name} at this step: every difference of {at.size:,} failing "
            f"coordinate{'s' if at.size > 1 else ''} read exactly 0, the step moving the "
            f"outputs by less than their last bit, while they move further out (outputs far "
            f"larger than the elements' share: a loss of 1e11); "
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


def _dtype_of(p: Prepared, name: str) -> str:
    return "float32" if lower_precision(p.spec.dtype, p.under_test[name]) else p.spec.dtype


def _extra(p: Prepared, name: str) -> dict[str, Any]:
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
    return {"kink_sides": (at.coords, at.lo, at.hi, at.label), **jumps}


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
    ctx["verified"] = p.session.explain(name)
    ctx["recomputed"] = p.session.builtin_ok
    return ctx
