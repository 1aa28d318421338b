"""Linear z = x W^T + b, written the CS231n way: one flag per classic mistake."""

from __future__ import annotations

import numpy as np

from bugcorpus.corpus import bug


def make(mistake: str = ""):
    def forward(x, W, b):
        return x @ W.T + b

    def backward(grad_output, x, W, b):
        dz = grad_output
        if mistake == "mean_batch":  # "the loss is averaged over the batch", twice
            dz = dz / x.shape[0]
        x2, dz2 = x.reshape(-1, x.shape[-1]), dz.reshape(-1, dz.shape[-1])
        dx = dz @ W
        dW = dz2.T @ x2
        db = dz2.sum(axis=0)
        if mistake == "db_first":
            db = dz2[0]
        if mistake == "dW_transposed":  # square W: x^T dz has the right shape
            dW = x2.T @ dz2
        if mistake == "dx_W_T":
            dx = dz @ W.T
        if mistake == "dW_sign":
            dW = -dW
        if mistake == "db_mean":
            db = dz2.mean(axis=0)
        if mistake == "last_slice":  # x (B1, B2, in): the loop kept only the last B1 slice
            dW = dz[-1].T @ x[-1]
        if mistake == "weight_decay":  # regularization leaked into the layer's backward
            dW = dW + 1e-3 * W
        if mistake == "abs_W":
            dx = dz @ np.abs(W)
        if mistake == "dx_times_2":  # "the derivative of the square": a stray 2
            dx = 2 * dx
        return {"x": dx, "W": dW, "b": db}

    return forward, backward


B = {"x": (3, 4), "W": (5, 4), "b": (5,)}
SQ = {"x": (3, 4), "W": (4, 4), "b": (4,)}


def bugs():
    return [
        bug("linear/correct", "linear", make, B, "", None),
        bug("linear/correct-batch2", "linear", make, {**B, "x": (2, 3, 4)}, "", None),
        bug(
            "linear/mean-over-batch",
            "linear",
            make,
            B,
            "x W b",
            "scale:1/batch",
            mistake="mean_batch",
        ),
        bug(
            "linear/db-first-example",
            "linear",
            make,
            B,
            "b",
            "upstream-only:first",
            mistake="db_first",
        ),
        bug("linear/dW-transposed", "linear", make, SQ, "W", "transposed", mistake="dW_transposed"),
        bug(
            "linear/dx-uses-W-transposed",
            "linear",
            make,
            SQ,
            "x",
            "tensor-transposed:W",
            mistake="dx_W_T",
        ),
        bug("linear/dW-sign", "linear", make, B, "W", "sign", mistake="dW_sign"),
        bug("linear/db-mean", "linear", make, B, "b", "scale:1/batch", mistake="db_mean"),
        bug(
            "linear/dW-last-slice",
            "linear",
            make,
            {**B, "x": (2, 3, 4)},
            "W",
            "upstream-only:last",
            mistake="last_slice",
        ),
        bug("linear/dx-times-2", "linear", make, B, "x", "scale:2", mistake="dx_times_2"),
        bug("linear/weight-decay", "linear", make, B, "W", None, mistake="weight_decay"),
        bug("linear/dx-abs-W", "linear", make, B, "x", None, mistake="abs_W"),
    ]
