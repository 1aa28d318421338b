"""The element-wise comparison of an analytical gradient with a numerical one, and its result.

A mismatch is a result (``passed`` false, with the worst elements and hints), not an exception.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from gradcli.checking import diagnose
from gradcli.checking.hint import Hint
from gradcli.checking.places import index_text
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
    # why a sample that matched fails: a probe over every coordinate disagreed, and none of
    # the sampled ones did (checking/probe.py ``unlocated``)
    unlocated: str = ""
    numerics: TensorNumerics | None = None
    roundoff: float | None = None  # float32 only: max |a32 - a64| / max |a64|
    roundoff_source: str = ""  # float32: measured | built-in | estimated (checking/precision.py)
    atol: float = 0.0  # the absolute tolerance this tensor was held to
    # elements below it that the step reads far more finely, held to their own round-off
    # instead (flat indices: checking/tolerances.below_atol)
    held_at: tuple[int, ...] = ()
    worst: tuple[dict[str, Any], ...] = ()  # the top elements by how far beyond tolerance
    band: str = ""  # CS231n's reading of the relative error of the elements that count
    hints: tuple[Hint, ...] = ()  # why it may be wrong (failing tensors only)
    intermediate: bool = False  # an intermediate's gradient (attention's dS ...), not a tensor's
    kinks: int = 0  # coordinates whose stencil met a kink: checked one-sidedly (numeric/kinks.py)
    # coordinates an automatic check's --budget left unexamined for kinks, left out of the
    # comparison as a sample's (checking/leftover.py)
    kinks_left_out: int = 0
    kinks_unchecked: int = 0  # of them, with kinks on both sides at every step: the stencil's
    ties_unverified: int = 0  # of them, at ties too large to read every piece: not contradicted
    # of them, where your answer (--grads, a network of built-in layers) is the chained
    # backward's, outside the whole network's one-sided slopes: accepted, as `check net`
    # accepts the chained backward there (CheckOptions.chained_kinks)
    kinks_chained: int = 0
    kink_at: tuple[int, ...] = ()  # their flat indices (at a kink itself an interval is right)
    refined: int = 0  # failing at the default step, confirmed at smaller ones (numeric/refine.py)
    refined_halvings: int = 0  # the smallest step that took: h / 2**refined_halvings
    # a probe's: an error of one element larger than this would have failed a direction,
    # which sums every element: smaller ones drown in its tolerance
    probe_sees: float | None = None
    # the method it was judged by where it is not the check's (checking/complex_recheck.py: the
    # automatic step's round-off left it unresolved, the complex step read it)
    method: str | None = None
    # the failing element of the largest error, where the worst by error / tolerance is one
    # of a far smaller error (a tail element of 3.5e-11 against 0, held to its round-off,
    # led a GELU whose errors of 3e-4 ranked fifth: outside test t60a F3): {index,
    # analytic, numeric, abs_error}
    largest: dict[str, Any] | None = None

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
        if self.unlocated:
            return self.unlocated
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
    a, n = np.asarray(analytic), np.asarray(numeric)
    shape = a.shape
    n = n if n.shape == shape else np.broadcast_to(n, shape)
    # flat once (a copy only of a non-contiguous array), then read in slices
    a_flat, n_flat = a.reshape(-1), n.reshape(-1)
    noise = None if noise is None else np.asarray(noise).reshape(-1)
    seen = None
    if coords is not None:
        seen = np.zeros(a.size, dtype=bool)
        seen[np.asarray(coords, dtype=np.int64)] = True
    k = max(top, 1)
    kinked = None
    if extra.get("kink_at"):
        kinked = np.zeros(a.size, dtype=bool)
        kinked[np.asarray(extra["kink_at"], dtype=np.int64)] = True
    # element by element in chunks of CHUNK: a tensor's dozen temporaries would otherwise be
    # whole arrays, the largest part of a check's memory beside its perturbed copies
    parts = [_chunk(a_flat, n_flat, seen, noise, atol, rtol, k, s, kinked)
             for s in range(0, max(a.size, 1), CHUNK)]  # fmt: skip
    keys = ("at", "excess", "err", "rel", "kink")
    cand = {key: np.concatenate([p[key] for p in parts]) for key in keys}
    fail_any = any(p["fail"] for p in parts)
    # a tensor failing away from its kinks too is worst there: at a kink the numerical value
    # is one side's slope, or the piece nearest the answer, and a whole answer 1.0001 times
    # the right one read 'worst dx[2, 3]: yours 0, numeric 3.3e-05, wrong' at a tie, its
    # group's 1e-4 moved onto a partner that was right (outside test t66b F2)
    clean = any(p["fail_clean"] for p in parts)
    # ... unless its error there is far larger than any away from them: an answer of 5 dy at
    # relu's ties, outside both slopes, beside errors of 1e-4 elsewhere read 'slightly off'
    # with no tie in the table (outside test t69b F1)
    beside = KINK_SHARE * max(p["err_fail_clean"] for p in parts)
    demoted = cand["kink"] & clean & (cand["err"] <= beside)
    # stable: the largest excess first, the lowest flat index among equals (argsort's order)
    order = np.lexsort((cand["at"], -cand["excess"], demoted))[:k]

    def shown(i: int) -> float:  # the raw value where compared, NaN and inf included
        return float(n_flat[i]) if seen is None or seen[i] else math.nan

    worst_k = tuple(
        {
            "index": [int(i) for i in np.unravel_index(int(cand["at"][j]), shape)],
            "analytic": float(a_flat[cand["at"][j]]),
            "numeric": shown(int(cand["at"][j])),
            "abs_error": float(cand["err"][j]),
            "rel_error": float(cand["rel"][j]),
            # what they are ranked by: an element of 1e-9 off by 1e-8 lies further beyond its
            # tolerance than one of 8 off by 20 at rtol 1e-6 (outside test t38a N1)
            "error_over_tolerance": float(cand["excess"][j]),
        }
        for j in order
        if a.size and cand["excess"][j] >= 0
    )
    first = int(cand["at"][order[0]]) if a.size else 0
    worst = np.unravel_index(first, shape) if a.size else ()
    big = max(parts, key=lambda p: p["big_err"])
    largest = None
    if (big["big_at"] >= 0 and big["big_at"] != first and math.isfinite(big["big_err"])
            and big["big_err"] > FAR_LARGER * float(np.abs(a_flat[first] - n_flat[first]))):
        at = big["big_at"]
        largest = {"index": [int(i) for i in np.unravel_index(at, shape)],
                   "analytic": float(a_flat[at]), "numeric": float(n_flat[at]),
                   "abs_error": big["big_err"]}  # fmt: skip
    bad_at = next((p["bad_at"] for p in parts if p["bad_at"] >= 0), -1)
    nonfinite_at = ""
    if bad_at >= 0:
        # + 0.0: a negative zero reads 0 (t23 F13: 'numeric -0')
        num = f"{n_flat[bad_at] + 0.0:.6g}" if seen is None or seen[bad_at] else "not evaluated"
        nonfinite_at = (f"d{name}{index_text(letters or [], np.unravel_index(bad_at, shape))}: "
                        f"analytic {a_flat[bad_at] + 0.0:.6g}, numeric {num}")  # fmt: skip
    found: list[str] = []
    if fail_any and not unresolved:  # the layer facts cost work: only for a failing tensor
        facts = {**(context() if context else {}), "kink_at": extra.get("kink_at", ())}
        a0, n0, fail, tol = (v.reshape(shape) for v in _whole(a_flat, n_flat, seen, noise,
                                                               atol, rtol))  # fmt: skip
        found = diagnose.hints(name, a0, n0, fail, tol, letters or [], facts)
    # the reading (diagnose.band) counts the failing elements, or for a pass those well above
    # the noise (|a| or |n| over 10 atol), where a relative error means something
    counted = max(p["rel_fail_clean" if clean else "rel_fail" if fail_any else "rel_large"]
                  for p in parts)  # fmt: skip
    if clean:  # and the failures at kinks beyond the others'
        kept = cand["kink"] & ~demoted & (cand["excess"] > 1)
        counted = max(counted, float(np.max(cand["rel"][kept], initial=0.0)))
    checked = a.size if seen is None else int(seen.sum())
    result = TensorResult(
        name=name,
        shape=tuple(shape),
        max_abs_error=max(p["err_max"] for p in parts),
        max_rel_error=max(p["rel_max"] for p in parts),
        worst_index=tuple(int(i) for i in worst),
        analytic=float(a_flat[first]) if a.size else 0.0,
        numeric=shown(first) if a.size else 0.0,
        within=not fail_any,
        checked=checked,
        promised=checked if promised is None else promised,
        nonfinite=sum(p["bad"] for p in parts),
        nonfinite_at=nonfinite_at,
        unresolved=unresolved,
        atol=atol,
        worst=worst_k,
        band=diagnose.band(counted, passed=not fail_any),
        hints=tuple(found),
        largest=largest,
        **extra,
    )
    if result.reason:  # the reading of the errors would mislead: say what went wrong instead
        # (a tie no piece was read at is not verified, not beyond the step's resolution: t54a)
        band = ("not finite" if bad_at >= 0 else "not verified" if " is not verified" in unresolved
                else "cannot resolve" if unresolved else "not checked")  # fmt: skip
        result = dataclasses.replace(result, band=band, hints=(result.reason, *found))
    return result


# a failure at a kink ranks after those away from it unless its error is this many times theirs
KINK_SHARE = 4.0
# elements compared at a time: 2 MB per float64 temporary
CHUNK = 2**18
# the failing element of the largest error is said beside the worst by error / tolerance
# where its error is this many times the worst's
FAR_LARGER = 1000.0


def _elements(a, n, seen, noise, atol, rtol, sl=slice(None)):
    """The pass rule's arrays over the slice ``sl`` of the flat ``a``, ``n`` (and ``seen``,
    ``noise``): (seen, bad, ok, a0, n, err, denom, rel, tol)."""
    a = np.asarray(a[sl], dtype=np.float64)
    n = np.asarray(n[sl], dtype=np.float64)
    seen = np.ones(a.shape, dtype=bool) if seen is None else seen[sl]
    # the gradient under test is finite everywhere, compared or not: that costs no forward pass
    bad = ~np.isfinite(a) | (seen & ~np.isfinite(n))
    ok = seen & ~bad
    a0, n0 = np.where(ok, a, 0.0), np.where(ok, n, 0.0)
    err = np.where(bad, np.inf, np.abs(a0 - n0))
    denom = np.maximum(np.abs(a0), np.abs(n0))
    rel = np.divide(err, denom, out=np.where(bad, np.inf, 0.0), where=ok & (denom > 0))
    if noise is None:
        floor: Any = atol
    else:
        floor = np.maximum(atol, np.where(ok, noise[sl], 0.0))
    tol = floor + rtol * np.abs(n0)
    return seen, bad, ok, a0, n, err, denom, rel, tol


def _chunk(a, n, seen, noise, atol, rtol, k: int, start: int, kinked=None) -> dict[str, Any]:
    """What ``compare`` keeps of the elements from flat index ``start`` on: the maxima, the
    counts, and the ``k`` elements furthest beyond their tolerance, and the ``k`` furthest
    away from the ``kinked`` elements (candidates for the tensor's worst)."""
    sl = slice(start, start + CHUNK)
    seen_, bad, ok, a0, n_, err, denom, rel, tol = _elements(a, n, seen, noise, atol, rtol, sl)
    # how far beyond its tolerance each element is; with a zero tolerance any error is infinite
    with np.errstate(invalid="ignore"):
        excess = np.divide(err, tol, out=np.where(err > 0, np.inf, 0.0), where=tol > 0)
    excess = np.where(bad, np.inf, np.where(seen_, excess, -1.0))
    pick = np.argsort(-excess, kind="stable")[:k]
    fail = ok & (err > tol)
    large = ok & (denom > 10 * atol)
    kink = np.zeros(err.shape, dtype=bool) if kinked is None else kinked[sl]
    if kink.any():
        off = np.where(kink, -np.inf, excess)
        pick = np.union1d(pick, np.argsort(-off, kind="stable")[:k])
    fail_clean = fail & ~kink
    return {
        "at": pick + start, "excess": excess[pick], "err": err[pick], "rel": rel[pick],
        "kink": kink[pick], "fail_clean": bool(fail_clean.any()),
        "rel_fail_clean": float(rel[fail_clean].max(initial=0.0)),
        "err_fail_clean": float(err[fail_clean].max(initial=0.0)),
        "fail": bool(fail.any()), "bad": int(bad.sum()),
        "bad_at": start + int(np.argmax(bad)) if bad.any() else -1,
        "err_max": float(err.max(initial=0.0)), "rel_max": float(rel.max(initial=0.0)),
        "rel_fail": float(rel[fail].max(initial=0.0)),
        "big_at": start + int(np.argmax(np.where(fail, err, -1.0))) if fail.any() else -1,
        "big_err": float(err[fail].max(initial=-1.0)),
        "rel_large": float(rel[large].max(initial=0.0)),
    }  # fmt: skip


def _whole(a, n, seen, noise, atol, rtol):
    """(a0, n where compared else NaN, fail, tol), flat, over the whole tensor: what the hints
    read of a failing tensor."""
    _, _, ok, a0, n_, err, _, _, tol = _elements(a, n, seen, noise, atol, rtol)
    return a0, np.where(ok, n_, np.nan), ok & (err > tol), tol
