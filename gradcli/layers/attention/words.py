"""The words of attention: its explain formulas (heads, causal mask, W_O) and its skeleton."""

from __future__ import annotations

import math

from gradcli.layers.words import Formulas, Shown, shape

WHY = {  # one line of intuition per gradient
    "W_O": "like a linear layer: the outer product of the heads and the upstream "
    "gradient, summed over positions",
    "V": "each value row collects the upstream gradient of every query that attended "
    "to it, weighted by A",
    "A": "∂L/∂A[i,j] is the upstream gradient of output row i dotted with value row j",
    "S": "each row of dS is A ⊙ (dA − (dA·A) summed over the row): the softmax "
    "Jacobian diag(a) − a·aᵀ of that row applied to dA",
    "Q": "a query moves only its own row of scores: dQ gathers the keys weighted by "
    "that row of dS, scaled as in the forward",
    "K": "a key moves only its own column of scores: dK gathers the queries weighted "
    "by that column of dS, scaled as in the forward",
    "W": "like a linear layer: the outer product of the input and the projection's "
    "gradient, summed over positions",
    "X": "X reaches the loss along the Q, K and V paths; its gradient sums all three",
}


def explain(v: Shown) -> Formulas:
    sh, o = v.shapes, v.options
    X, h, W_O = sh["X"], o.heads, sh.get("W_O")
    lead, T, d_k, d_v = tuple(X[:-2]), X[-2], sh["W_Q"][1], sh["W_V"][1]
    head = (h,) if h > 1 else ()  # intermediates carry a head axis with several heads
    Q, V = shape((*lead, *head, T, d_k // h)), shape((*lead, *head, T, d_v // h))
    S, H = shape((*lead, *head, T, T)), shape((*lead, T, d_v))
    a = "_a" if h > 1 else ""  # per-head subscript
    sq = "√(d_k/h)" if h > 1 else "√d_k"
    scale, root = f"(1/{sq})", f"{sq},   {sq} = √{d_k // h} = {math.sqrt(d_k // h):.4g}"
    fwd = ["Attention(Q, K, V) = softmax(Q · Kᵀ / √d_k) · V",
           f"Q {shape((*lead, T, d_k))} = X · W_Q,   K = X · W_K,   V {H} = X · W_V"]  # fmt: skip
    if h > 1:
        fwd.append(f"heads h = {h}: Q, K, V split by columns into Q_a {Q}, K_a, V_a {V}, "
                   f"a = 1 … {h}; each head is scaled by 1/{sq}")  # fmt: skip
    fwd.append(f"S{a} {S} = Q{a} · K{a}ᵀ / {root}   (the pre-softmax scores)")
    if o.causal:
        fwd.append("causal mask: S[i,j] = -∞ for j > i, so A[i,j] = 0 there (i sees only j ≤ i)")
    fwd.append(f"A{a} {S} = softmax(S{a})   (row-wise attention weights)")
    if h > 1:
        fwd.append(f"H {H} = concat(A_1 · V_1, …, A_{h} · V_{h})   (the heads side by side)")
        fwd += [] if W_O else [f"out {H} = H"]
    else:
        fwd.append(f"{'H' if W_O else 'out'} {H} = A · V")
    if W_O:
        fwd.append(f"out {shape(v.out_shape)} = concat(heads) · W_O = H · W_O")
    G = "∂L/∂H_a" if h > 1 else "∂L/∂H" if W_O else "∂L/∂out"  # what reaches A · V
    grads: dict[str, tuple[list[str], str]] = {}
    if W_O:
        grads["W_O"] = ([f"∂L/∂W_O {shape(W_O)} = Hᵀ · ∂L/∂out",
                         f"∂L/∂H {H} = ∂L/∂out · W_Oᵀ   (passed into the heads)"],
                        WHY["W_O"])  # fmt: skip
    split = [f"∂L/∂H_a = head a's columns of ∂L/∂{'H' if W_O else 'out'}"] if h > 1 else []
    mask = ["masked entries have A = 0, so ∂L/∂S = 0 there: no gradient crosses the mask"]
    grads.update({
        "V": ([f"∂L/∂V{a} {V} = A{a}ᵀ · {G}", *split], WHY["V"]),
        "A": ([f"∂L/∂A{a} {S} = {G} · V{a}ᵀ"], WHY["A"]),
        "S": ([f"∂L/∂S{a} {S} = A{a} ⊙ (∂L/∂A{a} - rowsum(∂L/∂A{a} ⊙ A{a}))",
               *(mask if o.causal else [])], WHY["S"]),
        "Q": ([f"∂L/∂Q{a} {Q} = {scale} · ∂L/∂S{a} · K{a}"], WHY["Q"]),
        "K": ([f"∂L/∂K{a} {Q} = {scale} · ∂L/∂S{a}ᵀ · Q{a}"], WHY["K"]),
    })  # fmt: skip
    cat = "∂L/∂{0} = concat(∂L/∂{0}_a): each head's gradient goes back to its own columns"
    for name, P in (("W_Q", "Q"), ("W_K", "K"), ("W_V", "V")):
        heads = [cat.format(P)] if h > 1 else []
        grads[name] = (heads + [f"∂L/∂{name} {shape(sh[name])} = Xᵀ · ∂L/∂{P}"], WHY["W"])
    grads["X"] = ([f"∂L/∂X {shape(X)} = ∂L/∂Q · W_Qᵀ + ∂L/∂K · W_Kᵀ + ∂L/∂V · W_Vᵀ",
                   "(X feeds all three projections: its gradient sums their three paths)"],
                  WHY["X"])  # fmt: skip
    return Formulas(fwd, grads, ("T", "d_out" if W_O else "d_v"))


SKELETON = """
def forward(X, W_Q, W_K, W_V, W_O=None, causal=False, heads=1):
    # (one head, no mask; causal and heads: gradcli explain attention)
    # Q = X W_Q, K = X W_K, V = X W_V, S = Q K^T / sqrt(d_k), A = softmax(S) (rows), out = A V
    # X (T, d), W_Q (d, d_k), W_K (d, d_k), W_V (d, d_v) -> out (T, d_v)
    # W_O (d_v, d_out), only where the spec gives it: out = (A V) W_O
    raise NotImplementedError


def backward(grad_output, X, W_Q, W_K, W_V, W_O=None, causal=False, heads=1):
    # dV = A^T dout          dA = dout V^T
    # dS = A * (dA - rowsum(dA * A))           (the softmax Jacobian)
    # dQ = dS K / sqrt(d_k)  dK = dS^T Q / sqrt(d_k)
    # dW_Q = X^T dQ   dW_K = X^T dK   dW_V = X^T dV
    # dX = dQ W_Q^T + dK W_K^T + dV W_V^T      (the seed leaves this one out)
    dout = grad_output
    raise NotImplementedError
    # optional: add "Q", "K", "V", "S", "A" (dQ ... dA) to have those checked too; with W_O,
    # "W_O" too (dW_O = (A V)^T dout, and dout W_O^T flows back to A V)
    return {"X": ..., "W_Q": ..., "W_K": ..., "W_V": ...}
"""
