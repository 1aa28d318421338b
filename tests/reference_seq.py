"""Loop references for the sequence layers (issue 14): embedding, rnn_step, lstm_step.

Same rules as reference.py: one explicit Python loop per index, scalar math from ``math``,
nothing vectorized, nothing imported from gradcli. Formulas from CS231n's rnn_step_forward /
lstm_step_forward (gate order i, f, o, g), derived by hand for the backward.
"""

from __future__ import annotations

import math

import numpy as np


def _zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.float64)


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


# a_j = sum_d x_d Wx[d, j] + sum_k h_k Wh[k, j] + b_j
def _preactivation(x, h, Wx, Wh, b):
    n = Wx.shape[1]
    a = _zeros(n)
    for j in range(n):
        s = b[j]
        for d in range(x.shape[0]):
            s += x[d] * Wx[d, j]
        for k in range(h.shape[0]):
            s += h[k] * Wh[k, j]
        a[j] = s
    return a


# dx_d = sum_j da_j Wx[d, j]   dh_k = sum_j da_j Wh[k, j]
# dWx[d, j] = x_d da_j   dWh[k, j] = h_k da_j   db_j = da_j
def _preactivation_backward(da, x, h, Wx, Wh):
    D, H, n = x.shape[0], h.shape[0], da.shape[0]
    dx, dh, dWx, dWh, db = _zeros(D), _zeros(H), _zeros(D, n), _zeros(H, n), _zeros(n)
    for j in range(n):
        db[j] = da[j]
        for d in range(D):
            dx[d] += da[j] * Wx[d, j]
            dWx[d, j] = x[d] * da[j]
        for k in range(H):
            dh[k] += da[j] * Wh[k, j]
            dWh[k, j] = h[k] * da[j]
    return dx, dh, dWx, dWh, db


# ----------------------------------------------------------------------------- rnn_step
# next_h_j = tanh(a_j)
def rnn_step_forward(x, prev_h, Wx, Wh, b):
    a = _preactivation(x, prev_h, Wx, Wh, b)
    out = _zeros(a.shape[0])
    for j in range(a.shape[0]):
        out[j] = math.tanh(a[j])
    return out


# da_j = dnext_h_j (1 - tanh(a_j)^2)
def rnn_step_backward(dnext_h, x, prev_h, Wx, Wh, b):
    a = _preactivation(x, prev_h, Wx, Wh, b)
    da = _zeros(a.shape[0])
    for j in range(a.shape[0]):
        da[j] = dnext_h[j] * (1.0 - math.tanh(a[j]) ** 2)
    dx, dh, dWx, dWh, db = _preactivation_backward(da, x, prev_h, Wx, Wh)
    return {"x": dx, "prev_h": dh, "Wx": dWx, "Wh": dWh, "b": db}


# ----------------------------------------------------------------------------- lstm_step
# unit u: i = s(a_u), f = s(a_{H+u}), o = s(a_{2H+u}), g = tanh(a_{3H+u})
# c_u = f prev_c_u + i g   h_u = o tanh(c_u)   out[0, u] = h_u   out[1, u] = c_u
def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    a = _preactivation(x, prev_h, Wx, Wh, b)
    H = prev_h.shape[0]
    out = _zeros(2, H)
    for u in range(H):
        i, f, o = _sigmoid(a[u]), _sigmoid(a[H + u]), _sigmoid(a[2 * H + u])
        g = math.tanh(a[3 * H + u])
        c = f * prev_c[u] + i * g
        out[0, u] = o * math.tanh(c)
        out[1, u] = c
    return out


