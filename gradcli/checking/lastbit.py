"""The round-off a backward pass cannot avoid: what the last bits of its inputs move it by.

A backward written the usual way computes from what the forward kept, rounded: tanh's
1 - y^2 from y = tanh(22), which is 1.0 in float64, reads 0 for a derivative of 3e-19; a
confident softmax's p - 1 at p = 1 - 4e-16 reads a multiple of 1.1e-16. The complex step has
no round-off of its own and sees the 3e-19, so the pass rule, scaled to the gradient's own
size, failed correct backward passes there (torch's among them). No float64 backward does
better than its inputs' last bits allow, so each element is held at least to how far a
change of a few last bits in each of the upstream gradient and the forward's saved arrays
moves it (FACTOR times the largest of TRIALS such changes, random in size and sign: equal
changes of e and of its sum leave p = e / sum as it was): the error analysis of a formula,
run on the formula itself. It is the built-in layer's, and so a bound on a user's
backward only where the user's layer is the built-in (its forward agreeing with ours).

Memory: it runs only where an element fails without it, after the numerical gradients, and
holds a forward's cache, a nudged copy of it and a few gradients at once: no more than the
perturbed pass --max-memory keeps room for, which no copy holds by then.

A layer with kinks (relu, max-pool, the hinge) routes the upstream gradient and nothing in it
cancels; its backward may read its routes off its saved values, where a tie nudged apart
routes elsewhere: only its upstream gradient is nudged. A network's layers without kinks get
their saved arrays nudged, the others keep theirs (Layer.nudged).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradcli.inputs.spec import Spec
from gradcli.layers import REGISTRY
from gradcli.layers.base import float64_copies

TRIALS = 4
# about 4x the worst rounding of the formula itself (t19 F5: 4 x 1-4 bits, 24x, let a tanh at
# 16 pass 10% off under the complex step)
FACTOR = 2
EPS = float(np.finfo(np.float64).eps)


def backward_floor(spec: Spec, names: tuple[str, ...],
                   inputs: bool = True) -> dict[str, np.ndarray]:  # fmt: skip
    """{name: each element's floor, of the gradient's shape} for ``names`` among the built-in
    layer's gradients; {} for a layer of the user's own or one with kinks. ``inputs``: the
    input tensors' last bits too (``spread``)."""
    return {n: FACTOR * s for n, s in spread(spec, names, EPS, inputs=inputs).items()}


def spread(spec: Spec, names: tuple[str, ...], unit: float,
           inputs: bool = False) -> dict[str, np.ndarray]:  # fmt: skip
    """{name: the largest change of each element over TRIALS nudges of 1-2 ``unit``s}
    (float64's last bits for backward_floor; float32's for what a float32 backward computing
    from the same saved arrays rounds to: checking/precision.py). ``inputs``: the tensors'
    last bits too, through the forward, for a single layer without kinks: a layer norm at
    1e7 + N(0, 1) rounds its x - mean at 1e-9, which its saved arrays' last bits (at 1) never
    show, and the complex step failed its right dx 1e-8 off (outside test t35b F3)."""
    layer = REGISTRY.get(spec.layer.name)
    if spec.layer.builtins_only:  # a network of built-in layers: its cache is theirs, nested
        layer = spec.layer
    if layer is None:
        return {}
    if spec.layer.reference is not None:  # theirs draws its own mask: not our formula
        return {}
    tensors = float64_copies(spec.tensors)
    g = np.asarray(spec.grad_output, dtype=np.float64)
    _, cache = layer.forward(tensors, spec.options)
    base = layer.backward(g, cache)
    wanted = [n for n in names if n in base]
    if not wanted:
        return {}
    rng = np.random.default_rng(0x6C617374)
    kinked = layer.kinks is not None or layer.maxima is not None

    def nudge(c: Any) -> Any:
        if layer.nudged is not None:
            return layer.nudged(c, lambda v: nudged(v, rng, unit))
        return c if kinked else nudged(c, rng, unit)

    moved = {n: np.zeros(np.shape(base[n])) for n in wanted}
    through = inputs and not kinked and not spec.layer.builtins_only
    for _ in range(TRIALS):
        got = layer.backward(nudged(g, rng, unit), nudge(cache))
        runs = [got]
        if through:
            runs.append(layer.backward(g, layer.forward(nudged(tensors, rng, unit),
                                                        spec.options)[1]))  # fmt: skip
        for got in runs:
            for n in wanted:
                with np.errstate(invalid="ignore", over="ignore"):
                    change = np.abs(np.asarray(got[n], dtype=np.float64) - base[n])
                moved[n] = np.fmax(moved[n], change)  # a NaN reading (inf - inf) is no reading
    return moved


