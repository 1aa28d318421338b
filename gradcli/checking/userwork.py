"""Checks that only a user's implementation needs: its forward against ours (at the spec's
tensors and at points drawn to break the spec's coincidences), and whether its forward survives
the complex step."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import field
from typing import Any

import numpy as np

from gradcli.checking.compare import TensorResult, compare
from gradcli.checking.compute import Computation
from gradcli.checking.contract import float32_code, lower_precision, roundoff_tolerance
from gradcli.checking.report import FLOAT32_FALLBACK, BackwardAgreement
from gradcli.errors import OptionError, UserCodeError, mention
from gradcli.inputs.spec import Spec
from gradcli.layers import REGISTRY
from gradcli.layers.base import Layer, float64_copies
from gradcli.numeric.engine import Engine
from gradcli.numeric.methods import below_step, steps
from gradcli.numeric.sampling import rademacher
from gradcli.records import record

# the points besides the spec's where a user's forward of a built-in layer must agree with ours
DRAWN_POINTS = 2
# a tensor of at most SAFE_ALL elements is compared with central differences at every one (a
# forward complex-unsafe at one element of 1000: y[0] = x0 |x0|); a larger one at SAFE_PICKS
SAFE_ALL = 1024
SAFE_PICKS = 64  # coordinates of each tensor the complex step is compared on with central
# a forward drawing its own mask: the calls at one point telling a mask drawn per call from a
# fixed one, missing it at most once in REDRAW_MISSED draws, at most REDRAWS calls
REDRAW_MISSED = 1e-6
REDRAWS = 64


@record
class ForwardAgreement:
    """The user's forward against ours: at the spec's tensors, then at points drawn to break
    the coincidences the spec's values may hold. ``result`` is the first disagreement (else
    the spec's comparison); ``drawn`` the tensors drawn anew for it (() at the spec's point),
    ``point`` all of its tensors (None at the spec's)."""

    result: TensorResult
    drawn: tuple[str, ...] = ()
    point: Mapping[str, np.ndarray] | None = None
    # where the forwards agreed at every drawn point: the points, for the backward's
    # comparison, and the tensors they draw
    points: tuple[Mapping[str, np.ndarray], ...] = field(default=(), repr=False)
    names: tuple[str, ...] = ()
    # the round-off the forwards were held to at the spec's point, where 64 eps of the output
    # would have failed them (0.0: none), and the built-in's calls measuring it
    roundoff: float = 0.0
    roundoff_calls: int = 0
    # the user's forward rounds more than ours at the spec's point (a one-pass variance at
    # x ~ 100): the two disagree in float64 by this much and agree in extended precision
    rounds: float = 0.0
    # the drawn points the user's forward refused (an error of its own at their values: a
    # forward of a domain narrower than ours), compared nowhere, said in a note
    refused: tuple[str, ...] = ()


def forward_against_builtin(
    spec: Spec, comp: Computation, unit: float = 0.0
) -> ForwardAgreement | None:
    """--impl of a built-in layer: the user's forward against ours on the same tensors, and, as
    the numerical gradient is taken of the user's forward, at DRAWN_POINTS generic points too:
    a spec's values can hide a wrong forward whose backward is wrong the same way (a centered x
    hides batchnorm without its mean, zeros hide dropout without 1/(1-p)), and the check at the
    spec's point alone would pass them. ``unit``: the epsilon the user's forward computes in
    (numeric/stacking.forward_unit): a forward computing in float32 under a float64 spec is
    held to float32's round-off, as its own precision, not blamed as another function."""
    builtin = REGISTRY.get(spec.layer.name)
    if spec.layer.broadcasts or builtin is None:
        return None
    # a numpy float32 would not serialize to JSON
    eps = max(float(np.finfo(spec.dtype).eps), float(unit))
    first = _agreement(spec, builtin, spec.tensors, np.asarray(comp.output), 64 * eps, eps)
    noise, calls = 0.0, 0
    # a round-off beyond 64 eps of the output, unless theirs is held to a reference (dropout's
    # own mask: its values, or how many it keeps, are no round-off)
    if not first.passed and spec.layer.reference is None:
        noise, calls = builtin_roundoff(spec, builtin), 1
        if first.max_abs_error <= noise:
            first = _agreement(spec, builtin, spec.tensors, np.asarray(comp.output), 64 * eps,
                               eps, floor=noise)  # fmt: skip
    rounds = 0.0
    if (not first.passed and spec.layer.reference is None
            and _agrees_finer(spec, builtin, eps, first.max_abs_error)):
        rounds = first.max_abs_error
        first = _agreement(spec, builtin, spec.tensors, np.asarray(comp.output), 64 * eps, eps,
                           floor=rounds)  # fmt: skip
    measured = {"roundoff": noise if first.passed and not rounds else 0.0,
                "roundoff_calls": calls, "rounds": rounds}  # fmt: skip
    if not first.passed:
        return ForwardAgreement(first, **measured)
    points, refused = [], []
    drawn_list = drawn_points(spec)
    for k, (point, drawn) in enumerate(drawn_list):
        if k == len(drawn_list) - 1 and refused and not points:
            # every point refused so far: the last one drawn within the spec's own ranges
            # instead (a linear of yours refusing negative x, on a spec of ones and b = 0,
            # refused every point and passed without its bias: outside test t69a F3)
            point = _in_range(spec, drawn)
        try:
            theirs, _ = spec.layer.forward(point, spec.options)
        except UserCodeError as e:
            # values outside the forward's own domain (a tanh of yours raising unless x < 0,
            # on a spec of negative x, was refused: 'a finite-difference step left its
            # domain'): that point compares nothing, and is said so
            refused.append(e.message.split("; it ran at the spec's tensors")[0])
            continue
        points.append(point)
        size = max((np.size(a) for a in (*point.values(), theirs)), default=1)
        # two formulas of one function differ by round-off growing with the reductions they
        # run (contract.roundoff_tolerance); a coincidence of the spec's values hides far more
        r = _agreement(spec, builtin, point, np.asarray(theirs), roundoff_tolerance(eps, 1, size),
                       eps)  # fmt: skip
        if not r.passed:
            return ForwardAgreement(r, drawn, point, refused=tuple(refused), **measured)
    names = drawn if points else ()
    if refused and not points:  # compared at the spec's tensors alone: not verified
        why = (f"your forward refused every point gradcli drew (values outside its own "
               f"domain: {refused[0]}), even one within the spec's own ranges: compared at "
               f"the spec's tensors alone, whose values may hide a wrong forward; give the "
               f"spec values that do not (no tensor all zeros or all equal)")
        first = dataclasses.replace(first, unresolved=why, hints=(why,))
    return ForwardAgreement(first, points=tuple(points), names=names, refused=tuple(refused),
                            **measured)  # fmt: skip


def forward_calls(spec: Spec) -> int:
    """How many more calls of a user's forward at the spec's tensors must return what its
    first call did before it is taken as deterministic (checking/contract.py): one, unless it
    draws its own mask (the built-in's
    ``redraw_agrees``: CS231n's dropout). Such a mask drawn anew at each call agrees with the
    last one by chance often where it drops nearly everything (6 elements at p = 0.9: a third
    of the time), and the check then differenced noise and blamed the backward (`dx is zero
    everywhere where the numerical gradient is not`); enough calls that a mask drawn per call
    goes unseen less than once in REDRAW_MISSED, at most REDRAWS (cheap where it matters: the
    fewer the elements, the more the calls)."""
    builtin = REGISTRY.get(spec.layer.name)
    if spec.layer.reference is None or builtin is None or builtin.redraw_agrees is None:
        return 1
    agree = builtin.redraw_agrees(spec.tensors, spec.options)
    if not 0.0 < agree < 1.0:
        return 1
    return min(REDRAWS, max(1, math.ceil(math.log(REDRAW_MISSED) / math.log(agree))))


def _agrees_finer(spec: Spec, builtin: Layer, eps: float, off: float) -> bool:
    """Whether the user's forward, run on extended-precision (np.longdouble) copies of the
    spec's tensors, returns extended precision and disagrees with ours run so by a 16th of
    ``off`` (their float64 disagreement) at most, or by 64 eps of float64: a disagreement that
    shrinks with the working precision is their formula's rounding, not another function (a
    one-pass variance E[x^2] - E[x]^2 at x ~ 100 cancels 1e4 of its digits: 2e-12 off, and
    'your forward does not match the built-in forward'). One more call of theirs; code that
    casts to float64 or refuses longdouble shows nothing and the disagreement stands."""
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps or eps > EPS64:
        return False
    fine = {n: np.asarray(a).astype(np.longdouble) if np.asarray(a).dtype.kind == "f" else a
            for n, a in spec.tensors.items()}  # fmt: skip
    try:
        with np.errstate(all="ignore"):
            theirs = np.asarray(spec.layer.forward(fine, spec.options)[0])
            ours = np.asarray(builtin.forward(fine, spec.options)[0])
    except Exception:  # noqa: BLE001 - a forward that refuses longdouble shows nothing
        return False
    if theirs.dtype != np.longdouble or ours.dtype != np.longdouble or theirs.shape != ours.shape:
        return False
    scale = float(np.max(np.abs(ours.astype(np.float64)), initial=0.0)) or 1.0
    err = np.abs(theirs - ours).astype(np.float64)
    bound = max(64 * EPS64 * scale, off / 16)
    return bool(np.all(np.isfinite(err)) and err.max(initial=0.0) <= bound)


EPS64 = float(np.finfo(np.float64).eps)


def builtin_roundoff(spec: Spec, builtin: Layer) -> float:
    """8 times the round-off of our own forward at the spec's tensors, against itself run in
    extended precision (np.longdouble; 0.0 where that is float64, or where ours does not keep
    it): a loss of a confident classifier carries eps of its probabilities near 1 (1e-17),
    not of the loss (1e-8), in ours and in a student's -log(softmax) alike, and 64 eps of the
    loss (2e-22) failed the student's. Ours only: a user's forward is called no more."""
    t = float64_copies(spec.tensors)  # labels and indices stay integers
    with np.errstate(all="ignore"):
        ours = np.asarray(builtin.forward(t, spec.options)[0])
    return 8 * max(_finer_off(spec, builtin, t, ours), _ulp_moves(spec, builtin, t, ours))


def _finer_off(spec: Spec, builtin: Layer, t: Mapping[str, np.ndarray], ours: np.ndarray) -> float:
    """Our forward at ``t`` against itself in extended precision (0.0 where that is float64,
    or where ours does not keep it)."""
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        return 0.0
    fine = {n: a.astype(np.longdouble) if a.dtype.kind == "f" else a for n, a in t.items()}
    try:
        with np.errstate(all="ignore"):
            exact = np.asarray(builtin.forward(fine, spec.options)[0])
    except Exception:  # noqa: BLE001 - a layer that refuses longdouble measures nothing
        return 0.0
    if exact.dtype != np.longdouble or exact.shape != ours.shape:
        return 0.0
    err = np.abs(ours.astype(np.longdouble) - exact).astype(np.float64)
    return float(err.max(initial=0.0)) if np.all(np.isfinite(err)) else 0.0


def _ulp_moves(spec: Spec, builtin: Layer, t: Mapping[str, np.ndarray], ours: np.ndarray) -> float:
    """How far our forward moves where every float tensor moves by one unit in the last place
    of the spec's dtype, each element up or down (two draws): what a forward summing in
    another order may differ by, where the output cancels terms far larger than itself
    (svm's margin of 1 between scores of 1e17: x - (x_y - 1), torch's order, rounds it to 0,
    and its loss of 0 against our 2 was 'your forward does not match')."""
    dtype = np.dtype(spec.dtype) if np.dtype(spec.dtype).kind == "f" else np.dtype(np.float64)
    rng = np.random.default_rng(0)
    most = 0.0
    for _ in range(2):
        moved = {}
        for n, a in t.items():
            if a.dtype.kind != "f":
                moved[n] = a
                continue
            low = a.astype(dtype)
            way = np.where(rng.random(a.shape) < 0.5, -np.inf, np.inf).astype(dtype)
            moved[n] = np.nextafter(low, way).astype(np.float64)
        try:
            with np.errstate(all="ignore"):
                y = np.asarray(builtin.forward(moved, spec.options)[0], dtype=np.float64)
        except Exception:  # noqa: BLE001 - a move that leaves the layer's domain measures nothing
            return most
        if y.shape != ours.shape:
            return most
        err = np.abs(y - ours.astype(np.float64))
        if np.all(np.isfinite(err)):
            most = max(most, float(err.max(initial=0.0)))
    return most


def backward_against_builtin(
    spec: Spec, agreement: ForwardAgreement | None, atol: float, rtol: float,
    rounded: bool = False,
) -> BackwardAgreement | None:
    """Where the forwards agree at the drawn points, the user's backward against ours there,
    with an upstream gradient drawn on the spec's scale (a loss keeps its own): the numerical
    check at the spec's point cannot see a backward wrong only where the spec's values are
    not (gamma = 1 hides batchnorm's dx without gamma, an x >= 0 relu's missing mask). The
    points are generic, so no kink or tie is met; ``atol``, ``rtol``: the check's tolerances,
    at least the round-off of two formulas (contract.roundoff_tolerance); ``rounded``: the
    contract found the backward linear to float32's round-off only (a float32 step in it)."""
    if agreement is None or not agreement.result.passed or not agreement.points:
        return None
    if spec.layer.reference is not None:  # theirs draws its own mask: our backward is not theirs
        return None
    builtin = REGISTRY[spec.layer.name]
    constants = spec.layer.constants(spec.shapes, spec.options)
    rng = np.random.default_rng([spec.seed, 0x64726177, 1])
    g0 = np.asarray(spec.grad_output)
    drawn = (*agreement.names, *(("grad_output",) if g0.size > 1 else ()))
    results: dict[str, TensorResult] = {}
    for point in agreement.points:
        g = g0
        if g0.size > 1:
            g = np.array(_scale(g0) * rng.standard_normal(g0.shape), dtype=g0.dtype)
        g = np.array(g)
        g.flags.writeable = False
        # a layer keeping its forward's state for its backward (self.cache, a module's dict)
        # holds the last forward's, another point's or a complex probe's: each backward gets
        # the forward of its own point right before it, as training runs them
        _, cache = spec.layer.forward(point, spec.options)
        theirs = spec.layer.backward(g, cache)
        ours = builtin.backward(g, builtin.forward(point, spec.options)[1])
        names = [n for n in spec.tensors if n not in constants and n in ours and n in theirs]
        scale = max((_largest(ours[n]) for n in names), default=0.0)
        coarse = spec.dtype == "float32" or float32_code(spec.dtype, theirs)
        # float32 code is held to what float32 does to the right formula at this point too:
        # a saturated softmax (|S| of 3,839 at a point drawn for attention with 2 heads) puts
        # its round-off far past a size-based floor, and torch's own float32 backward failed
        # (outside test t65a F1)
        spread = _float32_spread(builtin, point, g, spec.options, names) if coarse else {}
        results = {}
        for n in names:
            a = np.asarray(theirs[n])
            low = lower_precision(spec.dtype, a)
            eps = float(np.finfo(a.dtype if low else spec.dtype).eps)
            if float32_code(spec.dtype, theirs):  # float32 code: its round-off, as checked
                eps = float(np.finfo(np.float32).eps)
            floor = max(roundoff_tolerance(eps, scale, max(g.size, 1)), SPREAD * spread.get(n, 0))
            a_tol, r_tol = atol, rtol
            if low:  # a float32 gradient under a float64 spec: float32's tolerances, as checked
                a_tol, r_tol = max(atol, FLOAT32_FALLBACK[0]), max(rtol, FLOAT32_FALLBACK[1])
            results[n] = compare(n, a, np.asarray(ours[n]), max(a_tol, floor), r_tol)
        if not all(r.passed for r in results.values()):
            single = roundoff_tolerance(float(np.finfo(np.float32).eps), scale, max(g.size, 1))
            within = all(r.passed or r.max_abs_error <= single for r in results.values())
            return BackwardAgreement(results, drawn, point, g, float32=rounded and within)
    return BackwardAgreement(results, drawn)


SPREAD = 16  # times the built-in's own float32 round-off at a drawn point, as precision.py's


def _float32_spread(builtin: Layer, point: Mapping[str, Any], g: np.ndarray, options: Any,
                    names: list[str]) -> dict[str, float]:  # fmt: skip
    """{name: the largest |ours in float32 - ours in float64|} at ``point``, the round-off
    the right formula takes in float32 there; {} where it cannot be run."""
    try:
        with np.errstate(all="ignore"):
            t32 = {k: np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f" else v
                   for k, v in point.items()}  # fmt: skip
            low = builtin.backward(np.asarray(g, np.float32),
                                   builtin.forward(t32, options)[1])  # fmt: skip
            high = builtin.backward(np.asarray(g, np.float64),
                                    builtin.forward(float64_copies(t32), options)[1])  # fmt: skip
        out = {}
        for n in names:
            d = np.abs(np.asarray(low[n], np.float64) - np.asarray(high[n], np.float64))
            out[n] = float(np.max(d, initial=0.0)) if np.isfinite(d).all() else 0.0
        return out
    except Exception:  # noqa: BLE001 - the size-based floor stands
        return {}


def _scale(a: np.ndarray) -> float:
    """An array's own scale, what drawn values are drawn on: its root mean square, 1 where that
    is 0 (zeros, empty) or not finite."""
    rms = float(np.sqrt(np.mean(np.square(a, dtype=np.float64)))) if a.size else 0.0
    return rms if math.isfinite(rms) and rms > 0 else 1.0


def _largest(a: Any) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.max(np.abs(a), initial=0.0)) if np.isfinite(a).all() else 0.0


