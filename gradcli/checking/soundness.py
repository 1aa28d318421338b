"""What a check may claim: a tolerance that never swallows the gradient it judges, steps that
float64 can resolve, and a refusal for a built-in layer whose own forward or backward overflows.
The pass rule itself (every promised coordinate compared, all finite, all within tolerance) is
``TensorResult.passed`` in compare.py."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from gradcli.errors import SpecError, mention
from gradcli.layers import REGISTRY
from gradcli.numeric.methods import RESOLVE_MARGIN, TINY, get_method, steps

if TYPE_CHECKING:  # check imports this module
    from gradcli.checking.compute import Computation
    from gradcli.inputs.spec import Spec
    from gradcli.numeric.engine import Engine


# a tolerance raised to measured round-off over a tenth of the largest gradient would pass an
# answer off by that much (a zero answer for gradients of that size): nothing is judged
SWALLOWED = 10.0


def resolvable(
    atol: float,
    noise: float,
    numeric: np.ndarray,
    margin: float = RESOLVE_MARGIN,
    kink_slopes: float = 0.0,
    method: str = "central",
    complex_ok: bool = True,
) -> tuple[float, str]:
    """(the automatic absolute tolerance of one tensor, why this step cannot resolve it or "").

    The tolerance: ``atol`` (the method's default, plus for float32 the analytical gradient's
    float32 round-off: checking/precision.py) raised to float64 round-off in its analytical
    gradient (64 eps * max |gradient|). The round-off of the finite differences (a few eps * sum
    |g * y| / h over the outputs a coordinate moves) is each element's own: compare() holds an
    element to the larger of this tolerance and its own round-off (``noise`` here is the
    largest, which decides only whether the step can resolve the tensor at all).
    The estimated round-off must stay ``margin`` (RESOLVE_MARGIN) below the numerical
    gradient's scale:
    above that the numbers say nothing, and a tolerance raised to them would pass any answer
    (``--eps 1e-320`` raised it to 1e306). Beneath ``atol`` round-off never matters, so a
    gradient that is exactly 0 (a zero upstream gradient) stays resolved. ``kink_slopes``: the
    largest one-sided slope read at a kink itself, resolved by the same step although the value
    compared there (any between two slopes) may be 0 (clip's bound tied with x: 0 or g).
    ``method``: the one in use, never the one the advice names (nor the complex step where
    ``complex_ok`` is False)."""
    scale = largest(numeric, kink_slopes)
    raised = 64 * np.finfo(np.float64).eps * scale
    why = ""
    if not math.isfinite(noise) or (noise > atol and noise * margin > scale):
        why = (
            f"the round-off of its finite differences (about {noise:.2g}) is "
            f"{beside(noise, scale)} the largest numerical gradient ({scale:.2g}); "
            f"{advice(method, complex_ok)}"
        )
    return max(atol, raised) if math.isfinite(raised) else atol, why


def beside(noise: float, scale: float) -> str:
    """How a round-off stands to the gradient it would judge: 'not far below' a 1.8e-29
    gradient read 4.4e-11 of round-off as if they were close (outside test t24 F7)."""
    if not (math.isfinite(noise) and noise > scale):
        return "not far below"
    return "above" if scale <= 0 else f"{noise / scale:.2g} times"


def largest(numeric: np.ndarray, kink_slopes: float = 0.0) -> float:
    """The scale a tolerance and a round-off are held against: the largest finite numerical
    gradient, or one-sided slope read at a kink."""
    seen = np.abs(numeric[np.isfinite(numeric)])
    return max(float(seen.max(initial=0.0)), kink_slopes)


def advice(method: str, complex_ok: bool = True) -> str:
    """What may help, never the method in use: the complex step's own difference has no
    round-off, so its noise is the one-sided rechecks' at kinks, whose step is central
    differences' (numeric/kinks.one_sided_step) and follows --eps only under central ones.
    ``complex_ok``: False for a forward computing in a lower precision, whose casts drop the
    imaginary part (the complex step is refused there, exit 2: outside test t29a F6)."""
    if method == "complex":
        return f"use {mention('method', 'central')} with a larger {mention('eps')}"
    if not complex_ok:
        return f"use a larger {mention('eps')}"
    return f"use a larger {mention('eps')}, or {mention('method', 'complex')} (no round-off)"


def step_underflows(engine: Engine, name: str, method: str) -> str:
    """Why the steps of ``name`` are too small for float64 to difference ("" when they are
    not): a subnormal step has lost its leading digits, so no stencil is exact."""
    h = float(steps(engine.t64[name].ravel(), engine.eps).min(initial=np.inf))
    if h >= TINY:
        return ""
    auto = get_method(method).auto_eps
    return (
        f"its step {h:.2g} is below the smallest normal float64 ({TINY:.2g}); use a larger "
        f"{mention('eps')} (auto: {auto:.2g})"
    )


def refuse_zero_upstream(spec: Spec) -> None:
    """A check of one layer whose upstream gradient is all zeros is refused: every gradient
    is then 0 whatever the backward does (it multiplies by grad_output), so any backward would
    pass. A network's local checks take the upstream the network gives and are not refused."""
    if spec.grad_output.size and not np.any(spec.grad_output):
        raise SpecError(
            "every element is 0, so every gradient is 0 whatever the backward does and nothing "
            "would be checked; leave grad_output out (random, or 1 for a loss) or give values "
            "that are not all 0",
            source=spec.source,
            key="grad_output",
            param="grad_output",
        )


def refuse_zero_output(spec: Spec, comp: Computation) -> None:
    """A built-in layer whose output is 0 at the spec's point and around it (dropout's mask
    keeping no element: the outside tester's D1) has every gradient 0 whatever its tensors:
    a backward scaled wrong, or any that returns zeros, would pass, as with an all-zero
    grad_output; refused. The neighbourhood tells it from a kink (relu at x = 0, whose
    one-sided slopes are checked) and from a relu of negatives (whose wrong backward fails):
    three points drawn about the spec's, each tensor moved by one to two times its largest
    magnitude plus 1, all one way, all the other, and each element its own way. The last
    tells it from a loss that is 0 only here (an svm whose every margin is met, the end of
    training: all of its scores moved one way meet them still, and a student's backward giving
    every class a gradient there was never failed)."""
    builtin = REGISTRY.get(spec.layer.name)
    if builtin is None or np.any(comp.output):
        return
    # a forward of the user's drawing its own mask (CS231n's dropout) is held to no forward of
    # ours: whether it keeps any element is its own (ours kept 1 of 6 where a student's, seeded
    # as CS231n's is, kept none: PASS, with nothing checked)
    own = spec.layer.reference is not None
    layer = spec.layer if own else builtin
    constants = builtin.constants(spec.shapes, spec.options)
    names = [n for n, a in spec.tensors.items()
             if n not in constants and np.asarray(a).dtype.kind == "f"]  # fmt: skip
    if not names:
        return
    rng = np.random.default_rng([spec.seed, 0x7A65726F])
    for sign in (1.0, -1.0, 0.0):
        point = dict(spec.tensors)
        for n in names:
            a = np.asarray(spec.tensors[n])
            size = float(np.abs(a).max(initial=0.0)) + 1.0
            way = sign if sign else rng.choice((-1.0, 1.0), a.shape)
            point[n] = a + way * size * rng.uniform(1.0, 2.0, a.shape).astype(a.dtype)
        if np.any(layer.forward(point, spec.options)[0]):
            return
    whose = f"your {spec.layer.name}'s forward" if own else spec.layer.name
    if own or builtin.name == "dropout":
        mask = "its own mask keeps" if own else "a dropout mask that keeps"
        why = f" ({mask} no element); give more elements or options that keep some"
    else:  # an svm of one class has no margin at all
        why = "; give tensors or options under which it is not 0 everywhere"
    raise SpecError(
        f"the output of {whose} is 0 at every element here and around this point, "
        f"so every gradient is 0 whatever the values of {', '.join(names)} and nothing would be "
        f"checked{why}",
        source=spec.source,
    )


def refuse_overflow(spec: Spec, comp: Computation) -> None:
    """A built-in layer whose forward or backward is not finite at the spec's own point was
    given values too large for its dtype: refused, since no check can say anything there
    (a user's code returning NaN or inf is a finding, not the input's fault)."""
    if REGISTRY.get(spec.layer.name) is not spec.layer:
        return
    arrays = [("forward", f"output {spec.output_info.name}", comp.output)]
    arrays += [("backward", f"d{n}", g) for n, g in comp.gradients.items()]
    for part, what, a in arrays:
        a = np.asarray(a)
        if not np.isfinite(a).all():
            at = [int(i) for i in np.argwhere(~np.isfinite(a))[0]]
            raise SpecError(
                f"the {part} of {spec.layer.name} overflows: {what} is not finite at {at} "
                f"(values too large for {spec.dtype})",
                source=spec.source,
            )


def refuse_step_overflow(spec: Spec, names: list[str], method: str, eps: float | None) -> None:
    """Inputs so close to the largest float64 that the stencil's points overflow: refused, as
    a forward overflowing there is. Their differences read inf, and a right relu at x = 1.8e308
    failed with 'dx is not finite' (outside test t34b F2)."""
    m = get_method(method)
    if m.name == "complex":  # the step moves the imaginary part only
        return
    reach = max(abs(s) for s in m.offsets)
    big = float(np.finfo(np.float64).max)
    for n in names:
        x = np.asarray(spec.tensors[n])
        if x.dtype.kind != "f" or not x.size:
            continue
        x = x.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            over = np.isfinite(x) & ~np.isfinite(np.abs(x) + reach * steps(x, eps or m.auto_eps))
        if over.any():
            at = [int(i) for i in np.argwhere(over)[0]]
            raise SpecError(
                f"{n}{at} = {x[tuple(at)]:.4g} lies within the step of the largest float64 "
                f"({big:.3g}): {n} + the step overflows, so no difference can be taken there; "
                f"scale {n} down",
                source=spec.source,
            )
