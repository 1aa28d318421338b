"""float32 checks: the round-off each float32 gradient under test carries, measured where it
can be, and the absolute tolerance it earns on top of the numerical side's own.

The numerical reference of a float32 spec is float64 (the layer's forward on float64 copies of
the float32 tensors), so ``|a32 - n| <= |a32 - a64| + |a64 - n|``: the second term is the
float64 check's error, held to the float64 tolerances, and the first is the backward's float32
round-off at this very point, which gradcli measures by running the same backward in float64
on the same inputs. The tolerance is a small multiple of that measurement, per tensor, so an
error 1000x the round-off (a variance with ddof=1 over 1000 elements) fails, where fixed
float32 tolerances (1e-4, 1e-3) let it through.

Where the code under test cannot run in float64 (a user's backward that computes in float32
whatever it is given, or answers from a file) the built-in layer's own round-off at this point
stands in, with a larger factor (another code rounds in another order); with no built-in either
the round-off is estimated from the gradient's size (contract.roundoff_tolerance).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gradcli.checking.contract import roundoff_tolerance
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
FLOOR_ULPS = 16  # never less than 16 float32 ulps of the largest entry (a round-off of 0)


@record
class Level:
    """The float32 round-off of one gradient: ``absolute`` (in the gradient's units: the
    largest |a32 - a64|, or what stands in for it), ``relative`` (that over the largest
    entry, as the report shows it) and ``source``: "measured" (the backward under test in
    float64 against float32), "built-in" (the built-in layer's, standing in) or "estimated"."""

    absolute: float
    relative: float
    source: str

    def atol(self, largest: float) -> float:
        """What this round-off adds to the absolute tolerance of a gradient whose largest
        entry is ``largest``."""
        return max(FACTORS[self.source] * self.absolute, FLOOR_ULPS * EPS32 * largest)


def levels(spec: Spec, comp: Computation, answers: bool = False) -> dict[str, Level]:
    """float32 only: the round-off of each float32 gradient the check may compare (the
    tensors', the intermediates' the backward returns); ``answers``: the gradients under test
    are the user's (--grads), which no backward here computed."""
    if spec.dtype != "float32":
        return {}
    inter = comp.intermediates
    names = [*comp.gradients, *(n for n in spec.layer.intermediates if "d" + n in inter)]
    own = _measure(spec.layer, spec, comp)
    builtin = REGISTRY.get(spec.layer.name)
    ours = builtin is spec.layer
    stand_in: dict[str, tuple[float, float]] | None = None
    out = {}
    for n in names:
        if n in own and (ours or own[n][2]) and not answers:
            out[n] = Level(own[n][0], own[n][1], "measured")
            continue
        if stand_in is None:
            stand_in = {}
            if builtin is not None and not ours:
                stand_in = {k: v[:2] for k, v in _measure(builtin, spec, None).items()}
            elif ours:  # answers to our own layer: our backward's round-off stands in
                stand_in = {k: v[:2] for k, v in own.items()}
        if n in stand_in:
            out[n] = Level(*stand_in[n], "built-in")
            continue
        a = np.asarray(_gradient(comp, n), dtype=np.float64)
        largest = float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0))
        est = roundoff_tolerance(EPS32, largest, int(np.size(spec.grad_output)))
        out[n] = Level(est, est / (largest or 1.0), "estimated")
    return out


def _gradient(comp: Any, name: str) -> np.ndarray:
    return comp.gradients[name] if name in comp.gradients else comp.intermediates["d" + name]


def _measure(
    layer: Any, spec: Spec, comp: Computation | None
) -> dict[str, tuple[float, float, bool]]:
    """name -> (largest |a32 - a64|, that over the largest |a64|, whether the float64 run was
    one): ``layer``'s backward in float64 on float64 copies of the spec's tensors against its
    float32 gradients (``comp``'s, else a float32 run of ``layer``). A run that comes back in
    float32, or with every entry a float32 number, computed in float32 whatever it was given:
    it measures nothing (an exact gradient, relu's g * mask, loses nothing to a stand-in)."""
    if comp is None:
        _, cache = layer.forward(spec.tensors, spec.options)
        g32 = layer.backward(spec.grad_output, cache)
    else:
        g32 = {**comp.gradients, **{k[1:]: v for k, v in comp.intermediates.items()
                                    if k.startswith("d") and k[1:] in spec.layer.intermediates}}
    _, cache = layer.forward(float64_copies(spec.tensors), spec.options)
    g64 = layer.backward(np.asarray(spec.grad_output, dtype=np.float64), cache)
    out = {}
    for n, a in g32.items():
        if n not in g64 or np.shape(g64[n]) != np.shape(a):
            continue
        b = np.asarray(g64[n])
        real = b.dtype == np.float64 and not np.array_equal(b, b.astype(np.float32))
        b = b.astype(np.float64)
        scale = float(np.max(np.abs(b), initial=0.0)) or 1.0
        diff = float(np.max(np.abs(np.asarray(a, dtype=np.float64) - b), initial=0.0))
        out[n] = (diff, diff / scale, real)
    return out