# per unit, with dh = dout[0, u], dc_in = dout[1, u]:
# dc = dc_in + dh o (1 - tanh(c)^2);  dprev_c = dc f
# da_i = dc g i (1 - i)   da_f = dc prev_c f (1 - f)   da_o = dh tanh(c) o (1 - o)
# da_g = dc i (1 - g^2)
def lstm_step_backward(dout, x, prev_h, prev_c, Wx, Wh, b):
    a = _preactivation(x, prev_h, Wx, Wh, b)
    H = prev_h.shape[0]
    da, dprev_c = _zeros(4 * H), _zeros(H)
    for u in range(H):
        i, f, o = _sigmoid(a[u]), _sigmoid(a[H + u]), _sigmoid(a[2 * H + u])
        g = math.tanh(a[3 * H + u])
        c = f * prev_c[u] + i * g
        tc = math.tanh(c)
        dh, dc = dout[0, u], dout[1, u]
        dc = dc + dh * o * (1.0 - tc * tc)
        dprev_c[u] = dc * f
        da[u] = dc * g * i * (1.0 - i)
        da[H + u] = dc * prev_c[u] * f * (1.0 - f)
        da[2 * H + u] = dh * tc * o * (1.0 - o)
        da[3 * H + u] = dc * i * (1.0 - g * g)
    dx, dh, dWx, dWh, db = _preactivation_backward(da, x, prev_h, Wx, Wh)
    return {"x": dx, "prev_h": dh, "prev_c": dprev_c, "Wx": dWx, "Wh": dWh, "b": db}


# ----------------------------------------------------------------------------- embedding
# out[p, d] = W[idx[p], d]   for every position p of idx (any shape)
def embedding_forward(idx, W):
    V, D = W.shape
    out = _zeros(*idx.shape, D)
    for p in np.ndindex(*idx.shape):
        v = int(idx[p])
        assert 0 <= v < V
        for d in range(D):
            out[p + (d,)] = W[v, d]
    return out


# dW[v, d] = sum_{p : idx[p] = v} dout[p, d]
def embedding_backward(dout, idx, W):
    V, D = W.shape
    dW = _zeros(V, D)
    for p in np.ndindex(*idx.shape):
        for d in range(D):
            dW[int(idx[p]), d] += dout[p + (d,)]
    return {"W": dW}


def _batched(forward, backward, inputs):
    """A one-example reference run example by example over the inputs' leading axes (broadcast
    together, right-aligned); weight gradients summed over the examples, input gradients
    summed back over the axes an input was broadcast along."""

    def split(t):
        batch = np.broadcast_shapes(*(t[n].shape[:-1] for n in inputs))
        per = {n: np.broadcast_to(t[n], batch + t[n].shape[-1:]) for n in inputs}
        return batch, per

    def fwd(t):
        batch, per = split(t)
        outs = {
            idx: forward({**t, **{n: per[n][idx] for n in inputs}}) for idx in np.ndindex(*batch)
        }
        first = next(iter(outs.values()))
        out = _zeros(*batch, *first.shape)
        for idx, o in outs.items():
            out[idx] = o
        return out

    def bwd(g, t):
        batch, per = split(t)
        total = {n: _zeros(*a.shape) for n, a in t.items() if n not in inputs}
        total.update({n: _zeros(*per[n].shape) for n in inputs})
        for idx in np.ndindex(*batch):
            one = backward(g[idx], {**t, **{n: per[n][idx] for n in inputs}})
            for n, v in one.items():
                if n in inputs:
                    total[n][idx] += v
                else:
                    total[n] += v
        for n in inputs:  # back to the input's own shape
            a = total[n]
            while a.ndim > t[n].ndim:
                a = a.sum(axis=0)
            for k, size in enumerate(t[n].shape):
                if size == 1 and a.shape[k] != 1:
                    a = a.sum(axis=k, keepdims=True)
            total[n] = a
        return total

    return fwd, bwd


REFERENCES = {
    "embedding": (
        lambda t: embedding_forward(t["idx"], t["W"]),
        lambda g, t: embedding_backward(g, t["idx"], t["W"]),
    ),
    "rnn_step": _batched(
        lambda t: rnn_step_forward(t["x"], t["prev_h"], t["Wx"], t["Wh"], t["b"]),
        lambda g, t: rnn_step_backward(g, t["x"], t["prev_h"], t["Wx"], t["Wh"], t["b"]),
        ("x", "prev_h"),
    ),
    "lstm_step": _batched(
        lambda t: lstm_step_forward(t["x"], t["prev_h"], t["prev_c"], t["Wx"], t["Wh"], t["b"]),
        lambda g, t: lstm_step_backward(
            g, t["x"], t["prev_h"], t["prev_c"], t["Wx"], t["Wh"], t["b"]
        ),
        ("x", "prev_h", "prev_c"),
    ),
}
