"""Why a gradient is wrong: patterns in analytic vs numeric that point at a classic mistake.

Each hint is one sentence. They look at the comparison only (no finite differences here) plus
what the layer declares about its tensors (footprints, options), so they work the same for the
built-in layers, answer files and user implementations.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

# errors only where attention's causal mask hides j > i: what a dS or dA there should be
MASKED = {
    "S": "errors only on masked positions (j > i): dS must be 0 there, since S is -inf and "
    "the softmax ignores it; your dS is not",
    "A": "errors only on masked positions (j > i): gradcli takes dA = dH V^T everywhere "
    "(dH = dout, or dout W_O^T), since the mask acts on S, not A, so dA is not 0 there; "
    "only dS is",
}

# CS231n's reading of the relative error |a - n| / max(|a|, |n|)
BANDS = ((1e-7, "good"), (1e-4, "ok only if the function has kinks"), (1e-2, "suspicious"))
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
    if np.all(a[fail] == 0) and np.any(np.abs(n[fail]) > tol[fail]):
        whole = "everywhere" if np.all(a[ok] == 0) else "at every failing element"
        out.append(
            f"d{name} is zero {whole} where the numerical gradient is not: a missing term or "
            "path (attention's dX, for one, sums the Q, K and V paths)"
        )
        return out
    ratio = _constant_ratio(a, n, tol, ok)
    if ratio is not None:
        if abs(ratio + 1) < 1e-3:
            out.append(f"d{name} = -1 x numeric everywhere: the sign is flipped")
        else:
            known = [label for label, v in context.get("scales", {}).items()
                     if abs(ratio / v - 1) < 1e-3]  # fmt: skip
            why = f" ({' or '.join(known)})" if known else " (a missing or extra scale)"
            out.append(f"d{name} = {ratio:.6g} x numeric everywhere: a constant factor{why}")
        return out
    for mistake, wrong in context.get("mistakes", {}).items():
        if wrong.shape == a.shape and np.all(
            np.abs(a - wrong)[ok] <= tol[ok] + 1e-9 * np.abs(wrong[ok])
        ):
            out.append(f"d{name} is exactly what you get {mistake}")
            return out
    moved = _rearranged(a, n, tol, ok, context.get("spatial", 0))
    if moved:
        out.append(f"d{name} matches the numerical gradient {moved}")
        return out
    coverage = context.get("coverage")
    if coverage is not None and coverage.shape == a.shape:
        if np.any(coverage == 1) and np.all(coverage[fail] > 1) and not fail[coverage == 1].any():
            out.append(
                f"d{name} is wrong only where windows overlap: contributions are overwritten "
                "instead of summed (= where += is needed)"
            )
    border = context.get("border")
    if border is not None and border.shape == a.shape and np.all(border[fail]):
        if (~border & ok).any() and not fail[~border].any():
            out.append(
                f"d{name} is wrong only on the borders: look at the padding (an off-by-one "
                "at the edges)"
            )
    out += _one_slice(name, fail, letters)
    return out


def _constant_ratio(a: np.ndarray, n: np.ndarray, tol: np.ndarray, ok: np.ndarray) -> Any:
    big = ok & (np.abs(n) > 10 * tol)
    if big.sum() < 2:
        return None
    r = a[big] / n[big]
    mid = float(np.median(r))
    if mid == 0 or not np.all(np.abs(r / mid - 1) < 1e-4):
        return None
    return mid if abs(mid - 1) > 1e-4 else None


def _rearranged(a: np.ndarray, n: np.ndarray, tol: np.ndarray, ok: np.ndarray, spatial: int) -> str:
    """A transposed / permuted / spatially flipped copy of the right gradient."""

    def close(b: np.ndarray) -> bool:
        return b.shape == n.shape and bool(np.all(np.abs(b - n)[ok] <= tol[ok]))

    if spatial and a.ndim >= spatial:
        flipped = a[tuple(slice(None, None, -1) for _ in range(spatial))]
        if close(flipped):
            return (
                "flipped along its spatial axes (rotated 180 degrees): a convolution where the "
                "layer computes a correlation, or the other way round"
            )
    if 2 <= a.ndim <= 4:
        for perm in itertools.permutations(range(a.ndim)):
            if perm != tuple(range(a.ndim)) and close(a.transpose(perm)):
                what = "transposed" if a.ndim == 2 else f"with its axes permuted {list(perm)}"
                return f"{what}: an index order mixed up"
    return ""


def _one_slice(name: str, fail: np.ndarray, letters: list[str]) -> list[str]:
    """All the errors in one row / column / channel."""
    if fail.ndim < 2 or fail.sum() < 2:
        return []
    where = np.argwhere(fail)
    if len(letters) <= fail.ndim:  # the layer's letters name the last axes; batch axes lead
        letters = [f"b{k}" for k in range(fail.ndim - len(letters))] + list(letters)
    for axis in range(fail.ndim):
        values = np.unique(where[:, axis])
        if len(values) == 1 and fail.shape[axis] > 1:
            letter = letters[axis] if axis < len(letters) else f"axis {axis}"
            return [
                f"d{name} is wrong only at {letter}={int(values[0])} (one slice along that axis)"
            ]
    return []


def scales(layer: str, shapes: dict, options: Any) -> dict[str, float]:
    """Constant factors a classic mistake introduces, by name."""
    out = {"an extra factor 2": 2.0, "a missing factor 2": 0.5}
    if layer == "attention" and "W_Q" in shapes:
        dk = shapes["W_Q"][-1] / max(1, getattr(options, "heads", 1) or 1)
        root = math.sqrt(dk)
        out[f"a missing 1/sqrt(d_k) = {1 / root:.4g}"] = root
        out[f"1/sqrt(d_k) applied twice: {1 / root:.4g}"] = 1 / root
    return out


def context(layer: Any, shapes: dict, options: Any, name: str) -> dict[str, Any]:
    """What the hints may use about tensor ``name`` of this layer at these shapes."""
    ctx: dict[str, Any] = {"scales": scales(layer.name, shapes, options)}
    info = layer.tensor(name, shapes, options)
    conv = layer.name in ("conv1d", "conv2d")
    if conv and info.role == "weight":
        ctx["spatial"] = 2 if layer.name == "conv2d" else 1
    if layer.footprint is None or not layer.broadcasts:
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
        edge = np.zeros(shape[axis], dtype=bool)
        full = width.max()
        edge[width < full] = True  # positions fewer windows read: the borders
        border |= edge.reshape(view)
    if np.any(coverage != 1):
        ctx["coverage"] = coverage
    if conv and info.role == "input" and border.any():
        ctx["border"] = border
    return ctx


def mistakes(layer: str, t: dict[str, np.ndarray], options: Any, g: np.ndarray) -> dict:
    """Classic wrong backward passes of the seed's attention, computed here so a user's
    gradient can be recognized: {description: {tensor: gradient}}."""
    if layer != "attention" or options is None or getattr(options, "heads", 1) != 1:
        return {}
    if getattr(options, "causal", False) or "W_O" in t:
        return {}
    X, W_Q, W_K, W_V = (np.asarray(t[n], dtype=np.float64) for n in ("X", "W_Q", "W_K", "W_V"))
    Q, K, V = X @ W_Q, X @ W_K, X @ W_V
    s = 1 / math.sqrt(W_Q.shape[-1])
    S = Q @ K.swapaxes(-1, -2) * s
    A = np.exp(S - S.max(axis=-1, keepdims=True))
    A /= A.sum(axis=-1, keepdims=True)
    dV = A.swapaxes(-1, -2) @ g
    dA = g @ V.swapaxes(-1, -2)

    def grads(dS: np.ndarray, scale: float, x_paths: str = "QKV") -> dict[str, np.ndarray]:
        dQ, dK = dS @ K * scale, dS.swapaxes(-1, -2) @ Q * scale
        X2 = X.reshape(-1, X.shape[-1])
        dX = sum(d @ W.T for p, d, W in (("Q", dQ, W_Q), ("K", dK, W_K), ("V", dV, W_V))
                 if p in x_paths)  # fmt: skip
        flat = lambda d: d.reshape(-1, d.shape[-1])  # noqa: E731
        return {"X": dX, "W_Q": X2.T @ flat(dQ), "W_K": X2.T @ flat(dK), "W_V": X2.T @ flat(dV)}

    right = A * (dA - (dA * A).sum(axis=-1, keepdims=True))
    return {
        "without the rowsum term of the softmax Jacobian (dS = A * dA)": grads(A * dA, s),
        "without the 1/sqrt(d_k) in dQ and dK": grads(right, 1.0),
        "when dX keeps only the V path (the Q and K paths are missing)": grads(right, s, "V"),
    }