def _agreement(
    spec: Spec, builtin: Layer, tensors: Mapping[str, np.ndarray], theirs: np.ndarray, tol: float,
    eps: float, floor: float = 0.0,
) -> TensorResult:  # fmt: skip
    """``theirs`` (the user's output on ``tensors``) against ours, held to ``tol`` of the
    output's largest entry (at least ``floor``: its measured round-off) and 64 ``eps``
    relative."""
    problem = ""
    if spec.layer.reference is not None:  # theirs draws its own mask: its expected output
        ours, problem = spec.layer.reference(tensors, spec.options, theirs)
    else:
        ours, _ = builtin.forward(tensors, spec.options)
    if np.shape(ours) != np.shape(theirs):
        raise OptionError(
            f"your forward returns shape {list(np.shape(theirs))}, the built-in "
            f"{builtin.name} returns {list(np.shape(ours))}",
            param="impl",
        )
    scale = float(np.max(np.abs(ours), initial=0.0)) or 1.0
    # held as outputs, not as a gradient: the hints speak of yours and the built-in's
    padded = builtin.maxima is not None and bool(getattr(spec.options, "padding", 0))
    result = compare(spec.output_info.name, theirs, ours, max(tol * scale, floor), 64 * eps,
                     context=lambda: {"forward": True, "padded_max": padded})
    if problem:  # right values, a wrong number of them: a wrong forward all the same
        return dataclasses.replace(result, within=False, hints=(problem,))
    if not result.passed and builtin.forms is not None:  # another formula, by name
        for words, y in builtin.forms(tensors, spec.options).values():
            # to the forward's own precision (a float32 one's gate order went unnamed: outside
            # test t38a N4)
            if np.shape(y) == np.shape(theirs) and np.allclose(
                    theirs, y, rtol=max(1e-9, 64 * eps), atol=max(1e-12 * scale, floor)):
                return dataclasses.replace(result, hints=(words,))
    if not result.passed and spec.layer.own_defaults is not None:
        own = spec.layer.own_defaults(spec.options)
        if own:
            result = dataclasses.replace(result, hints=(
                f"max abs error {result.max_abs_error:.3g} at {list(result.worst_index)}; your "
                f"forward ran with its own default {own} (gradcli passes only the options the "
                f"spec sets): change your default, or set the option in the spec",
            ))  # fmt: skip
    return result


