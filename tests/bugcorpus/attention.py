"""Self-attention out = softmax(Q K^T / sqrt(d_k/h)) V [W_O], batched, with heads and a causal
mask, as a student writes it (einsum per head), one flag per classic mistake."""

from __future__ import annotations

import numpy as np

from bugcorpus.corpus import bug


def _heads(M, h):  # (B, T, h*c) -> (B, h, T, c)
    B, T, n = M.shape
    return M.reshape(B, T, h, n // h).transpose(0, 2, 1, 3)


def _merge(M):  # (B, h, T, c) -> (B, T, h*c)
    B, h, T, c = M.shape
    return M.transpose(0, 2, 1, 3).reshape(B, T, h * c)


def _softmax(S, causal):
    if causal:
        S = np.where(np.tri(S.shape[-1], dtype=bool), S, -np.inf)
    E = np.exp(S - S.max(axis=-1, keepdims=True))
    return E / E.sum(axis=-1, keepdims=True)


def make(mistake: str = ""):
    def parts(X, W_Q, W_K, W_V, causal, heads):
        Q, K, V = (_heads(X @ M, heads) for M in (W_Q, W_K, W_V))
        scale = 1 / np.sqrt(Q.shape[-1])
        A = _softmax(np.einsum("bhik,bhjk->bhij", Q, K) * scale, causal)
        return Q, K, V, A, scale

    def forward(X, W_Q, W_K, W_V, W_O=None, causal=False, heads=1):
        *_, V, A, _ = parts(X, W_Q, W_K, W_V, causal, heads)
        H = _merge(A @ V)
        return H if W_O is None else H @ W_O

    def backward(grad_output, X, W_Q, W_K, W_V, W_O=None, causal=False, heads=1):
        Q, K, V, A, scale = parts(X, W_Q, W_K, W_V, causal, heads)
        grads = {}
        dH = grad_output
        if W_O is not None:
            H = _merge(A @ V)
            grads["W_O"] = np.einsum("btv,bto->vo", H, dH)
            if mistake == "dWO_transposed":
                grads["W_O"] = grads["W_O"].T
            dH = dH @ (W_O if mistake == "W_O_not_transposed" else W_O.T)
        dH = _heads(dH, heads)
        if mistake == "mask_ignored":
            A = parts(X, W_Q, W_K, W_V, False, heads)[3]
        if mistake == "per_head_scale":
            scale = 1 / np.sqrt(W_Q.shape[1])
        dV = np.swapaxes(A, -1, -2) @ dH
        dA = dH @ np.swapaxes(V, -1, -2)
        if mistake == "no_rowsum":
            dS = A * dA
        elif mistake == "diagonal_only":
            dS = A * (1 - A) * dA
        else:
            dS = A * (dA - (A * dA).sum(axis=-1, keepdims=True))
        if mistake == "no_scale":
            scale = 1.0
        if mistake == "scale_twice":
            dS = dS * scale
        dQ = dS @ K * scale
        dK = (dS if mistake == "dK_no_transpose" else np.swapaxes(dS, -1, -2)) @ Q * scale
        if mistake == "dV_uses_output":
            dV = np.swapaxes(A, -1, -2) @ _heads(forward(X, W_Q, W_K, W_V, W_O), heads)
        dQ, dK, dV = _merge(dQ), _merge(dK), _merge(dV)
        X2 = X.reshape(-1, X.shape[-1])
        n = X.shape[0] if mistake == "mean_batch" else 1
        grads["W_Q"] = X2.T @ dQ.reshape(len(X2), -1) / n
        grads["W_K"] = X2.T @ dK.reshape(len(X2), -1) / n
        grads["W_V"] = X2.T @ dV.reshape(len(X2), -1) / n
        paths = {"Q": dQ @ W_Q.T, "K": dK @ W_K.T, "V": dV @ W_V.T}
        if mistake == "no_K_path":
            del paths["K"]
        if mistake == "only_V_path":
            del paths["Q"], paths["K"]
        grads["X"] = sum(paths.values())
        if mistake == "dX_noise":
            grads["X"] = grads["X"] + 1e-3 * np.cos(np.arange(grads["X"].size)).reshape(
                grads["X"].shape
            )
        return grads

    return forward, backward


SEED = {"X": (1, 4, 6), "W_Q": (6, 4), "W_K": (6, 4), "W_V": (6, 3)}
BATCH = {"X": (3, 5, 6), "W_Q": (6, 4), "W_K": (6, 4), "W_V": (6, 4)}
WO = {**BATCH, "W_O": (4, 4)}
WO5 = {**BATCH, "W_O": (4, 5)}
QK = "X W_Q W_K"


def bugs():
    return [
        bug("attention/correct", "attention", make, SEED, "", None),
        bug(
            "attention/correct-all-options",
            "attention",
            make,
            WO5,
            "",
            None,
            {"causal": True, "heads": 2},
        ),
        bug(
            "attention/no-rowsum",
            "attention",
            make,
            SEED,
            QK,
            "softmax:no-rowsum",
            mistake="no_rowsum",
        ),
        bug(
            "attention/diagonal-only",
            "attention",
            make,
            BATCH,
            QK,
            "softmax:diagonal",
            mistake="diagonal_only",
        ),
        bug(
            "attention/no-scale",
            "attention",
            make,
            SEED,
            QK,
            "scale:no-1/sqrt(d_k)",
            mistake="no_scale",
        ),
        bug(
            "attention/scale-twice",
            "attention",
            make,
            BATCH,
            QK,
            "scale:1/sqrt(d_k)-twice",
            mistake="scale_twice",
        ),
        bug(
            "attention/no-K-path",
            "attention",
            make,
            BATCH,
            "X",
            "missing-term:K path",
            mistake="no_K_path",
        ),
        bug(
            "attention/only-V-path",
            "attention",
            make,
            SEED,
            "X",
            "missing-term:K path,Q path",
            mistake="only_V_path",
        ),
        bug(
            "attention/dK-no-transpose",
            "attention",
            make,
            BATCH,
            "X W_K",
            "dK:dS-not-transposed",
            mistake="dK_no_transpose",
        ),
        bug(
            "attention/mask-ignored",
            "attention",
            make,
            BATCH,
            "X W_Q W_K W_V",
            "option:causal",
            {"causal": True},
            mistake="mask_ignored",
        ),
        bug(
            "attention/head-scale",
            "attention",
            make,
            BATCH,
            QK,
            "scale:1/sqrt(d_k)-whole",
            {"heads": 2},
            mistake="per_head_scale",
        ),
        bug(
            "attention/W_O-not-transposed",
            "attention",
            make,
            WO,
            "X W_Q W_K W_V",
            "tensor-transposed:W_O",
            mistake="W_O_not_transposed",
        ),
        bug(
            "attention/dW_O-transposed",
            "attention",
            make,
            WO,
            "W_O",
            "transposed",
            mistake="dWO_transposed",
        ),
        bug(
            "attention/mean-over-batch",
            "attention",
            make,
            BATCH,
            "W_Q W_K W_V",
            "scale:1/batch",
            mistake="mean_batch",
        ),
        bug(
            "attention/dV-uses-output",
            "attention",
            make,
            BATCH,
            "X W_V",
            None,
            mistake="dV_uses_output",
        ),
        bug("attention/dX-noise", "attention", make, BATCH, "X", None, mistake="dX_noise"),
    ]
