"""Compute the analytical gradients and compare them with numerical ones.

The report is data (dataclasses), never printed here; a mismatch is a result, not an exception.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcli import diagnose, intermediates, memory
from gradcli.compare import TensorResult, compare
from gradcli.contract import Finding, check_contract, lower_precision
from gradcli.errors import OptionError
from gradcli.methods import DEFAULT_MAX_MEMORY, get_method
from gradcli.numeric import Engine
from gradcli.probe import fallback, probe, unlocated
from gradcli.sampling import sample_coordinates
from gradcli.soundness import refuse_overflow, resolvable, step_underflows
from gradcli.spec import Spec
from gradcli.user import complex_safe, forward_against_builtin

# (atol, rtol) per dtype of the analytical side and numerical method. float64 central: one
# element off by 1e-4 (relative) fails; complex step: off by 1e-9 fails. float32: the
# analytical side itself is only good to ~1e-6 relative, whatever the method.
TOLERANCES: dict[tuple[str, str], tuple[float, float]] = {
    ("float64", "central"): (1e-7, 1e-6),
    ("float64", "forward"): (1e-5, 1e-4),
    ("float64", "backward"): (1e-5, 1e-4),
    ("float64", "central4"): (1e-9, 1e-8),
    ("float64", "complex"): (1e-11, 1e-10),
}
FLOAT32_TOLERANCES = (1e-4, 1e-3)
MODES = ("auto", "full", "sample", "probe")
DEFAULT_BUDGET_SECONDS = 60.0
DEFAULT_SAMPLES = 64


def default_tolerances(dtype: str, method: str) -> tuple[float, float]:
    return FLOAT32_TOLERANCES if dtype == "float32" else TOLERANCES[("float64", method)]


@dataclass(frozen=True)
class Computation:
    """Forward and analytical backward of one spec.

    output: the layer output; gradients: {tensor name: dL/dname}, each of that tensor's shape;
    intermediates: {name: array}, e.g. attention's Q, K, V, S, A and their gradients dQ ... dA.
    """

    output: np.ndarray
    gradients: Mapping[str, np.ndarray]
    intermediates: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class CheckReport:
    layer: str
    dtype: str
    seed: int
    method: str
    eps: float
    atol: float
    rtol: float
    mode: str
    results: Mapping[str, TensorResult]
    notes: tuple[str, ...] = ()
    not_checked: tuple[str, ...] = ()  # --grads: tensors the answers left out
    builtin: Mapping[str, TensorResult] = field(default_factory=dict)  # beside --grads answers
    forward: TensorResult | None = None  # --impl of a built-in layer: its forward vs ours
    answers: bool = False  # --grads: the gradients under test are the user's answers
    contract: tuple[Finding, ...] = ()  # the backward's contract (none checked with --grads)

    @property
    def failures(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Every reason the check fails, as (kind, names): "gradients" (the tensors that do not
        match), "forward" (a user's forward that disagrees with ours), "contract" (the
        backward's broken contracts, gradcli.contract). The verdict, the exit
        code and the summary line all derive from this one list; a new kind of finding adds
        its entry here."""
        out = []
        failed = tuple(n for n, r in self.results.items() if not r.passed)
        if failed:
            out.append(("gradients", failed))
        if self.forward is not None and not self.forward.passed:
            out.append(("forward", (self.forward.name,)))
        broken = tuple(dict.fromkeys(f.name for f in self.contract if not f.passed))
        if broken:  # "contract": the names of the broken contracts
            out.append(("contract", broken))
        return tuple(out)

    @property
    def passed(self) -> bool:
        return bool(self.results) and not self.failures  # a check of nothing never passes


def compute(spec: Spec) -> Computation:
    layer = spec.layer
    output, cache = layer.forward(spec.tensors, spec.options)
    grads = layer.backward(spec.grad_output, cache)
    inter = {name: cache[name] for name in layer.intermediates if name in cache}  # --impl: none
    inter.update({"d" + n: grads[n] for n in layer.intermediates if n in grads})
    gradients = {n: np.asarray(grads[n]) for n in spec.tensors}
    return Computation(output=output, gradients=gradients, intermediates=inter)


