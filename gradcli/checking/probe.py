"""Probe mode: two random directional derivatives per tensor instead of every element.

Along a Rademacher direction p, the numerical sum_j dL/dx_j p_j is one stencil evaluation; it
must match sum_j a_j p_j. When either direction disagrees, or cannot decide (not finite, or
round-off as large as the derivative), the caller checks every element, or, when that would not
fit in --budget, a sample of them (``fallback``); the note says which of the two it was, since
the element-wise check may well pass (a correct relu whose probe crossed its kink).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradcli.checking import diagnose
from gradcli.checking.compare import TensorResult
from gradcli.errors import mention
from gradcli.numeric import cost, refine
from gradcli.numeric.engine import Engine
from gradcli.numeric.methods import RESOLVE_MARGIN, TINY, steps
from gradcli.numeric.sampling import rademacher

# probe mode compares directional derivatives: |num - ana| <= rtol * sum_j |a_j p_j|
PROBE_RTOL = {"central": 1e-9, "forward": 1e-6, "backward": 1e-6, "central4": 1e-10,
              "complex": 1e-13}  # fmt: skip

# why a probe hands its tensor to the element-wise check (the note's words): a disagreement, or
# no decision either way; neither is the verdict, which the element-wise check gives
DISAGREED = "disagreed (a wrong element, or a kink it crossed)"
INCONCLUSIVE = "was inconclusive"


def probe_rtol(dtype: str, method: str) -> float:
    """A probe's tolerance, relative to sum_j |a_j p_j| (its round-off estimate is added)."""
    return 1e-5 if dtype == "float32" else PROBE_RTOL[method]


def probe(
    engine: Engine, name: str, analytic: np.ndarray, dtype: str, method: str,
    rng: np.random.Generator, extra: dict[str, Any], roundoff: float | None = None,
    unknown_kinks: bool = False, kink_undecided: bool = False,
) -> TensorResult | str:  # fmt: skip
    """Two random directional derivatives; when they cannot PASS the tensor, why not (the
    words of ``fallback``'s note): then every element is checked. ``roundoff``: a float32
    gradient's tolerated round-off per element (checking/precision.py): along a random +-1
    direction the elements' round-offs add up as a random walk, sqrt(size) of it; a correct
    gradient beyond that only costs the element-wise check. ``unknown_kinks``: a layer that
    does not say where its kinks are (a user's): a direction that agreed is also read on its
    two sides, and one that crossed a kink is no PASS (across a tie a difference reads what a
    wrong backward gives: a row max's all-ties mask passed 2 seeds in 12). ``kink_undecided``:
    a direction that disagrees across such a kink is inconclusive, not a disagreement (an
    automatic sample's probe, whose disagreement alone fails a tensor)."""
    a = np.asarray(analytic, dtype=np.float64)
    slack = 0.0 if roundoff is None else roundoff * math.sqrt(a.size)
    rtol = probe_rtol(dtype, method) if roundoff is None else PROBE_RTOL[method]
    shown: list[tuple[float, float, float]] = []
    noise = engine.noise_factor() * float(engine.gy.sum())
    if float(steps(engine.t64[name].ravel(), engine.eps).min(initial=np.inf)) < TINY:
        return INCONCLUSIVE + " (its step is below the smallest normal float)"
    refined = halvings = 0
    sees = math.inf
    for _ in range(2):
        direction = rademacher(a.shape, rng)
        num, p = engine.directional(name, direction)
        ana = float(np.sum(a * p))
        err = abs(num - ana)
        size = float(np.sum(np.abs(a * p)))
        # NaN compares False and a round-off as large as the derivative passes anything: only
        # a finite, resolved and close probe is a PASS; anything else goes element by element
        if not all(map(np.isfinite, (num, ana, size, noise))):
            return INCONCLUSIVE + " (a directional derivative is not finite)"
        if noise * RESOLVE_MARGIN > size:
            return INCONCLUSIVE + " (round-off as large as its directional derivative)"
        if err > rtol * size + noise + slack + 1e-300:
            limit = _shrinks(engine, name, direction, ana, num, noise, rtol * size + slack)
            if limit is None:
                # a kink on the line is no evidence either way: a right max-pool of 32,768
                # windows, one of whose top two values lay within the step, failed its
                # automatic sample on it (outside test t45a F3)
                if kink_undecided and unknown_kinks and _crossed(engine, name, p):
                    return INCONCLUSIVE + " (its direction crossed a kink)"
                return DISAGREED
            (num, k), refined = limit, refined + 1
            err, halvings = abs(num - ana), max(halvings, k)
        if unknown_kinks and _crossed(engine, name, p):
            return INCONCLUSIVE + " (its direction crossed a kink)"
        # shown per unit step (p / min |p| is the +-1 direction where every step is the same),
        # not per the step itself: a derivative of 5e-06 for a gradient of entries near 1 reads
        # as a bug
        unit = float(np.abs(p).min())
        shown.append((err / unit, ana / unit, num / unit))
        # one element off by d moves a.p by d p_j: beyond the tolerance and the error already
        # there, the direction fails (either direction failing is enough)
        sees = min(sees, (rtol * size + noise + slack + err) / unit)
    err, ana, num = max(shown, key=lambda e: e[0])  # the direction further off; ties: the first
    rel = err / max(abs(ana), abs(num)) if err else 0.0
    return TensorResult(
        name=name, shape=a.shape, max_abs_error=err, max_rel_error=rel, worst_index=(),
        analytic=ana, numeric=num, within=True, mode="probe", checked=2, promised=2,
        band=diagnose.band(rel, passed=True), refined=refined, refined_halvings=halvings,
        probe_sees=sees, **extra,
    )  # fmt: skip


