"""Loop references for the losses (issue 14): mse, softmax_cross_entropy, svm.

Same rules as reference.py: explicit loops, scalar math from ``math``, nothing imported from
gradcli. A loss's "example" is a whole batch (N rows): the mean mixes them. Axes in front of N
are independent batches, looped over one by one (labels and targets broadcast against them).
The formulas: torch's MSELoss (mean), CS231n's softmax_loss and svm_loss.
"""

from __future__ import annotations

import math

import numpy as np


def _zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.float64)


# ----------------------------------------------------------------------------- mse
# loss = (1 / (N D)) sum_{n, d} (pred[n, d] - target[n, d])^2
def mse_forward(pred, target):
    N, D = pred.shape
    s = 0.0
    for n in range(N):
        for d in range(D):
            s += (pred[n, d] - target[n, d]) ** 2
    return s / (N * D)


# dpred[n, d] = dloss * 2 (pred[n, d] - target[n, d]) / (N D)
def mse_backward(dloss, pred, target):
    N, D = pred.shape
    dpred = _zeros(N, D)
    for n in range(N):
        for d in range(D):
            dpred[n, d] = dloss * 2.0 * (pred[n, d] - target[n, d]) / (N * D)
    return {"pred": dpred}


# ----------------------------------------------------------------------------- softmax
def _log_softmax_row(row):
    top = max(row)
    total = 0.0
    for v in row:
        total += math.exp(v - top)
    return [v - top - math.log(total) for v in row]


# loss = -(1 / N) sum_n log softmax(x_n)[y_n]
def softmax_ce_forward(x, y):
    N, C = x.shape
    s = 0.0
    for n in range(N):
        s -= _log_softmax_row([x[n, c] for c in range(C)])[int(y[n])]
    return s / N


# dx[n, c] = dloss (p[n, c] - [c == y_n]) / N
def softmax_ce_backward(dloss, x, y):
    N, C = x.shape
    dx = _zeros(N, C)
    for n in range(N):
        logp = _log_softmax_row([x[n, c] for c in range(C)])
        for c in range(C):
            dx[n, c] = dloss * (math.exp(logp[c]) - (1.0 if c == int(y[n]) else 0.0)) / N
    return {"x": dx}


# ----------------------------------------------------------------------------- svm
# loss = (1 / N) sum_n sum_{c != y_n} max(0, x[n, c] - x[n, y_n] + 1)
def svm_forward(x, y):
    N, C = x.shape
    s = 0.0
    for n in range(N):
        for c in range(C):
            if c != int(y[n]):
                s += max(0.0, x[n, c] - x[n, int(y[n])] + 1.0)
    return s / N


# each positive margin (n, c): dx[n, c] += dloss / N, dx[n, y_n] -= dloss / N
def svm_backward(dloss, x, y):
    N, C = x.shape
    dx = _zeros(N, C)
    for n in range(N):
        k = int(y[n])
        for c in range(C):
            if c != k and x[n, c] - x[n, k] + 1.0 > 0:
                dx[n, c] += dloss / N
                dx[n, k] -= dloss / N
    return {"x": dx}


def _batches(forward, backward, a, b, core):
    """The one-batch references over the leading axes of tensor a (b broadcast against it)."""

    def lead(t):
        return np.broadcast_shapes(t[a].shape[: t[a].ndim - 2], t[b].shape[: t[b].ndim - core])

    def parts(t, idx):
        L = lead(t)
        A = np.broadcast_to(t[a], L + t[a].shape[-2:])
        B = np.broadcast_to(t[b], L + t[b].shape[t[b].ndim - core :])
        return A[idx], B[idx]

    def fwd(t):
        L = lead(t)
        out = _zeros(*L)
        for idx in np.ndindex(*L):
            out[idx] = forward(*parts(t, idx))
        return out

    def bwd(g, t):
        L = lead(t)
        total = _zeros(*L, *t[a].shape[-2:])
        for idx in np.ndindex(*L):
            total[idx] = backward(float(np.asarray(g)[idx]), *parts(t, idx))[a]
        while total.ndim > t[a].ndim:
            total = total.sum(axis=0)
        for k, size in enumerate(t[a].shape):  # an axis of 1 broadcast against b's batches
            if size == 1 and total.shape[k] != 1:
                total = total.sum(axis=k, keepdims=True)
        return {a: total}

    return fwd, bwd


REFERENCES = {
    "mse": _batches(mse_forward, mse_backward, "pred", "target", 2),
    "softmax_cross_entropy": _batches(softmax_ce_forward, softmax_ce_backward, "x", "y", 1),
    "svm": _batches(svm_forward, svm_backward, "x", "y", 1),
}