SIGNS = 4  # upstream gradients with random signs that natural_scale draws
# the ufuncs that round their result (comparisons, max/min, abs, sign, negation are exact and
# left alone: a mask read off them routes as it did)
_ROUNDING = frozenset({
    np.add, np.subtract, np.multiply, np.divide, np.true_divide, np.power, np.float_power,
    np.square, np.sqrt, np.cbrt, np.reciprocal, np.matmul, np.exp, np.exp2, np.expm1, np.log,
    np.log2, np.log10, np.log1p, np.logaddexp, np.logaddexp2, np.tanh, np.sinh, np.cosh,
    np.arctanh, np.arcsinh, np.arccosh, np.sin, np.cos, np.tan, np.arctan, np.arctan2,
    np.arcsin, np.arccos, np.hypot,
})  # fmt: skip
# the smaller unit's changes must be this much below the unit's: rounding scales with it
# (by 16), a route that flips at a tie does not (the same jump at either unit)
SCALES = 16.0
RUNS = 3  # rounded runs at COARSE units, each repeated at 1/SCALES of it
# the runs' unit, in float64 units: float64 itself holds a change of 64 and of 4 of its last
# bits (long double held 1/16 of one, but an assert or a cast to float64 refused it: outside
# test t27 N10); a change scales back by 1/COARSE
COARSE = 64.0
# a backward slower than this over its 2 RUNS rounded runs (a loop-by-loop convolution) is not
# measured: its elements keep the floor they had
SECONDS = 3.0
# tensors larger than this in all are not measured: the runs hold copies beside the check's
# (a long double one takes twice float64's room), which --max-memory did not count
ELEMENTS = 2**21
# float64 units of the layer's terms (upstream gradient x output / tensor) a rounded floor may
# reach where the float64 answer is no further from long double's (a saturated sigmoid's
# 1 - y is 0 in both at y = 1 - 3e-20)
TERMS = 64
HELD = 6  # float64 arrays of the tensors' size rounded_floor holds at once, at most


class _Rounded(np.ndarray):
    """An array whose every rounding ufunc's result is moved by 1-2 ``unit``s (relative,
    random sign): Monte Carlo arithmetic."""

    unit = 0.0
    rng = np.random.default_rng(0)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):  # noqa: ANN001, ANN204
        args = [a.view(np.ndarray) if isinstance(a, _Rounded) else a for a in inputs]
        outs = kwargs.get("out")
        if outs:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, _Rounded) else o
                                  for o in outs)  # fmt: skip
        got = getattr(ufunc, method)(*args, **kwargs)
        rounds = ufunc in _ROUNDING and method in ("__call__", "reduce", "accumulate", "at")
        if method == "at":
            return got
        many = isinstance(got, tuple)
        res = []
        for r in got if many else (got,):
            if rounds and np.asarray(r).dtype.kind == "f":
                if isinstance(r, np.ndarray):
                    r *= 1 + _bits(_Rounded.rng, r.shape, _Rounded.unit).astype(r.dtype)
                else:
                    r = r * (1 + r.dtype.type(_bits(_Rounded.rng, (), _Rounded.unit)))
            res.append(r.view(_Rounded) if isinstance(r, np.ndarray) else r)
        return tuple(res) if many else res[0]


def natural_scale(spec: Spec, names: tuple[str, ...]) -> dict[str, float]:
    """{name: the largest |gradient| the built-in backward gives over SIGNS upstream gradients
    of the spec's sizes with random signs}: how large the gradient is where the upstream
    gradient's terms do not cancel. A softmax or a normalization under an upstream gradient of
    ones (``y.sum()``) has a gradient of 0, its terms cancelling, while each of them, and the
    round-off of both sides, is of the size this measures; a confident softmax's gradient is
    small because its Jacobian is, and this is small too. {} where no built-in backward is
    ours to run (a layer of the user's own)."""
    return {n: float(a.max(initial=0.0)) for n, a in natural_terms(spec, names).items()}