def one_example(spec: Spec) -> str | None:
    """A note for --impl of a built-in layer checked on one example (the default specs hold
    one): a sum over the batch and a mean over it agree there, so a backward that averages its
    parameters' gradients (CS231n's ``db = dout.mean(axis=0)``), or a loss that forgot its 1/N,
    passes, and the points drawn to compare backwards keep the spec's shapes. None where the
    layer has nothing summed over examples (no weight or bias, not a loss) or the spec has a
    batch."""
    if spec.layer.broadcasts or spec.layer.name not in REGISTRY:
        return None
    infos = spec.layer.infos(spec.shapes, spec.options)
    inputs = [i for i in infos if i.role == "input" and i.name in spec.tensors]
    summed = any(i.role in ("weight", "bias") for i in infos) or not spec.output_info.axes
    if not inputs or not summed:
        return None
    for i in inputs:
        shape = np.shape(spec.tensors[i.name])
        lead = len(shape) - len(i.axes)
        # the examples: the batch axes in front, and a core axis of examples (index n) where
        # the layer mixes them (a loss's x (N, C): 8 rows were "one example")
        rows = [k for k, letter in enumerate(i.index) if letter == "n"]
        if math.prod(shape[:lead]) * math.prod(shape[lead + k] for k in rows) > 1:
            return None
    names = " and ".join(i.name for i in inputs)
    # the example in the layer's own words: its bias, else its first weight, else a loss's 1/N
    # (attention, which has no b, was told of db = dout.mean(axis=0))
    param = next((i.name for i in infos if i.role == "bias"), None) or next(
        (i.name for i in infos if i.role == "weight"), None)  # fmt: skip
    example = ("a loss's 1/N left out" if not spec.output_info.axes else
               f"d{param} = dout.mean(axis=0)" if param and any(
                   i.role == "bias" and i.name == param for i in infos) else
               f"d{param} averaged over the examples")  # fmt: skip
    return (
        f"the spec holds one example: a sum over a batch and a mean over it agree on it, so a "
        f"backward that averages where it should sum ({example}) passes here; give {names} a "
        f"batch of several examples to tell them apart"
    )