@dataclass
class CheckOptions:
    method: str = "central"
    eps: float | None = None  # None: the method's automatic step
    atol: float | None = None
    rtol: float | None = None
    mode: str = "auto"
    samples: int = DEFAULT_SAMPLES
    coloring: bool = True
    max_memory: int = DEFAULT_MAX_MEMORY
    budget: float = DEFAULT_BUDGET_SECONDS  # seconds a full check may take before "auto" samples
    top: int = 5  # elements in each tensor's worst-k list
    grads: Mapping[str, np.ndarray] | None = None  # the user's answers (--grads) to check
    notify: Callable[[str], None] = field(default=lambda message: None)  # to stderr
    progress: Callable[[int], Callable[[int], None]] | None = None  # total -> advance(n)

    def validate(self) -> None:
        get_method(self.method)
        if self.mode not in MODES:
            raise OptionError(
                f"expected one of {', '.join(MODES)}, got {self.mode!r}", source="--mode"
            )
        for opt, v in (("--eps", self.eps), ("--atol", self.atol), ("--rtol", self.rtol)):
            if v is not None and (not math.isfinite(v) or v < 0 or (opt == "--eps" and v == 0)):
                sign = "positive" if opt == "--eps" else "non-negative"
                raise OptionError(f"expected a finite {sign} number, got {v}", source=opt)
        if self.samples < 1:
            raise OptionError(
                f"expected a positive integer, got {self.samples}", source="--samples"
            )
        if self.max_memory < 2**20:
            raise OptionError("expected at least 1 MB", source="--max-memory")
        if not math.isfinite(self.budget) or self.budget < 0:
            raise OptionError(
                f"expected a number of seconds >= 0, got {self.budget}", source="--budget"
            )
        if self.top < 1:
            raise OptionError(f"expected a positive integer, got {self.top}", source="--top")


def check(
    spec: Spec, opts: CheckOptions | None = None, **kw: Any
) -> tuple[Computation, dict[str, np.ndarray], CheckReport]:
    """(analytical computation, numerical gradients (NaN where not evaluated), report)."""
    opts = dataclasses.replace(opts or CheckOptions(), **kw)
    opts.validate()
    # an overflow or a NaN is a finding (a result that fails, or a refusal), counted where the
    # values are compared: numpy's warnings about it would only add lines to stderr
    with np.errstate(all="ignore"):
        return _check(spec, opts)


def _check(
    spec: Spec, opts: CheckOptions
) -> tuple[Computation, dict[str, np.ndarray], CheckReport]:
    default_atol, rtol = default_tolerances(spec.dtype, opts.method)
    atol = default_atol if opts.atol is None else opts.atol
    rtol = rtol if opts.rtol is None else opts.rtol
    memory.require(spec, opts.method, opts.max_memory)  # before the first forward
    comp = compute(spec)
    refuse_overflow(spec, comp)
    roundoff = _float32_roundoff(spec, comp)
    contract = check_contract(spec, atol, rtol, roundoff) if opts.grads is None else ()
    engine = Engine(
        spec.layer, spec.tensors, spec.options, spec.grad_output,
        method=opts.method, eps=opts.eps, max_memory=opts.max_memory,
    )  # fmt: skip
    smallest = engine.forward_bytes + 2 * max(a.nbytes for a in engine.t64.values())
    if smallest > opts.max_memory:  # even one perturbed copy at a time would not fit
        raise OptionError(
            f"the numerical check needs about {smallest / 2**20:,.0f} MB for one perturbed "
            f"forward pass, more than --max-memory {opts.max_memory / 2**20:,.0f} MB",
            source="--max-memory",
        )
    complex_safe(spec, opts.method, engine)
    under_test = tested(spec, comp, opts.grads)
    names = tuple(under_test)
    if not names:  # a check of nothing must not pass
        raise OptionError(
            f"the answers hold no gradient of this spec's tensors ({', '.join(spec.tensors)})",
            source="--grads",
        )
    inter = tuple(n for n in names if n not in spec.tensors)
    engines = engines_for(
        spec, names, engine, method=opts.method, eps=opts.eps, max_memory=opts.max_memory
    )
    notes: list[str] = []
    mode = opts.mode
    groups = {n: engines[n].groups_needed(n, opts.coloring) for n in names}
    estimates = {n: engines[n].seconds(n, g, opts.coloring) for n, g in groups.items()}
    seconds = sum(estimates.values())  # predicted from sizes (cost.py), never timed
    if mode == "auto":
        mode = "full"
        if seconds > opts.budget:
            mode = "sample"
            notes.append(
                f"a full check would take about {seconds:.0f} s (budget {opts.budget:g} s): "
                f"checked {opts.samples} sampled coordinates per tensor (--mode full forces it)"
            )
            opts.notify(notes[-1])
    if mode == "full" and seconds > 2:
        opts.notify(f"estimated {seconds:.1f} s, at most {opts.max_memory / 2**20:.0f} MB")
    rng = np.random.default_rng(spec.seed)
    total = sum(groups.values()) if mode == "full" else len(names) * opts.samples
    slow = mode == "full" and seconds > 2  # the README's promise: a bar only for a long run
    advance = opts.progress(total) if opts.progress and mode != "probe" and slow else None
    for e in engines.values():
        e.progress = advance
    spent = 0.0  # predicted seconds of the full checks run after a failed probe
    numeric: dict[str, np.ndarray] = {}
    results: dict[str, TensorResult] = {}
    builtin: dict[str, TensorResult] = {}
    for name in names:
        analytic, eng = under_test[name], engines[name]
        extra = {"roundoff": roundoff.get(name), "intermediate": name in inter}
        if mode == "probe":
            dtype = "float32" if lower_precision(spec.dtype, analytic) else spec.dtype
            result = probe(eng, name, analytic, dtype, opts.method, rng, extra)
            if result is not None:
                numeric[name] = np.full(analytic.shape, np.nan)
                results[name] = result
                continue
            mode_used, note = fallback(name, estimates[name], spent, opts.budget, opts.samples)
            spent += estimates[name] if mode_used == "full" else 0.0
            notes.append(note)
            opts.notify(note)
        else:
            mode_used = mode
        coords = None
        promised = analytic.size
        if mode_used == "sample":
            coords = sample_coordinates(analytic.shape, opts.samples, analytic, rng)
            promised = min(opts.samples, analytic.size)
        grad, info = eng.gradient(name, coloring=opts.coloring, coords=coords, rng=rng)
        if info.note:
            notes.append(info.note)
            opts.notify(info.note)
        numeric[name] = grad
        # whether the step resolves the tensor is the numbers' business, whatever --atol says;
        # a gradient returned in a less precise dtype is a dtype finding, not the values' fault
        low = lower_precision(spec.dtype, analytic)
        floor = max(default_atol, FLOAT32_TOLERANCES[0]) if low else default_atol
        tensor_atol, unresolved = resolvable(floor, info.noise, analytic, grad, roundoff.get(name))
        tensor_atol = tensor_atol if opts.atol is None else opts.atol
        tensor_rtol = max(rtol, FLOAT32_TOLERANCES[1]) if low and opts.rtol is None else rtol
        unresolved = step_underflows(eng, name, opts.method) or unresolved
        if unresolved:
            unresolved = f"cannot resolve d{name} at this step: {unresolved}"
        results[name] = compare(
            name, analytic, grad, tensor_atol, tensor_rtol, coords=coords, promised=promised,
            unresolved=unresolved, mode=mode_used, numerics=info, top=opts.top,
            letters=list(spec.info(name).index), context=lambda n=name: _context(spec, n), **extra,
        )  # fmt: skip
        if mode == "probe":
            results[name] = unlocated(results[name])
        if opts.grads is not None:
            ours = intermediates.builtin(comp, name)
            builtin[name] = compare(
                name, ours, grad, tensor_atol, rtol, coords=coords, unresolved=unresolved, top=1
            )
    report = CheckReport(
        layer=spec.layer.name, dtype=spec.dtype, seed=spec.seed, method=opts.method,
        eps=engine.eps, atol=atol, rtol=rtol, mode=mode, results=results, notes=tuple(notes),
        not_checked=tuple(n for n in spec.tensors if n not in under_test), builtin=builtin,
        forward=forward_against_builtin(spec, comp), answers=opts.grads is not None,
        contract=contract,
    )  # fmt: skip
    return comp, numeric, report


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


