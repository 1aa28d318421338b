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


# ----------------------------------------------------------------------------- options (issue 4)
# Convolution options per axis: stride s >= 1, dilation d >= 1, zero padding (p_lo, p_hi):
# an int p is (p, p), "valid" is (0, 0), "same" (stride 1 only) pads total = d*(k-1) as
# (total // 2, total - total // 2). Output size: floor((n + p_lo + p_hi - d*(k-1) - 1) / s) + 1.
def conv_geometry(sizes, kernel, stride=1, padding=0, dilation=1):
    """Per axis (s, p_lo, p_hi, d, out_size); each option an int, a per-axis pair or string."""

    def per_axis(v):
        return tuple(v) if isinstance(v, (list, tuple)) else (v,) * len(kernel)

    geo = []
    for n, k, s, d, p in zip(
        sizes, kernel, per_axis(stride), per_axis(dilation), per_axis(padding), strict=True
    ):
        if p == "valid":
            lo = hi = 0
        elif p == "same":
            if s != 1:
                raise ValueError("padding 'same' needs stride 1")
            lo, hi = d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2
        else:
            lo = hi = p
        size = (n + lo + hi - d * (k - 1) - 1) // s + 1
        if size < 1:
            raise ValueError(f"non-positive output size {size}")
        geo.append((s, lo, hi, d, size))
    return geo


# conv1d with options is conv2d over a height-1 image: x (n, C_in) -> X (1, n, C_in), w (k, C_in,
# C_out) -> W (1, k, C_in, C_out), whose formula then reads z[i, c] = sum_{j, e} w[j, e, c]
# xp[i*s + j*d, e] + b[c]. The seed form (w 1-D) is the channel form with one channel in and out.
def _conv1d_as_2d(x, w, b, stride, padding, dilation):
    seed = w.ndim == 1
    if seed:
        x, w, b = x[:, None], w[:, None, None], np.reshape(b, (1,))
    pad = padding if isinstance(padding, str) else [0, padding]
    return seed, (x[None], w[None], b, [1, stride], pad, [1, dilation])


def conv1d_forward_opts(x, w, b, stride=1, padding=0, dilation=1):
    seed, args = _conv1d_as_2d(x, w, b, stride, padding, dilation)
    z = conv2d_forward_opts(*args)[0]
    return z[:, 0] if seed else z


def conv1d_backward_opts(dz, x, w, b, stride=1, padding=0, dilation=1):
    seed, args = _conv1d_as_2d(x, w, b, stride, padding, dilation)
    g = conv2d_backward_opts(dz[None, :, None] if seed else dz[None], *args)
    if seed:
        return {"x": g["X"][0, :, 0], "w": g["W"][0, :, 0, 0], "b": np.asarray(g["b"][0])}
    return {"x": g["X"][0], "w": g["W"][0], "b": g["b"]}


def _padded(X, geo):
    (_, top, bottom, _, _), (_, left, right, _, _) = geo
    H, Wd, C = X.shape
    Xp = _zeros(H + top + bottom, Wd + left + right, C)
    for i in range(H):
        for j in range(Wd):
            for d in range(C):
                Xp[top + i, left + j, d] = X[i, j, d]
    return Xp


# Z[i,j,c] = sum_{m,n,d} W[m,n,d,c] Xp[i*sh + m*dh, j*sw + n*dw, d] + b[c]
def conv2d_forward_opts(X, W, b, stride=1, padding=0, dilation=1):
    kh, kw, C_in, C_out = W.shape
    geo = conv_geometry(X.shape[:2], (kh, kw), stride, padding, dilation)
    (sh, _, _, dh, Ho), (sw, _, _, dw, Wo) = geo
    Xp = _padded(X, geo)
    Z = _zeros(Ho, Wo, C_out)
    for i in range(Ho):
        for j in range(Wo):
            for c in range(C_out):
                acc = 0.0
                for m in range(kh):
                    for n in range(kw):
                        for d in range(C_in):
                            acc += W[m, n, d, c] * Xp[i * sh + m * dh, j * sw + n * dw, d]
                Z[i, j, c] = acc + b[c]
    return Z