def even_dropout(spec: Spec) -> str | None:
    """A note for --impl of dropout at p = 0.5 (its default): 1 / p and 1 / (1 - p) agree
    there, so a dropout scaling by the keep rate's inverse where the drop rate's belongs (CS231n's
    p is the keep probability) passes (outside test t38a N6). None elsewhere."""
    builtin = REGISTRY.get("dropout")
    if builtin is None or spec.layer is builtin or spec.layer.name != "dropout":
        return None
    if getattr(spec.options, "p", None) != 0.5:
        return None
    return ("at p = 0.5, 1 / p and 1 / (1 - p) agree, so a dropout scaling by 1 / p where "
            "1 / (1 - p) belongs passes here; check at another p too (options: {p: 0.3}, as "
            "specs/dropout_p03.yaml)")


def drawn_points(spec: Spec) -> list[tuple[dict[str, np.ndarray], tuple[str, ...]]]:
    """DRAWN_POINTS generic points from the spec's seed: each differentiated tensor drawn anew
    on its own scale (its root mean square, 1 for zeros) around an offset of half to one of
    that scale, positive at the first point and negative at the second (a nonzero mean along
    every axis, both signs of a scalar); ties and kinks have probability zero. Labels and
    indices keep the spec's values at the first point, so they stay in range, and at the
    second are drawn from those values with at least one repeated: ``dW[idx] += dout`` loses
    a repeated index's share and passed wherever the spec's indices were distinct (outside
    test t26 F6); dropout's mask is its seed's."""
    rng = np.random.default_rng([spec.seed, 0x64726177])
    names = _drawn(spec)
    counts = tuple(n for n, a in spec.tensors.items()
                   if np.asarray(a).dtype.kind in "iu" and np.size(a) > 1)  # fmt: skip
    points = []
    for k in range(DRAWN_POINTS):
        point = dict(spec.tensors)
        for n in counts if k % 2 else ():
            a = np.asarray(spec.tensors[n])
            values, bound = np.unique(a), _classes(spec, n)
            if values.size < 2 and bound is not None and bound >= 2:
                # labels of one class drawn as labels of several: with y all 2, CS231n's
                # dx[:, y] -= 1 slip is right at every point (outside test t70a F2)
                values = np.arange(min(bound, 64))
            v = rng.choice(values, size=a.shape).astype(a.dtype)
            if values.size >= 2 and np.unique(v).size < 2:
                v.flat[0] = values[values != v.flat[0]][0]
            if np.unique(v).size == v.size:
                v.flat[1] = v.flat[0]
            v.flags.writeable = False
            point[n] = v
        for n in names:
            a = np.asarray(spec.tensors[n])
            shift = (1.0 if k % 2 == 0 else -1.0) * rng.uniform(0.5, 1.0)
            v = np.array(_scale(a) * (rng.standard_normal(a.shape) + shift), dtype=a.dtype)
            v.flags.writeable = False  # as the spec's: a forward writing into it is refused
            point[n] = v
        points.append((point, names))
    far = _far(spec, names)
    if far:
        # and one on the unit scale: at its own, a tensor of 1e17 swallows what a forward adds
        # to it (a linear without its bias at x ~ 1e17: `your forward ... PASS`, and db = 0
        # passed), and one score of 1e8 sets the whole row's scale (an svm without its + 1
        # passed: outside test t68b F1, F2)
        point = dict(spec.tensors)
        for n in far:
            a = np.asarray(spec.tensors[n])
            v = np.array(rng.standard_normal(a.shape) + rng.uniform(0.5, 1.0), dtype=a.dtype)
            v.flags.writeable = False
            point[n] = v
        points.append((point, far))
    return points


