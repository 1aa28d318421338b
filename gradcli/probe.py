"""Probe mode: two random directional derivatives per tensor instead of every element.

Along a Rademacher direction p, the numerical sum_j dL/dx_j p_j is one stencil evaluation; it
must match sum_j a_j p_j. When either direction disagrees, the caller checks every element.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcli import diagnose
from gradcli.compare import TensorResult
from gradcli.numeric import Engine
from gradcli.sampling import rademacher

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
    for _ in range(2):
        num, p = engine.directional(name, rademacher(a.shape, rng))
        ana = float(np.sum(a * p))
        err = abs(num - ana)
        if err > rtol * float(np.sum(np.abs(a * p))) + noise + 1e-300:
            return None
        worst = max(worst, (err, ana, num))
    err, ana, num = worst
    rel = err / max(abs(ana), abs(num)) if err else 0.0
    return TensorResult(
        name=name, shape=a.shape, max_abs_error=err, max_rel_error=rel, worst_index=(),
        analytic=ana, numeric=num, passed=True, mode="probe", checked=2,
        band=diagnose.band(rel, passed=True), **extra,
    )  # fmt: skip
