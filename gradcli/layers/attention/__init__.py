"""Scaled dot-product self-attention, seed notation, with causal masking, heads and W_O.

Shapes: X (..., T, d), W_Q (d, d_k), W_K (d, d_k), W_V (d, d_v), optional W_O (d_v, d_out);
out (..., T, d_v), or (..., T, d_out) with W_O. Intermediates Q, K (..., T, d_k), V (..., T, d_v),
S, A (..., T, T); with h > 1 heads they carry a head axis: Q (..., h, T, d_k/h), S (..., h, T, T).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcli.errors import OptionError, ShapeError, brief
from gradcli.layers.attention import classic, words
from gradcli.layers.attention.delta import exp_shifted, perturbed
from gradcli.layers.base import (
    Arrays,
    Footprint,
    Layer,
    Shapes,
    TensorInfo,
    batch_maps,
    option,
    same,
)
from gradcli.records import record


@record
class Options:
    causal: bool = option(False, "mask position j > i before the softmax (S = -inf, A = 0 there)")
    heads: int = option(1, "split d_k and d_v into this many heads (it must divide both), each "
                           "scaled by 1/sqrt(d_k/h)")

    def __post_init__(self) -> None:
        if not isinstance(self.causal, bool):
            raise OptionError(
                f"causal must be true or false, got {brief(self.causal)}", key="options.causal"
            )
        if isinstance(self.heads, bool) or not isinstance(self.heads, int) or self.heads < 1:
            raise OptionError(
                f"heads must be an integer >= 1, got {brief(self.heads)}", key="options.heads"
            )


def softmax(S: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Row softmax of S (..., T, T), stable; the max is taken on the real part so that a
    complex-step perturbation passes through untouched. ``keep`` (T, T) zeroes masked entries
    exactly (their scores are -inf)."""
    # fmax, not max: 1.5x faster along short rows, and a NaN row stays NaN through exp anyway
    Z = exp_shifted(S - np.fmax.reduce(S.real, axis=-1, keepdims=True), keep)
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


def _rows(M: np.ndarray, W: np.ndarray) -> np.ndarray:
    """M (..., k) @ W (k, n) as one GEMM over every row of M (a stacked matmul would run one
    small GEMM per leading index: 2x slower at T=64); W with probe axes broadcasts as in a
    matmul, against M's axes before T (base.rows_matmul would align them with T too)."""
    if W.ndim > 2:
        return M @ W
    return (M.reshape(-1, M.shape[-1]) @ W).reshape(M.shape[:-1] + W.shape[-1:])


