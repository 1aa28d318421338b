"""Least squares with weights >= 0, and the mixes of pieces they fit."""

from __future__ import annotations

import numpy as np


def nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin ||A x - b|| over x >= 0 (Lawson and Hanson's active set)."""
    n = A.shape[1]
    x = np.zeros(n)
    free = np.zeros(n, dtype=bool)
    tiny = 1e-12 * max(1.0, float(np.abs(A).max()))
    for _ in range(3 * n + 3):
        w = A.T @ (b - A @ x)
        if free.all() or np.max(np.where(free, -np.inf, w)) <= tiny:
            break
        free[int(np.argmax(np.where(free, -np.inf, w)))] = True
        for _ in range(3 * n + 3):
            z = np.zeros(n)
            z[free] = np.linalg.lstsq(A[:, free], b, rcond=None)[0]
            if np.all(z[free] > 0):
                x = z
                break
            neg = free & (z <= 0)
            gap = x[neg] - z[neg]  # 0 for a variable just freed at 0: it leaves again
            alpha = float(np.min(np.divide(x[neg], gap, out=np.zeros(gap.size), where=gap > 0)))
            x = x + alpha * (z - x)
            free &= x > tiny
            x[~free] = 0.0
    return x


def mix(pieces: np.ndarray, v: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The weights (P,) >= 0 adding up to 1 whose mix of ``pieces`` (P, k) is nearest ``v``
    (k,), each element weighed by 1 / ``scale`` (its tolerance)."""
    A = np.vstack([(pieces / scale).T, np.full((1, len(pieces)), 1e3)])
    w = nnls(A, np.r_[v / scale, 1e3])
    total = w.sum()
    return w / total if total > 0 else np.full(len(pieces), 1.0 / len(pieces))