def drawn_count(spec: Spec) -> int:
    """How many points ``drawn_points`` draws, none of them drawn (the cost model's count)."""
    return DRAWN_POINTS + bool(_far(spec, _drawn(spec)))


def _drawn(spec: Spec) -> tuple[str, ...]:
    """The tensors drawn anew at each point: the differentiated float ones."""
    constants = spec.layer.constants(spec.shapes, spec.options)
    return tuple(n for n, a in spec.tensors.items()
                 if n not in constants and np.asarray(a).dtype.kind == "f")  # fmt: skip


def _far(spec: Spec, names: tuple[str, ...]) -> tuple[str, ...]:
    """Those of ``names`` drawn once more on the unit scale (_far_from_unit)."""
    return tuple(n for n in names if _far_from_unit(np.asarray(spec.tensors[n])))


def _classes(spec: Spec, name: str) -> int | None:
    """The bound of a label or index tensor's values (the size of the axis it indexes), or
    None where the layer names none (a custom layer's integers)."""
    infos = {i.name: i for i in spec.layer.infos(spec.shapes, spec.options)}
    info = infos.get(name)
    if info is None or info.role != "index" or not info.classes:
        return None
    for other in infos.values():
        if info.classes in other.axes and other.name in spec.tensors:
            shape = np.shape(spec.tensors[other.name])
            k = other.axes.index(info.classes) - len(other.axes)
            return int(shape[k]) if len(shape) >= len(other.axes) else None
    return None


def _in_range(spec: Spec, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The spec's tensors with ``names`` drawn uniformly within each one's own range of values
    (a constant one within a quarter of its value either way, 0 within 0.5): the signs and
    bounds a forward's domain may ask for (after a relu, probabilities) kept."""
    rng = np.random.default_rng([spec.seed, 0x72616E67])
    point = dict(spec.tensors)
    for n in names:
        a = np.asarray(spec.tensors[n])
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1.0):
            half = 0.25 * abs(lo) if lo != 0 else 0.5
            lo, hi = lo - half, hi + half
        v = np.array(rng.uniform(lo, hi, a.shape), dtype=a.dtype)
        v.flags.writeable = False
        point[n] = v
    return point


def _far_from_unit(a: np.ndarray) -> bool:
    """Whether a tensor's own scale is far from 1 (beyond a factor of UNIT_SPREAD), or set by
    a few elements far above the rest (its root mean square UNIT_SPREAD times the median of its
    nonzero magnitudes): at 4 times the unit scale attention's scores saturate its softmax, and
    one without its 1 / sqrt(d_k) matched ours at every point on that scale; at 30 an
    rnn_step's tanh, and one without its bias did (outside test t69a F2)."""
    scale = _scale(a)
    nonzero = np.abs(a[np.isfinite(a) & (a != 0)])
    typical = float(np.median(nonzero)) if nonzero.size else 1.0
    return not (1 / UNIT_SPREAD <= scale <= UNIT_SPREAD) or scale > UNIT_SPREAD * typical


UNIT_SPREAD = 2.0


