"""Scaled dot-product self-attention, seed notation.

Shapes: X (..., T, d), W_Q (d, d_k), W_K (d, d_k), W_V (d, d_v), out (..., T, d_v);
intermediates Q, K (..., T, d_k), V (..., T, d_v), S, A (..., T, T).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcli.errors import ShapeError
from gradcli.layers.base import Arrays, Footprint, Layer, Shapes, TensorInfo, batch_maps, same


def softmax(S: np.ndarray) -> np.ndarray:
    """Row softmax of S (..., T, T), stable; the max is taken on the real part so that a
    complex-step perturbation passes through untouched."""
    Z = S - S.real.max(axis=-1, keepdims=True)
    if not np.iscomplexobj(Z):
        # exp of anything below -700 is < 1e-304 next to the row's 1; flooring it there keeps
        # np.exp off its slow subnormal path (3x on long rows) without changing any sum
        np.maximum(Z, -700.0, out=Z)
    np.exp(Z, out=Z)
    Z *= 1.0 / Z.sum(axis=-1, keepdims=True)  # one reciprocal per row: multiply, not divide
    return Z


def _project(X: np.ndarray, *Ws: np.ndarray) -> list[np.ndarray]:
    """X W for each W; as one GEMM over every row of X when no W varies along a leading axis."""
    if any(W.size != W.shape[-2] * W.shape[-1] or W.ndim > X.ndim for W in Ws):
        return [X @ W for W in Ws]
    Ws = tuple(W.reshape(W.shape[-2:]) for W in Ws)
    rows = X.reshape(-1, X.shape[-1]) @ np.concatenate(Ws, axis=1)
    splits = np.cumsum([W.shape[1] for W in Ws])[:-1]
    return [p.reshape(X.shape[:-1] + p.shape[-1:]) for p in np.split(rows, splits, axis=1)]


# Q = X W_Q   K = X W_K   V = X W_V   S = Q K^T / sqrt(d_k)   A = softmax(S)   out = A V
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """X (..., T, d), W_Q (..., d, d_k), W_K (..., d, d_k), W_V (..., d, d_v)
    -> out (..., T, d_v)."""
    X, W_Q, W_K, W_V = t["X"], t["W_Q"], t["W_K"], t["W_V"]
    Q, K, V = _project(X, W_Q, W_K, W_V)
    scale = 1.0 / math.sqrt(W_Q.shape[-1])  # a Python float keeps float32 in float32
    S = Q @ K.swapaxes(-1, -2)
    S *= scale
    A = softmax(S)
    cache = {"X": X, "W_Q": W_Q, "W_K": W_K, "W_V": W_V, "Q": Q, "K": K, "V": V, "S": S, "A": A}
    return A @ V, {**cache, "scale": scale}


# dV = A^T dout     dA = dout V^T     dS = A * (dA - rowsum(dA * A))
# dQ = dS K / sqrt(d_k)     dK = dS^T Q / sqrt(d_k)
# dW_Q = X^T dQ   dW_K = X^T dK   dW_V = X^T dV   dX = dQ W_Q^T + dK W_K^T + dV W_V^T
def backward(dout: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dout (..., T, d_v) -> {"X": (..., T, d), "W_Q": (d, d_k), "W_K": (d, d_k),
    "W_V": (d, d_v)} and the intermediates' gradients "Q", "K", "V", "S", "A"."""
    X, W_Q, W_K, W_V = cache["X"], cache["W_Q"], cache["W_K"], cache["W_V"]
    Q, K, V, A, scale = cache["Q"], cache["K"], cache["V"], cache["A"], cache["scale"]
    dV = A.swapaxes(-1, -2) @ dout
    dA = dout @ V.swapaxes(-1, -2)
    # the softmax Jacobian row by row, dS = A * (dA - rowsum(dA * A)), in one scratch array
    dS = dA * A
    np.subtract(dA, dS.sum(axis=-1, keepdims=True), out=dS)
    dS *= A
    dQ = dS @ (K * scale)
    dK = dS.swapaxes(-1, -2) @ (Q * scale)
    # the three projections' gradients as one GEMM each way (dX sums the Q, K and V paths,
    # which the seed leaves out); parameter gradients are summed over the batch axes
    dQKV = np.concatenate([dQ, dK, dV], axis=-1)
    W_QKV = np.concatenate([W_Q, W_K, W_V], axis=-1)
    dW = X.reshape(-1, X.shape[-1]).T @ dQKV.reshape(-1, dQKV.shape[-1])
    k, kk = W_Q.shape[-1], W_Q.shape[-1] + W_K.shape[-1]
    return {
        "X": dQKV @ W_QKV.T,
        "W_Q": dW[:, :k],
        "W_K": dW[:, k:kk],
        "W_V": dW[:, kk:],
        "Q": dQ,
        "K": dK,
        "V": dV,
        "S": dS,
        "A": dA,
    }


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    X = s["X"]
    if len(X) < 2:
        raise ShapeError(f"attention: X must be (..., T, d), got shape {list(X)}", key="X")
    for name in ("W_Q", "W_K", "W_V"):
        w = s[name]
        if len(w) != 2:
            raise ShapeError(f"attention: {name} must be 2-D (d, d_out), got {list(w)}", key=name)
        if w[0] != X[-1]:
            raise ShapeError(
                f"attention: {name} has d={w[0]} rows (axis 0) but X has d={X[-1]} (last axis)",
                key=name,
            )
        if w[1] < 1:
            raise ShapeError(f"attention: {name} must have at least 1 column", key=name)
    if s["W_K"][1] != s["W_Q"][1]:
        raise ShapeError(
            f"attention: W_K has d_k={s['W_K'][1]} columns but W_Q has d_k={s['W_Q'][1]}",
            key="W_K",
        )
    if X[-2] < 1:
        raise ShapeError("attention: X needs at least one position (T >= 1)", key="X")
    return (*X[:-1], s["W_V"][1])


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """W_V[e, v] moves only column v of the output (out = A X W_V); every other coordinate
    moves all of its example's output (the softmax couples all positions)."""
    batch = s["X"][:-2]
    if name == "X":
        return (*batch_maps(batch), None, None)
    if name == "W_V":
        return (None, same(len(batch) + 1, s["W_V"][1]))
    return (None, None)


LAYER = Layer(
    name="attention",
    summary="out = softmax(Q K^T / sqrt(d_k)) V,  Q = X W_Q, K = X W_K, V = X W_V",
    tensors=(
        TensorInfo("X", ("T", "d"), ("t", "e"), "input", "input sequence"),
        TensorInfo("W_Q", ("d", "d_k"), ("e", "k"), "weight", "query projection"),
        TensorInfo("W_K", ("d", "d_k"), ("e", "k"), "weight", "key projection"),
        TensorInfo("W_V", ("d", "d_v"), ("e", "v"), "weight", "value projection"),
    ),
    output=TensorInfo("out", ("T", "d_v"), ("t", "v"), "output", "attention output"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"X": (4, 6), "W_Q": (6, 4), "W_K": (6, 4), "W_V": (6, 3)},
    intermediates=("Q", "K", "V", "S", "A"),
    footprint=footprint,
)