def _context(spec: Spec, name: str) -> dict[str, Any]:
    """What the hints may use about tensor ``name`` (built only for a failing tensor)."""
    if name in spec.layer.intermediates:
        return intermediates.context(spec, name)
    ctx = diagnose.context(spec.layer, spec.shapes, spec.options, name)
    classic = diagnose.mistakes(spec.layer.name, dict(spec.tensors), spec.options, spec.grad_output)
    ctx["mistakes"] = {k: v[name] for k, v in classic.items() if name in v}
    return ctx


def _float32_roundoff(spec: Spec, comp: Computation) -> dict[str, float]:
    """float32 only: how far the float32 analytical gradients (the tensors', and the
    intermediates' the backward returns: attention's dS ...) are from the same backward run in
    float64 on the same (float32-rounded) inputs: the round-off level a float32 check expects."""
    if spec.dtype != "float32":
        return {}
    t64 = {n: np.asarray(a, dtype=np.float64) for n, a in spec.tensors.items()}
    _, cache = spec.layer.forward(t64, spec.options)
    g64 = spec.layer.backward(np.asarray(spec.grad_output, dtype=np.float64), cache)
    inter = [n for n in spec.layer.intermediates if n in g64 and "d" + n in comp.intermediates]
    out = {}
    for n in [*comp.gradients, *inter]:
        # an answer (--grads) is held to our own backward's round-off, as a tensor's is
        a = intermediates.builtin(comp, n)
        scale = float(np.max(np.abs(g64[n]), initial=0.0)) or 1.0
        out[n] = float(np.max(np.abs(a - g64[n]), initial=0.0)) / scale
    return out


def options_dict(options: Any) -> dict[str, Any]:
    """The options that differ from their defaults (the seed's case shows {})."""
    if isinstance(options, Mapping):  # a custom layer's keywords
        return dict(options)
    if not dataclasses.is_dataclass(options):
        return {}
    return {
        f.name: getattr(options, f.name)
        for f in dataclasses.fields(options)
        if getattr(options, f.name) != f.default
        and not (f.default is None and getattr(options, f.name) is False)  # settled, not set
    }
