"""The backward's contract, checked beside the gradients' values (torch's gradcheck checks the
same): a zero upstream gradient gives zero gradients, calls on the same input agree, the
backward is linear in grad_output, and every array comes back in the spec's dtype. It costs one
forward and five backward calls; a broken contract is a finding (a result), not an exception.

The fifth contract, that no function writes into the arrays it is given, is enforced instead:
gradcli hands out read-only arrays, and a write is an input error naming the function and the
array (gradcli/user/readonly.py), since a forward that overwrites its input cannot be differenced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcli.checking import written
from gradcli.layers import REGISTRY
from gradcli.records import record

if TYPE_CHECKING:  # the checker imports this module
    from gradcli.inputs.spec import Spec

EPS32 = float(np.finfo(np.float32).eps)
CONTRACTS = ("zero_upstream", "determinism", "linearity", "dtype", "no_writes")


@record
class Finding:
    """One contract for one gradient (``tensor``: its name, NAME for dNAME; the output's name
    for the forward's dtype; None for no_writes, which covers every array)."""

    name: str
    tensor: str | None
    passed: bool
    detail: str
    error: float | None = None  # the largest deviation measured (None: not finite)
    tolerance: float | None = None  # what it was held to

    def __post_init__(self) -> None:
        # a non-finite deviation (a NaN where the other call has none) is null in JSON
        for name in ("error", "tolerance"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                object.__setattr__(self, name, None)


def roundoff_tolerance(eps: float, scale: float, size: int) -> float:
    """What floating point alone may move a correct backward's result by: ``eps`` of the dtype
    it computed in, times the largest entry of any gradient it returns, times 256 (measured
    on every built-in layer up to 2**17-element upstream gradients: at most 13), growing as
    the square root of the upstream size for long reductions."""
    return eps * scale * max(256.0, 4.0 * math.sqrt(size))


def lower_precision(spec_dtype: str, a: np.ndarray) -> bool:
    """Whether ``a`` is floating point of less precision than the spec's dtype (a float32
    gradient under a float64 spec): it is then held to its own dtype's tolerances."""
    a = np.asarray(a)
    return a.dtype.kind == "f" and np.finfo(a.dtype).eps > np.finfo(spec_dtype).eps


def float32_valued(spec_dtype: str, a: Any) -> bool:
    """Whether ``a``, a float64 gradient under a float64 spec, holds only float32 numbers
    (torch's float32 results returned as .double(), numpy code computing in float32 and
    casting back): computed in float32, as a float32 array is. Numbers float16 holds too (0,
    1, counts, halves) are on every grid and say nothing of the precision, nor do multiples of
    2^-8 of any size (_few_bits)."""
    a = np.asarray(a)
    if spec_dtype != "float64" or a.dtype != np.float64:
        return False
    v = a[np.isfinite(a)]
    return (bool(v.size) and _on_grid(v, np.float32) and not _on_grid(v, np.float16)
            and not _few_bits(v))  # fmt: skip


def _few_bits(v: np.ndarray) -> bool:
    """Whether every number of ``v`` is a multiple of 2^-8: whole numbers and a few binary
    places, which any float64 code gives at such inputs (x = [1e6, 1, 2, 3] under 0.5 x^2: dx
    = x, read as float32 work, and a doubled element passed under float32's allowance of 1.9:
    outside test t31a F2). float32 work leaves 24 bits in most of its results."""
    with np.errstate(all="ignore"):
        w = v * 256.0
        return bool(np.all(np.isfinite(w) & (w == np.round(w))))


def _on_grid(v: np.ndarray, dtype: Any) -> bool:
    """Whether every (finite) number of ``v`` is one of ``dtype``'s."""
    with np.errstate(all="ignore"):
        return bool(np.array_equal(v, v.astype(dtype)))


def float32_code(spec_dtype: str, grads: Mapping[str, Any]) -> bool:
    """Whether every gradient in ``grads`` holds only float32 numbers (float32_valued), but
    those holding only numbers float16 holds too, which say nothing, and at least one does:
    float32 code's, where one float32 sum among float64 gradients is a slip in float64 code."""
    seen = False
    for a in grads.values():
        if float32_valued(spec_dtype, a):
            seen = True
            continue
        v = np.asarray(a)
        if v.dtype.kind != "f" or not _on_grid(v[np.isfinite(v)].astype(np.float64), np.float16):
            return False
    return seen


# the calls the contract makes of the layer: one forward, and the backward at g1 twice, g2,
# g1 + 2 g2 and zeros (what the check's estimate counts: checking/budget.py)
CALLS = (1, 5)
# a user's cache is digested before the backward's calls and after (checking/written.py)
DIGESTS = 2


def check_contract(
    spec: Spec,
    atol: float = 0.0,
    rtol: float = 0.0,
    roundoff: Mapping[str, float] | None = None,
    seed: int | None = None,
    first: Mapping[str, np.ndarray] | None = None,
    output: np.ndarray | None = None,
    calls: int = 1,
) -> tuple[Finding, ...]:
    """Every contract for every gradient the backward returns (attention's dQ ... dA too).
    ``atol``, ``rtol``: the value check's tolerances, and ``roundoff`` (float32: each
    gradient's measured round-off, relative to its largest entry): linearity is held to no
    less than a tenth of those and 16 times this. ``seed``: of the second upstream gradient.
    ``first``: the gradients of the backward's first call on the spec's grad_output (the ones
    the check compares with the numerical gradients): determinism holds the calls made here to
    them, so a backward that changes after its first call cannot pass. ``output``: the
    forward's output at that first call: a forward that returns another one here is not
    deterministic (a mask drawn anew per call), a determinism finding under the output's name,
    and no finite difference of it means anything. ``calls``: the forward calls here that must
    each return it, while they do (a mask that drops most elements is often drawn the same
    twice: userwork.forward_calls)."""
    layer = spec.layer
    dtype = np.dtype(spec.dtype)
    out, cache = layer.forward(spec.tensors, spec.options)
    forward_det = None
    if output is not None:
        o = _f64(np.asarray(out))
        tol = roundoff_tolerance(float(np.finfo(dtype).eps), _largest(o), max(o.size, 1))
        dev = _deviation(_f64(np.asarray(output)), o)
        if dev <= tol:
            dev = max(dev, _recalled(spec, _f64(np.asarray(output)), calls - 1, tol))
        forward_det = _forward_determinism(spec.output_info.name, dev, tol)
        if not forward_det.passed:  # the first backward ran on another forward's state
            first = None

    wanted = (*spec.tensors, *layer.intermediates)

    def backward(g: np.ndarray) -> dict[str, np.ndarray]:
        g = np.array(g)  # a loss's upstream gradient is a 0-d array, not a numpy scalar
        g.flags.writeable = False  # a backward writing into grad_output fails, as in the check
        grads = layer.backward(g, cache)
        return {n: np.asarray(grads[n]) for n in wanted if n in grads}

    g1 = spec.grad_output
    rng = np.random.default_rng([spec.seed if seed is None else seed, 0x636F6E74])
    rms = float(np.sqrt(np.mean(np.square(g1, dtype=np.float64)))) if g1.size else 0.0
    g2 = (rng.standard_normal(g1.shape) * (rms or 1.0)).astype(dtype)
    # each call's gradients are read into numbers as they come and let go (the calls in the
    # same order): only b1, b2 and b3 are held at once, not five sets of gradients
    # a built-in's backward is pure (it never writes its cache): only code of the user's is
    # watched, and a built-in's large caches (conv2d's windows) are not digested twice
    before = {} if REGISTRY.get(layer.name) is layer else written.fingerprints(cache)
    b1 = backward(np.array(g1))
    names = list(b1)  # the gradients this backward returns, in layer order
    again = backward(np.array(g1))
    det: dict[str, float] = {}
    for n in names:
        det[n] = _deviation(_f64(b1[n]), _f64(again[n]))
        if first is not None and n in first:
            det[n] = max(det[n], _deviation(_f64(np.asarray(first[n])), _f64(b1[n])))
    del again
    wrote = written.changed(before, cache) if before else []  # a built-in's: not digested
    if wrote:
        # a backward that writes into its cache is judged for linearity and zero upstream on
        # a fresh forward's cache at each call, as it was right on its first call (three
        # forward calls beyond the estimate, in this failing case only)
        def backward(g: np.ndarray, first_call: Any = backward) -> dict[str, np.ndarray]:
            nonlocal cache
            cache = layer.forward(spec.tensors, spec.options)[1]
            return first_call(g)

    b2 = backward(g2)
    b3 = backward((g1.astype(np.float64) + 2 * g2).astype(dtype))
    del g2
    lin, apart, largest, big1 = {}, {}, {}, {}
    # elements not finite at the check's own upstream gradient are that finding already (the
    # value check's "not finite"): the contracts are read elsewhere, not blamed for them (a
    # NaN at dx[0, 0] read 'breaks its contract: zero_upstream, linearity' too, outside test
    # t60b F4)
    unread: dict[str, np.ndarray] = {}
    for n in names:
        a1, a2, a3 = (_f64(b[n]) for b in (b1, b2, b3))
        bad = ~np.isfinite(a1)
        if bad.any() and a2.shape == a1.shape == a3.shape:
            unread[n] = bad
            a1, a2, a3 = (np.where(bad, 0.0, x) for x in (a1, a2, a3))
        lin[n] = _deviation(a3, a1, a2)
        apart[n] = _deviation(a1, a2)
        big1[n] = _largest(a1)
        largest[n] = max(big1[n], _largest(a2), _largest(a3))
    # round-off follows the size of the terms a backward sums, not of its result: a gradient
    # that cancels to almost nothing (attention's dW_Q when A is nearly one-hot) is still
    # computed from terms as large as the others, so every gradient shares the largest scale
    scale = max(
        (_largest(b[n]) for b in (b1, b2, b3) for n in names if _finite(_f64(b[n]))),
        default=0.0,
    )
    dtypes, shapes = {n: b1[n].dtype for n in names}, {n: b1[n].shape for n in names}
    del b1, b2, b3
    zero = backward(np.zeros_like(g1))
    size = max(g1.size, 1)
    findings: dict[str, list[Finding]] = {c: [] for c in CONTRACTS}
    floors: dict[str, np.ndarray] | None = None

    def floor_of(n: str) -> float:
        """The built-in layer's own float64 round-off of d``n`` (lastbit.backward_floor), read
        only where linearity fails without it: attention at X = 100 + 0.01 N(0, 1) sums
        terms of 1e4 into a dW_Q of 0.3, its built-in backward 'not linear' by 3.8e-9 against
        2.6e-10 under central4's tighter tolerances (outside test t35b F7)."""
        nonlocal floors
        if floors is None:
            from gradcli.checking import lastbit  # LAZY: only where linearity fails

            try:
                floors = lastbit.backward_floor(spec, tuple(names))
            except Exception:  # noqa: BLE001 - a layer refusing its nudged cache: no floor
                floors = {}
        f = floors.get(n)
        return 0.0 if f is None else float(np.max(f, initial=0.0))

    for n in names:
        eps = float(np.finfo(spec.dtype).eps)
        if dtypes[n].kind == "f":
            eps = max(eps, float(np.finfo(dtypes[n]).eps))
        tol = roundoff_tolerance(eps, scale, size)
        findings["determinism"].append(_determinism(n, det[n], tol, wrote))
        slack = tol + 4 * (det[n] if math.isfinite(det[n]) else 0.0)  # noise blurs the others
        z0 = _f64(zero[n])
        if n in unread and z0.shape == unread[n].shape:
            z0 = np.where(unread[n], 0.0, z0)
        z = _deviation(z0, None) if zero[n].shape == shapes[n] else math.inf
        findings["zero_upstream"].append(_zero_upstream(n, z, slack, big1[n]))
        # an ill-conditioned backward (a saturated softmax) cancels terms far larger than its
        # result, so round-off of its result's size is not enough there; a deviation a tenth
        # of what the value check tolerates cannot change a verdict
        lin_tol = max(
            slack, 0.1 * (atol + rtol * largest[n]), 16 * (roundoff or {}).get(n, 0) * largest[n]
        )
        if lin[n] > lin_tol and dtype == np.float64:
            # (the deviation of g1 + 2 g2 against g1 and g2: four calls' round-off, at up to
            # three times the spec's upstream gradient)
            lin_tol = max(lin_tol, 16 * floor_of(n))
        constant = apart[n] <= slack < big1[n]
        # a float64 backward linear to float32's round-off only rounds to float32 somewhere
        rounded = dtype == np.float64 and lin[n] <= roundoff_tolerance(EPS32, scale, size)
        findings["linearity"].append(
            _linearity(n, lin[n], lin_tol, z > slack, constant, rounded))
        findings["dtype"].append(_dtype(n, "backward", dtypes[n], dtype))
    if forward_det is not None:
        findings["determinism"].append(forward_det)
    out_dtype = np.asarray(out).dtype
    findings["dtype"].append(_dtype(spec.output_info.name, "forward", out_dtype, dtype))
    findings["no_writes"].append(
        Finding(
            "no_writes",
            None,
            True,
            "forward and backward ran on read-only tensors and grad_output without writing "
            "into them",
        )  # fmt: skip
    )
    return tuple(f for c in CONTRACTS for f in findings[c])


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind in "fiub" else a


def _largest(a: np.ndarray) -> float:
    return float(np.max(np.abs(_f64(a)), initial=0.0))


def _finite(a: np.ndarray) -> bool:
    return bool(np.isfinite(a).all())


def _deviation(a: np.ndarray, b: np.ndarray | None, c: np.ndarray | None = None) -> float:
    """max |a - b| (b None: 0; with ``c``: max |a - (b + 2 c)|, linearity's): inf where one
    side is not finite, 0 where both are the same non-finite value (the gradient check reports
    non-finite gradients themselves). In chunks: whole temporaries of a large gradient would
    be a good part of a check's memory."""
    if b is not None and (a.shape != b.shape or (c is not None and c.shape != b.shape)):
        return math.inf
    a = a.reshape(-1)
    b = None if b is None else b.reshape(-1)
    c = None if c is None else c.reshape(-1)
    worst = 0.0
    for s in range(0, a.size, DEVIATION_CHUNK):
        x = a[s : s + DEVIATION_CHUNK]
        y = np.zeros_like(x) if b is None else b[s : s + DEVIATION_CHUNK]
        if c is not None:
            y = y + 2 * c[s : s + DEVIATION_CHUNK]
        same = (x == y) | (np.isnan(x) & np.isnan(y))
        diff = np.where(same, 0.0, np.abs(x - y))
        worst = max(worst, float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0)))
    return worst


