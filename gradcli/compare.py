"""The element-wise comparison of an analytical gradient with a numerical one, and its result.

A mismatch is a result (``passed`` false, with the worst elements and hints), not an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcli import diagnose
from gradcli.numeric import TensorNumerics


@dataclass(frozen=True)
class TensorResult:
    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float  # max |a - n| / max(|a|, |n|), the CS231n relative error
    worst_index: tuple[int, ...]  # the element furthest beyond its tolerance ([] for a probe)
    analytic: float
    numeric: float
    passed: bool
    mode: str = "full"  # full | sample | probe
    checked: int = 0  # coordinates compared (a probe compares directions)
    numerics: TensorNumerics | None = None
    roundoff: float | None = None  # float32 only: max |a32 - a64| / max |a64|
    atol: float = 0.0  # the absolute tolerance this tensor was held to
    worst: tuple[dict[str, Any], ...] = ()  # the top elements by how far beyond tolerance
    band: str = ""  # CS231n's reading of the relative error of the elements that count
    hints: tuple[str, ...] = ()  # why it may be wrong (failing tensors only)
    intermediate: bool = False  # an intermediate's gradient (attention's dS ...), not a tensor's


def compare(
    name: str,
    analytic: np.ndarray,
    numeric: np.ndarray,
    atol: float,
    rtol: float,
    *,
    top: int = 5,
    letters: list[str] | None = None,
    context: Callable[[], dict[str, Any]] | None = None,
    **extra: Any,
) -> TensorResult:
    """Element-wise pass rule |a - n| <= atol + rtol * |n|; NaN numeric entries are skipped."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    seen = ~np.isnan(n)
    n0 = np.where(seen, n, 0.0)
    err = np.where(seen, np.abs(a - n0), 0.0)
    denom = np.maximum(np.abs(a), np.abs(n0))
    rel = np.divide(err, denom, out=np.zeros_like(err), where=denom > 0)
    tol = atol + rtol * np.abs(n0)
    # how far beyond its tolerance each element is; with a zero tolerance any error is infinite
    excess = np.divide(err, tol, out=np.where(err > 0, np.inf, 0.0), where=tol > 0)
    excess = np.where(seen, excess, -1.0)
    order = np.argsort(-excess, axis=None, kind="stable")[: max(top, 1)]
    worst_k = tuple(
        {
            "index": [int(i) for i in np.unravel_index(int(k), a.shape)],
            "analytic": float(a.flat[k]),
            "numeric": float(n0.flat[k]),
            "abs_error": float(err.flat[k]),
            "rel_error": float(rel.flat[k]),
        }
        for k in order
        if a.size and excess.flat[k] >= 0
    )
    worst = np.unravel_index(int(order[0]), a.shape) if a.size else ()
    fail = seen & (err > tol)
    # the reading (diagnose.band) counts the failing elements, or for a pass those well above
    # the noise (|a| or |n| over 10 atol), where a relative error means something
    counted = fail if fail.any() else seen & (denom > 10 * atol)
    found = []
    if fail.any():  # the layer facts the hints look at cost work: only for a failing tensor
        found = diagnose.hints(name, a, np.where(seen, n, np.nan), fail, tol, letters or [],
                               context() if context else {})  # fmt: skip
    return TensorResult(
        name=name,
        shape=tuple(a.shape),
        max_abs_error=float(err.max(initial=0.0)),
        max_rel_error=float(rel.max(initial=0.0)),
        worst_index=tuple(int(i) for i in worst),
        analytic=float(a[worst]),
        numeric=float(n0[worst]),
        passed=not bool(fail.any()),
        checked=int(seen.sum()),
        atol=atol,
        worst=worst_k,
        band=diagnose.band(float(rel[counted].max(initial=0.0)), passed=not fail.any()),
        hints=tuple(found),
        **extra,
    )