# dW[m,n,d,c] = sum_{i,j} dZ[i,j,c] Xp[r, q, d]   dXp[r, q, d] += dZ[i,j,c] W[m,n,d,c]
# (r = i*sh + m*dh, q = j*sw + n*dw)   db[c] = sum_{i,j} dZ[i,j,c]   dX = dXp cropped
def conv2d_backward_opts(dZ, X, W, b, stride=1, padding=0, dilation=1):
    (H, Wd, _), (kh, kw, C_in, C_out) = X.shape, W.shape
    geo = conv_geometry((H, Wd), (kh, kw), stride, padding, dilation)
    (sh, top, _, dh, Ho), (sw, left, _, dw, Wo) = geo
    Xp = _padded(X, geo)
    dWt, db, dXp = _zeros(kh, kw, C_in, C_out), _zeros(C_out), _zeros(*Xp.shape)
    for i in range(Ho):
        for j in range(Wo):
            for c in range(C_out):
                db[c] += dZ[i, j, c]
                for m in range(kh):
                    for n in range(kw):
                        r, q = i * sh + m * dh, j * sw + n * dw
                        for d in range(C_in):
                            dWt[m, n, d, c] += dZ[i, j, c] * Xp[r, q, d]
                            dXp[r, q, d] += dZ[i, j, c] * W[m, n, d, c]
    dX = _zeros(H, Wd, C_in)
    for i in range(H):
        for j in range(Wd):
            for d in range(C_in):
                dX[i, j, d] = dXp[top + i, left + j, d]
    return {"X": dX, "W": dWt, "b": db}


# Per head a: S_a = Q_a K_a^T / sqrt(dk_h) (-inf at j > i if causal), A_a = softmax(S_a),
# H_a = A_a V_a; H = concat_a H_a; out = H W_O (or H). S and A are (heads, T, T).
def attention_intermediates_opts(X, W_Q, W_K, W_V, W_O=None, causal=False, heads=1):
    T = X.shape[0]
    dk, dv = W_Q.shape[1] // heads, W_V.shape[1] // heads
    Q, K, V = _matmul(X, W_Q), _matmul(X, W_K), _matmul(X, W_V)
    S, A, H = np.full((heads, T, T), -math.inf), _zeros(heads, T, T), _zeros(T, heads * dv)
    for a in range(heads):
        for i in range(T):
            for j in range(i + 1 if causal else T):
                acc = 0.0
                for k in range(dk):
                    acc += Q[i, a * dk + k] * K[j, a * dk + k]
                S[a, i, j] = acc / math.sqrt(dk)
        A[a] = softmax_rows(S[a])  # math.exp(-inf) is exactly 0.0
        for i in range(T):
            for v in range(dv):
                acc = 0.0
                for j in range(T):
                    acc += A[a, i, j] * V[j, a * dv + v]
                H[i, a * dv + v] = acc
    out = H if W_O is None else _matmul(H, W_O)
    return {"Q": Q, "K": K, "V": V, "S": S, "A": A, "H": H, "out": out}


# dW_O = H^T dout   dH = dout W_O^T (or dout); per head dV_a = A_a^T dH_a, dA_a = dH_a V_a^T,
# dS_a = A_a * (dA_a - rowsum(dA_a * A_a)), dQ_a = dS_a K_a / sqrt(dk_h),
# dK_a = dS_a^T Q_a / sqrt(dk_h); dW_* = X^T d*; dX = dQ W_Q^T + dK W_K^T + dV W_V^T
def attention_backward_opts(dout, X, W_Q, W_K, W_V, W_O=None, causal=False, heads=1):
    it = attention_intermediates_opts(X, W_Q, W_K, W_V, W_O, causal, heads)
    Q, K, V, A = it["Q"], it["K"], it["V"], it["A"]
    T = X.shape[0]
    dk, dv = W_Q.shape[1] // heads, W_V.shape[1] // heads
    dH = dout if W_O is None else _matmul(dout, _transpose(W_O))
    dQ, dK, dV = _zeros(*Q.shape), _zeros(*K.shape), _zeros(*V.shape)
    for a in range(heads):
        for i in range(T):
            dA = _zeros(T)
            for j in range(T):
                for v in range(dv):
                    dA[j] += dH[i, a * dv + v] * V[j, a * dv + v]
            rowsum = 0.0
            for j in range(T):
                rowsum += dA[j] * A[a, i, j]
            for j in range(T):
                dS = A[a, i, j] * (dA[j] - rowsum)  # 0 where masked: A is 0 there
                for k in range(dk):
                    dQ[i, a * dk + k] += dS * K[j, a * dk + k] / math.sqrt(dk)
                    dK[j, a * dk + k] += dS * Q[i, a * dk + k] / math.sqrt(dk)
                for v in range(dv):
                    dV[j, a * dv + v] += A[a, i, j] * dH[i, a * dv + v]
    Xt = _transpose(X)
    dX = _matmul(dQ, _transpose(W_Q)) + _matmul(dK, _transpose(W_K)) + _matmul(dV, _transpose(W_V))
    grads = {"X": dX, "W_Q": _matmul(Xt, dQ), "W_K": _matmul(Xt, dK), "W_V": _matmul(Xt, dV)}
    if W_O is not None:
        grads["W_O"] = _matmul(_transpose(it["H"]), dout)
    return grads


