"""conv's classic wrong backward passes of dX (for the diagnosis, gradcli.hypotheses), on
_conv's channel-last form: X (..., *spatial, C_in), W (*k, C_in, C_out), dZ (..., *out, C_out).

    dXp[i*s + m*d] += dZ[i] W[m]^T  over windows i and taps m;   dX = dXp[lo : lo + n]

- ``=`` where ``+=`` belongs: each write replaces what was written before, so every element of
  dXp keeps the share of the last write that reached it, whatever the loops' order: along each
  axis the last window over it (the windows' loop outside the taps', or the taps written as one
  slice) or the first (the taps' loop outside: the last tap is the first window's), and of the
  filters every one (summed inside the write, np.dot / einsum over f) or the last alone (a loop
  over f, wherever it stands: CS231n's ``for f: for i: for j: dxp[n, :, win] = w[f] * ...``);
- the padding cut off at the wrong offset (one off, or from the start).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from gradcli.layers import _conv

# elements of the last writes' gathered arrays (the upstream gradient and the kernel at every
# padded position) one variant may take
MAX_GATHERED = 4_000_000


def variants_nd(X: np.ndarray, W: np.ndarray, dZ: np.ndarray, geo: list[_conv.Axis]) -> dict:
    """{cause: (what the backward did, dX)}."""
    ns = len(geo)
    out: dict[str, tuple[str, np.ndarray]] = {}
    lead = X.shape[: -ns - 1]
    padded = lead + tuple(g.n + g.lo + g.hi for g in geo) + X.shape[-1:]
    inner = (Ellipsis, *(slice(g.lo, g.lo + g.n) for g in geo), slice(None))
    for cause, (text, dXp) in _overwrites(dZ, W, geo, padded).items():
        out[cause] = (text, dXp[inner])
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


def _overwrites(dZ: np.ndarray, W: np.ndarray, geo: list[_conv.Axis],
                padded: tuple[int, ...]) -> dict[str, tuple[str, np.ndarray]]:  # fmt: skip
    """{cause: (text, dXp)} for every loop order of a backward written with ``=``: the last
    window or the first along each axis, every filter or the last. Orders that leave the same
    values are said once, the plainest first (windows outer, filters summed)."""
    ns, (c_in, c_out) = len(geo), W.shape[-2:]
    lead = math.prod(padded[: -ns - 1])
    gathered = math.prod(padded[-ns - 1 : -1]) * (lead * (c_out + c_in) + c_in * c_out)
    if gathered > MAX_GATHERED:
        return {}
    out: dict[str, tuple[str, np.ndarray]] = {}
    seen: list[np.ndarray] = []
    for last_filter in (False, True) if c_out > 1 else (False,):
        for latest in _orders(ns):
            dXp = _last_writes(dZ, W, geo, latest, last_filter)
            if any(np.array_equal(dXp, v) for v in seen):
                continue  # windows that do not overlap along an axis: its order changes nothing
            seen.append(dXp)
            out[_overwrite_cause(latest, last_filter)] = (
                _overwrite_text(latest, last_filter), dXp)
    return out


def _orders(ns: int) -> list[tuple[bool, ...]]:
    """Per axis, whether the last window over a position writes last (True) or the first;
    every axis alike first: the windows' loop outside the taps' (or the taps one slice), then
    the taps' outside."""
    same = [(True,) * ns, (False,) * ns]
    return same + [o for o in itertools.product((True, False), repeat=ns) if o not in same]


def _last_writes(dZ: np.ndarray, W: np.ndarray, geo: list[_conv.Axis], latest: tuple[bool, ...],
                 last_filter: bool) -> np.ndarray:  # fmt: skip
    """dXp when each write replaces the last: per axis, the window that wrote each padded
    position last and the tap it wrote there with (the loop replayed along that axis alone:
    a window's taps never meet, so the axes' winners combine), then that window's share of
    every filter, or of the last filter alone."""
    ns = len(geo)
    picks, taps, covered = [], [], []
    for g, late in zip(geo, latest, strict=True):
        size = g.n + g.lo + g.hi
        pick, tap = np.full(size, -1), np.zeros(size, dtype=np.int64)
        for i in range(g.out) if late else range(g.out - 1, -1, -1):
            at = i * g.s + np.arange(g.k) * g.d
            pick[at], tap[at] = i, np.arange(g.k)
        picks.append(np.maximum(pick, 0))
        taps.append(tap)
        covered.append(pick >= 0)
    f = slice(-1, None) if last_filter else slice(None)
    dz = dZ[(Ellipsis, *np.ix_(*picks), f)]  # (..., *positions, F)
    w = np.swapaxes(W[np.ix_(*taps)][..., f], -1, -2)  # (*positions, F, C_in)
    dXp = (dz[..., None, :] @ w)[..., 0, :]
    mask = np.ones((), dtype=bool)
    for k, c in enumerate(covered):
        mask = mask & c.reshape([-1 if j == k else 1 for j in range(ns)])
    return dXp * mask[..., None]


def _overwrite_cause(latest: tuple[bool, ...], last_filter: bool) -> str:
    order = ("windows" if all(latest) else "taps" if not any(latest) else
             "mixed:" + "".join("w" if late else "t" for late in latest))  # fmt: skip
    return f"overwrite:{'filters:' if last_filter else ''}{order}"


def _overwrite_text(latest: tuple[bool, ...], last_filter: bool) -> str:
    if all(latest):
        loop, kept = "a loop over the windows", "the last window over it"
    elif not any(latest):
        loop, kept = "a loop over the kernel taps outside the windows", (
            "the first window over it (the last tap)")
    else:
        along = ["rows", "columns"] if len(latest) == 2 else [f"axis {k}" for k in latest]
        late = " and ".join(a for a, x in zip(along, latest, strict=True) if x)
        early = " and ".join(a for a, x in zip(along, latest, strict=True) if not x)
        loop = f"the taps' loop outside the windows' along the {early} only"
        kept = f"the last window over it along the {late}, the first along the {early}"
    if last_filter:
        where = {"windows": "the windows (for f: for i: for j: dxp[n, :, window] = w[f] * "
                 "dout[n, f, i, j])", "taps": "the kernel taps, the taps outside the windows"}
        order = _overwrite_cause(latest, False).split(":")[-1]
        return (
            f"with = where += belongs in loops over the filters and "
            f"{where.get(order, 'the windows, ' + loop)}, the loop over f anywhere: each "
            f"element keeps the last filter's share alone, from {kept}"
        )
    if all(latest):
        return (
            "with = where += belongs (dXp[window] = ... in a loop over the windows): "
            "where windows overlap, the last window's share replaces the others'"
        )
    if not any(latest):
        return (
            "with = where += belongs (dXp[...] = ... in a loop over the kernel taps): "
            "where taps overlap, the last tap's share replaces the others'"
        )
    return (
        f"with = where += belongs ({loop}, every filter summed in each write): each element "
        f"keeps the share of {kept}"
    )


def _padded_gradient(X: np.ndarray, W: np.ndarray, dZ: np.ndarray, geo: list) -> np.ndarray:
    """dL/dXp: the backward of the same windows on the padded input, without padding."""
    bare = [_conv.Axis(g.n + g.lo + g.hi, g.k, g.s, g.d, 0, 0) for g in geo]
    _, cache = _conv.forward(_conv.pad(X, geo), W, np.zeros(W.shape[-1]), bare)
    return _conv.backward(dZ, cache)["X"]
