"""Where in the output a user's backward goes wrong, by calling it.

A backward is linear in its upstream gradient, so feeding it the upstream gradient of one
output index at a time (one batch element, one window position, one channel) and comparing
each answer with the right backward's says which contributions are wrong: "only batch element
0 contributes to db", "wrong only for the contributions of the last window". The calls go
through the user-code guard like every other; an answer that is not linear (the pieces do not
add up to the whole) gives no hint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcli.checking.hint import Hint

MAX_CALLS = 48  # calls into the user's backward one diagnosis may make
MAX_OUTPUT = 100_000  # output elements beyond which no probing is done


def localize(
    name: str,
    g: np.ndarray,
    mine: Callable[[np.ndarray], Mapping[str, Any]],
    right: Callable[[np.ndarray], Mapping[str, Any]],
    whole: np.ndarray,
    letters: list[str],
) -> list[Hint]:
    """One sentence on the output indices whose contributions to d``name`` are wrong, along
    the axis that singles them out best; ``whole``: the user's d``name`` for all of ``g``."""
    if g.size > MAX_OUTPUT:
        return []
    best: tuple[float, str] | None = None
    calls = 0
    for axis, size in enumerate(g.shape):
        if size < 2 or calls + size > MAX_CALLS:
            continue
        calls += size
        parts, wrong, missing = [], [], []
        for t in range(size):
            keep = np.zeros(size, dtype=bool)
            keep[t] = True
            g_t = np.where(keep.reshape([-1 if k == axis else 1 for k in range(g.ndim)]), g, 0.0)
            a = np.asarray(mine(g_t)[name], dtype=np.float64)
            r = np.asarray(right(g_t)[name], dtype=np.float64)
            parts.append(a)
            tol = 1e-7 * max(float(np.max(np.abs(r), initial=0.0)), 1e-300) + 1e-12
            if np.max(np.abs(a - r)) > tol:
                wrong.append(t)
                missing.append(np.max(np.abs(a)) <= tol and np.max(np.abs(r)) > 10 * tol)
        scale = float(np.max(np.abs(whole), initial=0.0)) or 1.0
        if np.max(np.abs(sum(parts) - whole)) > 1e-7 * scale:
            return []  # not linear in the upstream gradient: the pieces say nothing
        if not wrong or len(wrong) == size:
            continue
        ltr = letters[axis] if axis < len(letters) else f"axis {axis}"
        where = _indices(wrong, size)
        right_ones = [t for t in range(size) if t not in wrong]
        if all(missing) and len(right_ones) == 1:
            text = (
                f"only output {ltr}={right_ones[0]} contributes to d{name}: the contributions "
                f"of {ltr}={where} are missing (look at the sum over {ltr})"
            )
        elif all(missing):
            text = (
                f"d{name} misses the contributions of output {ltr}={where}, the others are "
                f"right (look at the loop or the slice over {ltr})"
            )
        else:
            text = (
                f"d{name} is wrong only for the contributions of output {ltr}={where}, the "
                "others are right: look at how the backward treats those"
            )
        share = len(wrong) / size
        if best is None or share < best[0]:
            best = (share, text)
    return [Hint(best[1], None, True)] if best else []


def _indices(picked: list[int], size: int) -> str:
    """0, 1 and 7 (the first two and the last of 8)."""
    names = {0: "the first", size - 1: "the last"}
    shown = ", ".join(str(t) for t in picked[:6]) + (", ..." if len(picked) > 6 else "")
    ends = [names[t] for t in picked if t in names]
    return f"{shown} ({' and '.join(ends)})" if ends and len(picked) <= 2 else shown
