"""The check's use of routes (numeric/routes.py): at the ties of a layer's maxima, the value
compared is a valid routing of the upstream gradient, not the intervals' nearest point.

Trusted only as far as the finite differences bear it out: each value a routing puts in place
must lie within its coordinate's own one-sided interval (numeric/ties.py measured it), else the
intervals' values stand and a note says so. A routing is exact where intervals are loose, so
this can only tighten what passes: every routing lies in the intervals and the group sums.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gradcli.numeric import routes


def settle(engine, name: str, analytic: np.ndarray, grad: np.ndarray, at, atol: float,
           rtol: float, floor, note: Callable[[str], None]) -> tuple[np.ndarray, int]:  # fmt: skip
    """``grad`` with a routing's values at the coordinates of ``at`` (numeric/ties.AtKink:
    those at a kink itself) that are tied maxima of a declared window, and how many they
    are (0: none put in place). ``floor``: each element's absolute tolerance (its
    round-off included), flat, or one for all."""
    if at is None or not at.coords.size:
        return grad, 0
    r = routes.route(engine, name, analytic, atol, rtol, at.coords, at.near)
    if r is not None and r.unsettled:
        note(
            f"d{name}: {r.unsettled:,} tied coordinates lie in pieces of overlapping windows "
            f"beyond the {routes.LIMIT:,} (window, maximum) pairs the flows solve: they were "
            "checked against the intervals and group sums, not held to routings of each "
            "window's gradient"
        )
    if r is None or not r.coords.size:
        return grad, 0
    pos = np.searchsorted(at.coords, r.coords, sorter=np.argsort(at.coords))
    pos = np.argsort(at.coords)[pos]
    lo, hi = at.lo[pos], at.hi[pos]
    floor = np.broadcast_to(np.asarray(floor, dtype=np.float64), (grad.size,))
    slack = floor[r.coords] + rtol * np.maximum(np.abs(lo), np.abs(hi))
    outside = (r.values < lo - slack) | (r.values > hi + slack)
    if outside.any():
        note(
            f"d{name}: the windows {engine.layer.name} declares for its maxima give "
            f"{int(outside.sum()):,} tied coordinate{'s' if outside.sum() > 1 else ''} a value "
            "its one-sided differences do not allow: checked against the intervals instead"
        )
        return grad, 0
    grad = grad.copy()
    grad.flat[r.coords] = r.values
    if not r.valid:
        note(
            f"d{name}: at ties, your gradient is no routing of each window's upstream gradient "
            f"to the window's own tied maxima ({r.windows:,} window{'s' if r.windows > 1 else ''}"
            f" tied): {r.why}; compared with the valid gradient nearest yours found"
        )
    return grad, int(r.coords.size)
