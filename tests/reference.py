"""Loop-by-loop reference implementations: independent oracle, never imported by the package.

Every function below is transcribed directly from the index formulas of the seed notes
(``layer-gradients.md``), one explicit Python loop per index, for a single example (no batch
axes). Nothing here imports ``gradcli`` and nothing is vectorized, so an error in the
package's vectorized code cannot be mirrored here. Slow by design: use small sizes.

``REFERENCES[name] = (forward, backward)`` with ``forward(tensors) -> output`` and
``backward(grad_output, tensors) -> {name: grad}``, both keyed by the layer's tensor names.
"""

from __future__ import annotations

import math

import numpy as np


def _zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.float64)


# ----------------------------------------------------------------------------- linear
# z = W x + b  ->  z_o = sum_i W_oi x_i + b_o
def linear_forward(x, W, b):
    n_out, n_in = W.shape
    z = _zeros(n_out)
    for o in range(n_out):
        s = 0.0
        for i in range(n_in):
            s += W[o, i] * x[i]
        z[o] = s + b[o]
    return z


# dL/dW = dz x^T    dL/db = dz    dL/dx = W^T dz
def linear_backward(dz, x, W, b):
    n_out, n_in = W.shape
    dW = _zeros(n_out, n_in)
    db = _zeros(n_out)
    dx = _zeros(n_in)
    for o in range(n_out):
        db[o] = dz[o]
        for i in range(n_in):
            dW[o, i] = dz[o] * x[i]
    for i in range(n_in):
        s = 0.0
        for o in range(n_out):
            s += W[o, i] * dz[o]
        dx[i] = s
    return {"x": dx, "W": dW, "b": db}


# ----------------------------------------------------------------------------- conv1d
# The seed is 1-based: z_i = sum_{j=1}^{k} w_j x_{i+j-1} + b, i = 1..m, m = n - k + 1.
# Loops below run over the seed's 1-based indices and subtract 1 only when indexing arrays.
def conv1d_forward(x, w, b):
    n, k = x.shape[0], w.shape[0]
    m = n - k + 1
    z = _zeros(m)
    for i in range(1, m + 1):
        s = 0.0
        for j in range(1, k + 1):
            s += w[j - 1] * x[i + j - 1 - 1]
        z[i - 1] = s + float(b)
    return z


# dL/db = sum_i d_i;  dL/dw_j = sum_i d_i x_{i+j-1};
# dL/dx_p = sum_{i=max(1, p-k+1)}^{min(m, p)} d_i w_{p-i+1}
def conv1d_backward(dz, x, w, b):
    n, k = x.shape[0], w.shape[0]
    m = n - k + 1
    db = 0.0
    for i in range(1, m + 1):
        db += dz[i - 1]
    dw = _zeros(k)
    for j in range(1, k + 1):
        s = 0.0
        for i in range(1, m + 1):
            s += dz[i - 1] * x[i + j - 1 - 1]
        dw[j - 1] = s
    dx = _zeros(n)
    for p in range(1, n + 1):
        s = 0.0
        for i in range(max(1, p - k + 1), min(m, p) + 1):
            s += dz[i - 1] * w[p - i + 1 - 1]
        dx[p - 1] = s
    return {"x": dx, "w": dw, "b": np.asarray(db, dtype=np.float64)}


# ----------------------------------------------------------------------------- conv2d
# Z[i,j,c] = sum_{m,n,d} W[m,n,d,c] X[i+m, j+n, d] + b[c]   (0-based, channel-last)
def conv2d_forward(X, W, b):
    H, Wd, C_in = X.shape
    kh, kw, _, C_out = W.shape
    Ho, Wo = H - kh + 1, Wd - kw + 1
    Z = _zeros(Ho, Wo, C_out)
    for i in range(Ho):
        for j in range(Wo):
            for c in range(C_out):
                s = 0.0
                for m in range(kh):
                    for n in range(kw):
                        for d in range(C_in):
                            s += W[m, n, d, c] * X[i + m, j + n, d]
                Z[i, j, c] = s + b[c]
    return Z


# dW[m,n,d,c] = sum_{i,j} dZ[i,j,c] X[i+m, j+n, d]
# dX[i,j,d]   = sum_{m,n,c} dZ[i-m, j-n, c] W[m,n,d,c]   (terms with i-m, j-n off dZ are 0)
# db[c]       = sum_{i,j} dZ[i,j,c]
def conv2d_backward(dZ, X, W, b):
    H, Wd, C_in = X.shape
    kh, kw, _, C_out = W.shape
    Ho, Wo = H - kh + 1, Wd - kw + 1
    dW = _zeros(kh, kw, C_in, C_out)
    for m in range(kh):
        for n in range(kw):
            for d in range(C_in):
                for c in range(C_out):
                    s = 0.0
                    for i in range(Ho):
                        for j in range(Wo):
                            s += dZ[i, j, c] * X[i + m, j + n, d]
                    dW[m, n, d, c] = s
    dX = _zeros(H, Wd, C_in)
    for i in range(H):
        for j in range(Wd):
            for d in range(C_in):
                s = 0.0
                for m in range(kh):
                    for n in range(kw):
                        for c in range(C_out):
                            if 0 <= i - m < Ho and 0 <= j - n < Wo:
                                s += dZ[i - m, j - n, c] * W[m, n, d, c]
                dX[i, j, d] = s
    db = _zeros(C_out)
    for c in range(C_out):
        s = 0.0
        for i in range(Ho):
            for j in range(Wo):
                s += dZ[i, j, c]
        db[c] = s
    return {"X": dX, "W": dW, "b": db}


