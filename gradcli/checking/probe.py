"""Probe mode: two random directional derivatives per tensor instead of every element.

Along a Rademacher direction p, the numerical sum_j dL/dx_j p_j is one stencil evaluation; it
must match sum_j a_j p_j. When either direction disagrees, the caller checks every element, or,
when that would not fit in --budget, a sample of them (``fallback``).
"""

from __future__ import annotations

import dataclasses
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


def probe(
    engine: Engine, name: str, analytic: np.ndarray, dtype: str, method: str,
    rng: np.random.Generator, extra: dict[str, Any],
) -> TensorResult | None:  # fmt: skip
    """Two random directional derivatives; None when one disagrees (then check every element)."""
    a = np.asarray(analytic, dtype=np.float64)
    rtol = 1e-5 if dtype == "float32" else PROBE_RTOL[method]
    worst = (0.0, 0.0, 0.0)
    noise = engine.noise_factor() * float(engine.gy.sum())
    if float(steps(engine.t64[name].ravel(), engine.eps).min(initial=np.inf)) < TINY:
        return None  # a subnormal step: the element-wise check says why it cannot resolve
    refined = halvings = 0
    for _ in range(2):
        direction = rademacher(a.shape, rng)
        num, p = engine.directional(name, direction)
        ana = float(np.sum(a * p))
        err = abs(num - ana)
        size = float(np.sum(np.abs(a * p)))
        # NaN compares False and a round-off as large as the derivative passes anything: only
        # a finite, resolved and close probe is a PASS; anything else goes element by element
        if not all(map(np.isfinite, (num, ana, size, noise))) or noise * RESOLVE_MARGIN > size:
            return None
        if err > rtol * size + noise + 1e-300:
            limit = _shrinks(engine, name, direction, ana, num, noise, rtol * size)
            if limit is None:
                return None
            (num, k), refined = limit, refined + 1
            err, halvings = abs(num - ana), max(halvings, k)
        worst = max(worst, (err, ana, num))
    err, ana, num = worst
    rel = err / max(abs(ana), abs(num)) if err else 0.0
    return TensorResult(
        name=name, shape=a.shape, max_abs_error=err, max_rel_error=rel, worst_index=(),
        analytic=ana, numeric=num, within=True, mode="probe", checked=2, promised=2,
        band=diagnose.band(rel, passed=True), refined=refined, refined_halvings=halvings,
        **extra,
    )  # fmt: skip


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
            ok, R, _, stop, on_rate = refine.decide(a, *seq[-3:], nz, 2.0**m.order, tol, on_rate)
            if ok[0]:
                return float(R[0]), k
            if stop[0]:
                return None
        if 16 * nz[0] > allowed:  # the next step's round-off would take the tolerance
            return None
    return None


def fallback(
    name: str, seconds: float, spent: float, budget: float, samples: int,
    sampled: float | None = None,
) -> tuple[str, str]:  # fmt: skip
    """(mode, note) for a tensor whose probe disagreed: every element, unless that (predicted
    ``seconds``, on top of the rechecks already run, ``spent``) would exceed --budget and a
    sample is cheaper (its predicted seconds ``sampled``; None: it is not): then a sample, as
    an automatic full check would."""
    if spent + seconds <= budget:
        about = f" (estimated {seconds:.1f} s)" if seconds > 2 else ""
        return "full", f"probe failed for d{name}: ran the full per-element check{about}"
    said = f"probe failed for d{name}: a full check of it would take about {cost.shown(seconds)} s"
    if sampled is None:
        return "full", (
            f"{said} (budget {budget:g} s), and a sample of {samples} coordinates as long: ran "
            "the full per-element check"
        )
    return "sample", (
        f"{said} (budget {budget:g} s): checked {samples} sampled coordinates, about "
        f"{cost.shown(sampled)} s ({mention('mode', 'full')} checks every one)"
    )


def unlocated(result: TensorResult) -> TensorResult:
    """A sampled fallback that found no wrong element still fails: the probe saw a disagreement
    the sample did not reach, and a PASS is never given on less than the mode promised."""
    if not result.passed or result.mode != "sample":
        return result
    hint = (
        "a random direction disagreed, but none of the sampled coordinates did: "
        f"{mention('mode', 'full')} (or more {mention('samples')}) finds the wrong elements"
    )
    return dataclasses.replace(result, within=False, hints=(*result.hints, hint))
