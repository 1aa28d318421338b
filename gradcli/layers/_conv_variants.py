"""conv's classic wrong backward passes of dX (for the diagnosis, gradcli.hypotheses), on
_conv's channel-last form: X (..., *spatial, C_in), W (*k, C_in, C_out), dZ (..., *out, C_out).

    dXp[i*s + m*d] += dZ[i] W[m]^T  over windows i and taps m;   dX = dXp[lo : lo + n]

- ``=`` where ``+=`` belongs: each write replaces what overlapping windows wrote before, in the
  two loop orders people write (windows outer, or taps outer);
- the padding cut off at the wrong offset (one off, or from the start).
"""

from __future__ import annotations

import itertools

import numpy as np

from gradcli.layers import _conv

MAX_LOOP = 20_000  # window x tap writes the loop variants may take (they run in Python)


def variants_nd(X: np.ndarray, W: np.ndarray, dZ: np.ndarray, geo: list[_conv.Axis]) -> dict:
    """{cause: (what the backward did, dX)}."""
    ns = len(geo)
    out: dict[str, tuple[str, np.ndarray]] = {}
    lead = X.shape[: -ns - 1]
    padded = lead + tuple(g.n + g.lo + g.hi for g in geo) + X.shape[-1:]
    inner = (Ellipsis, *(slice(g.lo, g.lo + g.n) for g in geo), slice(None))
    windows = list(itertools.product(*(range(g.out) for g in geo)))
    taps = list(itertools.product(*(range(g.k) for g in geo)))
    if len(windows) * len(taps) <= MAX_LOOP:
        for order in ("windows", "taps"):
            dXp = np.zeros(padded)
            pairs = itertools.product(windows, taps) if order == "windows" else (
                (i, m) for m in taps for i in windows)  # fmt: skip
            for i, m in pairs:
                at = tuple(ii * g.s + mm * g.d for ii, mm, g in zip(i, m, geo, strict=True))
                dXp[(Ellipsis, *at, slice(None))] = dZ[(Ellipsis, *i, slice(None))] @ W[m].T
            if order == "windows":
                text = (
                    "with = where += belongs (dXp[window] = ... in a loop over the windows): "
                    "where windows overlap, the last window's share replaces the others'"
                )
            else:
                text = (
                    "with = where += belongs (dXp[...] = ... in a loop over the kernel taps): "
                    "where taps overlap, the last tap's share replaces the others'"
                )
            out[f"overwrite:{order}"] = (text, dXp[inner])
    if any(g.lo for g in geo):
        dXp = _padded_gradient(X, W, dZ, geo)
        offsets = {"one before": -1, "one after": 1}
        for what, step in offsets.items():
            cut = (Ellipsis, *(slice(g.lo + step, g.lo + step + g.n) for g in geo), slice(None))
            if all(0 <= g.lo + step and g.lo + step + g.n <= g.n + g.lo + g.hi for g in geo):
                out[f"shifted:crop {what}"] = (
                    f"with the padding cut off {what} its place (dX = dXp[lo{step:+d} : "
                    f"lo{step:+d} + n] where dXp[lo : lo + n] belongs)", dXp[cut])  # fmt: skip
        cut = (Ellipsis, *(slice(0, g.n) for g in geo), slice(None))
        out["shifted:crop from the start"] = (
            "with the padding cut off the end only (dX = dXp[:n] where dXp[lo : lo + n] "
            "belongs)", dXp[cut])  # fmt: skip
    return out


def _padded_gradient(X: np.ndarray, W: np.ndarray, dZ: np.ndarray, geo: list) -> np.ndarray:
    """dL/dXp: the backward of the same windows on the padded input, without padding."""
    bare = [_conv.Axis(g.n + g.lo + g.hi, g.k, g.s, g.d, 0, 0) for g in geo]
    _, cache = _conv.forward(_conv.pad(X, geo), W, np.zeros(W.shape[-1]), bare)
    return _conv.backward(dZ, cache)["X"]