# ----------------------------------------------------------------------------- attention
def softmax_rows(S):
    """Row softmax, one row at a time: A[s, t] = exp(S[s,t] - max_u S[s,u]) / sum_u (...)."""
    rows, cols = S.shape
    A = _zeros(rows, cols)
    for s in range(rows):
        top = S[s, 0]
        for t in range(1, cols):
            top = max(top, S[s, t])
        total = 0.0
        for t in range(cols):
            A[s, t] = math.exp(S[s, t] - top)
            total += A[s, t]
        for t in range(cols):
            A[s, t] = A[s, t] / total
    return A


def _matmul(P, R):
    rows, inner = P.shape
    cols = R.shape[1]
    out = _zeros(rows, cols)
    for r in range(rows):
        for c in range(cols):
            s = 0.0
            for q in range(inner):
                s += P[r, q] * R[q, c]
            out[r, c] = s
    return out


def _transpose(P):
    rows, cols = P.shape
    out = _zeros(cols, rows)
    for r in range(rows):
        for c in range(cols):
            out[c, r] = P[r, c]
    return out


# Q = X W_Q, K = X W_K, V = X W_V, S = Q K^T / sqrt(d_k), A = softmax(S), out = A V
def attention_intermediates(X, W_Q, W_K, W_V):
    T, d_k = X.shape[0], W_Q.shape[1]
    Q, K, V = _matmul(X, W_Q), _matmul(X, W_K), _matmul(X, W_V)
    S = _zeros(T, T)
    for s in range(T):
        for t in range(T):
            acc = 0.0
            for k in range(d_k):
                acc += Q[s, k] * K[t, k]
            S[s, t] = acc / math.sqrt(d_k)
    A = softmax_rows(S)
    return {"Q": Q, "K": K, "V": V, "S": S, "A": A, "out": _matmul(A, V)}


def attention_forward(X, W_Q, W_K, W_V):
    return attention_intermediates(X, W_Q, W_K, W_V)["out"]


# dV = A^T dout    dA = dout V^T    dS = A * (dA - rowsum(dA * A))
# dQ = dS K / sqrt(d_k)    dK = dS^T Q / sqrt(d_k)
# dW_Q = X^T dQ    dW_K = X^T dK    dW_V = X^T dV    dX = dQ W_Q^T + dK W_K^T + dV W_V^T
def attention_backward(dout, X, W_Q, W_K, W_V):
    it = attention_intermediates(X, W_Q, W_K, W_V)
    Q, K, V, A = it["Q"], it["K"], it["V"], it["A"]
    T, d = X.shape
    d_k, d_v = W_Q.shape[1], W_V.shape[1]
    dV = _zeros(T, d_v)
    for t in range(T):
        for v in range(d_v):
            acc = 0.0
            for s in range(T):
                acc += A[s, t] * dout[s, v]
            dV[t, v] = acc
    dA = _zeros(T, T)
    for s in range(T):
        for t in range(T):
            acc = 0.0
            for v in range(d_v):
                acc += dout[s, v] * V[t, v]
            dA[s, t] = acc
    dS = _zeros(T, T)
    for s in range(T):
        rowsum = 0.0
        for u in range(T):
            rowsum += dA[s, u] * A[s, u]
        for t in range(T):
            dS[s, t] = A[s, t] * (dA[s, t] - rowsum)
    dQ = _zeros(T, d_k)
    dK = _zeros(T, d_k)
    for s in range(T):
        for k in range(d_k):
            acc_q, acc_k = 0.0, 0.0
            for t in range(T):
                acc_q += dS[s, t] * K[t, k]
                acc_k += dS[t, s] * Q[t, k]
            dQ[s, k] = acc_q / math.sqrt(d_k)
            dK[s, k] = acc_k / math.sqrt(d_k)
    Xt = _transpose(X)
    dX = _zeros(T, d)
    for t in range(T):
        for e in range(d):
            acc = 0.0
            for k in range(d_k):
                acc += dQ[t, k] * W_Q[e, k] + dK[t, k] * W_K[e, k]
            for v in range(d_v):
                acc += dV[t, v] * W_V[e, v]
            dX[t, e] = acc
    return {
        "X": dX,
        "W_Q": _matmul(Xt, dQ),
        "W_K": _matmul(Xt, dK),
        "W_V": _matmul(Xt, dV),
        "Q": dQ,
        "K": dK,
        "V": dV,
        "S": dS,
        "A": dA,
    }


# ----------------------------------------------------------------------------- registry
REFERENCES = {
    "linear": (
        lambda t: linear_forward(t["x"], t["W"], t["b"]),
        lambda g, t: linear_backward(g, t["x"], t["W"], t["b"]),
    ),
    "conv1d": (
        lambda t: conv1d_forward(t["x"], t["w"], t["b"]),
        lambda g, t: conv1d_backward(g, t["x"], t["w"], t["b"]),
    ),
    "conv2d": (
        lambda t: conv2d_forward(t["X"], t["W"], t["b"]),
        lambda g, t: conv2d_backward(g, t["X"], t["W"], t["b"]),
    ),
    "attention": (
        lambda t: attention_forward(t["X"], t["W_Q"], t["W_K"], t["W_V"]),
        lambda g, t: attention_backward(g, t["X"], t["W_Q"], t["W_K"], t["W_V"]),
    ),
}
