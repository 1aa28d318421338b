"""float32 checks: the round-off each float32 gradient under test carries, measured where it
can be, and the absolute tolerance it earns on top of the numerical side's own.

The numerical reference of a float32 spec is float64 (the layer's forward on float64 copies of
the float32 tensors), so ``|a32 - n| <= |a32 - a64| + |a64 - n|``: the second term is the
float64 check's error, held to the float64 tolerances, and the first is the backward's float32
round-off at this very point, which gradcli measures by running the same backward in float64
on the same inputs. The tolerance is a small multiple of that measurement, per element, so an
error 1000x the round-off (a variance with ddof=1 over 1000 elements) fails, where fixed
float32 tolerances (1e-4, 1e-3) let it through. Per element, not per tensor: a confident
classifier's p - 1 at its labels rounds to 1% in float32 while its other entries, exp()s, round
to 1e-7 of themselves, and a tensor-wide allowance passed those 12.5% off (t19 F4).

Where the code under test cannot run in float64 (a user's backward that computes in float32
whatever it is given, or answers from a file) the built-in layer's own round-off at this point
stands in, with a larger factor (another code rounds in another order), each element's the
largest of a plain float32 run and NUDGED runs with inputs moved by a float32 last bit (one run
may round an element exactly by luck; another code may not); with no built-in either the
round-off is estimated from the gradient's size (contract.roundoff_tolerance).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcli.checking import lastbit
from gradcli.checking.contract import float32_code, float32_valued, roundoff_tolerance
from gradcli.errors import mention
from gradcli.layers import REGISTRY
from gradcli.layers.base import float64_copies
from gradcli.records import record

if TYPE_CHECKING:  # check imports this module
    from gradcli.checking.compute import Computation
    from gradcli.inputs.spec import Spec

EPS32 = float(np.finfo(np.float32).eps)
# multiples of the round-off a float32 gradient is allowed beyond the float64 check's error:
# the code under test's own (the largest entry of |a32 - a64| bounds every element exactly, so
# 4 is margin), another code's standing in for it (summation orders differ), an estimate
FACTORS = {"measured": 4.0, "built-in": 16.0, "estimated": 1.0}
# never less than 16 float32 ulps of each element's terms (a round-off of 0; _terms), or
# where those are not known, of the largest entry
FLOOR_ULPS = 16
NUDGED = 3  # float32 runs, inputs moved by a last bit, beside the plain one, for a stand-in
# no element's float32 round-off is more than this share of its own terms (Level.each)
OF_TERMS = 2.0**-10
# a user's own measured round-off is capped at this many times the built-in's, element by
# element: with FACTORS, no more than answers from a file are allowed (16 / 4)
CAPPED = 4.0


@record
class Level:
    """The float32 round-off of one gradient: ``absolute`` (in the gradient's units: the
    largest |a32 - a64|, or what stands in for it), ``relative`` (that over the largest
    entry, as the report shows it) and ``source``: "measured" (the backward under test in
    float64 against float32), "built-in" (the built-in layer's, standing in) or "estimated"."""

    absolute: float
    relative: float
    source: str
    elements: np.ndarray | None = field(default=None, repr=False, compare=False)
    note: str = field(default="", compare=False)  # what the report says of it, if anything
    terms: np.ndarray | None = field(default=None, repr=False, compare=False)  # _terms
    routed: bool = field(default=False, compare=False)  # a built-in layer with kinks

    def atol(self, largest: float) -> float:
        """What this round-off adds to the absolute tolerance of a gradient whose largest
        entry is ``largest``, tensor-wide (what a probe's directions are held to)."""
        return max(FACTORS[self.source] * self.absolute, FLOOR_ULPS * EPS32 * largest)

    def floor(self, largest: float) -> float:
        """The part of ``atol`` every element gets: 16 float32 ulps of the largest entry, or
        none where each element's terms are known (``each`` holds their floor)."""
        return 0.0 if self._terms() is not None else FLOOR_ULPS * EPS32 * largest

    def each(self, largest: float) -> np.ndarray | None:
        """Each element's allowance (of the gradient's shape), or None where only the
        tensor-wide one is known (an estimate)."""
        if self.elements is None:
            return None
        terms = self._terms()
        floor = self.floor(largest) if terms is None else FLOOR_ULPS * EPS32 * terms
        allowed = FACTORS[self.source] * self.elements
        if terms is not None and self.routed:
            # a layer with kinks routes its upstream gradient, and no rounding moves an element
            # by a share of its own terms: a route float32 took otherwise did (an svm margin of
            # 2e-8 rounded to 0, a whole hinge of 1/N apart), and 16 times it let answers 16/N
            # off pass (outside test t66a F1). (A saturated tanh's 1 - y^2 rounds far beyond
            # its terms: no cap for a smooth layer)
            allowed = np.minimum(allowed, OF_TERMS * terms)
        return np.maximum(allowed, floor)

    def _terms(self) -> np.ndarray | None:
        ok = (self.terms is not None and self.elements is not None
              and self.terms.shape == self.elements.shape)  # fmt: skip
        return self.terms if ok else None


def levels(
    spec: Spec, comp: Computation, answers: bool = False, max_memory: float = math.inf
) -> dict[str, Level]:
    """float32 only: the round-off of each float32 gradient the check may compare (the
    tensors', the intermediates' the backward returns); ``answers``: the gradients under test
    are the user's (--grads), which no backward here computed; ``max_memory``: the bytes a
    custom layer's float32 and float64 readings at REPEATS nearby points may hold, at most
    half of it (else nothing is withheld as repeating: _unexcused)."""
    if spec.dtype != "float32":
        return {}
    inter = comp.intermediates
    names = [*comp.gradients, *(n for n in spec.layer.intermediates if "d" + n in inter)]
    own = _measure(spec.layer, spec, comp)
    builtin = REGISTRY.get(spec.layer.name)
    ours = builtin is spec.layer
    stand_in: dict[str, tuple[float, float, bool, np.ndarray]] | None = None

    def standing_in() -> dict[str, tuple[float, float, bool, np.ndarray]]:
        nonlocal stand_in
        if stand_in is None:
            stand_in = {} if builtin is None else _built_in(builtin, spec)
        return stand_in

    seen: dict[str, np.ndarray] | None = None
    held = 2 * (REPEATS + 1) * 8 * sum(int(np.size(v[3])) for v in own.values())
    unread = ""  # said once, where the readings would not fit

    def repeated() -> dict[str, np.ndarray]:
        nonlocal seen, unread
        if seen is None:
            seen = _repeated(spec.layer, spec, tuple(own)) if held <= max_memory / 2 else {}
            if held > max_memory / 2:
                unread = (f"your backward's float32 path was not read at {REPEATS} nearby "
                          f"points (their readings need {held / 2**20:.2g} MB, more than half "
                          f"of {mention('max_memory')}): a float32-only slip is not told "
                          "from round-off here")
        return seen

    own_spread: dict[str, np.ndarray] | None = None
    terms = _terms(builtin or spec.layer, spec, names)
    out = {}
    for n in names:
        if n in own and (ours or own[n][2]) and not answers:
            absolute, relative, _, each = own[n]
            note = ""
            if not ours and n in standing_in() and standing_in()[n][3].shape == each.shape:
                # the user's own float32 path is measured against its float64 one, which a
                # float32-only slip passes as its own round-off (a tanh times 1.03 in float32
                # passed with an atol of 12%): never more than the built-in's, as answers get
                each = np.minimum(each, CAPPED * standing_in()[n][3])
            elif builtin is None:
                each, note = _unexcused(spec, n, each, comp, repeated)
                note, unread = note or unread, ""
            top = absolute / relative if relative else 0.0
            absolute = float(each.max(initial=0.0))
            out[n] = Level(absolute, absolute / top if top else relative, "measured", each,
                           note=note, terms=terms.get(n))
            continue
        if n in standing_in():
            absolute, relative, _, each = standing_in()[n]
            out[n] = Level(absolute, relative, "built-in", each, terms=terms.get(n))
            continue
        if own_spread is None:
            own_spread = _own_spread(spec, names) if builtin is None else {}
        a = np.asarray(_gradient(comp, n), dtype=np.float64)
        out[n] = dataclasses.replace(_estimated(spec, a, own_spread.get(n)), terms=terms.get(n))
    return _routed(out, builtin)


def _routed(out: dict[str, Level], builtin: Any) -> dict[str, Level]:
    """``out``, its levels marked as a layer's whose kinks route its gradient (Level.each)."""
    if builtin is None or builtin.kinks is None:
        return out
    return {n: dataclasses.replace(lv, routed=True) for n, lv in out.items()}


def _terms(layer: Any, spec: Spec, names: Any) -> dict[str, np.ndarray]:
    """{name: each element's terms, the scale another float32 code's round-off of it has}:
    the largest of its |gradient| in float64, at |inputs| under |upstream gradient| (where
    no term cancels another: gelu'(-5.6) = 7e-7 is a sum of terms of about 1, which torch's
    float32 reads as -0.0) and, for a built-in layer, under upstream gradients with random
    signs (lastbit.natural_terms). Each element's own, not the tensor's largest: 16 float32
    ulps of a linear's dW of 7.6e4 in one column passed a 10% slip in another's of 1.2
    (outside test t30b F3b). {} where the code refuses to run there."""
    def absolute(v: Any) -> Any:
        return np.abs(v) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v

    tensors = float64_copies(spec.tensors)
    g = np.asarray(spec.grad_output, dtype=np.float64)
    try:
        with np.errstate(all="ignore"):
            runs = [layer.backward(g, layer.forward(tensors, spec.options)[1]),
                    layer.backward(np.abs(g), layer.forward(
                        {k: absolute(v) for k, v in tensors.items()}, spec.options)[1])]
            if layer is REGISTRY.get(spec.layer.name):
                runs.append(lastbit.natural_terms(spec, tuple(names)))
    except Exception:  # noqa: BLE001 - code of the user's own at |inputs|: nothing known
        return {}
    out: dict[str, np.ndarray] = {}
    for run in runs:
        for n in names:
            if n not in run:
                continue
            with np.errstate(invalid="ignore"):
                a = np.abs(np.asarray(run[n], dtype=np.float64))
            a = np.where(np.isfinite(a), a, 0.0)
            if n not in out:
                out[n] = a
            elif out[n].shape == a.shape:
                out[n] = np.maximum(out[n], a)
    return out


def _estimated(spec: Spec, a: np.ndarray, spread: np.ndarray | None = None) -> Level:
    """No float64 run and no built-in to stand in: each element allowed 256 float32 ulps of
    itself (more for long reductions), never less than FLOOR_ULPS of the largest entry, and
    at least MOVED times what the code's own result moves by when its inputs move by a
    float32 last bit (``spread``, _own_spread). Of the largest for the whole tensor, every
    element below 2e-5 of it took any value: a sign flipped among gradients spanning 1e-5
    ... 1 passed 'within noise' (outside test t25 F6); of itself alone, x - mean at |x| ~ 1000
    rounds at 6e-5 in float32, and a correct layernorm failed (t25 F9)."""
    largest = _largest(a)
    size = int(np.size(spec.grad_output))
    est = roundoff_tolerance(EPS32, largest, size)
    with np.errstate(invalid="ignore"):
        each = np.where(np.isfinite(a), roundoff_tolerance(EPS32, 1.0, size) * np.abs(a), 0.0)
    if spread is not None and spread.shape == each.shape:
        # a move beyond CAPPED_MOVE of the largest is no rounding: the code's result jumped
        # (a slope read off exact input values, x == 1 at a Huber's knee, a kink crossed)
        each = np.fmax(each, MOVED * np.minimum(spread, CAPPED_MOVE * largest))
    return Level(est, est / (largest or 1.0), "estimated", each)


MOVED = 4.0  # the moves of float32 code's result a last bit of its inputs makes, as allowed
CAPPED_MOVE = 2.0**-12  # of the largest entry: 2048 float32 ulps


def _own_spread(spec: Spec, names: Any) -> dict[str, np.ndarray]:
    """Float32 code of the user's own, which no float64 run measures: each element's largest
    change over NUDGED runs with every float input moved by 1-2 float32 last bits (relative:
    0 stays 0, a sign never changes), which re-rounds what it computes from them (x - mean at
    |x| ~ 1000). {} where the code refuses a call."""
    layer, g = spec.layer, spec.grad_output
    rng = np.random.default_rng(0x6F776E73)
    try:
        base = layer.backward(g, layer.forward(spec.tensors, spec.options)[1])
        moved = {n: np.zeros(np.shape(base[n])) for n in names if n in base}
        for _ in range(NUDGED):
            tensors = lastbit.nudged(spec.tensors, rng, EPS32)
            got = layer.backward(g, layer.forward(tensors, spec.options)[1])
            for n in moved:
                with np.errstate(invalid="ignore", over="ignore"):
                    change = np.abs(np.asarray(got[n], dtype=np.float64)
                                    - np.asarray(base[n], dtype=np.float64))  # fmt: skip
                moved[n] = np.fmax(moved[n], change)
    except Exception:  # noqa: BLE001 - the user's code at a point of ours: nothing measured
        return {}
    return moved


def float32_work(
    spec: Spec, under_test: dict[str, np.ndarray], answers: bool = False
) -> dict[str, Level]:
    """float64 spec: the round-off of each gradient under test that holds only float32 numbers
    (contract.float32_valued: a backward computing in float32, answers stored in float32),
    what a float32 spec's answers get: the built-in layer's float32 round-off at the spec's
    point rounded to float32, per element (times 16), else an estimate. Without it, such
    code was held to float64's tolerances: a correct float32 layernorm, batchnorm or softmax
    failed at some seeds and passed at others, its linearity and its agreement with the
    built-in backward blamed (outside test t24 F10). Only where every gradient under test is
    float32 code's (those not all 0s, counts or halves): one float32 sum among float64 ones
    is a slip in float64 code, held to float64 and named by a hint (hypotheses.py)."""
    if not float32_code(spec.dtype, under_test):
        return {}
    names = [n for n, a in under_test.items() if float32_valued(spec.dtype, a)]
    builtin = REGISTRY.get(spec.layer.name)
    terms = _terms(builtin or spec.layer, spec, names)
    stand_in = {}
    if builtin is not None:
        spec32 = dataclasses.replace(
            spec, dtype="float32", tensors=_float32_copies(spec.tensors),
            grad_output=np.asarray(spec.grad_output, dtype=np.float32))  # fmt: skip
        stand_in = _built_in(builtin, spec32)
    own_spread: dict[str, np.ndarray] | None = None
    out = {}
    for n in names:
        a = np.asarray(under_test[n], dtype=np.float64)
        if n in stand_in and stand_in[n][3].shape == a.shape:
            absolute, relative, _, each = stand_in[n]
            out[n] = Level(absolute, relative, "built-in", each, terms=terms.get(n))
            continue
        if own_spread is None:  # answers have no code to move
            own_spread = _own_spread(spec, names) if builtin is None and not answers else {}
        out[n] = dataclasses.replace(_estimated(spec, a, own_spread.get(n)), terms=terms.get(n))
    first = names[0]
    grads = ", ".join("d" + n for n in names)
    out[first] = dataclasses.replace(out[first], note=(
        f"{grads}: every element is a float32 number (computed or stored in float32) in this "
        "float64 check: held to float32's round-off, as under dtype: float32 (the round-off "
        "lines below)"))
    return _routed(out, builtin)


def _float32_copies(tensors: Any) -> dict[str, Any]:
    return {n: (np.asarray(a, dtype=np.float32) if np.asarray(a).dtype.kind == "f" else a)
            for n, a in tensors.items()}  # fmt: skip


# a layer of the user's own with no built-in to cap it: its float32 path is run at REPEATS
# more points, each input moved by 1-2 NUDGE of itself (relative: far beyond float32's last
# bits, so every rounding inside lands elsewhere). Round-off is the part of (a32 - a64) / a64
# that varies between the points; a part that stays, over SCATTERS times what varies, is not
REPEATS = 11  # 12 readings: random round-off clusters that tightly once in 1e9 elements
NUDGE = 2.5e-3
SCATTERS = 4.0
BEYOND = 64 * EPS32  # a fraction smaller than this is within any float32 code's round-off


def _unexcused(
    spec: Spec, name: str, each: np.ndarray, comp: Computation, repeated: Any
) -> tuple[np.ndarray, str]:
    """``each`` allowing, where (a32 - a64) / a64 stays put between points (_repeated), only
    what varies, and a note naming those elements; ``each`` and "" when none. A value pinned
    by float32 (tanh(x) = 1 exactly at x > 9: its 1 - t^2 is 0 in float32 while float64's moves
    with x) stays put because float32 cannot see the move: round-off, kept. A float32 path of
    the user's own scales with the gradient (d[0, 0] * 1.5 in float32 only passed on a
    'round-off' of 33%, a factor 1.001 everywhere on one of 1e-3: t22 N7)."""
    a = np.asarray(_gradient(comp, name), dtype=np.float64)
    top = _largest(a)
    if not (each > FLOOR_ULPS * EPS32 * top).any():
        return each, ""  # nothing beyond what every element gets: nothing to withhold
    varying = repeated().get(name)
    if varying is None or varying.shape != each.shape:
        return each, ""
    withheld = varying < each
    if not withheld.any():
        return each, ""
    each = np.where(withheld, varying, each)
    count = int(withheld.sum())
    at = np.unravel_index(int(np.argmax(np.where(withheld, np.abs(a), -1.0))), a.shape)
    where = ", ".join(str(int(i)) for i in at)
    who = "the network's backward" if spec.layer.tail is not None else "your backward"
    return each, (
        f"d{name}: at {count} element{'s' * (count != 1)} (d{name}[{where}] among them) {who} "
        "in float32 differs from itself in float64 by the same fraction at "
        f"{REPEATS + 1} nearby points: round-off would vary from point to point, so this is "
        "judged as an error there (a float32 path of its own?)")


def _repeated(layer: Any, spec: Spec, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """name -> each element's round-off as the spread of (a32 - a64) / a64 over the spec's
    point and REPEATS nudged ones, in the element's units (at the spec's point), where the
    fraction's median exceeds BEYOND and SCATTERS times that spread; inf elsewhere (all of it
    may be round-off). {} if the layer cannot be run there (a nudge it refuses: nothing is
    withheld then)."""
    rng = np.random.default_rng(0x72657065)
    g32 = spec.grad_output
    g64 = np.asarray(g32, dtype=np.float64)
    runs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {n: [] for n in names}
    for k in range(REPEATS + 1):
        tensors = spec.tensors if k == 0 else lastbit.nudged(spec.tensors, rng, NUDGE)
        try:
            a32 = layer.backward(g32, layer.forward(tensors, spec.options)[1])
            a64 = layer.backward(g64, layer.forward(float64_copies(tensors), spec.options)[1])
        except Exception:  # the user's code at a point of ours: its refusal is no finding
            return {}
        for n in names:
            if n not in a32 or n not in a64 or np.shape(a32[n]) != np.shape(a64[n]):
                return {}
            runs[n].append((np.asarray(a32[n], dtype=np.float64),
                            np.asarray(a64[n], dtype=np.float64)))  # fmt: skip
    scale = max(_largest(g64), *(_largest(v) for v in spec.tensors.values()),
                *(_largest(p[1]) for pairs in runs.values() for p in pairs[:1]))
    out = {}
    for n, pairs in runs.items():
        a32 = np.stack([p[0] for p in pairs])
        a64 = np.stack([p[1] for p in pairs])
        with np.errstate(all="ignore"):
            r = (a32 - a64) / a64
            mid = np.median(r, axis=0)
            spread = np.max(np.abs(r - mid), axis=0)
            stays = (np.abs(mid) > BEYOND) & (np.abs(mid) > SCATTERS * spread)
        stays &= np.isfinite(r).all(axis=0)
        # float32 that cannot see the move (1 - tanh(x)^2 = 0 at x > 9) stays put because it
        # never moved: its error is some last bits of the numbers it was computed from, which
        # gelu'(5.3) = 1.0 in float32, 1% off only in float32 and as pinned, is not
        pinned = (a32 == a32[0]).all(axis=0)
        out[n] = np.where(stays, np.where(pinned, FLOOR_ULPS * EPS32 * scale,
                                          spread * np.abs(a64[0])), np.inf)  # fmt: skip
    return out


def _largest(value: Any) -> float:
    """The largest finite magnitude of a float array, 0.0 for anything else (labels)."""
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        return 0.0
    v = np.abs(value[np.isfinite(value)])
    return float(v.max(initial=0.0))


def _built_in(builtin: Any, spec: Spec) -> dict[str, tuple[float, float, bool, np.ndarray]]:
    """The built-in layer's round-off standing in for another code's: over nudged runs, and
    what a float32 last bit in the upstream gradient and the forward's saved arrays moves each
    element by (a code computing from them in another order rounds there: a confident
    softmax's y(dy - sum dy y) at y = 1 - 1e-6 is 7% off in torch where ours, which avoids the
    cancellation, is exact)."""
    stand_in = _measure(builtin, spec, None, NUDGED)
    formula = lastbit.spread(spec, tuple(stand_in), EPS32)
    for k, (absolute, relative, real, each) in stand_in.items():
        if k in formula and formula[k].shape == each.shape:
            each = np.fmax(each, formula[k])
        stand_in[k] = (absolute, relative, real, each)
    return stand_in


def _gradient(comp: Any, name: str) -> np.ndarray:
    return comp.gradients[name] if name in comp.gradients else comp.intermediates["d" + name]


def _measure(
    layer: Any, spec: Spec, comp: Computation | None, nudged: int = 0
) -> dict[str, tuple[float, float, bool, np.ndarray]]:
    """name -> (largest |a32 - a64|, that over the largest |a64|, whether the float64 run was
    one, each element's |a32 - a64|): ``layer``'s backward in float64 on float64 copies of the
    spec's tensors against its float32 gradients (``comp``'s, else a float32 run of ``layer``,
    and ``nudged`` more on inputs moved by 1-2 float32 last bits, each element's largest
    kept). A run that comes back in float32, or with every entry a float32 number, computed in
    float32 whatever it was given: it measures nothing (an exact gradient, relu's g * mask,
    loses nothing to a stand-in)."""
    _, cache = layer.forward(float64_copies(spec.tensors), spec.options)
    g64 = layer.backward(np.asarray(spec.grad_output, dtype=np.float64), cache)
    if comp is None:
        _, cache = layer.forward(spec.tensors, spec.options)
        runs = [(layer.backward(spec.grad_output, cache), g64)]
        rng = np.random.default_rng(0x663332)
        # a layer with kinks routes by its inputs, which a nudge may tie or untie: only its
        # upstream gradient is nudged (checking/lastbit.py, the same for float64)
        kinked = layer.kinks is not None or layer.maxima is not None
        for _ in range(nudged):
            moved = {k: v if kinked else _float32_nudged(v, rng)
                     for k, v in spec.tensors.items()}  # fmt: skip
            g = _float32_nudged(spec.grad_output, rng)
            _, cache = layer.forward(moved, spec.options)
            # against float64 at the moved point itself: the gradient's own change over a
            # float32 last bit of x is no round-off (a softmax at x = 1e6 + N(0, 1) moves 6%
            # over one, and a negated float32 answer passed as its 'round-off': t35b F5)
            _, cache64 = layer.forward(float64_copies(moved), spec.options)
            runs.append((layer.backward(g, cache),
                         layer.backward(np.asarray(g, dtype=np.float64), cache64)))
    else:
        runs = [({**comp.gradients,
                  **{k[1:]: v for k, v in comp.intermediates.items()
                     if k.startswith("d") and k[1:] in spec.layer.intermediates}}, g64)]
    out = {}
    for n, a in runs[0][0].items():
        if n not in g64 or np.shape(g64[n]) != np.shape(a):
            continue
        b = np.asarray(g64[n])
        real = b.dtype == np.float64 and not np.array_equal(b, b.astype(np.float32))
        b = b.astype(np.float64)
        scale = float(np.max(np.abs(b), initial=0.0)) or 1.0
        each = np.zeros(b.shape)
        with np.errstate(invalid="ignore", over="ignore"):
            for run, ref in runs:
                if n in run and n in ref and np.shape(run[n]) == np.shape(ref[n]) == b.shape:
                    each = np.fmax(each, np.abs(np.asarray(run[n], dtype=np.float64)
                                                - np.asarray(ref[n], dtype=np.float64)))
        diff = float(np.max(each, initial=0.0))
        out[n] = (diff, diff / scale, real, each)
    # one gradient beyond float32's numbers says the run was float64 for all: a bias before
    # a batchnorm reads 2^-53 there, a float32 number, and its float32 round-off of 2e-4 was
    # 'estimated' as if no float64 run existed, and failed (outside test t35a F6)
    if any(v[2] for v in out.values()):
        out = {k: (v[0], v[1], True, v[3]) for k, v in out.items()}
    return out


def _float32_nudged(value: Any, rng: np.random.Generator) -> Any:
    """A float32 array moved by 1 to 2 float32 last bits per entry (lastbit.nudged); anything
    else (labels, indices) as it is."""
    is32 = isinstance(value, np.ndarray) and value.dtype == np.float32
    return lastbit.nudged(value, rng, EPS32) if is32 else value
