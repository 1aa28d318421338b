"""The element-wise comparison of an analytical gradient with a numerical one, and its result.

A mismatch is a result (``passed`` false, with the worst elements and hints), not an exception.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from gradcli.checking import diagnose
from gradcli.checking.hint import Hint
from gradcli.numeric.engine import TensorNumerics
from gradcli.records import record


@record
class TensorResult:
    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float  # max |a - n| / max(|a|, |n|), the CS231n relative error
    worst_index: tuple[int, ...]  # the element furthest beyond its tolerance ([] for a probe)
    analytic: float
    numeric: float
    within: bool  # every compared element within its tolerance (``passed`` asks more)
    mode: str = "full"  # full | sample | probe
    checked: int = 0  # coordinates compared (a probe compares directions)
    promised: int = 0  # coordinates (directions) the mode promised to compare
    nonfinite: int = 0  # compared elements where the analytic or numeric value is NaN or inf
    nonfinite_at: str = ""  # the first of them, e.g. "dW[1, 0]: analytic nan, numeric 0.5"
    unresolved: str = ""  # why this step cannot resolve the tensor ("" when it can)
    numerics: TensorNumerics | None = None
    roundoff: float | None = None  # float32 only: max |a32 - a64| / max |a64|
    roundoff_source: str = ""  # float32: measured | built-in | estimated (checking/precision.py)
    atol: float = 0.0  # the absolute tolerance this tensor was held to
    worst: tuple[dict[str, Any], ...] = ()  # the top elements by how far beyond tolerance
    band: str = ""  # CS231n's reading of the relative error of the elements that count
    hints: tuple[Hint, ...] = ()  # why it may be wrong (failing tensors only)
    intermediate: bool = False  # an intermediate's gradient (attention's dS ...), not a tensor's
    kinks: int = 0  # coordinates whose stencil met a kink: checked one-sidedly (numeric/kinks.py)
    kinks_unchecked: int = 0  # of them, with kinks on both sides at every step: the stencil's
    kink_at: tuple[int, ...] = ()  # their flat indices (at a kink itself an interval is right)
    refined: int = 0  # failing at the default step, confirmed at smaller ones (numeric/refine.py)
    refined_halvings: int = 0  # the smallest step that took: h / 2**refined_halvings

    def __post_init__(self) -> None:
        # every hint a Hint (README: each with .cause and .verified), whichever stage wrote it
        # as a plain sentence: an observation names no cause and was not recomputed
        hints = tuple(h if isinstance(h, Hint) else Hint(h) for h in self.hints)
        object.__setattr__(self, "hints", hints)

    @property
    def passed(self) -> bool:
        """The one place a PASS is decided: every coordinate the mode promised was compared
        (at least one), all finite, resolvable at this step, all within tolerance."""
        return (
            self.within and 0 < self.checked == self.promised
            and not self.nonfinite and not self.unresolved
        )  # fmt: skip

    @property
    def reason(self) -> str:
        """Why the result fails other than by an error beyond tolerance ("" when it does not)."""
        if self.nonfinite:
            return (
                f"d{self.name} is not finite at {self.nonfinite} compared element"
                f"{'s' if self.nonfinite > 1 else ''} ({self.nonfinite_at}); a NaN or inf "
                "gradient never matches"
            )
        if self.unresolved:
            return self.unresolved
        if self.checked == 0:
            return f"no coordinate of d{self.name} was compared, so nothing was checked"
        if self.checked != self.promised:
            return f"only {self.checked} of the {self.promised} coordinates promised were compared"
        return ""


def compare(
    name: str,
    analytic: np.ndarray,
    numeric: np.ndarray,
    atol: float,
    rtol: float,
    *,
    coords: np.ndarray | None = None,
    promised: int | None = None,
    unresolved: str = "",
    noise: np.ndarray | None = None,
    top: int = 5,
    letters: list[str] | None = None,
    context: Callable[[], dict[str, Any]] | None = None,
    **extra: Any,
) -> TensorResult:
    """Element-wise pass rule |a - n| <= atol + rtol * |n| at the flat indices ``coords`` (the
    numeric side evaluated there; default: every element), of the ``promised`` many the mode
    promised (default: as many as ``coords`` names); ``noise`` (the tensor's shape): each
    element's own round-off of its finite differences, which raises its atol. A NaN or inf in
    the analytic gradient (anywhere) or the numeric one (where compared) is counted, never
    skipped: NaN compares False, so a test like ``err > tol`` alone would let it pass."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    seen = np.ones(a.shape, dtype=bool)
    if coords is not None:
        seen = np.zeros(a.shape, dtype=bool)
        seen.flat[np.asarray(coords, dtype=np.int64)] = True
    # the gradient under test is finite everywhere, compared or not: that costs no forward pass
    bad = ~np.isfinite(a) | (seen & ~np.isfinite(n))
    ok = seen & ~bad
    a0, n0 = np.where(ok, a, 0.0), np.where(ok, n, 0.0)
    err = np.where(bad, np.inf, np.abs(a0 - n0))
    denom = np.maximum(np.abs(a0), np.abs(n0))
    rel = np.divide(err, denom, out=np.where(bad, np.inf, 0.0), where=ok & (denom > 0))
    floor = atol if noise is None else np.maximum(atol, np.where(ok, noise, 0.0))
    tol = floor + rtol * np.abs(n0)
    # how far beyond its tolerance each element is; with a zero tolerance any error is infinite
    with np.errstate(invalid="ignore"):
        excess = np.divide(err, tol, out=np.where(err > 0, np.inf, 0.0), where=tol > 0)
    excess = np.where(bad, np.inf, np.where(seen, excess, -1.0))
    order = np.argsort(-excess, axis=None, kind="stable")[: max(top, 1)]
    shown = np.where(seen, n, np.nan)  # the raw values where compared, NaN and inf included
    worst_k = tuple(
        {
            "index": [int(i) for i in np.unravel_index(int(k), a.shape)],
            "analytic": float(a.flat[k]),
            "numeric": float(shown.flat[k]),
            "abs_error": float(err.flat[k]),
            "rel_error": float(rel.flat[k]),
        }
        for k in order
        if a.size and excess.flat[k] >= 0
    )
    worst = np.unravel_index(int(order[0]), a.shape) if a.size else ()
    fail = ok & (err > tol)
    # the reading (diagnose.band) counts the failing elements, or for a pass those well above
    # the noise (|a| or |n| over 10 atol), where a relative error means something
    counted = fail if fail.any() else ok & (denom > 10 * atol)
    nonfinite_at = ""
    if bad.any():
        k = np.unravel_index(int(np.argmax(bad)), a.shape)
        num = f"{n[k]:.6g}" if seen[k] else "not evaluated"
        nonfinite_at = f"d{name}{_index(letters or [], k)}: analytic {a[k]:.6g}, numeric {num}"
    found: list[str] = []
    if fail.any() and not unresolved:  # the layer facts cost work: only for a failing tensor
        facts = {**(context() if context else {}), "kink_at": extra.get("kink_at", ())}
        found = diagnose.hints(name, a0, np.where(ok, n, np.nan), fail, tol, letters or [],
                               facts)  # fmt: skip
    result = TensorResult(
        name=name,
        shape=tuple(a.shape),
        max_abs_error=float(err.max(initial=0.0)),
        max_rel_error=float(rel.max(initial=0.0)),
        worst_index=tuple(int(i) for i in worst),
        analytic=float(a[worst]) if a.size else 0.0,
        numeric=float(shown[worst]) if a.size else 0.0,
        within=not bool(fail.any()),
        checked=int(seen.sum()),
        promised=int(seen.sum()) if promised is None else promised,
        nonfinite=int(bad.sum()),
        nonfinite_at=nonfinite_at,
        unresolved=unresolved,
        atol=atol,
        worst=worst_k,
        band=diagnose.band(float(rel[counted].max(initial=0.0)), passed=not fail.any()),
        hints=tuple(found),
        **extra,
    )
    if result.reason:  # the reading of the errors would mislead: say what went wrong instead
        band = "not finite" if bad.any() else "cannot resolve" if unresolved else "not checked"
        result = dataclasses.replace(result, band=band, hints=(result.reason, *found))
    return result


def _index(letters: list[str], idx: tuple[int, ...]) -> str:
    """``[o=1, i=0]`` in the seed's letters (leading batch axes b0, b1, ...), as tables show."""
    names = letters if len(letters) <= len(idx) else []
    names = [f"b{k}" for k in range(len(idx) - len(names))] + list(names)
    return "[" + ", ".join(f"{c}={int(i)}" for c, i in zip(names, idx, strict=True)) + "]"