def sensitivity_note(results: Mapping[str, TensorResult], analytic: Mapping[str, np.ndarray],
                     atol: float, rtol: float) -> str | None:  # fmt: skip
    """What the probes that passed could not see, where a full check would have: one element
    off by less than its ``probe_sees`` (about the probe's rtol times the sum of the tensor's
    entries: 1e-4 relative in one of dW's 32,768 elements passed) but more than the full
    check's atol + rtol |a| at the tensor's median entry. A small tensor's probe sees finer
    than that: no note."""
    seen = [f"d{n} {r.probe_sees:.2g}" for n, r in results.items() if r.probe_sees is not None
            and r.probe_sees > atol + rtol * float(np.median(np.abs(analytic[n])))]
    if not seen:
        return None
    return (
        f"probe: one wrong element is seen only when off by more than {', '.join(seen)} (a "
        f"direction sums every element); {mention('mode', 'full')} holds each element to "
        f"atol + rtol |n|"
    )


def _crossed(engine: Engine, name: str, p: np.ndarray) -> bool:
    """Whether the loss along the line x + t p has a kink within the stencil: its second-order
    one-sided slopes at t = 1 on the two sides disagree beyond their round-off (4 copies)."""
    right, left, noise = engine.line_slopes(name, p)
    return bool(abs(right - left) > 4 * noise + 1e-6 * max(abs(right), abs(left)))


def _shrinks(
    engine: Engine, name: str, direction: np.ndarray, ana: float, num: float, noise: float,
    allowed: float,
) -> tuple[float, int] | None:  # fmt: skip
    """A disagreeing direction's derivative at h/2, h/4, ... (one copy each): (its
    extrapolated limit, the halvings it took) when it shrank towards ``ana`` at the rate
    truncation predicts, to within ``allowed`` plus the smaller steps' round-off
    (numeric/refine.py), else None (then element by element)."""
    m = engine.method
    if m.name == "complex":
        return None
    a, on_rate = np.array([ana]), np.zeros(1, dtype=bool)
    seq = [np.array([num])]

    def tol(nz: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return allowed + nz + 1e-300

    for k in range(1, refine.HALVINGS + 1):
        # the steps halved exactly (powers of two); the stencil's sum scales with them
        seq.append(np.array([engine.directional(name, direction / 2.0**k)[0] * 2.0**k]))
        nz = np.array([noise * 2.0**k])
        if k >= 2:
            ok, R, _, stop, on_rate, _ = refine.decide(a, *seq[-3:], nz, 2.0**m.order, tol,
                                                       on_rate)  # fmt: skip
            if ok[0]:
                return float(R[0]), k
            if stop[0]:
                return None
        if 16 * nz[0] > allowed:  # the next step's round-off would take the tolerance
            return None
    return None


def fallback(
    name: str, why: str, seconds: float, spent: float, budget: float, samples: int,
    sampled: float | None = None,
) -> tuple[str, str]:  # fmt: skip
    """(mode, note) for a tensor whose probe did not pass it (``why``, from ``probe``): every
    element, unless that (predicted ``seconds``, on top of the rechecks already run, ``spent``)
    would exceed --budget and a sample is cheaper (its predicted seconds ``sampled``; None: it
    is not): then a sample, as an automatic full check would. The note says what the probe
    saw, not a verdict: the element-wise check that follows gives that."""
    if spent + seconds <= budget:
        about = f" (estimated {seconds:.1f} s)" if seconds > 2 else ""
        return "full", f"probe of d{name} {why}: checked every element instead{about}"
    said = f"probe of d{name} {why}: a full check of it would take about {cost.shown(seconds)} s"
    if sampled is None:
        return "full", (
            f"{said} (budget {budget:g} s), and a sample of {samples} coordinates as long: "
            "checked every element instead"
        )
    return "sample", (
        f"{said} (budget {budget:g} s): checked {samples} sampled coordinates, about "
        f"{cost.shown(sampled)} s ({mention('mode', 'full')} checks every one)"
    )


def unlocated(result: TensorResult, why: str | None) -> TensorResult:
    """A sampled fallback that found no wrong element still fails: the probe saw a disagreement
    the sample did not reach (or could not decide), and a PASS is never given on less than the
    mode promised."""
    if not result.passed or result.mode != "sample" or why is None:  # None: never probed
        return result
    if why == DISAGREED:
        said = (
            f"a random direction disagreed, but none of the {result.checked} sampled "
            f"coordinates did: {mention('mode', 'full')} (or more {mention('samples')}) finds "
            "the wrong elements"
        )
        band = "not located"
    else:
        said = (
            f"the probe {why} and only a sample of the coordinates was compared: "
            f"{mention('mode', 'full')} compares every one"
        )
        band = "not checked"
    # every coordinate is what a probe that did not pass owes: the result fails as not fully
    # compared (its reason), not as a mismatch of a worst element that matched, and its reading
    # is no "good" (outside test t52a F1: "FAIL | good")
    size = int(np.prod(result.shape, dtype=np.int64))
    return dataclasses.replace(result, promised=size, unlocated=said, band=band,
                               hints=(said, *result.hints))  # fmt: skip
