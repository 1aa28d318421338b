"""Why a gradient is wrong: patterns in analytic vs numeric that point at a classic mistake.

Each hint is one sentence. They look at the comparison only (no finite differences here) plus
what the layer declares about its tensors (footprints, options), so they work the same for the
built-in layers, answer files and user implementations.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from gradcli.checking import factors, places
from gradcli.checking.hint import Hint
from gradcli.layers import REGISTRY

# errors only where attention's causal mask hides j > i: what a dS or dA there should be
MASKED = {
    "S": "errors only on masked positions (j > i): dS must be 0 there, since S is -inf and "
    "the softmax ignores it; your dS is not",
    "A": "errors only on masked positions (j > i): gradcli takes dA = dH V^T everywhere "
    "(dH = dout, or dout W_O^T), since the mask acts on S, not A, so dA is not 0 there; "
    "only dS is",
}

# CS231n's reading of the relative error |a - n| / max(|a|, |n|); its "ok only if the function
# has kinks" for 1e-7 ... 1e-4 is no reading of a failure here, where the kinks were read
# apart already: a 1e-5 slip of a smooth linear layer's dW read so (outside test t52a F5)
BANDS = ((1e-7, "good"), (1e-4, "slightly off"), (1e-2, "suspicious"))
WITHIN_NOISE = "within noise"


def band(rel_error: float, passed: bool) -> str:
    """The reading of the largest relative error among the elements that count: for a failure
    the failing ones, read by CS231n's bands but never "good" (they are beyond the tolerance);
    for a pass the elements well above the noise: "good" when CS231n would say so, else
    "within noise" (the error is what this dtype, step and method leave on a correct
    gradient, which the tolerance allows for), never worse."""
    if passed:
        return BANDS[0][1] if rel_error <= BANDS[0][0] else WITHIN_NOISE
    for limit, name in BANDS[1:]:
        if rel_error <= limit:
            return name
    return "wrong"


def hints(
    name: str,
    a: np.ndarray,
    n: np.ndarray,
    fail: np.ndarray,
    tol: np.ndarray,
    letters: list[str],
    context: dict[str, Any],
) -> list[str]:
    """Sentences for a failing tensor: a (analytic), n (numeric), fail (bool mask), tol (the
    per-element tolerance), letters (index letter per axis), context (layer facts: "kind" of
    tensor, "scale" candidates, "coverage" array, "border" width, "masked" positions)."""
    out: list[str] = []
    if not fail.any():
        return out
    ok = np.isfinite(n)
    masked = context.get("masked")
    if name in MASKED and masked is not None and masked.shape == a.shape and masked[fail].all():
        return [MASKED[name]]  # before "zero where the numeric is not": a zeroed dA is this
    jump = _jumps(name, n, fail, letters, context)
    if jump is not None and jump[1]:  # every failing element: no derivative to compare
        return [jump[0]]
    out += [jump[0]] if jump is not None else []
    if jump is not None:  # a jump over the step is no slope: the patterns below fit the rest
        # (a straight-through round's 3 jumps, numeric 3e4, read as 'a scale 3.05e-05': the
        # step over the jump; outside test t41a N3)
        jumped = np.zeros(n.size, dtype=bool)
        jumped[[int(c) for c, _, _ in context.get("jumps") or ()]] = True
        ok = ok & ~jumped.reshape(n.shape)
    verified = context.get("verified") or []
    kinked = np.zeros(a.size, dtype=bool)
    kinked[np.asarray(context.get("kink_at", ()), dtype=np.int64)] = True
    at_kinks = bool(kinked.reshape(a.shape)[fail].all())
    # a cause reproduced by recomputation (gradcli.hypotheses) is said first; an observation
    # of which outputs' contributions are wrong is not, where every failure sits at a kink:
    # there the kink is what they share (relu's slope 2 at x == 0 is "outputs i=0, 2, 3")
    if verified and not (at_kinks and not any(getattr(h, "cause", None) for h in verified)):
        return list(verified)
    if at_kinks:  # a ratio or a zero there is no scale or path
        return [_at_kinks(name, a, fail, letters, context, tol)]
    # in a sample (or past a NaN) only the compared elements are seen: a claim about the rest
    # of the tensor ("everywhere", "only at") is not theirs to make (sampled: how many were)
    sampled = int(ok.sum()) if not ok.all() else 0
    every = f"at all {sampled} compared elements" if sampled else "everywhere"
    # a forward's output held against the built-in forward's is no gradient: neither dy nor
    # "numeric" is involved, the words are the two outputs'
    forward = bool(context.get("forward"))
    mine = f"your {name}" if forward else f"d{name}"
    ref = f"the built-in forward's {name}" if forward else "the numerical gradient"
    short = f"the built-in {name}" if forward else "numeric"
    if forward and context.get("padded_max") and np.all(a[fail] == 0) and np.all(n[fail] < 0):
        # a max over windows reaching into the padding: 0 beats every negative input
        return [f"your {name} is 0 where {ref} is negative, at every failing element: your "
                f"padding takes part in the max as 0 (pad a max-pool with -inf, or leave the "
                f"padding out of each window)"]
    if np.all(a[fail] == 0) and np.any(np.abs(n[fail]) > tol[fail]):
        whole = every if np.all(a[ok] == 0) else "at every failing element"
        # where the zeros are confined says where the term is missing (dX zero on its last row)
        place = "" if whole == every else places.place(fail, ok, letters, sampled, context)
        # an example of the layer at hand, or none: a conv's hint citing attention misleads
        path = (" (attention's dX, for one, sums the Q, K and V paths)"
                if context.get("layer") == "attention" else "")  # fmt: skip
        there = f", and those are all {place}" if place else ""
        look = ": look at the loop bounds, the slice or the padding that reach them" if (
            place) else ""  # fmt: skip
        out.append(
            f"{mine} is zero {whole} where {ref} is not{there}: a missing "
            f"{'term' if forward else 'term or path'}{' there' if place else ''}{path}{look}"
        )
        return out
    # against the right backward, recomputation (above) already tried every scale and index
    # mix-up to round-off; these looser patterns (against the numerical gradient, within the
    # check's tolerance) serve layers without one: a custom layer, a forward not ours
    ratio = None if context.get("recomputed") else _constant_ratio(a, n, tol, ok)
    if ratio is not None:
        if abs(ratio + 1) < 1e-3:
            return [Hint(f"{mine} = -1 x {short} {every}: the sign is flipped", "sign", True)]
        known = {cause: label for label, (v, cause) in context.get("scales", {}).items()
                 if abs(ratio / v - 1) < 1e-3}  # fmt: skip
        why = f" ({' or '.join(known.values())})" if known else " (a missing or extra scale)"
        cause = " or ".join(known) if known else f"scale:{ratio:.6g}"
        return [Hint(f"{mine} = {ratio:.6g} x {short} {every}: a constant factor{why}",
                     cause, True)]  # fmt: skip
    # a gradient's comparison (it has the layer's facts; a forward's agreement with ours has
    # none, and a leaky forward where relu's belongs is no mask left out of a gradient)
    gradient = "scales" in context and not context.get("recomputed")
    masked = _masked_ratio(a, n, tol, ok) if gradient else None
    if masked is not None:
        k, zero = masked
        zeros = int(zero.sum())
        known = {cause: label for label, (v, cause) in context.get("scales", {}).items()
                 if abs(k / v - 1) < 1e-3}  # fmt: skip
        times = "equals the numerical gradient" if abs(k - 1) < 1e-4 else (
            f"= {k:.6g} x numeric")  # fmt: skip
        why = (f"; the {k:.6g}: {' or '.join(known.values())}" if known else
               f"; the {k:.6g}: a missing or extra scale") if abs(k - 1) >= 1e-4 else ""
        cause = " + ".join(["mask-left-out", *(list(known)[:1] if abs(k - 1) >= 1e-4 else [])])
        # far smaller there than elsewhere: a slope left where the mask gives 0 (a leaky
        # relu's 0.01 g read as 'a mask left out': outside test t67b F5), not a missing mask
        small = float(np.median(np.abs(a[zero]))) / max(
            float(np.median(np.abs(n[ok & ~zero]))), 1e-300)  # fmt: skip
        what = (f"a small slope left in d{name} where the mask gives 0 (about {small:.2g} "
                f"of the other elements' size: a leaky slope, 0.01 x the upstream gradient, "
                f"where relu's mask belongs?)" if small < 0.1 else
                f"a mask left out of d{name} (the elements the forward zeroes, drops or does "
                f"not pick must get 0)")  # fmt: skip
        return [Hint(
            f"d{name} {times} wherever the numerical gradient is not 0, and is not 0 at the "
            f"{zeros} elements where it is: {what}{why}",
            cause, True,
        )]  # fmt: skip
    own = context.get("value")
    # (the numeric at a kink is a side's slope or a mix of pieces': compared away from them)
    away = ok & ~kinked.reshape(a.shape)
    spread = every
    if away.sum() < ok.sum():
        spread = (f"at all {int(away.sum())} compared elements away from kinks" if sampled else
                 "at every element away from kinks")  # fmt: skip
    reg = _own_term(name, a, n, tol, away, own, context.get("reg")) if (
        own is not None and not context.get("recomputed")) else None  # fmt: skip
    if reg is not None:
        # CS231n's most common slip: the regularization's reg * W left out of dW (or doubled:
        # 2 reg W for 0.5 reg sum(W^2)), caught on the right tensor without a word of why
        # (outside tests t71b F5, t72b F6); an L1 penalty's reg * sign(W) likewise
        text, cause = reg
        return [Hint(f"numeric - d{name} = {text.replace('{where}', spread)}", cause, True)]
    moved = None if context.get("recomputed") else _rearranged(
        a, n, tol, ok, context.get("spatial", 0))  # fmt: skip
    if moved:
        text, cause = moved
        return [Hint(f"{mine} matches {ref} {text}", cause, True)]
    coverage = context.get("coverage")
    overlap = coverage is not None and coverage.shape == a.shape
    # among the elements a gradient reaches: a max-pool's (3x3, stride 2) right zeros lie
    # mostly where windows do not overlap, and a misrouting inside each window read as
    # confined to the overlaps (outside test t60a F1); `=` for `+=` is a layer's verified
    # variant where it has one, not this pattern's guess
    reached = ok & ((a != 0) | (n != 0))
    if overlap and places.confined(fail, coverage > 1, reached):
        out.append(
            f"{places.only(mine, 'where windows overlap', sampled)}: look at how the "
            "contributions of overlapping windows are combined (they add up)"
        )
    border = context.get("border")
    if border is not None and border.shape == a.shape and places.confined(fail, border, ok):
        out.append(
            f"{places.only(mine, 'on the borders', sampled)}: look at the padding and at the "
            "windows' first and last positions"
        )
    out += places.one_slice(mine, fail, ok, letters, sampled)
    return out


def _jumps(name: str, n: np.ndarray, fail: np.ndarray, letters: list[str],
           context: dict[str, Any]) -> tuple[Hint, bool] | None:
    """(the hint, whether it covers every failing element) where failing elements sit where
    the forward jumps (numeric/kinks._jumps), else None."""
    jumps = {c: (j, t) for c, j, t in context.get("jumps") or ()}
    failing = np.flatnonzero(fail.reshape(-1))
    there = [int(c) for c in failing if int(c) in jumps]
    if not there:
        return None
    c = there[0]
    at = name + places.index_text(letters, np.unravel_index(c, n.shape))
    value = n.reshape(-1)[c]
    quoted = f"the numeric {value + 0.0:.6g} there is" if np.isfinite(value) else "its values are"
    more = f" (and {len(there) - 1} more)" if len(there) > 1 else ""
    return Hint(
        f"your forward jumps at {at}{more}: a move of it changes the loss (the upstream "
        f"gradient times the output) by about {jumps[c][0] + 0.0:.3g} for moves from the "
        f"step down to {jumps[c][1]:.2g}, so it is not continuous there and has no "
        f"derivative; {quoted} that jump over the step, not a slope (a floor, a round or a "
        f"sign: a straight-through backward there is a choice, not the forward's "
        f"derivative)",
        "jump", True,
    ), len(there) == failing.size  # fmt: skip


def _at_kinks(
    name: str, a: np.ndarray, fail: np.ndarray, letters: list[str], context: dict[str, Any],
    tol: np.ndarray | None = None,
) -> Hint:
    """A gradient failing only at kinks: where its value at a kink itself lies outside the two
    one-sided slopes read there (beyond its tolerance ``tol``), a slope the forward has on
    neither side (relu's 2 at x == 0); where each value lies within its own, the members of a
    tie do not add up."""
    words = context.get("kink_words") or ""
    where = f" ({words})" if words else ""
    coords, lo, hi, _ = context.get("kink_sides") or ((), (), (), ())
    flat = a.reshape(-1)
    failing = set(np.flatnonzero(fail.reshape(-1)).tolist())
    outside = []
    room = np.zeros(a.size) if tol is None else np.broadcast_to(tol, a.shape).reshape(-1)
    for k, c in enumerate(np.asarray(coords, dtype=np.int64).tolist()):
        low, high = sorted((float(lo[k]), float(hi[k])))
        # (within the tolerance of a side is no slope off both: torch's dX[4, 0] 2.7e-10
        # beside slopes of 5.7e-6, at an atol of 1e-7, was told it takes neither side)
        margin = max(1e-6 * (abs(low) + abs(high)), float(room[c]))
        if c in failing and np.isfinite(low) and np.isfinite(high) and not (
                low - margin <= flat[c] <= high + margin):  # fmt: skip
            outside.append((c, low + 0.0, high + 0.0))  # + 0.0: no "-0" said
    passing = np.ones(flat.size, dtype=bool)
    passing[list(failing)] = False
    slopes = context.get("kink_slopes") or (lo, hi)  # the slopes themselves, where read
    if outside and not np.any(np.abs(flat[passing]) > room[passing]) and _negated_inside(
            flat, coords, slopes[0], slopes[1], failing, room):  # fmt: skip
        # every failing value, negated, a slope between its sides, and no other value but 0:
        # a sign flip, which the values compared at kinks (the side nearest yours) hide; said
        # as a kink's slope it sent a student whose db1 = -db1 beside zero rows to the relu
        # mask (outside test t72b F3). (relu'(0) = -1 elementwise negates the tied elements
        # only: the others pass with their values, and it stays a kink's slope)
        return Hint(
            f"d{name} = -1 x a valid slope at every failing element: each lies at a kink{where}"
            f", outside its two one-sided slopes, and its negative lies between them: the "
            f"sign is flipped",
            "sign", True,
        )  # fmt: skip
    if outside:
        c, low, high = outside[0]
        sides = context.get("kink_slopes")
        if sides is not None:  # the slopes themselves, where read (the interval may be wider)
            k = int(np.flatnonzero(np.asarray(coords, dtype=np.int64) == c)[0])
            low, high = sorted((float(sides[0][k]) + 0.0, float(sides[1][k]) + 0.0))
        at = places.element(name, letters, np.unravel_index(c, a.shape))
        more = f" (and {len(outside) - 1} more)" if len(outside) > 1 else ""
        return Hint(
            f"d{name} fails only at kinks{where}: at {len(outside)} of them it lies outside "
            f"the two one-sided slopes, {at} = {flat[c] + 0.0:.6g} where the slopes are "
            f"{low + 0.0:.6g} and {high + 0.0:.6g}{more}: at a kink the backward must take a "
            "slope between the two sides (a subgradient), and yours takes one the forward has "
            "on neither side",
            "kink-slope", True,
        )  # fmt: skip
    every = context.get("tie_rule") or []  # the tensors the moves ran through, this one too
    if len(every) > 1:
        # the move ran through this tensor and the others together: either may be the one off
        # (dX from a > 0 beside db1 from a >= 0 blamed a dX torch's own backward gives:
        # outside test t54a F2)
        # worded alike for every tensor of the move, so that it is said once for them all
        # (render/diag.py _shared_hints: it was printed three times word for word, t59a F5)
        moved = ", ".join(every[:-1]) + f" and {every[-1]}"
        grads = ", ".join(f"d{n}" for n in every[:-1]) + f" and d{every[-1]}"
        return Hint(
            f"d{name} is failing at ties{where} that a move of {moved} together holds still: "
            f"the loss is linear along it, but {grads} give it another slope. Where each looks "
            "right alone, the usual cause is a rule that "
            "differs between them at the same ties (relu's a > 0 in one, a >= 0 in another; "
            "a tied max routed to different members): use one rule for every tensor. Else a "
            "value at one of those ties is off (the move reads their sum, not which one; the "
            "numeric values shown there are the nearest ones the moves allow, not slopes read "
            "at the point)",
            "tie-rule",
        )  # fmt: skip
    itself = set(np.asarray(coords, dtype=np.int64).tolist())
    if not failing & itself:  # each read on one side, clear of its kink: that piece's slope
        return Hint(
            f"d{name} fails only near kinks{where}: each failing element's stencil met one, so "
            "it was read one-sidedly, at a step that meets none (closer to x than the kink, "
            "where one is that close): the gradient there is the slope of the piece x lies "
            "on, not a choice between two",
            "near-kink",
        )  # fmt: skip
    return Hint(
        f"d{name} fails only at kinks{where}, where any value between the two one-sided slopes "
        "passes but the members of a tie (in this tensor, or in another whose moves reach "
        "the same outputs: maximum(a, b) at a == b) must add up to the slope of moving "
        "them together: give a tie's gradient to one member, or share it out, not to each "
        "or to none",
        "ties",
    )  # fmt: skip


def _negated_inside(flat: np.ndarray, coords: Any, lo: Any, hi: Any, failing: set[int],
                    room: np.ndarray) -> bool:  # fmt: skip
    """Whether every failing element has its kink's sides read and, negated, lies between
    them, some of them beyond 0 (a slope of 0 negated is itself)."""
    where = {int(c): k for k, c in enumerate(np.asarray(coords, dtype=np.int64).tolist())}
    if not failing or not failing <= where.keys():
        return False
    zero = True  # (every value 0: its negative is itself, no flip to see)
    for c in failing:
        low, high = sorted((float(lo[where[c]]), float(hi[where[c]])))
        margin = max(1e-6 * (abs(low) + abs(high)), float(room[c]))
        if not (np.isfinite(low) and np.isfinite(high)
                and low - margin <= -flat[c] <= high + margin):  # fmt: skip
            return False
        zero = zero and abs(flat[c]) <= margin
    return not zero


def _constant_ratio(a: np.ndarray, n: np.ndarray, tol: np.ndarray, ok: np.ndarray) -> Any:
    big = ok & (np.abs(n) > 10 * tol)
    if big.sum() < 2:
        return None
    r = a[big] / n[big]
    mid = float(np.median(r))
    if mid == 0 or not np.all(np.abs(r / mid - 1) < 1e-4):
        return None
    if np.any(np.abs(a - mid * n)[ok] > (1 + abs(mid)) * tol[ok]):
        return None  # not everywhere: where the numerical gradient is small (0) it differs
    return mid if abs(mid - 1) > 1e-4 else None


def _own_term(name: str, a: np.ndarray, n: np.ndarray, tol: np.ndarray, ok: np.ndarray,
              own: Any, reg: Any) -> tuple[str, str] | None:  # fmt: skip
    """(the hint's text after "numeric - dW = ", with ``{where}`` to fill; its cause) where
    your gradient is off by a multiple of the tensor's own value (an L2 penalty's term) or of
    its sign (an L1's), at the compared elements ``ok``; ``reg``: the spec's option of that
    name, if any, which the factor is said in terms of. Where the tensor's nonzero values share
    one magnitude (±a), the two read alike and both are named."""
    own = np.asarray(own, dtype=np.float64)
    c = _own_multiple(a, n, tol, ok, own)
    sign = _own_multiple(a, n, tol, ok, np.sign(own)) if c is None else None
    if c is None and sign is None:
        return None
    mags = np.unique(np.abs(own[ok & (own != 0)]))
    both = mags.size == 1
    k = c if c is not None else sign
    term = f"{name}" if c is not None else f"sign({name})"
    said = f"{_factor(k, reg)} x {term}"
    if both:  # W = a sign(W): a multiple of one is a multiple of the other
        other = k * mags[0] if c is not None else k / mags[0]
        alt = f"{_factor(other, reg)} x sign({name})" if c is not None else (
            f"{_factor(other, reg)} x {name}")  # fmt: skip
        said += (f" = {alt} ({name} holds only ±{mags[0]:.4g} there, so an L2 term and an L1 "
                 f"term read alike)")  # fmt: skip
    what = (f"a term {_factor(k, reg)} x {term} is missing from d{name}" if k > 0 else
            f"d{name} has {_factor(-k, reg)} x {term} too much")  # fmt: skip
    text = (f"{said} {{where}}: {what} (a penalty's gradient left out, counted twice or with "
            f"its sign flipped? 0.5 x r x sum({name}^2) gives r x {name}, r x sum({name}^2) "
            f"gives 2 x r x {name}, r x sum(|{name}|) gives r x sign({name}); or the forward "
            f"penalizes {name} where it should not)")  # fmt: skip
    kinds = [f"own-multiple:{_num(k if c is not None else other)}",
             f"own-sign:{_num(k if c is None else other)}"] if both else [
        f"{'own-multiple' if c is not None else 'own-sign'}:{_num(k)}"]  # fmt: skip
    return text, " or ".join(kinds)


def _num(v: float) -> str:
    """A factor as said: four digits (the fit's 9.99997e-06 is the spec's 1e-05)."""
    return f"{v:.4g}"


def _factor(k: float, reg: Any) -> str:
    """``k`` said as a multiple of the spec's ``reg`` where it is one (0.5, 1, 2, 3 or 4
    times, either sign): 0.2 with reg 0.1 is ``0.2 (= 2 x reg)``."""
    if isinstance(reg, (int, float)) and not isinstance(reg, bool) and reg > 0:
        for m in (1, 2, 0.5, 3, 4):
            if abs(abs(k) / (m * reg) - 1) < 1e-3:
                return f"{_num(k)} (= {_num(m)} x reg)" if m != 1 else f"{_num(k)} (= reg)"
    return _num(k)


def _own_multiple(a: np.ndarray, n: np.ndarray, tol: np.ndarray, ok: np.ndarray,
                  w: np.ndarray) -> float | None:  # fmt: skip
    """c where n - a = c w at every compared element (within the check's tolerance) and c w
    is beyond it at every failing one: a term ``w`` (same shape: the tensor's own value, an
    L2 penalty's, or its sign, an L1's) missing or extra. None where w holds one value there
    (a multiple of a constant is a constant), or the fit misses."""
    w = np.asarray(w, dtype=np.float64)
    if w.shape != a.shape or ok.sum() < 2:
        return None
    r, v = (n - a)[ok], w[ok]
    if np.unique(v).size < 2 or not np.all(np.isfinite(v)):
        return None
    c = float(r @ v / (v @ v))
    if c == 0 or not np.isfinite(c):
        return None
    fail = (np.abs(r) > tol[ok])
    if not fail.any() or np.any(np.abs(c * v[fail]) <= tol[ok][fail]):
        return None
    if np.any(np.abs(r - c * v) > tol[ok] + 1e-6 * np.abs(c * v)):
        return None
    return c


def _masked_ratio(
    a: np.ndarray, n: np.ndarray, tol: np.ndarray, ok: np.ndarray
) -> tuple[float, np.ndarray] | None:
    """(k, zero) when a = k n at every compared element where n is not 0 and a is not 0 at
    every one (the mask ``zero``) where it is: the mask of a relu, a dropout or a max-pool's
    argmax left out (against the numerical gradient, within the check's tolerance)."""
    zero = ok & (np.abs(n) <= tol)
    big = ok & (np.abs(n) > 10 * tol)
    if not zero.any() or big.sum() < 2 or not np.all(np.abs(a[zero]) > 10 * tol[zero]):
        return None
    r = a[big] / n[big]
    mid = float(np.median(r))
    if mid == 0 or not np.all(np.abs(r / mid - 1) < 1e-4):
        return None
    rest = ok & ~zero
    if np.any(np.abs(a - mid * n)[rest] > (1 + abs(mid)) * tol[rest]):
        return None
    return mid, zero


def _rearranged(
    a: np.ndarray, n: np.ndarray, tol: np.ndarray, ok: np.ndarray, spatial: int
) -> tuple[str, str] | None:
    """A transposed / permuted / spatially flipped copy of the right gradient."""

    def close(b: np.ndarray) -> bool:
        return b.shape == n.shape and bool(np.all(np.abs(b - n)[ok] <= tol[ok]))

    if spatial and a.ndim >= spatial:
        flipped = a[tuple(slice(None, None, -1) for _ in range(spatial))]
        if close(flipped):
            return (
                "flipped along its spatial axes (rotated 180 degrees): a convolution where the "
                "layer computes a correlation, or the other way round", "flipped",
            )  # fmt: skip
    if not spatial and a.ndim >= 2:
        # a layer whose axes gradcli does not know (yours): CS231n's (F, C, HH, WW) kernel
        # is spatial last, and a kernel flipped there got no hint (outside test t72b F4)
        for axes, words in (((-2, -1), "its last two axes"), ((-1,), "its last axis"),
                            (tuple(range(a.ndim)), "every axis")):  # fmt: skip
            if close(np.flip(a, axis=axes)):
                return (
                    f"flipped along {words} (rotated 180 degrees where two): a convolution's "
                    f"kernel read as a correlation's, or the other way round", "flipped",
                )  # fmt: skip
    if 2 <= a.ndim <= 4:
        for perm in itertools.permutations(range(a.ndim)):
            if perm != tuple(range(a.ndim)) and close(a.transpose(perm)):
                what = "transposed" if a.ndim == 2 else f"with its axes permuted {list(perm)}"
                return f"{what}: an index order mixed up", "transposed"
    return None



def scales(
    layer: Any, shapes: dict, options: Any, name: str | None, upstream: Any = None
) -> dict[str, tuple]:
    """The constants the layer names (checking/factors.py), for a ratio to the numerical
    gradient: {words: (factor, cause)}; the sign has a hint of its own. ``upstream``: the
    check's grad_output (one number of it is a factor a backward may leave out)."""
    if not layer.broadcasts:  # a user's layer: the built-in of its name knows its constants
        layer = REGISTRY.get(layer.name, layer)
    try:
        out_shape = tuple(layer.output_shape(shapes, options))
        found = factors.named(layer, shapes, options, name, out_shape, upstream)
    except Exception:  # noqa: BLE001 - hints are best effort; the check itself stands
        found = []
    return {words: (value, cause) for value, cause, words, _ in found if cause != "sign"}


def context(
    layer: Any, shapes: dict, options: Any, name: str, upstream: Any = None
) -> dict[str, Any]:
    """What the hints may use about tensor ``name`` of this layer at these shapes."""
    ctx: dict[str, Any] = {"scales": scales(layer, shapes, options, name, upstream)}
    own = layer if layer.broadcasts else REGISTRY.get(layer.name, layer)
    ctx["kink_words"], ctx["layer"] = own.kink_words, own.name
    info = layer.tensor(name, shapes, options)
    conv = layer.name in ("conv1d", "conv2d")
    if conv and info.role == "weight":
        ctx["spatial"] = 2 if layer.name == "conv2d" else 1
    if not layer.broadcasts:  # a user's layer: the built-in of its name knows the geometry
        layer = REGISTRY.get(layer.name, layer)
    if layer.footprint is None:
        return ctx
    try:
        fp = layer.footprint(name, shapes, options)
        out_shape = layer.output_shape(shapes, options)
    except Exception:  # noqa: BLE001 - hints are best effort; the check itself stands
        return ctx
    shape = shapes[name]
    coverage = np.ones(shape)
    border = np.zeros(shape, dtype=bool)
    for axis, amap in enumerate(fp):
        if amap is None:
            continue
        o, lo, hi = amap
        width = np.clip(hi, 0, out_shape[o]) - np.clip(lo, 0, out_shape[o])
        if np.all(width <= 1):
            continue  # a one-to-one axis (batch, channel) has no borders
        view = [1] * len(shape)
        view[axis] = -1
        coverage = coverage * width.reshape(view)
        border |= places.edges(np.asarray(lo), width).reshape(view)
    if np.any(coverage != 1):
        ctx["coverage"] = coverage
    if conv and info.role == "input" and border.any():
        ctx["border"] = border
    return ctx