def complex_safe(spec: Spec, method: str, engine: Engine | None = None) -> None:
    """A user's forward may drop or mangle the imaginary part (abs, max, real casts): before
    the complex step is trusted on one, compare it with central differences on a few
    coordinates (``engine``: a complex-step engine already built, else one is). Built-in
    layers and other methods pass."""
    if spec.layer.broadcasts or method != "complex":
        return
    if engine is None:
        engine = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output, method=method)
    central = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output)
    rng = np.random.default_rng(0)
    from gradcli.user.call import complex_cast

    complex_cast()  # (from here on)
    for name, a in spec.tensors.items():
        if name in spec.layer.constants(engine.shapes, spec.options):
            continue
        real = _scaled(spec, name, central)
        try:
            _along_a_line(engine, real, name, rng)
            picks = (np.arange(a.size) if a.size <= SAFE_ALL else
                     rng.choice(a.size, size=SAFE_PICKS, replace=False))  # fmt: skip
            c = engine.gradient(name, coords=picks)[0].ravel()[picks]
            # a cast of complex values to real discards the imaginary part: where that part
            # is flat at float64's steps too (x.astype(np.float16) at |x| = 10, inside its
            # cells), the two agree and the branch's derivative was read as 0, passing a
            # backward that drops it (outside test t33a F4)
            if complex_cast():
                raise OptionError(
                    "your forward is not complex-safe: it casts complex values to real "
                    "(numpy's ComplexWarning: the imaginary part, the derivative, is "
                    f"discarded); use another {mention('method')}",
                    param="method",
                )
        except UserCodeError as e:
            # it ran on the spec's real tensors: what it refuses is the complex input (np.hypot,
            # math.sqrt), which a bare TypeError did not say (outside test t25 F5)
            raise OptionError(
                f"your forward is not complex-safe: on complex input {e.message}; use another "
                f"{mention('method')}",
                param="method",
            ) from None
        blind = _refuse_disagreement(spec, name, picks, c, real)
        # and where that round-off is not far below the readings, at a step FAR times the
        # automatic one, whose round-off is that much smaller: a dropped imaginary part of a
        # term of 1e-9 beside outputs of 1 hid in the automatic step's, a wrong dw passed and
        # the right one failed (outside test t64a F3); the finer steps _refuse_disagreement
        # takes tell truncation from it
        if blind > BLIND and real is central and central.eps * FAR <= FAR_LARGEST:
            far = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output,
                         eps=central.eps * FAR, unit=central.unit)  # fmt: skip
            try:
                _refuse_disagreement(spec, name, picks, c, far, coloring=True,
                                     every=picks.size == a.size)  # fmt: skip
            except UserCodeError:  # its steps leave the forward's domain: no reading there
                pass
            except OptionError as e:  # readings that never settle at those steps say nothing
                if not e.message.startswith("the complex step cannot be checked"):
                    raise


FAR = 256.0  # complex_safe's second reading, in automatic central steps
BLIND = 1e-6  # ... taken where the first's round-off is beyond this much of its readings
FAR_LARGEST = 1e-2  # ... no step past this


def _scaled(spec: Spec, name: str, central: Engine) -> Engine:
    """``central``, or where every input of ``name`` lies a thousand times below its step
    (eps x max(1, |x|)), central differences at a step scaled to the largest of them: x**3 at
    |x| = 1e-100 read h^2 at every step from 6e-6 down, and was called not complex-safe."""
    top = below_step(central.t64[name], central.eps)
    if not top:
        return central
    return Engine(spec.layer, spec.tensors, spec.options, spec.grad_output,
                  eps=central.eps * top, unit=central.unit)  # fmt: skip


def complex_agrees(spec: Spec, name: str, grad: np.ndarray, coords: np.ndarray | None,
                   engine: Engine | None = None) -> None:
    """After the complex step read ``name`` at ``coords`` (None: every coordinate), a user's
    forward is held to central differences at each of them, as complex_safe holds it at a
    few: a forward unsafe at one element of 20000 (y[0] = x0 |x0|, an L1 term of 1e-4) read
    half that element's derivative, failing the right backward and passing one without the 2
    (t22 N8). Raises as complex_safe does."""
    if spec.layer.broadcasts:
        return
    picks = np.arange(grad.size) if coords is None else np.asarray(coords, dtype=np.int64)
    central = _scaled(spec, name, Engine(spec.layer, spec.tensors, spec.options,
                                         spec.grad_output))  # fmt: skip
    if engine is not None:  # the footprint the built-in lent the complex step's engine
        central.declared_footprint = engine.declared_footprint
    _refuse_disagreement(spec, name, picks, grad.ravel()[picks], central, coloring=True,
                         every=coords is None)  # fmt: skip


