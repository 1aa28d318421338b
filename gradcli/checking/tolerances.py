"""Each tensor's pass rule: its atol and rtol, whether this step can resolve it, and each
element's own floor (its stencil's round-off, modelled or measured, and its backward's last
bits). checking/check.py compares under it; the kinks' detector and the refinement hold their
readings to it (``tolerance``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gradcli.checking import lastbit
from gradcli.checking.contract import lower_precision
from gradcli.checking.precision import EPS32, FLOOR_ULPS
from gradcli.checking.prepared import Prepared
from gradcli.checking.report import FLOAT32_FALLBACK, FLOAT32_FORWARD_MARGIN
from gradcli.checking.soundness import SWALLOWED, advice, beside, largest, resolvable
from gradcli.errors import UserCodeError, mention
from gradcli.layers import REGISTRY
from gradcli.numeric.engine import Engine, TensorNumerics
from gradcli.numeric.methods import EPS, RESOLVE_MARGIN, below_step, steps

COMPLEX_MARGIN = 1e9  # the complex step's atol lies this far below the tensor's largest value
ROUNDED_TERMS = 1024  # eps of sum |g y|: a user's gradient this small is its terms' rounding


def tolerance(p: Prepared, name: str, grad: np.ndarray, info: TensorNumerics):
    """tol(noise, ref): the tensor's pass rule, raised by a stencil's own round-off ``noise``
    (what the kinks' detector holds its one-sided slopes to)."""
    atol, rtol, _, _ = tolerances(p, name, grad, info)

    def tol(noise: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return np.maximum(atol, noise) + rtol * np.abs(ref)

    return tol


def tolerances(
    p: Prepared, name: str, grad: np.ndarray, info: TensorNumerics, final: bool = False
) -> tuple[float, float, str, np.ndarray | None]:
    """(atol, rtol, why the step cannot resolve the tensor or "", each element's own round-off
    or None) for ``name``; ``final``: for the comparison itself, where the round-off of the
    few elements still failing is measured (_measured_failing), not before the kinks and the
    smaller steps have decided theirs."""
    spec, opts, analytic = p.spec, p.opts, p.under_test[name]
    # whether the step resolves the tensor is the numbers' business, whatever --atol says;
    # a gradient returned in a less precise dtype is a dtype finding, not the values' fault
    low = lower_precision(spec.dtype, analytic)
    default_atol, own_rtol = p.tolerances_of(name)
    floor = max(default_atol, FLOAT32_FALLBACK[0]) if low else default_atol
    # a forward computing in float32 cannot do better than 1% of the largest entry where its
    # round-off is largest (the tolerances say so: FLOAT32_FORWARD)
    margin = FLOAT32_FORWARD_MARGIN if p.engines[name].unit > EPS else RESOLVE_MARGIN
    # float32: on top of the float64 side's own error; whether the step resolves the tensor is
    # asked of the tensor-wide round-off, each element is compared under its own (below)
    whole, each, shared = _float32(p, name)
    if each is not None and each.shape == np.shape(grad):
        # and 16 float32 ulps of its own reading: at a kink the built-in's gradient (relu's 0
        # at x = 0) is one valid value, its terms 0, and another (g at x >= 0) failed by g's
        # float32 rounding alone under central4 and the complex step (outside test t65b F4)
        with np.errstate(invalid="ignore"):
            own = FLOOR_ULPS * EPS32 * np.abs(np.asarray(grad, dtype=np.float64))
        each = np.maximum(each, np.where(np.isfinite(own), own, 0.0))
    atol, unresolved = resolvable(floor + whole, info.noise, grad, margin, info.kink_slopes,
                                 opts.method, complex_ok(p, name))  # fmt: skip
    # a loss that stays where it is out to 4096 steps has a slope below 1/4096 of the
    # round-off a step could not see past: where that is below atol, its derivative is 0
    far = info.noise / FLAT_MOVES[-2] <= atol
    if unresolved and largest(grad, info.kink_slopes) == 0 and far and invariant(p, name, grad):
        unresolved = ""
    if unresolved and opts.atol is None and _measured_resolves(p, name, grad, info, margin):
        unresolved = ""
    # the scale the gradient is held against: its own, or where that is too small to resolve,
    # the size of its terms (a softmax under an upstream gradient of ones, y.sum(): 0 in
    # theory, 3e-11 read, its terms and their round-off of 0.1): resolved against those, it is
    # judged there; a confident softmax's terms are as small as its gradient and stay unresolved
    slopes = info.kink_slopes
    top = largest(grad, slopes)
    if (opts.atol is None and np.isfinite(info.noise) and info.noise * margin > top
            and not tiny_inputs(p, name)):
        natural = _natural(p, name, info)
        reach = 0.0 if info.noise_reach is None else float(np.max(info.noise_reach, initial=0))
        # and the answer is 0 to the rounding of those terms: under ones + 3e-9 N(0, 1) a
        # normalization's dx is 2e-8, no cancellation's round-off, and judged at terms of 1 a
        # backward holding the variance constant passed (outside test t37b F5); nor does a
        # float32 tanh's dW of 0.77 beside terms of 1.7 cancel (t37b F3)
        unit = float(np.finfo(np.float32).eps) if low or spec.dtype == "float32" else EPS
        zero = largest(np.asarray(analytic, dtype=np.float64)) <= 64 * unit * natural
        if (natural > top and max(info.noise * margin, reach * SWALLOWED) <= natural
                and zero):  # fmt: skip
            unresolved, slopes = "", natural
            said = (f"d{name}: its terms cancel here (at most {top:.2g} read, beside terms of "
                    f"about {natural:.2g}: an upstream gradient of ones through a softmax or "
                    f"a normalization gives 0); it is judged at the size of its terms")
            p.note(said)  # once: Prepared.note
    if each is not None:
        atol = resolvable(floor + shared, info.noise, grad, margin, info.kink_slopes)[0]
    # each element is also held to its own round-off, unless the user set --atol
    noise = info.noise_at if opts.atol is None else None
    if each is not None and opts.atol is None:
        noise = each if noise is None else noise + each
    rtol = max(own_rtol, FLOAT32_FALLBACK[1]) if low and opts.rtol is None else own_rtol
    scale = largest(grad, slopes)
    # the round-off of the backward's other gradients, in the precision they were computed in
    # (a bias before a batchnorm, whose gradient is 0 in theory, is a sum of them: 4e-16 next
    # to 9 in float64, 1e-8 next to 0.3 in float32)
    others = max((largest(np.asarray(v, dtype=np.float64)) for n, v in p.under_test.items()
                  if n != name), default=0.0)  # fmt: skip
    unit = float(np.finfo(np.float32).eps) if low or spec.dtype == "float32" else EPS
    own = largest(np.asarray(analytic, dtype=np.float64))
    # and the differences read nothing beyond their own round-off: a product's da of 1e-8
    # beside a db of 1e8 reads its 1e-8 to 1e-18, and a sign-flipped da passed under an atol
    # of 64 eps of db (outside test t29b F1)
    # (not for a float32 answer whose own terms' rounding is known, each element's: a layer
    # norm's dx of 6e-8 beside a feature of 1e7 rounds at 1e-13, and held to 64 float32
    # units of its dgamma of 3 it passed zeroed and negated: outside test t37a F6)
    beside_others = (others > 0 and scale <= 64 * unit * others and own <= 64 * unit * others
                     and (opts.method == "complex" or not scale > SWALLOWED * info.noise)
                     and not (unit > EPS and each is not None)
                     and not _own_terms(p, name, info, grad, own, unit)
                     and not _reads_beyond(p, name, grad))  # fmt: skip
    if beside_others:
        # both sides are that round-off (a linear's dx of 0 in theory, 2e-16 against 4e-16
        # read, beside a dW of 1, 'could not be resolved'): held to it, not to their own size
        scale, atol = 0.0, max(atol, 64 * unit * others)
        if info.noise <= atol or (unresolved and opts.atol is None
                                  and _measured_within(p, name, grad, info, atol)):
            unresolved = ""
    elif scale == 0:  # the differences read 0 everywhere: an answer of 0 agrees with them
        # (a dead relu, a perfect fit, every margin met); any other is judged at its own size
        # (a confident classifier's bias gradient of 4e-10, negated, passed under the atol of
        # 1e-7; its lines flat over 8 steps, it cannot be resolved). Neither a 0 read beside
        # a kink nor a symmetric rise (mse at its minimum) is a hidden gradient
        scale = own
    # the complex step has no round-off of its own to keep a margin for: its atol is a
    # billionth of the gradient (the analytical side's round-off is each element's floor):
    # 1/1000 passed an answer 0.1% off everywhere on a confident classifier's gradient
    exact = opts.method == "complex" and p.engines[name].unit <= EPS
    # 1/1000 for a forward computing in float32 too, whose round-off is each element's own
    # (FLOAT32_FORWARD_MARGIN says only when it cannot be resolved): at 1/100 a backward 1% off
    # passed wherever the gradients were below 1e-3 (outside test t30a F2, F3)
    capped = scale / (COMPLEX_MARGIN if exact else RESOLVE_MARGIN) + shared
    # nothing to scale to (a float32 network's bias before a batchnorm: 0 read, 1e-8 of
    # round-off answered), the float32 allowance of its own 1e-8 is no atol: the default is
    small = opts.atol is None and scale > 0 and capped < atol
    # (no footprint at all: every output is one a coordinate may move, and the tensor's
    # round-off is each element's reach: a softmax of your own at a top logit of 30 read its
    # dx of 1e-13 with the top output's share lost in the rounding of 1, and the right one
    # was called wrong, outside test t36b F4)
    # whether or not an element fails there: under forward differences y = 1e-8 a + b reads
    # da to 1.5e-16 of y, its own size, and a sign-flipped da passed, none failing (t36b F1);
    # where the terms cancel (a custom softmax under ones, 0 on both sides to round-off) they
    # are read under other upstream gradients, and the tensor judged at their size (t27 N8)
    # (and an error far beyond that round-off is a mismatch whatever it is: a softmax without
    # its rowsum term answers 0.7 there)
    reaches = info.noise_reach
    if reaches is None and small and info.incremental:
        # (the incremental path's round-off is the whole loss's, each output's its own where
        # whole passes read it again: softmax([0, 40]) under [1, 2] moves y1 = 1 by less than
        # its last bit, its share of dx lost, and read the dx of 4e-18 with its sign flipped,
        # a negated answer passing: outside test t36a F2)
        reaches = _unmoved(p, name, grad, info, largest(grad, info.kink_slopes))
    if reaches is None and small and not info.coloring and not info.incremental:
        a, n, _, failing = _failing(p, name, grad, capped, rtol, noise)
        with np.errstate(invalid="ignore", over="ignore"):
            clear = np.abs(a[failing] - n[failing]) > RESOLVE_MARGIN * info.noise
        if not clear.any():
            reaches = reach_of(info, grad.shape)
    if small and not unresolved and reaches is not None:
        # whether the step resolves the tensor is asked whatever the answer: the round-off
        # over every output a coordinate may move (a confident softmax's top output, at 1,
        # moved by less than its last bit reads 0) against the gradient, where both sides do
        # not read 0; asked only of failing elements, a backward dropping exactly that
        # output's term (the Jacobian's diagonal alone) passed where the right one could not
        # be resolved
        a = np.asarray(analytic, dtype=np.float64)
        read = ~((grad == 0) & (a == 0)) & np.isfinite(grad)
        reach = float(np.max(reaches[read], initial=0.0))
        if reach * SWALLOWED > scale:
            unresolved = (f"the round-off of its finite differences over every output a "
                          f"coordinate moves (about {reach:.2g}) is {beside(reach, scale)} the "
                          f"largest numerical gradient ({scale:.2g}); "
                          f"{advice_for(p, name)}")
    if small and not unresolved:
        noise = _last_bits(p, name, grad, capped, rtol, noise)
        atol, noise, unresolved = _small(p, name, grad, info, noise, atol, capped, rtol, scale)
        if final and not unresolved:  # (a layernorm's dx beside a feature of 1e6: 1e-6)
            noise = _measured_passing(p, name, grad, atol, rtol, noise)
    elif opts.atol is None:
        if not beside_others:
            atol, noise, hidden = _own_size(p, name, grad, info, floor + whole, atol, rtol, noise)
            unresolved = unresolved or hidden
        noise = _last_bits(p, name, grad, atol, rtol, noise)
        if final:
            noise = _measured_failing(p, name, grad, atol, rtol, noise)
            noise = _measured_passing(p, name, grad, atol, rtol, noise)
    atol = atol if opts.atol is None else opts.atol
    if (final and not unresolved and opts.method == "complex" and tiny_inputs(p, name)
            and _complex_truncated(p, name, grad, _failing(p, name, grad, atol, rtol,
                                                           noise)[3], atol, rtol)):
        # the complex step's truncation is (h / scale)^2 too: x**3 at |x| = 1e-100 reads
        # 3 x^2 - h^2, -1e-40 for 3e-200, and a right backward 'did not match'
        unresolved = _tiny_inputs(p, name, f"{_TRUNCATED} {advice_for(p, name)}")
    return atol, rtol, _tiny_inputs(p, name, unresolved), noise


FINER_COMPLEX = 1e-30  # the complex step read again at this fraction of itself
TRUNCATED_READ = 64  # failing coordinates read again so, at most


def _complex_truncated(p: Prepared, name: str, grad: np.ndarray, failing: np.ndarray,
                       atol: float, rtol: float) -> bool:  # fmt: skip
    """Whether the complex step's readings of the ``failing`` flat indices move when its step
    shrinks by FINER_COMPLEX: its truncation, (h / scale)^2, hides the gradient (x**3 at
    |x| = 1e-100); a layer varying on a scale of 1 at tiny inputs (tanh at 1e-30) reads the
    same, and its failures stand (outside test t39a F3)."""
    if not failing.size:
        return False
    engine = p.engines[name]
    idx = failing[:TRUNCATED_READ]
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    p.spent += kinks.moves_seconds(engine, name, idx, p.opts.coloring, 1)
    finer = Engine(engine.layer, p.spec.tensors, p.spec.options, p.spec.grad_output,
                   method="complex", eps=engine.eps * FINER_COMPLEX)  # fmt: skip
    again = finer.gradient(name, coloring=p.opts.coloring, coords=idx)[0].ravel()[idx]
    n = grad.ravel()[idx]
    with np.errstate(invalid="ignore", over="ignore"):
        return bool(np.any(~(np.abs(again - n) <= atol + rtol * np.abs(again))))


_TRUNCATED = "the complex step's own truncation may hide it here;"


UNMOVED_READ = 256  # coordinates _unmoved differences again, at most


def _unmoved(p: Prepared, name: str, grad: np.ndarray, info: TensorNumerics,
             scale: float) -> np.ndarray | None:  # fmt: skip
    """Each element's round-off over the outputs of its declared footprint that its step
    leaves where they are, for a tensor the incremental path read (whole losses, whose
    round-off says nothing of which outputs moved), or None (no footprint). Where the whole
    footprint's would swallow ``scale`` (UNMOVED_READ at most, the largest first, within
    --budget), the outputs that moved are read by whole passes and theirs taken away: a
    layernorm's dx beside a feature of 1e6 moves every output of its row, and reads it."""
    engine = p.engines[name]
    full = engine.footprint_reach(name)
    if full is None:
        return None
    flat = full.ravel()
    idx = np.flatnonzero(flat * SWALLOWED > scale) if scale > 0 else np.zeros(0, np.int64)
    idx = idx[np.argsort(-flat[idx], kind="stable")[:UNMOVED_READ]]
    from gradcli.numeric import cost  # LAZY: see ARCHITECTURE.md, "Start-up"

    if not idx.size or cost.copies_seconds(engine, 2 * idx.size, real=True) > p.left():
        return full
    left, done = engine.unmoved_reach(name, idx, full)
    p.spent += cost.copies_seconds(engine, 2 * done, real=True)
    out = flat.copy()
    out[idx] = left
    return out.reshape(full.shape)


def complex_ok(p: Prepared, name: str) -> bool:
    """Whether the complex step may be advised: not for a forward computing in float32 or
    float16 (its casts drop the imaginary part, and it is refused)."""
    return p.engines[name].unit <= EPS


def within_terms(p: Prepared, name: str, grad: np.ndarray) -> str:
    """Why a user's tensor failing under the complex step is not judged ("" when it is): both
    sides lie within the rounding of the forward's terms, about eps of sum |g y|, as a
    gradient that cancels to 0 does (a layer norm of yours under an upstream gradient of
    ones): the complex step reads that rounding, and a right answer of exactly 0 failed
    against 5.6e-17 (outside test t35a F8, F9). A built-in's terms are known (_natural)."""
    if (p.opts.method != "complex" or p.engines[name].unit > EPS or p.opts.atol is not None
            or _ours(p)):
        return ""  # fmt: skip
    from gradcli.numeric.refine import all_rounding  # LAZY: see ARCHITECTURE.md, "Start-up"

    terms = all_rounding(p.engines[name])
    both = max(largest(grad), largest(np.asarray(p.under_test[name], dtype=np.float64)))
    if not 0 < both <= ROUNDED_TERMS * terms:
        return ""
    return (f"its values (at most {both:.2g}) lie within the round-off of the forward's terms "
            f"(about {terms:.2g}): a gradient that cancels to 0 (an upstream gradient of ones "
            f"through a normalization or a softmax) is not told from its rounding; check it "
            f"under another grad_output")


def advice_for(p: Prepared, name: str) -> str:
    """What may help resolve ``name`` (soundness.advice): no complex step for a forward
    computing in a lower precision."""
    return advice(p.opts.method, complex_ok(p, name))


def float64_work(p: Prepared, name: str) -> bool:
    """Whether ``name``'s differences are float64 work: a forward no coarser rounding was
    read in, a float32 spec's too (its reference is the forward on float64 copies: a
    sign-flipped dW of 7.5e-6 within its stencil's own round-off passed there only, outside
    test t35a F3). The rules that read an element's own round-off hold only there; a forward
    computing in float32 rounds every small element, as its tolerances allow."""
    return p.engines[name].unit <= EPS


def tiny_inputs(p: Prepared, name: str) -> bool:
    """Whether every input of ``name`` lies a thousand times below the step at |x| <= 1."""
    engine = p.engines[name]
    return name in engine.t64 and below_step(engine.t64[name], engine.eps) > 0


def _tiny_inputs(p: Prepared, name: str, why: str) -> str:
    """``why`` with its advice turned where every input of ``name`` lies far below the step
    (eps x max(1, |x|)): tanh(1e12 x) at |x| = 1e-12 varies on a scale a millionth of the
    step, and 'a larger --eps' was the wrong way (a smaller one passed)."""
    if not why or (p.opts.method == "complex" and _TRUNCATED not in why) or not tiny_inputs(
            p, name):
        return why
    top = float(np.abs(p.engines[name].t64[name])[np.isfinite(p.engines[name].t64[name])].max())
    h = float(steps(np.zeros(1), p.engines[name].eps)[0])  # the step at |x| <= 1
    said = advice_for(p, name)
    turned = (f"every |{name}| is far below the step ({top:.2g} against {h:.2g}, eps x "
              f"max(1, |x|)), where a layer of that scale may vary: use a smaller "
              f"{mention('eps')}" + (f", or {mention('method', 'complex')}"
                                      if complex_ok(p, name) and p.opts.method != "complex"
                                      else ""))  # fmt: skip
    return why.replace(said, turned) if said in why else why


def _natural(p: Prepared, name: str, info: TensorNumerics | None = None) -> float:
    """The size of ``name``'s gradient where its upstream gradient's terms do not cancel
    (checking/lastbit.natural_scale), from the built-in backward only (a user's, wrong, could
    make it anything), else from the differences themselves under upstream gradients of
    random signs (``info.natural``: a softmax of your own under ones, whose dx of 0 in theory
    reads 2e-11 beside terms of 0.5); 0 where there is none."""
    each = _natural_each(p, name)
    if each is None and info is not None and info.natural is not None:
        each = np.where(np.isfinite(info.natural), info.natural, 0.0)
    return 0.0 if each is None else float(each.max(initial=0.0))


def _natural_each(p: Prepared, name: str) -> np.ndarray | None:
    """``_natural`` element by element (lastbit.natural_terms), or None."""
    if p.natural is None:
        p.natural = lastbit.natural_terms(p.spec, tuple(p.under_test)) if _ours(p) else {}
    return p.natural.get(name)


def _ours(p: Prepared) -> bool:
    """Whether the built-in backward computes what is under test: the built-in layer, a
    network of them, a user's implementation of one whose forward agrees with ours."""
    return (p.spec.layer is REGISTRY.get(p.spec.layer.name) or p.spec.layer.builtins_only
            or (p.forward is not None and p.forward.result.passed))  # fmt: skip


def _last_bits(p: Prepared, name: str, grad: np.ndarray, atol: float, rtol: float,
               noise: np.ndarray | None) -> np.ndarray | None:  # fmt: skip
    """``noise`` raised, where an element fails without it, to the round-off the built-in
    backward cannot avoid (checking/lastbit.py): worked out once, at the first such failure;
    and to 64 eps of the size of the gradient's terms (_natural): where they cancel, both
    sides round at that size (a softmax under an upstream gradient of ones, 0 in theory: the
    complex step read 6e-17 where the backward gave -6e-17, beside terms of 0.1)."""
    a = np.asarray(p.under_test[name], dtype=np.float64)
    floor = atol if noise is None else np.maximum(atol, noise)
    with np.errstate(invalid="ignore", over="ignore"):
        failing = np.abs(a - grad) > floor + rtol * np.abs(grad)
    if not failing.any():
        return noise
    own = _own_floor(p, name, a.shape)
    if own is None:
        return noise
    if not _ours(p) and p.opts.grads is None:
        _rounded_note(p, name, failing & (np.abs(a - grad) <= np.maximum(floor, own)
                                          + rtol * np.abs(grad)), own)  # fmt: skip
    return own if noise is None else np.maximum(noise, own)


def _own_terms(p: Prepared, name: str, info: TensorNumerics, grad: np.ndarray, own: float,
               unit: float) -> bool:  # fmt: skip
    """Whether the answer for ``name`` is a gradient of its own, no round-off of the other
    gradients': the differences read exactly 0 (no step moved an output), and the answer is
    beyond 64 units of the upstream gradient, the loss's own units (outside test t50b F1: x
    of 1e16 puts z = W x + b at 1e16, a step of b moves none of them, and db = 2 dout passed
    under 64 eps of dW's 5e16, an atol of 750, where db alone could not be resolved). A
    saturated attention's dW_Q of 1e-143, read as 0 beside dX of 1e4, stays round-off."""
    if own == 0 or np.any(grad != 0):
        return False
    upstream = float(np.max(np.abs(p.engines[name].g), initial=0.0))
    return own > 64 * unit * upstream and bool(np.max(reach_of(info, grad.shape),
                                                       initial=0.0) > own)  # fmt: skip


def _reads_beyond(p: Prepared, name: str, grad: np.ndarray) -> bool:
    """Whether the differences of ``name`` read a gradient well beyond their own round-off,
    measured (Engine.coordinate_noise) at its MEASURED largest elements: the round-off modelled
    where footprints are unknown counts every output, and out = [1e15 a, c] read dc = 1
    against a modelled 300, so dc = -3 passed as round-off beside da (outside test t29b F1).
    A share lost in an output's rounding only makes a difference read less, never more."""
    n = np.abs(grad.ravel())
    top = np.argsort(np.where(np.isfinite(n), n, 0.0))[::-1][:MEASURED]
    top = top[n[top] > 0]
    if not top.size:
        return False
    if p.opts.method == "complex":
        # the complex step subtracts nothing: what it reads is its gradient (its rounding at
        # the size of its terms, a structural 0 read as 1e-17, is no noise a probe tells
        # apart: reading it again under a moved upstream gradient moves it as a gradient)
        return True
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    engine = p.engines[name]
    measured = engine.coordinate_noise(name, top, p.opts.coloring)
    p.spent += kinks.moves_seconds(engine, name, top, p.opts.coloring, 16)
    return bool(np.any(n[top] > SWALLOWED * measured))


def _failing(p: Prepared, name: str, grad: np.ndarray, atol: float, rtol: float,
             noise: np.ndarray | None) -> tuple[np.ndarray, ...]:  # fmt: skip
    """(the answer, the numerical gradient and each element's round-off, flat, and the flat
    indices failing under ``atol``, ``rtol`` and that round-off)."""
    a = np.asarray(p.under_test[name], dtype=np.float64).ravel()
    n = grad.ravel()
    each = np.zeros(n.size) if noise is None else np.broadcast_to(noise, grad.shape).ravel()
    with np.errstate(invalid="ignore", over="ignore"):
        over = np.abs(a - n) - (np.maximum(atol, each) + rtol * np.abs(n))
    return a, n, each, np.flatnonzero(np.isfinite(over) & (over > 0))


def _measured_failing(p: Prepared, name: str, grad: np.ndarray, atol: float, rtol: float,
                      noise: np.ndarray | None) -> np.ndarray | None:  # fmt: skip
    """``noise`` raised, at the elements that fail without it (FAILING_MEASURED at most, else
    none: the rest would fail whatever is measured), to the round-off measured along their own
    lines (what a cubic leaves of the loss, the least over three small steps: a rounding stays,
    a curvature shrinks), for a forward of the user's: its formula may round at numbers far
    larger than its outputs, which the model (a few eps of each output) never sees. A one-pass
    variance, mean(x^2) - mean(x)^2 at x = 1e4, rounds at 1e8: its exact backward failed, 3e-7
    off where the model said 1e-15 (outside test t30a F1). A wrong gradient's error is no
    rounding of the forward's."""
    engine = p.engines[name]
    if engine.layer.broadcasts or p.opts.method == "complex" or name not in engine.t64:
        return noise
    a, n, each, failing = _failing(p, name, grad, atol, rtol, noise)
    if not failing.size or failing.size > FAILING_MEASURED:  # more: the verdict stands
        return noise
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"
    from gradcli.numeric.engine import NOISE_OFFSETS

    idx = failing
    cost = 3 * kinks.moves_seconds(engine, name, idx, p.opts.coloring, len(NOISE_OFFSETS))
    if cost > p.left():  # the budget has no room for it: the failures stand, as computed
        return noise
    h = steps(engine.t64[name].ravel()[idx], engine.eps)
    # a rounding of L is as large at any step that moves its terms, a curvature's residual
    # shrinks as the step's fourth power: the least over steps of 2^-8 and 2^-16 of the
    # default and 2^10 of x's last bits (tanh(1e4 x) is curved over central4's 7e-4 and its
    # half, and a 1% slip passed as its 'round-off')
    p.spent += cost
    sigma = _line_rounding(p, name, idx, (lambda x, h: h / 2**8, lambda x, h: h / 2**16,
                                          lambda x, h: steps(x, 2.0**10 * EPS)), np.minimum)
    measured = 4 * np.where(np.isfinite(sigma), sigma, 0.0) * engine.method.spread / h
    out = each.copy()
    out[idx] = np.maximum(out[idx], measured)
    return out.reshape(grad.shape)


def _line_rounding(p: Prepared, name: str, idx: np.ndarray,
                   steps_at: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...],
                   pick: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """The round-off of L along each coordinate of ``idx``'s own line (what a cubic leaves at
    moves off the step grid), read at each of ``steps_at`` (x, the default step -> a step) and
    combined by ``pick`` (np.minimum, np.maximum); inf where no line moved. Its cost is
    counted by the caller."""
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"
    from gradcli.numeric.engine import NOISE_OFFSETS
    from gradcli.numeric.methods import offgrid_noise

    engine = p.engines[name]
    t = np.array(NOISE_OFFSETS)
    x = engine.t64[name].ravel()[idx]
    h = steps(x, engine.eps)
    sigma = None
    for at in steps_at:
        D = kinks.moves(engine, name, idx, at(x, h), NOISE_OFFSETS, p.opts.coloring)[0]
        # (a line that never moves says nothing of the rounding)
        read = np.where(np.any(D != 0, axis=0), offgrid_noise(t, D), np.inf)
        sigma = read if sigma is None else pick(sigma, read)
    return sigma if sigma is not None else np.full(idx.size, np.inf)


def _measured_passing(p: Prepared, name: str, grad: np.ndarray, atol: float, rtol: float,
                      noise: np.ndarray | None) -> np.ndarray | None:  # fmt: skip
    """``noise`` lowered to the round-off measured along their own lines, at the elements that
    pass only under it where it is a share of them that matters (a 1024th and more;
    FAILING_MEASURED at most, those it lets furthest off first): the model counts a few eps
    of every output moved, and an mse of 1.7e7 (one prediction of 1e4) was allowed 8% at a
    slope of 0.067, where its rounding reads 0.7%: a 10% slip passed (outside test t32b F1),
    and a linear's dW beside a feature of 1e8 was allowed 1.3% under central4 (t33b F2).
    Measured at 1/16 and 1/256 of the default step (the larger reading where both lines
    moved), times 2 for the extrapolation of smaller steps; never raised. A forward computing
    in float32 too: its model counts a float32 unit of every output, and a tanh(x W) in
    float32 allowed its dW 10% under forward differences, read to 0.1% (outside test t37b
    F3); its lines see its input's rounding as well."""
    engine = p.engines[name]
    # (a built-in layer's too: the model is an upper bound for it as well)
    if noise is None or p.opts.method == "complex" or name not in engine.t64:
        return noise
    a, n, each, _ = _failing(p, name, grad, atol, rtol, noise)
    base = atol + rtol * np.abs(n)
    with np.errstate(invalid="ignore", over="ignore"):
        off = np.abs(a - n)
        only = (off > base) & (off <= each + rtol * np.abs(n)) & (1024 * each >= np.abs(n))
    idx = np.flatnonzero(only)
    if not idx.size:
        return noise
    idx = idx[np.argsort(-(off[idx] / np.abs(n[idx])), kind="stable")[:FAILING_MEASURED]]
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"
    from gradcli.numeric.engine import NOISE_OFFSETS

    cost = 2 * kinks.moves_seconds(engine, name, idx, p.opts.coloring, len(NOISE_OFFSETS))
    if cost > p.left():  # no room: the model's round-off stands
        return noise
    p.spent += cost
    # (the larger of what two steps read, where their lines moved: at a loss of 1.7e7 a
    # step of 2^-16 of the default one moves it by less than its last bit)
    sigma = _line_rounding(p, name, idx, (lambda x, h: h / 2**4, lambda x, h: h / 2**8),
                           lambda u, v: np.where(np.isfinite(u) & np.isfinite(v),
                                                 np.maximum(u, v), np.minimum(u, v)))
    h = steps(engine.t64[name].ravel()[idx], engine.eps)
    measured = 2 * 4 * sigma * engine.method.spread / h
    # (the answer's own rounding stays: float32 code's ulps, the backward's last bits)
    measured = np.maximum(measured, _answer_rounding(p, name, grad.shape, idx))
    out = each.copy()
    out[idx] = np.where(np.isfinite(measured), np.minimum(out[idx], measured), out[idx])
    return out.reshape(grad.shape)


def _answer_rounding(p: Prepared, name: str, shape: tuple[int, ...], idx: np.ndarray,
                     backward: bool = True) -> np.ndarray:  # fmt: skip
    """The answer's own rounding at the flat elements ``idx``: float32's ulps (its round-off
    allowance, each element's and the part every one gets) and, with ``backward``, its
    backward's last bits (_own_floor: runs of the backward, worked out once)."""
    _, f32, shared = _float32(p, name)
    floor = np.zeros(idx.size)
    for own in ((_own_floor(p, name, shape),) if backward else ()) + (f32, shared):
        if own is not None:
            floor = np.maximum(floor, np.broadcast_to(own, shape).ravel()[idx])
    return floor


def _own_size(p: Prepared, name: str, grad: np.ndarray, info: TensorNumerics, base: float,
              atol: float, rtol: float,
              noise: np.ndarray | None) -> tuple[float, np.ndarray | None, str]:  # fmt: skip
    """(atol, each element's floor, why the step cannot resolve some elements or ""): where
    ``atol``, raised above the method's ``base`` to 64 eps of the gradient's largest entry
    (soundness.resolvable), is what passes some elements, each of those is held to its own
    floor instead: its backward's round-off and 64 eps of its terms (_own_floor), and the
    round-off of its differences over every output it may move (noise_reach; measured, as
    _small does, for MEASURED of them), never above ``atol``. One exp'(30) = 1e13 raised the
    atol to 0.03 and passed its neighbours, of about 1, 0.5% off; a linear's dW beside a
    feature of 1.7e15, 2% off (outside tests t26 F11, t28 R3). An element whose outputs'
    round-off reaches half its own size (that dW: a step of W moves an output of 1e15 by less
    than its last bit) is not judged: the step cannot resolve it. Where no element's
    floor is known (answers from a file, a backward too large to round), ``atol`` stays."""
    if atol <= base:
        return atol, noise, ""
    a, n, each, newly = _failing(p, name, grad, base, rtol, noise)
    if not newly.size:
        return atol, noise, ""
    own = _own_floor(p, name, grad.shape)
    if own is None:
        return atol, noise, ""
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    engine = p.engines[name]
    if info.noise_reach is not None:
        reach = np.asarray(info.noise_reach).ravel()[newly]
    else:  # footprints unknown: the outputs each can move, read for REACHED of them
        reach = np.full(newly.size, info.noise)
        reach[:REACHED] = engine.reach_at(name, newly[:REACHED])
        p.spent += kinks.moves_seconds(engine, name, newly[:REACHED], False, 4)
    measured = engine.coordinate_noise(name, newly[:MEASURED], p.opts.coloring)
    p.spent += kinks.moves_seconds(engine, name, newly[:MEASURED], p.opts.coloring, 16)
    # (not finite: a line that never moves over 8 steps, which the reach counts, or squares
    # beyond float64's range, exp at 600: nothing measured)
    reach[:MEASURED] = np.maximum(reach[:MEASURED], np.where(np.isfinite(measured), measured,
                                                             0.0))  # fmt: skip
    floor = np.maximum(each, own.ravel())
    floor[newly] = np.minimum(np.maximum(floor[newly], reach), atol)
    # no digit of it readable: it may be anything (elements of e^600 beside one of e^640 keep
    # a digit or so, and pass at their floor)
    hidden = 2 * reach > np.maximum(np.abs(a[newly]), np.abs(n[newly]))
    why = ""
    if hidden.any():
        k = int(hidden.sum())
        size = np.abs(a[newly[hidden]]).max()
        why = (f"{k} of its elements (of sizes up to {size:.2g}) lie within "
               f"the round-off of their finite differences over the outputs they move (about "
               f"{reach[hidden].max():.2g}: outputs far larger than their share); "
               f"{advice_for(p, name)}")
    return base, floor.reshape(grad.shape), why


def _own_floor(p: Prepared, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """Each element's floor from the backward's own round-off (``p.floors``: worked out once,
    at the first tensor that needs it) and 64 eps of the size of its terms (_natural_each), or
    None where neither is known."""
    if p.floors is None:
        # (the inputs' last bits, through the forward, where the step is exact: the complex
        # step's; real steps' tolerances lie far above them, and their cost is an attention's
        # forward and backward four times more)
        inputs = p.opts.method == "complex"
        p.floors = (lastbit.backward_floor(p.spec, tuple(p.under_test), inputs) if _ours(p)
                    else {} if p.opts.grads is not None  # answers: no formula of theirs to run
                    else lastbit.rounded_floor(p.spec, p.under_test, p.opts.max_memory))
    own = p.floors.get(name)
    natural = _natural_each(p, name)
    terms = None if natural is None or natural.shape != shape else 64 * EPS * natural
    if own is None or own.shape != shape:
        return terms if terms is not None and terms.any() else None
    return own if terms is None else np.maximum(own, terms)


def _rounded_note(p: Prepared, name: str, rescued: np.ndarray, own: np.ndarray) -> None:
    """A note, once per gradient, where the user's backward's own round-off (measured by
    lastbit.rounded_floor) is what lets elements pass: their float64 values are that far off,
    which a user asking for accurate gradients should know (a formula adding and taking away
    1e20 passes its rounding, and says so)."""
    mark = f"d{name}: at "
    if not rescued.any() or any(n.startswith(mark) and "own round-off" in n for n in p.notes):
        return
    k = int(rescued.sum())
    p.note(f"{mark}{k:,} element{'s' if k > 1 else ''} only your backward's own round-off "
           f"explains the difference: rounding each of its operations by float64's last bits "
           f"moves {'it' if k == 1 else 'them'} by up to {float(own[rescued].max()):.2g}, more "
           "than the difference; its formula cannot hold them in float64 (1 - y at y = 1.0 "
           "reads 0 for a slope of 1e-16), so they pass at that")


# the moves, in steps, of invariant: from 1 to 4096 steps each way
FLAT_MOVES = (1, -1, 3, -3, 16, -16, 256, -256, 4096, -4096)


def invariant(p: Prepared, name: str, grad: np.ndarray, coloring: bool | None = None) -> bool:
    """Whether the loss stays exactly where it is when any compared coordinate of ``name``
    moves by 1 to 4096 steps either way (FLAT_MOVES): then its slope is below 1/4096 of what
    the step's round-off hides, not merely below the differences' last bit (a bias beside
    W x = 1.8e308 moves nothing at 4096 steps either: that round-off is 1e300). Identical
    weight rows before an svm leave every margin where it was (dx exactly 0, read exactly 0,
    and a correct layer 'could not be resolved');
    a confident classifier's loss, which the default step moves by less than its last bit,
    moves further out. Once per tensor (and path: ``coloring``, default the check's), counted
    against --budget."""
    coloring = p.opts.coloring if coloring is None else coloring
    key = name if coloring == p.opts.coloring else f"{name}\0plain"
    if key not in p.flat:
        idx = np.flatnonzero(np.isfinite(grad.ravel()))
        p.flat[key] = bool(idx.size) and _stays(p, name, idx, FLAT_MOVES, coloring)
    return p.flat[key]


def _stays(p: Prepared, name: str, idx: np.ndarray, moves: tuple[float, ...],
           coloring: bool) -> bool:  # fmt: skip
    """Whether the loss stays exactly where it is when each coordinate of ``idx`` moves by each
    of ``moves`` steps, on the path ``coloring`` (counted against --budget)."""
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    engine = p.engines[name]
    h = steps(engine.t64[name].ravel()[idx], engine.eps)
    p.spent += kinks.moves_seconds(engine, name, idx, coloring, len(moves))
    return bool(np.all(kinks.moves(engine, name, idx, h, moves, coloring)[0] == 0))


MEASURED = 16  # coordinates whose round-off _small measures (16 moves each), per tensor
FAILING_MEASURED = 64  # failing elements of a user's forward whose round-off is measured
REACHED = 1024  # coordinates whose outputs' reach _own_size reads (one move each), per tensor
AT_ROUNDOFF = 256  # coordinates whose round-off _measured_within measures, at most


def reach_of(info: TensorNumerics, shape: tuple[int, ...]) -> np.ndarray:
    """Each element's round-off over every output it may move (info.noise_reach); where
    footprints are unknown, the tensor's, over every output (Engine.reach_noise)."""
    reach = info.noise if info.noise_reach is None else info.noise_reach
    return np.broadcast_to(np.asarray(reach, dtype=np.float64), shape)


def _measured_resolves(p: Prepared, name: str, grad: np.ndarray, info: TensorNumerics,
                       margin: float) -> bool:  # fmt: skip
    """Whether the round-off of the differences, measured along each line (Engine.
    coordinate_noise) where the model's would leave the tensor unresolved (AT_ROUNDOFF such
    coordinates at most), stays ``margin`` below the largest gradient, with the share the
    outputs a coordinate leaves unmoved may hide (noise_reach beyond noise_at, at half a last
    bit each). The model counts a few eps of every output moved: a linear's db beside outputs
    of 1.3e6 moves them by its step exactly, their sum rounding at 2e-5 where the model said
    0.0035, and forward differences 'could not resolve' a db of 1 (outside test t36a F3).
    Float64 work, real steps, inputs not far below the step, every line moving."""
    at = info.noise_at
    scale = largest(grad, info.kink_slopes)
    if (at is None or scale == 0 or p.opts.method == "complex" or not float64_work(p, name)
            or tiny_inputs(p, name) or name not in p.engines[name].t64):
        return False
    flat = np.asarray(at, dtype=np.float64).ravel()
    reach = reach_of(info, np.shape(at)).ravel()
    idx = np.flatnonzero((np.maximum(flat, reach) * margin > scale) & compared(flat.size, None))
    if not idx.size or idx.size > AT_ROUNDOFF:
        return False
    engine = p.engines[name]
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    p.spent += kinks.moves_seconds(engine, name, idx, p.opts.coloring, 16)
    measured = engine.coordinate_noise(name, idx, p.opts.coloring)
    if not np.all(np.isfinite(measured)):  # a line that never moved: nothing read
        return False
    hidden = engine.unmoved_share(reach[idx], flat[idx])
    return bool(np.all((measured + hidden) * margin <= scale))


def _measured_within(p: Prepared, name: str, grad: np.ndarray, info: TensorNumerics,
                     atol: float) -> bool:  # fmt: skip
    """Whether the round-off of the differences, measured (Engine.coordinate_noise) at every
    coordinate whose modelled round-off is above ``atol`` (AT_ROUNDOFF of them at most), stays
    a tenth of it (SWALLOWED: both sides are judged at ``atol``, not at their own size), the
    outputs a coordinate moves included (noise_reach: a share lost in an output's last bit is
    no noise a line shows). The model counts each output's rounding as its own, where
    identical weight rows round every output alike and their weighted sum cancels it: a
    linear's dx with W = ones before a centred upstream gradient, 0 in theory, reads 4e-16
    beside a modelled 1.5e-7 and 'could not be resolved' (t18 R-F8). A line that
    does not move over 8 steps must stay where it is out to 4096 (as invariant asks).
    A coordinate whose difference reads exactly 0 moved no output at the step, so the model
    counts it no round-off; where the outputs it can move carry round-off above ``atol``
    (noise_reach, or info.noise where footprints are unknown: Engine.reach_noise), its line
    must stay where it is out to 4096 steps too, on the path its difference took: outputs
    [1e3 tanh(x), 1e12 + w] read dw exactly 0 at the step, the right dw 'could not be
    resolved' while dw = 0 passed, and w's lines move at 4096 steps (t26 F3)."""
    at = info.noise_at
    if at is None:
        return False
    chosen = np.asarray(at).ravel() > atol
    reach = reach_of(info, np.shape(at)).ravel()
    if grad.size == chosen.size and not _zeros_flat(
            p, name, info, atol, np.flatnonzero((grad.ravel() == 0) & ~chosen & (reach > atol))):
        return False
    idx = np.flatnonzero(chosen)
    if idx.size > AT_ROUNDOFF:
        return False
    engine = p.engines[name]
    if idx.size:
        from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

        p.spent += kinks.moves_seconds(engine, name, idx, p.opts.coloring, 16)
        measured = engine.coordinate_noise(name, idx, p.opts.coloring)
        still = idx[~np.isfinite(measured)]
        if still.size:  # lines that never move over 8 steps: flat out to 4096 (invariant)
            if info.noise / FLAT_MOVES[-2] > atol:
                return False
            h = steps(engine.t64[name].ravel()[still], engine.eps)
            p.spent += kinks.moves_seconds(engine, name, still, p.opts.coloring,
                                           len(FLAT_MOVES))  # fmt: skip
            D = kinks.moves(engine, name, still, h, FLAT_MOVES, p.opts.coloring)[0]
            if np.any(D != 0):
                return False
            measured = np.where(np.isfinite(measured), measured, 0.0)
        if info.noise_reach is not None:
            measured = np.maximum(measured, info.noise_reach.ravel()[idx])
        if measured.max() * SWALLOWED > atol:
            return False
    return True


def _zeros_flat(p: Prepared, name: str, info: TensorNumerics, atol: float,
                idx: np.ndarray) -> bool:  # fmt: skip
    """Whether the loss stays exactly where it is along each coordinate of ``idx`` (which read
    exactly 0) out to 4096 steps either way (FLAT_MOVES), and further where 1/4096 of the
    tensor's round-off is still above ``atol`` (invariant's rule), on the path the differences
    took (whole passes, where the colored or incremental one was left: check.py's retry);
    FLAT_MOST of them at most."""
    if not idx.size:
        return True
    # out to as many steps as put 1/moves of the round-off below atol (a parameter no output
    # reads, beside outputs of 1e8: 4096 steps left its 0 'cannot resolve', outside test t27
    # N13), FARTHEST at most
    far = float(FLAT_MOVES[-2])
    while info.noise / far > atol and far < FARTHEST:
        far *= 16
    # (a parameter no output reads has every coordinate here: 400 of a 20 x 20 mask left its
    # 0 'cannot resolve', outside test t28 R8; 12 copies each, counted)
    if idx.size > FLAT_MOST or info.noise / far > atol:
        return False
    moves = (*FLAT_MOVES, far, -far) if far > FLAT_MOVES[-2] else FLAT_MOVES
    return _stays(p, name, idx, moves, p.opts.coloring and (info.coloring or info.incremental))


FARTHEST = 2.0**20  # steps a zero's line is moved at most (_zeros_flat)
FLAT_MOST = 4096  # coordinates reading exactly 0 that _zeros_flat moves, at most


def _small(
    p: Prepared, name: str, grad: np.ndarray, info: TensorNumerics, noise: np.ndarray | None,
    atol: float, capped: float, rtol: float, scale: float,
) -> tuple[float, np.ndarray, str]:  # fmt: skip
    """(atol, each element's floor, why the step cannot resolve the tensor or "") where the
    table's atol is not far below the gradient it judges. It is a number in the gradient's own
    units: a confident softmax's gradients are all below 1e-8, and at 1e-7 any answer passed,
    zeros included. So it stays ``capped`` (a margin below the tensor's largest value, as its
    round-off must: soundness.resolvable). An element that fails only under the lower atol may
    be round-off the model does not see (an output computed from far larger numbers: the loss of
    1e-8 is log(1 + 1e-8), rounded at the 1): its round-off is measured (Engine.
    coordinate_noise), and it is held to that, never above the old atol. Where what is measured
    reaches a tenth of the gradient, nothing can be judged at this step. ``noise``: each
    element's round-off known so far (its stencil's modelled, its backward's last bits)."""
    a = np.asarray(p.under_test[name], dtype=np.float64).ravel()
    n = grad.ravel()
    base = np.zeros(n.size) if noise is None else np.broadcast_to(noise, grad.shape).ravel()
    with np.errstate(invalid="ignore", over="ignore"):
        err, slack = np.abs(a - n), rtol * np.abs(n)
        newly = np.flatnonzero(np.isfinite(err) & (err > np.maximum(capped, base) + slack)
                               & (err <= np.maximum(atol, base) + slack))  # fmt: skip
    floor = np.full(n.size, capped)
    floor[newly[MEASURED:]] = atol  # beyond what is measured: as before
    why = ""
    if newly.size:
        engine = p.engines[name]
        measured = engine.coordinate_noise(name, newly[:MEASURED], p.opts.coloring)
        if info.noise_reach is not None:  # an output moved by less than its last bit reads 0
            # at every point of the line: its share is lost in its rounding, which no
            # measurement along the line can see (a confident softmax's top output, at 1)
            measured = np.maximum(measured, info.noise_reach.ravel()[newly[:MEASURED]])
        flat = newly[:MEASURED][~np.isfinite(measured)]
        measured = np.minimum(measured, atol)
        floor[newly[:MEASURED]] = np.maximum(measured, capped)
        worst = float(measured.max())
        if flat.size:  # nothing read on their lines: the old atol, and no verdict on the tensor
            why = (f"{flat.size} of its coordinates never move the output over 8 steps (it is "
                   f"rounded at a larger number), so their gradient (up to "
                   f"{np.abs(a[flat]).max():.2g}) is lost in its rounding; "
                   f"{advice_for(p, name)}")
        elif worst * SWALLOWED > scale:
            why = (f"the round-off of its finite differences (about {worst:.2g}, measured) is not "
                   f"far below the largest numerical gradient ({scale:.2g}); "
                   f"{advice_for(p, name)}")
    return capped, np.maximum(floor, base).reshape(grad.shape), why


def _float32(p: Prepared, name: str) -> tuple[float, np.ndarray | None, float]:
    """float32: (the tensor-wide round-off allowance, each element's or None, the part of it
    every element gets); (0, None, 0) in float64."""
    level = p.levels.get(name)
    if level is None:
        return 0.0, None, 0.0
    a = np.abs(np.asarray(p.under_test[name], dtype=np.float64))
    top = float(a[np.isfinite(a)].max(initial=0.0))
    each = level.each(top)
    if each is not None and each.shape != a.shape:
        each = None
    whole = level.atol(top)
    # every element's share: 16 ulps of the largest entry. Not of each element's own terms:
    # another code's float32 rounds otherwise (torch's float32 gelu reads -0.0 where 7e-7 is
    # right, at x = -5.6), and its right answers failed; a float32 answer 5% off at an element
    # of 1 beside one of 1e4 passes under it (outside test t30b F3b, left open)
    return whole, each, whole if each is None else level.floor(top)


def roundoff(p: Prepared, name: str) -> float | None:
    """float32: the round-off ``name``'s gradient is allowed per element (precision.py)."""
    level = p.levels.get(name)
    if level is None:
        return None
    a = np.abs(np.asarray(p.under_test[name], dtype=np.float64))
    return level.atol(float(a[np.isfinite(a)].max(initial=0.0)))


BELOW_READ = 64  # elements passing only under the atol that below_atol rereads, at most
REREADS = (1.0, 4.0, 16.0)  # ... at central's default step divided by these
OFFGRID = (1.0, 0.8281, 0.6921)  # ... and multiplied by these (off the grid of powers of two)
AGREE = 8.0  # two rereads agree: their difference this far below the error they read
SLIP = 1e-4  # of the element: smaller errors below the atol are no bug's (and not reread)


def compared(size: int, coords: np.ndarray | None) -> np.ndarray | bool:
    """Which of ``size`` flat elements were compared: all (True), or those in ``coords``."""
    return True if coords is None else np.isin(np.arange(size), coords)


_NONE = np.zeros(0, dtype=np.int64)


def _our_gradient(p: Prepared, name: str) -> np.ndarray | None:
    """Our analytical gradient of ``name`` (flat) where yours implements a built-in layer whose
    forward agrees with ours, else None: a second reading of elements below the atol, from
    formulas written not to cancel (gelu's 1 + tanh(u) at x = -6.8 reads a slope of 2.9e-15
    at every step where ours, and yours, give -2.3e-13: outside test t44b F5)."""
    engine = p.engines[name]
    builtin = REGISTRY.get(engine.layer.name)
    if (builtin is None or builtin is engine.layer or p.forward is None
            or not p.forward.result.passed or name not in p.spec.tensors):  # fmt: skip
        return None
    try:
        _, cache = builtin.forward(p.spec.tensors, p.spec.options)
        grads = builtin.backward(np.asarray(p.spec.grad_output), cache)
    except Exception:  # noqa: BLE001 (a second opinion only: its absence keeps the first)
        return None
    if name not in grads:
        return None
    return np.asarray(grads[name], dtype=np.float64).ravel()


def _hidden_outputs(p: Prepared, name: str, idx: np.ndarray, a: np.ndarray,
                    fine: np.ndarray) -> np.ndarray:  # fmt: skip
    """Whether each element's gap between the answer ``a`` and the fine reading is within the
    rounding of the outputs its coordinate moves far off (by half its size or half its
    tensor's spread, at least 1) but not at the default step: those depend on it below their
    last bits there, and what it changes in them is lost to every fine step. A softmax of
    logits 10 N(0, 1) holds a logit whose exponential is 1e-19 of its row's sum: no step moves
    the sum, whose share of its gradient no difference reads, and the right backward failed
    (outside test t44b F3). x**4's dx of 4e-9 beside one of 4000 moves its own output only,
    and a sign-flipped one still fails."""
    engine = p.engines[name]
    x = engine.t64[name].ravel()
    h = steps(x[idx], engine.eps)
    # (half the tensor's spread: a logit 56 below its row's maximum needs about that much)
    spread = float(np.ptp(x)) if np.isfinite(x).all() else 0.0
    far = np.maximum(max(1.0, spread / 2), np.abs(x[idx]) / 2)
    from gradcli.numeric import cost  # LAZY: see ARCHITECTURE.md, "Start-up"

    p.spent += cost.copies_seconds(engine, 2 * idx.size, real=True)
    bound = np.zeros(idx.size)
    with np.errstate(all="ignore"):
        for k, j in enumerate(idx):
            rows = np.repeat(x[None, :], 3, axis=0)
            rows[1, j] += h[k]
            rows[2, j] += far[k]
            try:
                d = engine.moved(name, rows)
            except UserCodeError:  # (a forward of yours refusing that far a point: unknown)
                continue
            hidden = ((d[1] != 0) & (d[0] == 0)) | ~np.isfinite(d[1])
            bound[k] = 4 * engine.unit * 2.5 * float(engine.gy[hidden].sum()) / h[k]
        return np.abs(a - fine) <= bound


def _at_a_kink(p: Prepared, name: str, idx: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Whether each of ``idx`` (answers ``a``) sits at a kink its answer takes a side of: its two
    second-order one-sided slopes at central's default step apart beyond their round-off
    (measured along each line), the answer between them. Every central difference there reads
    their mean, at every step alike, so the rereads agreed far from a right answer: torch's
    relu'(0) at a confident row, a gradient of 5e-8 with a kink of 3e-8, was held to 3e-14
    and failed (outside test t57a F1)."""
    from gradcli.numeric import kinks  # LAZY
    from gradcli.numeric.engine import NOISE_OFFSETS
    from gradcli.numeric.methods import METHODS, one_sided

    engine = p.engines[name]
    s = steps(engine.t64[name].ravel()[idx], METHODS["central"].auto_eps)
    sigma = _line_rounding(p, name, idx, ((lambda x, h: h),), np.minimum)
    p.spent += kinks.moves_seconds(engine, name, idx, p.opts.coloring, 8 + len(NOISE_OFFSETS))
    sides = []
    for k in (1, 4):  # a kink's gap stays as the step shrinks; a curvature's shrinks 16-fold
        D = kinks.moves(engine, name, idx, s / k, (1, 2, -1, -2), p.opts.coloring)[0]
        sides.append((one_sided(D[0], D[1], s / k, 1), one_sided(D[2], D[3], s / k, -1)))
    (right, left), (right4, left4) = sides
    gap, gap4 = np.abs(right - left), np.abs(right4 - left4)
    lo, hi = np.minimum(right, left), np.maximum(right, left)
    return ((gap > 16 * 2.5 * sigma / s) & (gap4 > gap / 2) & (gap4 < 2 * gap)
            & (a >= lo - gap / 8) & (a <= hi + gap / 8))


def below_atol(p: Prepared, name: str, grad: np.ndarray, info: TensorNumerics, atol: float,
               rtol: float, noise: np.ndarray | None, coords: np.ndarray | None,
               settled: np.ndarray) -> tuple[float, np.ndarray | None, np.ndarray]:  # fmt: skip
    """(atol, noise, the flat indices held) holding the elements that pass only under ``atol`` (or a
    floor as coarse: _small's) to the answer's own rounding (its backward's last bits, float32's
    ulps) where the step reads them far more finely: their error beyond their stencil's modelled
    round-off, over that rounding and over SLIP of the element, confirmed by two successive central
    differences of REREADS (central's default step, 1/4 and 1/16 of it) that agree with each other
    AGREE times closer than with the answer (a curvature's residual shrinks 16-fold from one to the
    next, so none is left), the answer AGREE times beyond their round-off, measured along each line.
    The atol is a floor for what the step cannot read; where it reads an element to 1e-12 of itself,
    1e-7 is no licence: a layernorm's dx of 1e-8 beside one of 3e-4 passed zeroed (outside test t31b
    F3), and a layer scaled by 1e-10 passed 1.5% slips below 1/1000 of its largest gradient (t29b
    F2, t32b F3). ``settled``: flat indices a kink's sides or the smaller steps decided (a near
    tie's rereads straddle it). A forward read in float64 only (a float32 spec's too: its answers
    keep their float32 round-off); not under --atol."""
    engine = p.engines[name]
    if (p.opts.atol is not None or p.random_forward or p.mode == "probe" or info.noise_at is None
            or name not in engine.t64 or not float64_work(p, name) or tiny_inputs(p, name)):
        return atol, noise, _NONE  # fmt: skip
    a = np.asarray(p.under_test[name], dtype=np.float64).ravel()
    n = grad.ravel()
    # beyond each element's own stencil's round-off (the tensor-wide one is its largest
    # element's, which the rereads' agreement stands in for); the few such elements first,
    # without full-size temporaries beyond two (a check's peak is bounded: --max-memory)
    with np.errstate(invalid="ignore", over="ignore"):
        off = np.abs(a - n)
        idx = np.flatnonzero(off > np.ravel(info.noise_at))
    idx = idx[np.isfinite(a[idx]) & np.isfinite(n[idx])]
    if coords is not None:
        idx = idx[np.isin(idx, coords)]
    idx = idx[~np.isin(idx, settled)]  # (at kinks, or by the smaller steps: decided there)
    if info.noise_reach is not None:
        idx = idx[off[idx] > np.broadcast_to(info.noise_reach, grad.shape).ravel()[idx]]
    each = np.zeros(idx.size) if noise is None else \
        np.broadcast_to(noise, grad.shape).ravel()[idx]
    off, slack = off[idx], np.abs(n[idx])
    # passing, under the atol or as coarse, and a slip of the size bugs make (a forward
    # rounding at 1000, x - mean, reads layernorm's dx 1e-8 off: the rereads would only
    # measure it, at hundreds of calls)
    keep = (off <= np.maximum(atol, each) + rtol * slack) & (off > SLIP * slack)
    idx, off = idx[keep], off[keep]
    # beyond a float32 answer's own rounding, known already (the backward's last bits, below,
    # take runs of it)
    keep = off > _answer_rounding(p, name, grad.shape, idx, backward=False) \
        + rtol * np.abs(n[idx])
    idx, off = idx[keep], off[keep]
    if not idx.size:
        return atol, noise, _NONE
    with np.errstate(divide="ignore", invalid="ignore"):
        worst = np.argsort(-(off / np.abs(n[idx])), kind="stable")[:BELOW_READ]
    idx, off = idx[worst], off[worst]
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"
    from gradcli.numeric.engine import NOISE_OFFSETS
    from gradcli.numeric.methods import METHODS

    points = 2 * len(REREADS) + 3 * len(NOISE_OFFSETS)
    cost = kinks.moves_seconds(engine, name, idx, p.opts.coloring, points)
    if cost > p.left():  # no room: the atol stands
        return atol, noise, _NONE
    p.spent += cost
    h = steps(engine.t64[name].ravel()[idx], METHODS["central"].auto_eps)
    xi = engine.t64[name].ravel()[idx]
    # (steps off the power-of-two grid, each divided by the points' own distance: a forward
    # rounding in a staircase aligned with that grid reads the same biased slope at h, h/4
    # and h/16: gelu's 1 + tanh(u) at x = -6 read -4.33579e-10 at all three, 1.2e-3 off, and
    # a right backward was held to it; off the grid the readings scatter and do not agree)
    reads = [(lambda D, s: (D[0] - D[1]) / ((xi + s) - (xi - s)))(
        kinks.moves(engine, name, idx, h / k * f, (1, -1), p.opts.coloring)[0], h / k * f)
        for k, f in zip(REREADS, OFFGRID, strict=True)]  # fmt: skip
    # the rereads' own round-off, measured along each line off the step grid: a loss rounded
    # at its log-sum-exp of 15 reads a confident class's 1.1e-8 7e-5 off, the same at both
    # steps on the grid (and torch's float32 answer right there failed)
    # (the least over that step and two far smaller: a rounding stays, a curvature's residual
    # shrinks as the step's fourth power; 1 - cos(1e4 p) is curved over 8 of those steps, read
    # as a rounding of 1e-16 for one of 1e-24, and its sign-flipped 2.5e-10 passed: t37b F2)
    sigma = _line_rounding(p, name, idx, tuple((lambda x, _, k=k: h / REREADS[1] / k)
                                               for k in (1, 2**6, 2**12)), np.minimum)
    ai = a[idx]
    wrong = np.zeros(idx.size, dtype=bool)
    d = [np.abs(ai - r) for r in reads]
    with np.errstate(invalid="ignore", over="ignore"):
        # two successive reads that agree, each far from the answer and beyond its round-off
        # (at the default step too: a log-sum-exp rounded at 17 reads its 4.1e-8 to 0.1%
        # there and worse at smaller steps: its sign-flipped element passed, t35a F5)
        for j in range(len(REREADS) - 1):
            u, v = 4 * sigma * REREADS[j] / h, 4 * sigma * REREADS[j + 1] / h
            wrong |= ((d[j] > AGREE * u) & (d[j + 1] > AGREE * v)
                      & (AGREE * np.abs(reads[j] - reads[j + 1]) <= np.minimum(d[j], d[j + 1]))
                      & (reads[j] != 0) & (reads[j + 1] != 0)
                      & (np.minimum(d[j], d[j + 1]) >= off / 2))  # fmt: skip
    if not wrong.any():
        return atol, noise, _NONE
    # (the pair's nearer reading stands for the slope)
    d1 = np.min(np.stack(d), axis=0)[wrong]
    r1 = np.stack(reads)[np.argmin(np.stack(d), axis=0), np.arange(idx.size)][wrong]
    idx = idx[wrong]
    # and beyond the answer's own rounding (not ``noise``: it may hold the atol itself, _small)
    floor = _answer_rounding(p, name, grad.shape, idx)
    wrong = (d1 > floor + rtol * np.abs(r1)) & ~_hidden_outputs(p, name, idx, a[idx], r1)
    ours = _our_gradient(p, name)
    if ours is not None:  # where our backward does not confirm the reading, it is no finer
        wrong &= np.abs(ours[idx] - r1) * AGREE <= d1
    if wrong.any():
        at = idx[wrong]
        wrong[wrong] = ~_at_a_kink(p, name, at, a[at])
    if not wrong.any():
        return atol, noise, _NONE
    held = idx[wrong]
    out = np.full(grad.shape, atol) if noise is None else \
        np.maximum(np.broadcast_to(noise, grad.shape), atol)
    out.flat[held] = floor[wrong]
    k = held.size
    p.note(f"d{name}: {k:,} element{'s' * (k > 1)} smaller than the atol ({atol:.2g}) "
           f"{'are' if k > 1 else 'is'} read far more finely than that (two steps agree): "
           f"held to {'their' if k > 1 else 'its'} own round-off, not to the atol")
    return 0.0, out, held