def _split(M: np.ndarray, h: int) -> np.ndarray:
    """(..., T, h*c) -> (..., h, T, c): head a takes columns a*c ... (a+1)*c - 1."""
    if h == 1:
        return M
    return M.reshape(M.shape[:-1] + (h, M.shape[-1] // h)).swapaxes(-3, -2)


def _merge(M: np.ndarray, h: int) -> np.ndarray:
    """(..., h, T, c) -> (..., T, h*c), the heads side by side."""
    if h == 1:
        return M
    M = M.swapaxes(-3, -2)
    return M.reshape(M.shape[:-2] + (-1,))


# Q = X W_Q   K = X W_K   V = X W_V   per head: S = Q K^T / sqrt(d_k/h), S[i, j] = -inf for j > i
# when causal, A = softmax(S), H = A V;   out = concat(heads) W_O  (or the concatenation itself)
def forward(t: Arrays, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """X (..., T, d), W_Q (..., d, d_k), W_K (..., d, d_k), W_V (..., d, d_v),
    optional W_O (..., d_v, d_out) -> out (..., T, d_v or d_out)."""
    options = options or Options()
    h = options.heads
    X, W_Q, W_K, W_V, W_O = t["X"], t["W_Q"], t["W_K"], t["W_V"], t.get("W_O")
    Q, K, V = (_split(M, h) for M in _project(X, W_Q, W_K, W_V))
    scale = 1.0 / math.sqrt(Q.shape[-1])  # a Python float keeps float32 in float32
    S = Q @ K.swapaxes(-1, -2)
    S *= scale
    keep = None
    if options.causal:
        T = S.shape[-1]
        keep = np.tri(T, dtype=bool)  # j <= i
        np.copyto(S, -np.inf, where=~keep)  # 4x faster than boolean-index assignment
    A = softmax(S, keep)
    H = _merge(A @ V, h)
    cache = {"X": X, "W_Q": W_Q, "W_K": W_K, "W_V": W_V, "Q": Q, "K": K, "V": V, "S": S, "A": A}
    cache.update(scale=scale, heads=h, H=H, W_O=W_O, keep=keep)
    return (H if W_O is None else _rows(H, W_O)), cache


# dW_O = H^T dout   dH = dout W_O^T (or dout)   per head: dV = A^T dH   dA = dH V^T
# dS = A * (dA - rowsum(dA * A))   (0 where masked, since A is)
# dQ = dS K / sqrt(d_k/h)   dK = dS^T Q / sqrt(d_k/h)
# dW_Q = X^T dQ   dW_K = X^T dK   dW_V = X^T dV   dX = dQ W_Q^T + dK W_K^T + dV W_V^T
def backward(dout: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dout (..., T, d_v or d_out) -> {"X": (..., T, d), "W_Q": (d, d_k), "W_K": (d, d_k),
    "W_V": (d, d_v)[, "W_O": (d_v, d_out)]} and the intermediates' gradients "Q", "K", "V",
    "S", "A" (per head, like the intermediates)."""
    X, W_Q, W_K, W_V, W_O = (cache[n] for n in ("X", "W_Q", "W_K", "W_V", "W_O"))
    Q, K, V, A, scale, h = (cache[n] for n in ("Q", "K", "V", "A", "scale", "heads"))
    grads = {}
    if W_O is not None:
        H = cache["H"]
        grads["W_O"] = H.reshape(-1, H.shape[-1]).T @ dout.reshape(-1, dout.shape[-1])
        dout = _rows(dout, W_O.T)
    dH = _split(dout, h)
    dV = A.swapaxes(-1, -2) @ dH
    dA = dH @ V.swapaxes(-1, -2)
    # the softmax Jacobian row by row, dS = A * (dA - rowsum(dA * A)); the row sums as dot
    # products (no T x T temporary). Not FlashAttention's dH . (A V): equal in exact arithmetic,
    # but it loses exact zeros (T = 1 gives dS ~ 1e-18, not 0)
    dS = np.subtract(dA, np.einsum("...ij,...ij->...i", dA, A)[..., None])
    dS *= A
    dQ = dS @ (K * scale)
    dK = dS.swapaxes(-1, -2) @ (Q * scale)
    # the three projections' gradients as one GEMM each way (dX sums the Q, K and V paths,
    # which the seed leaves out); parameter gradients are summed over the batch axes
    dQKV = np.concatenate([_merge(dQ, h), _merge(dK, h), _merge(dV, h)], axis=-1)
    W_QKV = np.concatenate([W_Q, W_K, W_V], axis=-1)
    dW = X.reshape(-1, X.shape[-1]).T @ dQKV.reshape(-1, dQKV.shape[-1])
    k, kk = W_Q.shape[-1], W_Q.shape[-1] + W_K.shape[-1]
    grads.update(X=_rows(dQKV, W_QKV.T), W_Q=dW[:, :k], W_K=dW[:, k:kk], W_V=dW[:, kk:])
    grads.update(Q=dQ, K=dK, V=dV, S=dS, A=dA)
    return grads


def variants(t: Arrays, options: Any, g: np.ndarray) -> dict[str, tuple[str, dict]]:
    """Classic wrong backward passes, named (attention/classic.py), for the diagnosis."""
    cache = forward(t, options or Options())[1]
    return classic.variants(cache, g, _split, _merge, _rows)


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
    h = (options or Options()).heads
    for name, axis in (("W_Q", "d_k"), ("W_V", "d_v")):
        if s[name][1] % h:
            raise OptionError(
                f"attention: heads={h} does not divide {axis}={s[name][1]} ({name} columns)",
                key="options.heads",
            )
    d_v = s["W_V"][1]
    if "W_O" not in s:
        return (*X[:-1], d_v)
    W_O = s["W_O"]
    if len(W_O) != 2 or W_O[0] != d_v:
        raise ShapeError(
            f"attention: W_O must be (d_v, d_out) = ({d_v}, d_out), got shape {list(W_O)}",
            key="W_O",
        )
    return (*X[:-1], W_O[1])


def working_elements(s: Shapes, options: Any = None) -> int:
    """Beyond the tensors, output and gradients: per example and head the T x T scores S, the
    softmax's shifted copy A, the backward's dA and dS and the causal mask; Q, K, V, H and
    their gradients, each also as one concatenation."""
    X = s["X"]
    B, (T, d), h = math.prod(X[:-2]), X[-2:], (options or Options()).heads
    d_k, d_v = s["W_Q"][1], s["W_V"][1]
    d_out = s["W_O"][1] if "W_O" in s else d_v
    rows = B * T * (4 * (2 * d_k + d_v) + 3 * d_v + 2 * d_out)
    return 5 * B * h * T * T + 2 * T * T + rows + 2 * d * (2 * d_k + d_v)


def perturbed_elements(name: str, s: Shapes, options: Any = None) -> int:
    """What one incremental evaluation costs, in elements (Layer.perturbed_elements). A column
    of W_Q or W_K moves one head's B x T x T scores by a rank-one term, which is then
    exponentiated, summed and weighted: about four passes over them. Counted as the largest
    array kept, W_Q and W_K at M read 3x under their run. A row of X moves every head's
    scores' row and column (about one pass over them all), W_V's column one head's output."""
    X = s["X"]
    B, T, h = math.prod(X[:-2]), X[-2], (options or Options()).heads
    if name in ("W_Q", "W_K"):
        return 4 * B * T * T
    return B * h * T * T if name == "X" else 2 * B * T * T


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """The last projection's column v moves only output column v: W_V[e, v] without W_O,
    W_O[v, o] with it. Every other coordinate moves all of its example's output (the softmax
    couples all positions)."""
    batch = s["X"][:-2]
    last = "W_O" if "W_O" in s else "W_V"
    if name == "X":
        return (*batch_maps(batch), None, None)
    if name == last:
        return (None, same(len(batch) + 1, s[last][1]))
    return (None, None)


# ---------------------------------------------------------------- tails (intermediates' checks)
# The forward from each intermediate on, everything upstream (the cache) held fixed, so that a
# hand-derived dQ ... dA can be checked numerically like a tensor's gradient. Each follows the
# backward's convention: from S the mask is re-applied (a masked score moves nothing, dS = 0
# there), from A it is not (dA = dH V^T is dense, the mask acts on S, not A).
#   from Q: S = Q K^T / sqrt(d_k/h) (masked), A = softmax(S), H = A V, out = H W_O (or H)
#   from K: the same with K;   from S: A = softmax(S) on;   from A, from V: H = A V on
def tail(name: str, value: np.ndarray, cache: dict[str, Any], options: Any = None) -> np.ndarray:
    """The output for intermediate ``name`` = ``value`` (which may carry leading probe axes)."""
    options = options or Options()
    Q, K, V, A = (value if name == n else cache[n] for n in ("Q", "K", "V", "A"))
    if name in ("Q", "K", "S"):
        S = value if name == "S" else Q @ K.swapaxes(-1, -2) * cache["scale"]
        keep = np.tri(S.shape[-1], dtype=bool) if options.causal else None
        if keep is not None:
            S = np.where(keep, S, -np.inf)
        A = softmax(S, keep)
    H = _merge(A @ V, cache["heads"])
    return H if cache["W_O"] is None else H @ cache["W_O"]


_TAIL_INFO = {  # name: (axes, index letters, what it is); with heads a leading ("h", "a")
    "Q": (("T", "d_k/h"), ("t", "k"), "queries"),
    "K": (("T", "d_k/h"), ("t", "k"), "keys"),
    "V": (("T", "d_v/h"), ("t", "v"), "values"),
    "S": (("T", "T"), ("i", "j"), "scores, -inf where masked"),
    "A": (("T", "T"), ("i", "j"), "attention weights"),
}


def tail_info(name: str, s: Shapes, options: Any = None) -> tuple[TensorInfo, Footprint]:
    """The intermediate's description and footprint in the output: row i of Q, S or A moves
    only output row i; with several heads and no W_O, head a moves only its own columns."""
    h = (options or Options()).heads
    batch = s["X"][:-2]
    axes, index, doc = _TAIL_INFO[name]
    if h == 1:
        axes = tuple(a.replace("/h", "") for a in axes)
    head: tuple[Any, ...] = ()
    if h > 1:
        axes, index = ("h", *axes), ("a", *index)
        w = s["W_V"][1] // h
        head = ((len(batch) + 1, np.arange(h) * w, np.arange(1, h + 1) * w),)
        head = head if "W_O" not in s else (None,)
    rows = same(len(batch), s["X"][-2]) if name in ("Q", "S", "A") else None
    info = TensorInfo(name, axes, index, "intermediate", doc)
    return info, (*batch_maps(batch), *head, rows, None)


def factors(s: Shapes, options: Any = None) -> list[tuple[float, str, str]]:
    """The scale 1/sqrt(d_k) (per head) left out, or applied twice (Layer.factors)."""
    if "W_Q" not in s:
        return []
    root = math.sqrt(s["W_Q"][-1] / max(1, getattr(options, "heads", 1) or 1))
    return [
        (root, "scale:no-1/sqrt(d_k)", f"a missing 1/sqrt(d_k) = {1 / root:.4g}"),
        (1 / root, "scale:1/sqrt(d_k)-twice", f"1/sqrt(d_k) applied twice: {1 / root:.4g}"),
    ]


def nudged(cache: dict[str, Any], fn: Any) -> dict[str, Any]:
    """The cache with ``fn`` applied to its saved arrays (checking/lastbit.py), each weight of
    A moved by at most twice its distance to 1: a saturated row's sum, 1 + 1e-10, rounds to 1
    in any code, and its top weight is 1 exactly. A last bit of it, moved, made dS's row sum
    a last bit of dA, not 1e-10 of it, and a float32 dW_Q of 2.8e-4 was allowed 2e-4 of
    round-off where torch's is 6e-7 (outside test t31b F1)."""
    out = fn(cache)
    A = cache["A"]
    # a weight of exactly 1 beside others is 1 - (their sum) rounded: every code loses that
    # share of dS's row sum in its last bit, read by the complex step (X x 10: dW_Q of 6e-33
    # against -8.5e-34 failed the built-in backward); one float64 unit of it, not float32's
    beside = np.count_nonzero(A, axis=-1)[..., None] > 1
    cap = np.where((A == 1) & beside, np.finfo(np.float64).eps, 2 * (1 - A))
    out["A"] = A + np.clip(out["A"] - A, -cap, cap)
    return out


LAYER = Layer(
    name="attention",
    summary="out = softmax(Q K^T / sqrt(d_k)) V,  Q = X W_Q, K = X W_K, V = X W_V",
    tensors=(
        TensorInfo("X", ("T", "d"), ("t", "e"), "input", "input sequence"),
        TensorInfo("W_Q", ("d", "d_k"), ("e", "k"), "weight", "query projection"),
        TensorInfo("W_K", ("d", "d_k"), ("e", "k"), "weight", "key projection"),
        TensorInfo("W_V", ("d", "d_v"), ("e", "v"), "weight", "value projection"),
        TensorInfo(
            "W_O",
            ("d_v", "d_out"),
            ("v", "o"),
            "weight",
            "output projection (omitted: out is the heads' concatenation)",
            absent_ok=True,
        ),  # fmt: skip
    ),
    output=TensorInfo("out", ("T", "d_v"), ("t", "v"), "output", "attention output"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"X": (5, 6), "W_Q": (6, 4), "W_K": (6, 4), "W_V": (6, 3)},
    options=Options,
    intermediates=("Q", "K", "V", "S", "A"),
    footprint=footprint,
    working=working_elements,
    perturbed=perturbed,
    perturbed_elements=perturbed_elements,
    tail=tail,
    tail_info=tail_info,
    explain=words.explain,
    skeleton=words.SKELETON,
    variants=variants,
    factors=factors,
    nudged=nudged,
)
