"""Loop-by-loop references of issue 14's activations, softmax, flatten and dropout.

Same rules as reference.py: never imported by the package, nothing vectorized, one explicit loop
per index, math.* scalars (not numpy's ufuncs), small sizes only. Every function takes the whole
x the spec gives (its batch axes included) and walks it with np.ndindex.

``REFERENCES[name] = (forward(t, **options) -> y, backward(dy, t, **options) -> {"x": dx})``.
"""

from __future__ import annotations

import math

import numpy as np


def _map(x, f):
    out = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape):
        out[idx] = f(float(x[idx]))
    return out


def _chain(dy, x, df):
    dx = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape):
        dx[idx] = float(dy[idx]) * df(float(x[idx]))
    return dx


def relu(v):
    return v if v > 0 else 0.0


def relu_d(v):
    return 1.0 if v > 0 else 0.0


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def sigmoid_d(v):
    s = sigmoid(v)
    return s * (1.0 - s)


def tanh_d(v):
    return 1.0 - math.tanh(v) ** 2


def gelu(v):
    return 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))


def gelu_d(v):
    c = math.sqrt(2.0 / math.pi)
    u = c * (v + 0.044715 * v**3)
    du = c * (1.0 + 3 * 0.044715 * v**2)
    return 0.5 * (1.0 + math.tanh(u)) + 0.5 * v * (1.0 - math.tanh(u) ** 2) * du


# softmax over the last axis, row by row: y_i = exp(x_i - m) / sum_j exp(x_j - m)
def softmax_forward(x):
    y = np.zeros(x.shape)
    for row in np.ndindex(*x.shape[:-1]):
        m = max(float(v) for v in x[row])
        e = [math.exp(float(v) - m) for v in x[row]]
        total = sum(e)
        for i in range(x.shape[-1]):
            y[row + (i,)] = e[i] / total
    return y


# dx_i = sum_j dy_j dy_j/dx_i = sum_j dy_j y_j (delta_ij - y_i)
def softmax_backward(dy, x):
    y = softmax_forward(x)
    dx = np.zeros(x.shape)
    n = x.shape[-1]
    for row in np.ndindex(*x.shape[:-1]):
        for i in range(n):
            s = 0.0
            for j in range(n):
                delta = 1.0 if i == j else 0.0
                s += dy[row + (j,)] * y[row + (j,)] * (delta - y[row + (i,)])
            dx[row + (i,)] = s
    return dx


# y[b..., f] = x[b..., i1, ..., ik], f counted in C order over the axes from start on
def flatten_forward(x, start=1):
    start = start if start >= 0 else x.ndim + start
    lead, core = x.shape[:start], x.shape[start:]
    size = 1
    for d in core:
        size *= d
    y = np.zeros((*lead, size))
    for b in np.ndindex(*lead):
        f = 0
        for idx in np.ndindex(*core):  # ndindex walks C order: f counts up along it
            y[b + (f,)] = x[b + idx]
            f += 1
    return y


def flatten_backward(dy, x, start=1):
    start = start if start >= 0 else x.ndim + start
    lead, core = x.shape[:start], x.shape[start:]
    dx = np.zeros(x.shape)
    for b in np.ndindex(*lead):
        f = 0
        for idx in np.ndindex(*core):
            dx[b + idx] = dy[b + (f,)]
            f += 1
    return dx


def dropout_keep(shape, p=0.5, seed=0):
    """The documented mask: default_rng(seed).random(x.shape) >= p."""
    u = np.random.default_rng(seed).random(shape)
    keep = np.zeros(shape)
    for idx in np.ndindex(*shape):
        keep[idx] = 1.0 if u[idx] >= p else 0.0
    return keep


def dropout_forward(x, p=0.5, seed=0):
    keep = dropout_keep(x.shape, p, seed)
    y = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape):
        y[idx] = float(x[idx]) * keep[idx] / (1.0 - p)
    return y


def dropout_backward(dy, x, p=0.5, seed=0):
    return dropout_forward(dy, p, seed)  # y is linear in x with the same diagonal


def _elementwise(f, df):
    return (
        lambda t, **o: _map(t["x"], f),
        lambda g, t, **o: {"x": _chain(g, t["x"], df)},
    )


def _leaky(alpha=0.01):
    return (lambda v: v if v > 0 else alpha * v), (lambda v: 1.0 if v > 0 else alpha)


REFERENCES = {
    "relu": _elementwise(relu, relu_d),
    "leaky_relu": (
        lambda t, alpha=0.01: _map(t["x"], _leaky(alpha)[0]),
        lambda g, t, alpha=0.01: {"x": _chain(g, t["x"], _leaky(alpha)[1])},
    ),
    "sigmoid": _elementwise(sigmoid, sigmoid_d),
    "tanh": _elementwise(math.tanh, tanh_d),
    "gelu": _elementwise(gelu, gelu_d),
    "softmax": (
        lambda t, **o: softmax_forward(t["x"]),
        lambda g, t, **o: {"x": softmax_backward(g, t["x"])},
    ),
    "flatten": (
        lambda t, **o: flatten_forward(t["x"], **o),
        lambda g, t, **o: {"x": flatten_backward(g, t["x"], **o)},
    ),
    "dropout": (
        lambda t, **o: dropout_forward(t["x"], **o),
        lambda g, t, **o: {"x": dropout_backward(g, t["x"], **o)},
    ),
}