# The intermediates' gradients per head a (heads, T, ...), in the backward's convention:
# dH = dout W_O^T (or dout); dA_a[i, j] = sum_v dH[i, a*dv+v] V[j, a*dv+v], dense (the mask acts
# on S, not A); dS_a[i, j] = A_a[i, j] (dA_a[i, j] - sum_u dA_a[i, u] A_a[i, u]), 0 where
# masked since A is; dQ_a = dS_a K_a / sqrt(dk_h), dK_a = dS_a^T Q_a / sqrt(dk_h),
# dV_a = A_a^T dH_a
def attention_intermediate_grads_opts(dout, X, W_Q, W_K, W_V, W_O=None, causal=False, heads=1):
    it = attention_intermediates_opts(X, W_Q, W_K, W_V, W_O, causal, heads)
    Q, K, V, A = it["Q"], it["K"], it["V"], it["A"]
    T = X.shape[0]
    dk, dv = W_Q.shape[1] // heads, W_V.shape[1] // heads
    dH = dout if W_O is None else _matmul(dout, _transpose(W_O))
    dQ, dK, dV = _zeros(heads, T, dk), _zeros(heads, T, dk), _zeros(heads, T, dv)
    dS, dA = _zeros(heads, T, T), _zeros(heads, T, T)
    for a in range(heads):
        for i in range(T):
            for j in range(T):
                acc = 0.0
                for v in range(dv):
                    acc += dH[i, a * dv + v] * V[j, a * dv + v]
                dA[a, i, j] = acc
            rowsum = 0.0
            for u in range(T):
                rowsum += dA[a, i, u] * A[a, i, u]
            for j in range(T):
                dS[a, i, j] = A[a, i, j] * (dA[a, i, j] - rowsum)
        for t in range(T):
            for k in range(dk):
                acc_q, acc_k = 0.0, 0.0
                for u in range(T):
                    acc_q += dS[a, t, u] * K[u, a * dk + k]
                    acc_k += dS[a, u, t] * Q[u, a * dk + k]
                dQ[a, t, k] = acc_q / math.sqrt(dk)
                dK[a, t, k] = acc_k / math.sqrt(dk)
            for v in range(dv):
                acc = 0.0
                for u in range(T):
                    acc += A[a, u, t] * dH[u, a * dv + v]
                dV[a, t, v] = acc
    return {"Q": dQ, "K": dK, "V": dV, "S": dS, "A": dA}


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

# OPTION_REFERENCES[name] = (forward(tensors, **options), backward(grad, tensors, **options)),
# one example, options as keyword arguments (attention takes W_O from the tensors if present)
OPTION_REFERENCES = {
    "conv1d": (
        lambda t, **o: conv1d_forward_opts(t["x"], t["w"], t["b"], **o),
        lambda g, t, **o: conv1d_backward_opts(g, t["x"], t["w"], t["b"], **o),
    ),
    "conv2d": (
        lambda t, **o: conv2d_forward_opts(t["X"], t["W"], t["b"], **o),
        lambda g, t, **o: conv2d_backward_opts(g, t["X"], t["W"], t["b"], **o),
    ),
    "attention": (
        lambda t, **o: attention_intermediates_opts(
            t["X"], t["W_Q"], t["W_K"], t["W_V"], t.get("W_O"), **o
        )["out"],
        lambda g, t, **o: attention_backward_opts(
            g, t["X"], t["W_Q"], t["W_K"], t["W_V"], t.get("W_O"), **o
        ),
    ),
}

# the library's layers (issue 14) keep their loops in files of their own
from reference_activations import REFERENCES as _ACTIVATIONS  # noqa: E402
from reference_losses import REFERENCES as _LOSSES  # noqa: E402
from reference_norm import NORM_REFERENCES  # noqa: E402
from reference_seq import REFERENCES as _SEQUENCE  # noqa: E402

REFERENCES.update(_SEQUENCE)
REFERENCES.update(NORM_REFERENCES)
REFERENCES.update(_ACTIVATIONS)
REFERENCES.update(_LOSSES)