def _refuse_disagreement(
    spec: Spec, name: str, picks: np.ndarray, c: np.ndarray, central: Engine,
    coloring: bool = False, every: bool = False,
) -> float:
    """Raise where the complex step's readings ``c`` at flat ``picks`` disagree with central
    differences beyond their noise, their truncation (read again at a finer step) and kinks;
    else the central differences' largest round-off over their largest reading (how blind
    they were)."""
    # every coordinate: the whole gradient, colored (a sample's groups are colored only
    # where they save copies)
    try:
        r, info = central.gradient(name, coloring=coloring, coords=None if every else picks)
    except UserCodeError:
        # real steps leaving the forward's domain at some coordinates (a sqrt at 1e-7),
        # which the complex step's never do: no fault of the complex step (outside test
        # t61b F2: 'not complex-safe' for a complex-safe sqrt); held to the others, a few
        # read one by one (an np.abs beside that sqrt still drops its derivative there)
        readable = [k for k in picks[:READ_ALONE] if _readable(central, name, int(k))]
        if readable and len(readable) < len(picks):
            keep = np.isin(picks, readable)
            return _refuse_disagreement(spec, name, picks[keep], c[keep], central, coloring)
        return 0.0
    r = r.ravel()[picks]
    noise = _noise(info, picks)
    # held to the picks' own size, not to 1: an L1 term of 1e-6 beside gradients of 4e-4,
    # which np.abs drops from the complex step, hid under an absolute 1e-5 (t21 F4)
    floor = 1e-3 * float(np.max(np.abs(r[np.isfinite(r)]), initial=0.0))
    # a central difference of exactly 0 saw no move of the loss: no evidence (a saturated
    # tanh's 5e-18, below the loss's last bit, that the complex step alone sees)
    with np.errstate(invalid="ignore"):
        bad = (np.abs(c - r) > 1e-5 * np.maximum(np.abs(r), floor) + noise) & (r != 0)
    unsettled = np.zeros(bad.shape, dtype=bool)
    if bad.any():  # the central step's own truncation is no evidence either: its step grows
        # with |x| (a layernorm at 1e4 + N(0, 1): 0.06, 1e-4 off); read again at a finer
        # step, up to 1/64 of it, no finer than its noise allows (_finer)
        at = np.flatnonzero(bad)
        gaps = np.abs(c[at] - r[at])
        noise_at = np.broadcast_to(noise, picks.shape)[at] / 4
        factors = np.array([_finer(g, n) for g, n in zip(gaps, noise_at, strict=True)])
        ok = np.zeros(at.size, dtype=bool)
        for factor in np.unique(factors):
            group = factors == factor
            finer = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output,
                           eps=central.eps / factor, unit=central.unit)  # fmt: skip
            where = picks[at[group]]
            r2, fine = finer.gradient(name, coloring=coloring, coords=where)
            r2 = r2.ravel()[where]
            noise2 = _noise(fine, where)
            c1, r1 = c[at[group]], r[at[group]]
            good = np.abs(c1 - r2) <= 1e-5 * np.maximum(np.abs(r2), floor) + noise2
            # truncation only where the finer step moved the reading towards the complex
            # step's: its larger round-off alone covered an L1 term of 1e-8 (t22 N8)
            good &= np.abs(r2 - r1) >= 0.5 * np.abs(c1 - r1)
            # a reading that moved by over a tenth when the step shrank has not settled: the
            # step spans the forward's whole rise (tanh(1e12 x) at x ~ 1e-12 read 4e5 for
            # 8.5e11): no evidence either way (outside test t27 N3: np.tanh was called unsafe)
            unsettled[at[group]] = np.abs(r2 - r1) > 0.1 * np.maximum(np.abs(r1), np.abs(r2))
            ok[group] = good
        bad[at[ok]] = False
    if bad.any():
        bad[_converge(spec, name, picks, bad, c, r, floor, central, coloring)] = False
    if bad.any():  # a central difference across a kink (relu at 0) is no evidence
        bad &= ~_at_kink(spec, name, picks, c, central.eps)
    if bad.any():  # nor one within its round-off, measured on its own line: the model's
        # misses a forward rounding far larger numbers (a layer norm at 1e3 + N(0, 1) under
        # an upstream gradient of ones, 0 in theory, read 1.5e-10 there, and its forward
        # was called not complex-safe: outside test t35a F8)
        bad &= ~_measured_mask(central, name, picks, bad, c, r, coloring)
    if np.any(bad) and np.all(unsettled[bad]):
        raise _unsettled(name)
    if np.any(bad):
        j = int(np.argmax(np.where(bad, np.abs(c - r), -1.0)))
        raise OptionError(
            f"your forward is not complex-safe: the complex step and central differences "
            f"disagree on d{name} (flat index {int(picks[j])}: {c[j]:.6g} vs {r[j]:.6g}); "
            f"use another {mention('method')}",
            param="method",
        )
    top = float(np.max(np.abs(r[np.isfinite(r)]), initial=0.0))
    blur = float(np.max(np.broadcast_to(noise, r.shape), initial=0.0))
    return blur / top if top > 0 else (math.inf if blur > 0 else 0.0)


READ_ALONE = 64  # coordinates tried one by one where real steps leave the forward's domain


def _readable(central: Engine, name: str, k: int) -> bool:
    """Whether the central difference of coordinate ``k`` alone stays in the forward's
    domain (its output finite at both steps)."""
    try:
        central.gradient(name, coords=np.array([k]))
    except UserCodeError:
        return False
    return True


def _unsettled(name: str) -> OptionError:
    """The complex step could not be compared with real differences: theirs never settle."""
    return OptionError(
        f"the complex step cannot be checked against central differences on d{name} here: "
        f"their readings do not settle as the step shrinks (the forward varies on a scale "
        f"finer than the step): this says nothing of your forward; rescale the inputs, or "
        f"use another {mention('method')}",
        param="method",
    )