DEVIATION_CHUNK = 2**18  # elements: 2 MB per float64 temporary


def _amount(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "a non-finite value (NaN or inf)"


def versus(x: float, tol: float) -> tuple[str, str]:
    """``x`` and its tolerance, with the digits it takes for the printed numbers to compare
    as the values do: 1.19e-07 beyond a tolerance of 1.15e-07 was printed 'tolerance 1.2e-07'
    (outside test t24 F1), a failure that read as within."""
    if not math.isfinite(x):
        return _amount(x), f"{tol:.2g}"
    for digits in range(3, 18):
        shown, limit = f"{x:.{digits}g}", f"{tol:.{digits}g}"
        if (float(shown) > float(limit)) == (x > tol):
            return shown, limit
    return repr(x), repr(tol)


def _determinism(n: str, det: float, tol: float, wrote: list[str] | None = None) -> Finding:
    if det == 0:
        return Finding("determinism", n, True, "three calls return the same d" + n, 0.0, tol)
    if det <= tol:
        detail = f"three calls agree to round-off ({det:.2g})"
        return Finding("determinism", n, True, detail, det, tol)
    why = "randomness or state in the backward"
    if wrote:
        where = ", ".join(_cache_path(p) for p in wrote[:3]) + (", ..." if len(wrote) > 3 else "")
        why = (
            f"your backward writes into its cache ({where}), so a second call on the same "
            f"cache reads other values: compute into new arrays (np.tanh(c), not "
            f"np.tanh(c, out=c); c = c * f, not c *= f)"
        )
    shown, limit = versus(det, tol)
    detail = (
        f"calls with the same grad_output return d{n} differing by up to {shown} "
        f"(round-off allows {limit}): {why}"
    )
    return Finding("determinism", n, False, detail, det, tol)


def _cache_path(path: str) -> str:
    """A path in the cache as the user's code names it: their CS231n-style cache is kept
    under 'cache' in the user layer's own (gradcli/user/impl.py)."""
    return "cache" + path.removeprefix("['cache']")


def random_forward(findings: tuple[Finding, ...], output: str) -> Finding | None:
    """The failed determinism finding of the forward's ``output``, if any: no finite
    difference of such a forward means anything."""
    return next((f for f in findings if f.name == "determinism" and f.tensor == output
                 and not f.passed), None)  # fmt: skip


AFTER_CALLS = 8  # forward calls at the spec's point once the differences are read


def still_deterministic(spec: Any, output: Any) -> Finding | None:
    """A failed determinism finding when the forward, called AFTER_CALLS times at the spec's
    point once the check's thousands of calls are made, no longer returns ``output`` (its
    first call's) to round-off; None when it does. State that changes every few calls (noise
    on every 7th, a cache refreshed now and then) passed the first calls, and its jumps were
    read as kinks: a backward 1e-5 off passed (outside test t39a F1)."""
    o = _f64(np.asarray(output))
    tol = roundoff_tolerance(float(np.finfo(np.dtype(spec.dtype)).eps), _largest(o),
                             max(o.size, 1))  # fmt: skip
    dev = _recalled(spec, o, AFTER_CALLS, tol)
    return _forward_determinism(spec.output_info.name, dev, tol) if dev > tol else None


def _recalled(spec: Any, reference: np.ndarray, calls: int, tol: float) -> float:
    """The largest deviation from ``reference`` over up to ``calls`` forward calls at the
    spec's point, stopping at the first beyond ``tol``."""
    dev = 0.0
    for _ in range(calls):
        again = _f64(np.asarray(spec.layer.forward(spec.tensors, spec.options)[0]))
        dev = max(dev, _deviation(reference, again))
        if dev > tol:
            break
    return dev


def forward_determinism(spec: Any, output: np.ndarray, calls: int = 1) -> Finding:
    """The forward's own contract alone: ``calls`` more calls at the spec's point return
    ``output`` (a custom layer checked on saved answers has no backward of its own to hold
    to the rest: a forward adding noise passed in one run and failed the next, outside test
    t63b F3)."""
    o = _f64(np.asarray(output))
    tol = roundoff_tolerance(float(np.finfo(np.dtype(spec.dtype)).eps), _largest(o),
                             max(o.size, 1))  # fmt: skip
    return _forward_determinism(spec.output_info.name, _recalled(spec, o, calls, tol), tol)


def _forward_determinism(n: str, det: float, tol: float) -> Finding:
    if det <= tol:
        return Finding("determinism", n, True, f"two forward calls return the same {n}", det, tol)
    detail = (
        f"your forward is not deterministic: two calls at the same tensors return {n} "
        f"differing by up to {_amount(det)}: "
        "randomness or state in the forward (a mask drawn anew at each call: draw it from a "
        "fixed seed), which no finite difference can check"
    )
    return Finding("determinism", n, False, detail, det, tol)


def _zero_upstream(n: str, z: float, tol: float, scale: float) -> Finding:
    if z <= tol:
        return Finding("zero_upstream", n, True, f"grad_output = 0 gives d{n} = 0", z, tol)
    detail = (
        f"grad_output = 0 gives d{n} up to {_amount(z)} (its entries reach {scale:.3g} otherwise), "
        "not 0: a term not multiplied by grad_output"
    )
    return Finding("zero_upstream", n, False, detail, z, tol)


def _linearity(
    n: str, lin: float, tol: float, offset: bool, constant: bool, rounded: bool = False
) -> Finding:
    if lin <= tol:
        detail = f"d{n}(g1 + 2 g2) = d{n}(g1) + 2 d{n}(g2) to round-off"
        return Finding("linearity", n, True, detail, lin, tol)
    why = (
        "it does not depend on grad_output at all"
        if constant
        else "it has a term not multiplied by grad_output (see zero_upstream)"
        if offset
        else "linear to float32's round-off only: a step of it rounds to float32 (an "
        ".astype(np.float32), a float32 array or constant) in this float64 check"
        if rounded
        else "a nonlinear function of grad_output"
    )
    shown, limit = versus(lin, tol)
    detail = (
        f"d{n}(g1 + 2 g2) differs from d{n}(g1) + 2 d{n}(g2) by up to {shown} (tolerance "
        f"{limit}): not linear in grad_output; {why}"
    )
    return Finding("linearity", n, False, detail, lin, tol)


def _dtype(n: str, fn: str, got: np.dtype, want: np.dtype) -> Finding:
    what = f"d{n}" if fn == "backward" else f"its output {n}"
    if got == want:
        return Finding("dtype", n, True, f"{fn} returns {what} in {want}")
    note = " (its values are held to float32 tolerances)" if got == np.float32 else ""
    # the classic cause: np.zeros(shape) or a Python float making float64 of float32 inputs
    wider = got.kind == "f" and want.kind == "f" and got.itemsize > want.itemsize
    how = ("; allocate it like its inputs (np.zeros_like(x), or dtype=x.dtype: np.zeros(shape) "
           "and np.empty(shape) are float64), keep NumPy float64 scalars out of its arithmetic "
           "(np.sqrt(d) is one: NumPy 2 promotes float32 arrays by it; math.sqrt(d) does not), "
           "and cast masks to x.dtype ((x > 0).astype(x.dtype), not .astype(float), which is "
           "float64, as np.where(x > 0, 1.0, alpha) is: np.where(x > 0, 1, alpha).astype(x.dtype))"
           if wider else "")
    detail = f"{fn} returns {what} in {got} under a {want} spec{note}{how}"
    return Finding("dtype", n, False, detail)