def natural_terms(spec: Spec, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``natural_scale`` element by element: {name: each element's largest |gradient| over the
    SIGNS upstream gradients (0 where not finite)}. A linear's dW beside a feature of 1.7e15 is
    that large in that feature's row only, and 64 eps of it is no round-off of the others."""
    layer = REGISTRY.get(spec.layer.name)
    if spec.layer.builtins_only:
        layer = spec.layer
    if layer is None or spec.layer.reference is not None:
        return {}
    g = np.asarray(spec.grad_output, dtype=np.float64)
    _, cache = layer.forward(float64_copies(spec.tensors), spec.options)
    rng = np.random.default_rng(0x7369676E)
    out: dict[str, np.ndarray] = {}
    # one upstream value (a loss, a linear of one output): no terms to cancel, the gradient
    # itself is their size
    for _ in range(SIGNS if g.size > 1 else 1):
        got = layer.backward(np.abs(g) * rng.choice((-1.0, 1.0), size=g.shape), cache)
        for n in names:
            if n in got:
                a = np.abs(np.asarray(got[n], dtype=np.float64))
                a = np.where(np.isfinite(a), a, 0.0)
                out[n] = a if n not in out or out[n].shape != a.shape else np.maximum(out[n], a)
    return out


def rounded_floor(spec: Spec, under_test: Mapping[str, np.ndarray],
                  max_memory: float = math.inf) -> dict[str, np.ndarray]:  # fmt: skip
    """{name: FACTOR times how far each element moves when every rounding operation of the
    backward (and of the forward it recomputes) is moved by float64's last bits}, for code of
    the user's own, whose formula no nudge of its inputs reaches: the round-off its float64
    run cannot avoid, measured on the formula itself (Monte Carlo arithmetic: COARSE last bits
    at each operation, scaled back). A textbook sigmoid's ``y * (1 - y)`` at ``y = 1.0``
    reads 0 for a derivative of 1e-16 (the complex step sees it); a saturated softmax's
    ``y * (g - (g * y).sum())`` reads 0 at its top output for -1.4e-28, beside terms of 2. A
    wrong formula is as wrong rounded or not. Only moves that scale with the unit count (at
    1/SCALES of it they are SCALES times smaller): a mask that flips at a tie moves an element
    by the same jump at any unit. Nor beyond TERMS float64 units of the layer's terms (max |g|
    max |y| / max |tensor|), unless the float64 answer is that far from the same code's run on
    long double copies: rounding of a user's own constants (1e20 added and taken away) is none
    of a right formula's error. Operations outside NumPy's ufuncs (a cast to a new array,
    torch) are not moved, and measure nothing; {} where the code refuses the run."""
    elements = sum(np.size(v) for v in (*spec.tensors.values(), spec.grad_output))
    # what it holds beside the check's: the base run's gradients, their largest moves, a pair
    # of rounded runs, the long double run (twice): HELD float64 arrays of the tensors' size
    if elements > ELEMENTS or 8 * HELD * elements > max_memory / 4:
        return {}
    layer = spec.layer

    def run(unit: float, finer: bool = False) -> dict[str, np.ndarray]:
        """The backward on rounded float64 views (``unit``), or on plain long double copies."""
        _Rounded.unit = unit

        def wrap(v: Any) -> Any:
            a = np.asarray(v)
            if a.dtype != np.float64:
                return v
            return a.astype(np.longdouble) if finer else a.view(_Rounded)

        tensors = {n: wrap(v) for n, v in spec.tensors.items()}
        with np.errstate(all="ignore"):
            out, cache = layer.forward(tensors, spec.options)
            got = layer.backward(wrap(spec.grad_output), cache)
        if not unit and not finer:
            nonlocal y0
            y0 = np.array(out, dtype=np.float64)
        return {n: np.asarray(b).view(np.ndarray) for n, b in got.items()}

    y0 = np.zeros(0)  # the outputs of the unrounded run

    def top(name: str) -> float:
        """The largest output ``name`` moves (redrawn at its own scale): a constant output of
        1e12 beside tanh(x) set a cap 1e12 times too large (outside test t28 R6)."""
        t = np.asarray(spec.tensors.get(name, 0.0))
        if t.dtype.kind != "f" or not y0.size:
            return float(np.max(np.abs(y0), initial=0.0))
        scale = float(np.sqrt(np.mean(np.square(t)))) or 1.0
        moved_t = t + scale * np.random.default_rng(0x746F70).standard_normal(t.shape)
        try:
            with np.errstate(all="ignore"):
                y1 = np.asarray(layer.forward({**spec.tensors, name: moved_t}, spec.options)[0],
                                dtype=np.float64)  # fmt: skip
        except Exception:  # noqa: BLE001 - the user's code at a point of ours: all outputs
            return float(np.max(np.abs(y0), initial=0.0))
        if y1.shape != y0.shape:
            return float(np.max(np.abs(y0), initial=0.0))
        return float(np.max(np.abs(y0[y1 != y0]), initial=0.0))

    try:
        start = time.perf_counter()
        base = run(0.0)
        if (time.perf_counter() - start) * 2 * RUNS > SECONDS:
            return {}
        wanted = {n: b for n, b in base.items() if n in under_test
                  and b.shape == np.shape(under_test[n]) and b.dtype == np.float64}
        moved = {n: np.zeros(b.shape) for n, b in wanted.items()}
        for trial in range(RUNS):
            pair = []
            for unit in (COARSE, COARSE / SCALES):  # the same draws in the same order at both
                _Rounded.rng = np.random.default_rng((0x6D6361, trial))
                pair.append(run(unit * EPS))
            for n, b in wanted.items():
                with np.errstate(all="ignore"):
                    big = np.abs(pair[0][n] - b)
                    small = np.abs(pair[1][n] - b)
                scaled = np.isfinite(big) & (big > 0) & (small * SCALES / 4 <= big)
                moved[n] = np.maximum(moved[n], np.where(scaled, big / COARSE, 0.0))
    except Exception:  # noqa: BLE001 - the user's code at a point of ours: nothing measured
        return {}
    finally:
        _Rounded.unit = 0.0
    try:  # how far float64 is from long double, where the code runs in it (not torch's)
        finer = run(0.0, finer=True) if float(np.finfo(np.longdouble).eps) < EPS / 64 else {}
    except Exception:  # noqa: BLE001 - an assert on float64, a cast: measured as 0
        finer = {}
    # never beyond TERMS float64 units of the layer's own terms (upstream gradient times
    # output, per unit of the tensor), unless the float64 answer really is further from the
    # long double one: a term exactly 0 in float64 (``1e20 * g - 1e20 * g``), which rounding
    # moves a lot, set its own tolerance and twice the gradient passed (outside test t26 F9);
    # so did a shift ``(d + 1e20) - 1e20`` that leaves 0 in both
    g = float(np.max(np.abs(np.asarray(spec.grad_output, dtype=np.float64)), initial=0.0))
    out = {}
    for n, m in moved.items():
        t = np.abs(np.asarray(spec.tensors[n], dtype=np.float64)) if n in spec.tensors else 0
        size = float(np.max(t, initial=0.0))
        terms = TERMS * EPS * g * top(n) / (size if np.isfinite(size) and size > 0 else 1.0)
        b = finer.get(n)
        off = np.zeros(m.shape)
        if b is not None and b.shape == m.shape and b.dtype == np.longdouble:
            with np.errstate(all="ignore"):
                d = np.abs(b - np.asarray(under_test[n], dtype=np.longdouble)).astype(np.float64)
            off = np.where(np.isfinite(d), d, 0.0)
        # where rounding moves an element at all, its float64 answer's own distance from the
        # long double run is its round-off too: three random runs can all land small (one of
        # 10,000 saturated sigmoid elements read 3e-18 for an error of 1.2e-17)
        m = np.where(m > 0, np.maximum(m, off), 0.0)
        out[n] = FACTOR * np.minimum(m, np.maximum(off, terms if np.isfinite(terms) else 0.0))
    return out


def nudged(value: Any, rng: np.random.Generator, unit: float) -> Any:
    """``value`` with every float in it moved by 1 to 2 ``unit``s (its last bits), up or down
    at random, in its own dtype; other values (masks, labels, shapes) as they are. Relative: a
    0 stays 0, no sign changes."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return (value * (1 + _bits(rng, value.shape, unit))).astype(value.dtype)
    if isinstance(value, float):
        return value * (1 + float(_bits(rng, (), unit)))
    if isinstance(value, Mapping):
        return {k: nudged(v, rng, unit) for k, v in value.items()}
    if isinstance(value, tuple | list) and not _shape(value):
        return type(value)(nudged(v, rng, unit) for v in value)
    return value


def _bits(rng: np.random.Generator, shape: tuple[int, ...], unit: float) -> np.ndarray:
    return unit * rng.uniform(1.0, 2.0, size=shape) * rng.choice((-1.0, 1.0), size=shape)


def _shape(value: tuple | list) -> bool:
    return all(isinstance(v, int) for v in value)
