"""`check --sweep`: the numerical error against the step, to see the truncation and round-off
regimes and the best step for a spec."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcli.checking import lastbit
from gradcli.checking.budget import Estimate, draw, over_budget
from gradcli.checking.check import engines_for, tested
from gradcli.checking.compute import compute
from gradcli.checking.report import FLOAT32_FALLBACK, default_tolerances
from gradcli.checking.soundness import refuse_overflow
from gradcli.checking.userwork import complex_safe
from gradcli.errors import OptionError, UserCodeError
from gradcli.inputs.spec import Spec
from gradcli.numeric import kinks, memory
from gradcli.numeric.engine import Engine
from gradcli.numeric.methods import DEFAULT_MAX_MEMORY, EPS
from gradcli.numeric.sampling import SWEEP_STEPS


def run_sweep(
    spec: Spec,
    method: str = "central",
    coloring: bool = True,
    grads: Mapping[str, np.ndarray] | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    *,
    budget: float = math.inf,
    samples: int = 64,
    notify: Callable[[str], None] = lambda message: None,
    skip: Mapping[str, tuple[int, ...]] | None = None,
) -> tuple[list[dict[str, Any]], float, list[str]]:
    """Error against step: [{"eps", "error", "errors": {name: err}, "regime"}], the best step,
    and the tensors whose error stays above the check's default rtol at every step (no step
    explains that: the gradient itself is off).
    errors[name] = max |a - n| / max |a| (normalized, robust to zeros); error = their max over
    the tensors some step reconciles (over all when none is).

    ``a`` is what ``check`` would test: the user's answers (``grads``, which may name
    intermediates such as attention's S), else the spec's layer's backward (a user's with
    --impl). A wrong answer then shows as an error that no step brings down.
    A sweep estimated to take longer than ``budget`` seconds sweeps ``samples`` sampled
    coordinates per tensor (as check does) and says so through ``notify``. ``skip``: flat
    indices per name left out at every step (the check's kinks, tested one-sidedly there),
    besides those whose stencil meets a kink the layer declares at that step."""
    memory.require(spec, method, max_memory)  # before the first forward
    with np.errstate(all="ignore"):  # a non-finite error is counted below, not warned about
        return _sweep(spec, method, coloring, grads, max_memory, budget, samples, notify,
                      skip or {})  # fmt: skip


def _sweep(
    spec: Spec,
    method: str,
    coloring: bool,
    grads: Mapping[str, np.ndarray] | None,
    max_memory: int,
    budget: float,
    samples: int,
    notify: Callable[[str], None],
    skip: Mapping[str, tuple[int, ...]],
) -> tuple[list[dict[str, Any]], float, list[str]]:
    complex_safe(spec, method)
    comp = compute(spec)
    refuse_overflow(spec, comp)
    under_test = tested(spec, comp, grads)
    names = tuple(under_test)
    kw = {"method": method, "max_memory": memory.copies(spec, max_memory, method)}
    engine = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output, **kw)
    memory.require_measured(spec, method, max_memory, engine)  # a forward of yours
    engines = engines_for(spec, names, engine, **kw)
    coords = _coordinates(engines, under_test, coloring, budget, samples, notify, spec.seed)
    scales = _scales(spec, under_test)
    rows = []
    outside: list[float] = []  # steps that left the forward's domain
    measured = dict.fromkeys(engines, False)  # some coordinate off every kink at some step
    for eps in SWEEP_STEPS:
        errors = {}
        for name, eng in engines.items():
            # one engine per tensor for every step: its point, colorings and verified paths do
            # not depend on the step (an engine per step ran 12x the forwards: 36 s at T=2000)
            eng.eps = eps
            c = coords.get(name)
            a = np.asarray(under_test[name], dtype=np.float64)
            try:
                n = eng.gradient(name, coloring=coloring, coords=c)[0]
            except UserCodeError:
                # the sweep's own step leaves the forward's domain (a sqrt at 0.05 under a
                # step of 0.1): that step reads nothing, the others their curve (it ended
                # the run, exit 2: outside test t63b F4)
                errors[name] = math.inf
                outside.append(eps)
                continue
            # a stencil across a kink (relu at 0) reads no derivative at any step: the curve is
            # the others' (the check at the default step tests those one-sidedly)
            kinked = kinks.met(eng, name)
            kinked = np.zeros(a.size, dtype=bool) if kinked is None else kinked
            kinked[np.asarray(skip.get(name, ()), dtype=np.int64)] = True
            n = np.where(kinked.reshape(a.shape), a, n)
            measured[name] |= not bool(np.all(kinked if c is None else kinked[c]))
            a, n = (a, n) if c is None else (a.ravel()[c], n.ravel()[c])
            d = np.abs(a - n)
            # NaN compares False: a non-finite gradient's error is inf, off at every step
            err = float(np.max(d, initial=0.0)) if np.isfinite(d).all() else math.inf
            errors[name] = err / scales[name]
        rows.append({"eps": eps, "errors": errors})
    if outside:
        notify(f"at eps {', '.join(f'{e:g}' for e in sorted(set(outside), reverse=True))} the "
               f"steps leave the forward's domain (its output not finite there): those rows "
               f"read nothing (inf)")
    if not any(measured.values()):
        raise OptionError(
            f"every coordinate of {', '.join('d' + n for n in engines)} meets a kink at every "
            "step (relu at 0, tied maxima): a difference there says nothing of the step, so "
            "there is no curve to sweep; check without it",
            param="sweep",
        )
    # a tensor off at every step would flatten the curve: the regimes come from the others
    # float32 gradients carry their own round-off: only an error far beyond it is "wrong" here
    rtol = default_tolerances(spec.dtype, method)[1]
    rtol = FLOAT32_FALLBACK[1] if spec.dtype == "float32" else rtol
    wrong = [n for n in rows[0]["errors"] if min(r["errors"][n] for r in rows) > rtol]
    shown = [n for n in rows[0]["errors"] if n not in wrong and measured[n]] or wrong
    rows = [{"eps": r["eps"], "error": max(r["errors"][n] for n in shown), **r} for r in rows]
    best = min(range(len(rows)), key=lambda i: rows[i]["error"])
    for i, row in enumerate(rows):
        row["regime"] = "best" if i == best else "truncation" if i < best else "round-off"
        # a difference of a linear piece is exact: 0 is no regime (relu, svm, flatten), nor
        # is an error the same at every step (what is left is the analytical side's); an error
        # of a few last bits is round-off wherever it sits (a max-pool's 7e-16 at 1e-1)
        row["regime"] = "exact" if row["error"] == 0 else row["regime"]
        if 0 < row["error"] < 100 * EPS and row["regime"] == "truncation":
            row["regime"] = "round-off"
    for row in rows:  # a step that left the forward's domain read nothing
        if row["eps"] in outside:
            row["regime"] = "no reading"
    errors = [r["error"] for r in rows]
    if 0 < min(errors) and max(errors) <= min(errors) * (1 + 1e-3):
        for row in rows:
            row["regime"] = "flat"
    if all(n in wrong for n in shown):
        # every tensor is off at every step: the curve is the error of the gradient, not of
        # the step (a tanh backward without its square read 'flat ... round-off, any step
        # works' above 'the gradient is off')
        for row in rows:
            row["regime"] = "off"
    return rows, rows[best]["eps"], wrong


def _scales(spec: Spec, under_test: Mapping[str, np.ndarray]) -> dict[str, float]:
    """What each gradient's error is relative to: its largest entry, or, for a gradient 0 in
    theory, the size of its terms (a built-in softmax or layernorm under an upstream gradient
    of ones: lastbit.natural_scale) or of the other gradients, where it is within 64 last bits
    of those (a bias before a batchnorm), as the check judges them: against 1e-17 of round-off
    every step read 'off', 'the gradient is off, not the step' (outside test t27 N9)."""
    own = {n: float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0))
           for n, a in ((n, np.asarray(v, dtype=np.float64)) for n, v in under_test.items())}
    unit = float(np.finfo(np.float32 if spec.dtype == "float32" else np.float64).eps)
    natural = lastbit.natural_scale(spec, tuple(under_test))
    out = {}
    for n, v in own.items():
        scale = v
        for size in (natural.get(n, 0.0), max((w for m, w in own.items() if m != n), default=0)):
            if v <= 64 * unit * size:  # round-off beside terms (or gradients) of that size
                scale = max(scale, size)
        out[n] = scale or 1.0
    return out


def _coordinates(
    engines: Mapping[str, Engine], under_test: Mapping[str, np.ndarray], coloring: bool,
    budget: float, samples: int, notify: Callable[[str], None], seed: int,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Sampled coordinates per tensor when sweeping all of them would take longer than
    ``budget`` seconds (every step costs a full check) and a sample of it is cheaper, else
    none: every coordinate."""
    steps = len(SWEEP_STEPS)

    def cost_of(coords: dict[str, np.ndarray] | None) -> dict[str, Estimate]:
        out = {}
        for n, e in engines.items():
            c = None if coords is None else coords[n]
            out[n] = Estimate(steps * e.seconds(n, e.groups_needed(n, coloring, c), coloring, c), 0)
        return out

    full = cost_of(None)
    if sum(e.seconds for e in full.values()) <= budget:
        return {}
    coords = draw(under_test, samples, np.random.default_rng(seed))
    cheaper, note = over_budget(full, cost_of(coords), budget, samples, what="sweep")
    notify(note)
    return {n: c for n, c in coords.items() if n in cheaper}
