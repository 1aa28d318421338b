"""Attention's backward as named terms, and its classic wrong variants (for the diagnosis).

    dV = A^T dH      dA = dH V^T      dS = A * dA  -  A * rowsum(dA * A)   (diagonal, rowsum)
    dQ = dS K s      dK = dS^T Q s    (s = 1/sqrt(d_k/h))
    dX = dQ W_Q^T (Q path) + dK W_K^T (K path) + dV W_V^T (V path)

Each variant changes one named piece, the rest computed as the layer's backward does, so a
gradient that equals one to round-off has that piece wrong (gradcli.hypotheses).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

PATHS = ("Q", "K", "V")


def variants(cache: dict[str, Any], g: np.ndarray, split: Any, merge: Any, rows: Any) -> dict:
    """{cause: (what the backward did, {tensor: gradient})} at the forward's ``cache``, the
    upstream gradient ``g``; split/merge/rows: the layer's head and row helpers."""
    _split, _merge, _rows = split, merge, rows
    X, W_Q, W_K, W_V, W_O = (cache[n] for n in ("X", "W_Q", "W_K", "W_V", "W_O"))
    Q, K, V, A, s, h = (cache[n] for n in ("Q", "K", "V", "A", "scale", "heads"))
    dH = _split(g if W_O is None else _rows(g, W_O.T), h)
    dV, dA = A.swapaxes(-1, -2) @ dH, dH @ V.swapaxes(-1, -2)
    rowsum = A * np.einsum("...ij,...ij->...i", dA, A)[..., None]
    X2 = X.reshape(-1, X.shape[-1])

    def grads(dS: np.ndarray, scale: float = s, dK: Any = None, paths: str = "QKV",
              dv: Any = None) -> dict:  # fmt: skip
        dQ = dS @ K * scale
        dK = dS.swapaxes(-1, -2) @ Q * scale if dK is None else dK * scale
        d = {"Q": _merge(dQ, h), "K": _merge(dK, h), "V": _merge(dV if dv is None else dv, h)}
        W = {"Q": W_Q, "K": W_K, "V": W_V}
        out = {f"W_{p}": X2.T @ d[p].reshape(len(X2), -1) for p in PATHS}
        out["X"] = sum(d[p] @ W[p].T for p in paths) if paths else np.zeros_like(X)
        return out

    right = A * dA - rowsum
    out = {
        "softmax:no-rowsum": (
            "without the rowsum term of the softmax Jacobian (dS = A * dA; the right one is "
            "A * (dA - rowsum(dA * A)))",
            grads(A * dA),
        ),
        "softmax:diagonal": (
            "with only the diagonal of the softmax Jacobian (dS = A (1 - A) dA; the right dS "
            "is A * (dA - rowsum(dA * A)))",
            grads(A * (1 - A) * dA),
        ),
        "softmax:skipped": (
            "with the softmax's backward left out (dS = dA; the right dS is "
            "A * (dA - rowsum(dA * A)))",
            grads(dA),
        ),
        "scale:no-1/sqrt(d_k)": (
            f"without the scale 1/sqrt(d_k) = {s:.4g} in dQ and dK",
            grads(right, 1.0),
        ),
        "scale:1/sqrt(d_k)-twice": (
            f"with the scale 1/sqrt(d_k) = {s:.4g} applied twice in dQ and dK",
            grads(right, s * s),
        ),
        "dK:dS-not-transposed": (
            "with dK = dS Q (the right one is dS^T Q: dS is not transposed)",
            grads(right, dK=right @ Q),
        ),
    }
    if A.shape[-1] == A.shape[-2] == dH.shape[-2]:  # A dH only where the shapes allow it
        # (outside test t52b F6: dV = A @ dout went without a hint)
        out["dV:A-not-transposed"] = (
            "with dV = A dout (the right one is A^T dout: A is not transposed)",
            grads(right, dv=A @ dH),
        )
    if h > 1:
        whole = 1 / math.sqrt(W_Q.shape[-1])
        out["scale:1/sqrt(d_k)-whole"] = (
            f"with the scale 1/sqrt(d_k) = {whole:.4g} of all heads in dQ and dK (each head's "
            f"is 1/sqrt(d_k/h) = {s:.4g})", grads(right, whole))  # fmt: skip
    for r in (1, 2):
        for dropped in itertools.combinations(PATHS, r):
            kept = "".join(p for p in PATHS if p not in dropped)
            names = ",".join(f"{p} path" for p in sorted(dropped))
            text = " and ".join(f"the {p} path" for p in dropped)
            out[f"missing-term:{names}"] = (
                f"without {text} of dX (dX = dQ W_Q^T + dK W_K^T + dV W_V^T)",
                {"X": grads(right, paths=kept)["X"]},
            )
    return out