def _measured_mask(central: Engine, name: str, picks: np.ndarray, bad: np.ndarray,
                   c: np.ndarray, r: np.ndarray, coloring: bool) -> np.ndarray:
    """Which of ``bad`` (a mask over ``picks``) disagree by no more than 4 times the central
    reading's round-off measured along its own line (numeric/refine.measured)."""
    from gradcli.numeric import refine  # LAZY: see ARCHITECTURE.md, "Start-up"

    at = np.flatnonzero(bad)
    x = central.t64[name].ravel()[picks[at]]
    unit = refine.measured(central, name, picks[at], x, central.method, coloring)
    out = np.zeros(bad.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        out[at] = np.abs(c[at] - r[at]) <= 4 * unit / steps(x, central.eps)
    return out


def _converge(
    spec: Spec, name: str, picks: np.ndarray, bad: np.ndarray, c: np.ndarray, r: np.ndarray,
    floor: float, central: Engine, coloring: bool,
) -> np.ndarray:  # fmt: skip
    """Which of ``bad`` (a mask over ``picks``) central differences at smaller steps lead to the
    complex step's reading, at the rate of some truncation (numeric/refine.py): at a point
    where L is C1 but not C2 (a squared hinge at a margin of exactly 0) their error is O(h),
    which one finer step does not take below the gap (t23 F10). A forward the complex step
    reads wrong leads elsewhere, at every step."""
    from gradcli.numeric import refine  # LAZY: see ARCHITECTURE.md, "Start-up"

    size = spec.tensors[name].size
    a, n = np.zeros(size), np.zeros(size)
    a[picks], n[picks] = c, r
    at = picks[bad]

    def tol(noise: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return 1e-5 * np.maximum(np.abs(ref), floor) + noise

    got = refine.refine(central, name, at, a, n, tol, method=central.method, coloring=coloring)
    return bad & np.isin(picks, got.coords)


def _finer(gap: float, noise: float) -> float:
    """How many times finer a real step may be read again to tell its truncation from a gap
    of ``gap`` at round-off ``noise`` (which grows as the step shrinks): 64 where the noise
    allows, else the power of 2 keeping 4x its noise under a quarter of the gap, at least 2."""
    if not noise > 0:
        return 64.0
    return float(2.0 ** np.clip(np.floor(np.log2(gap / (16 * noise))), 1, 6))


def _noise(info: Any, picks: np.ndarray) -> np.ndarray | float:
    """4x the round-off a central difference reads at ``picks``: the tensor's largest, modelled
    (an element's own misses what an output moved by less than its last bit loses: a confident
    softmax's top output at 1 read 3.7e-17 where its model said 4e-27)."""
    out = np.full(picks.size, float(info.noise) if np.isfinite(info.noise) else 0.0)
    for at in (info.noise_at, info.noise_reach):
        if at is not None:
            out = np.maximum(out, np.asarray(at).ravel()[picks])
    return 4 * out


FINER_ROUNDS = 4  # _along_a_line's readings at finer steps: 64^-4 of the step at most


def _along_a_line(engine: Engine, central: Engine, name: str, rng: np.random.Generator) -> None:
    """Every coordinate of ``name`` moved at once along a random +-1 direction, by the central
    difference's steps: where the loss is smooth along that line (its two one-sided slopes
    agree), the complex step's slope must be theirs. A forward that drops the imaginary part
    on some path reads 0 for every coordinate on it, and a few random coordinates can all miss
    the path (a max-pool's elements that win no window read 0 both ways), which a line
    through every coordinate does not (1 complex and 4 real copies)."""
    h = steps(central.t64[name].ravel(), central.eps)
    direction = rademacher(central.t64[name].shape, rng)
    c, step = engine.directional(name, direction, h)
    try:
        right, left, noise = central.line_slopes(name, step, unmoved=True)
    except UserCodeError:
        # the real steps leave the forward's domain (a sqrt at 1e-7), which the complex
        # step's never does: no real reading to hold it to here, and no fault of its
        # (outside test t61b F2: 'not complex-safe' for a complex-safe sqrt)
        return
    if right == left == 0:  # the loss never moved: a slope below its last bit (a confident
        # classifier's loss, log(1 + 3e-18) = 0) that the complex step alone sees; no evidence
        return
    if abs(right - left) > 4 * noise + 1e-6 * max(abs(right), abs(left)):
        return  # a kink on the line: the coordinates' own readings decide
    r = (right + left) / 2

    def apart(c: float, r: float, noise: float) -> bool:
        return abs(c - r) > 1e-5 * max(abs(r), abs(c)) + 4 * noise + 1e-300

    # the real slopes' own truncation first: their step grows with |x| (a batchnorm at
    # 1000 + N(0, 1) varies on a scale of 1: 1.2e-5 apart); again at finer steps while the
    # real slope moves towards the complex one at least halfway each time (x**3 at 1e-5
    # needs two of 1/64; a forward dropping the imaginary part stays as far). Each up to
    # 1/64, but no finer than keeps its round-off (the step's inverse) under a quarter of the
    # gap: at 1/64 a term of 1e-2 in 20000 (y[0] = x0 |x0|) drowned in it (t22 N8). A reading
    # along p = direction * h is a slope times h: at h / k, k times it
    toward, total = False, 1.0
    for _ in range(FINER_ROUNDS):
        if not apart(c, r, noise):
            break
        gap = abs(c - r)
        finer = _finer(gap, noise)
        c2, step = engine.directional(name, direction, h / (total * finer))
        right, left, noise2 = central.line_slopes(name, step, unmoved=True)
        r2 = (right + left) / 2
        toward = abs(r2 * finer - r) >= 0.5 * gap and abs(c2 - r2) * finer < gap
        c, r, noise, total = c2, r2, noise2, total * finer
        if not toward:
            break
    if toward and apart(c, r, noise):
        # still moving towards the complex step's reading: the step spans the forward's
        # whole rise (x**3 at |x| = 1e-100 reads h^2 at every step), no evidence
        raise _unsettled(name)
    if apart(c, r, noise):
        raise OptionError(
            f"your forward is not complex-safe: the complex step and real differences "
            f"disagree on d{name} along a random direction through every element ({c:.6g} "
            f"vs {r:.6g}); use another {mention('method')}",
            param="method",
        )


def _at_kink(spec: Spec, name: str, picks: np.ndarray, c: np.ndarray,
             eps: float) -> np.ndarray:  # fmt: skip
    """Which ``picks`` have a kink within the central difference's step ``eps``, with the
    complex step's ``c`` one of the slopes there: some output's two one-sided slopes at that
    step disagree, and ``c`` lies within the sum over the outputs of each one's interval
    (relu's x = 0 reads 0.5 centrally, 1 or 0 on each side; at x = 1e-6 smaller steps than
    the central one's read 1 on both sides, and a correct relu was refused). Per output, not
    the loss's two slopes: at a tie in overlapping max-pool windows whose upstream gradients
    have both signs, a valid routing's value lies outside the loss's two slopes (they
    understate the valid gradients there, README "Ties no coordinate sees"), and a correct
    complex-safe max-pool was refused. A forward that drops the imaginary part reads 0 away
    from kinks, where every output's two sides agree."""
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    engine = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output, eps=eps)
    h = steps(engine.t64[name].ravel()[picks], eps)
    _, _, lo, hi = kinks.moves(engine, name, picks, h, kinks.BOTH_SIDES, coloring=False,
                               hull=True)  # fmt: skip
    tol = 1e-5 * np.maximum(np.maximum(np.abs(lo), np.abs(hi)), 1.0)
    return (hi - lo > tol) & (c >= lo - tol) & (c <= hi + tol)
