"""conv2d Z[i,j,c] = sum_{m,n,d} W[m,n,d,c] Xp[i*s + m*dl, j*s + n*dl, d] + b[c], batched,
channel-last, as a loop over output positions with einsum over the patch (CS231n's
conv_backward_naive), one flag per classic mistake."""

from __future__ import annotations

import numpy as np

from bugcorpus.corpus import bug


def make(mistake: str = ""):
    def forward(X, W, b, stride=1, padding=0, dilation=1):
        p, s, dl = padding, stride, dilation
        Xp = np.pad(X, ((0, 0), (p, p), (p, p), (0, 0)))
        kh, kw = W.shape[:2]
        Ho = (Xp.shape[1] - dl * (kh - 1) - 1) // s + 1
        Wo = (Xp.shape[2] - dl * (kw - 1) - 1) // s + 1
        Z = np.zeros((X.shape[0], Ho, Wo, W.shape[3]), dtype=np.result_type(X, W))
        for i in range(Ho):
            for j in range(Wo):
                patch = Xp[:, i * s : i * s + dl * (kh - 1) + 1 : dl,
                           j * s : j * s + dl * (kw - 1) + 1 : dl, :]  # fmt: skip
                Z[:, i, j, :] = np.einsum("bmnd,mndc->bc", patch, W) + b
        return Z

    def backward(grad_output, X, W, b, stride=1, padding=0, dilation=1):
        p = padding
        dZ = grad_output
        Xp = np.pad(X, ((0, 0), (p, p), (p, p), (0, 0)))
        dXp, dW = np.zeros_like(Xp), np.zeros_like(W)
        kh, kw = W.shape[:2]
        s = 1 if mistake == "stride_ignored" else stride
        dl = 1 if mistake == "dilation_ignored" else dilation
        Wb = W[::-1, ::-1] if mistake == "rot180_in_dx" else W
        for i in range(dZ.shape[1]):
            for j in range(dZ.shape[2]):
                rows = slice(i * s, i * s + dl * (kh - 1) + 1, dl)
                cols = slice(j * s, j * s + dl * (kw - 1) + 1, dl)
                patch = Xp[:, rows, cols, :]
                g = dZ[:, i, j, :]
                if mistake == "dW_flipped":
                    patch = patch[:, ::-1, ::-1]
                if mistake == "dW_first_example":
                    dW += np.einsum("mnd,c->mndc", patch[0], g[0])
                elif mistake == "uses_output":
                    dW += np.einsum(
                        "bmnd,bc->mndc", patch, forward(X, W, b, stride, p, dilation)[:, i, j]
                    )
                else:
                    dW += np.einsum("bmnd,bc->mndc", patch, g)
                if mistake == "overwrite":
                    dXp[:, rows, cols, :] = np.einsum("mndc,bc->bmnd", Wb, g)
                else:
                    dXp[:, rows, cols, :] += np.einsum("mndc,bc->bmnd", Wb, g)
        if mistake == "overwrite_filters":  # CS231n's order: for f: for i: for j: dxp[...] = ...
            dXp = np.zeros_like(Xp)
            for f in range(W.shape[3]):
                for i in range(dZ.shape[1]):
                    for j in range(dZ.shape[2]):
                        rows = slice(i * s, i * s + dl * (kh - 1) + 1, dl)
                        cols = slice(j * s, j * s + dl * (kw - 1) + 1, dl)
                        dXp[:, rows, cols, :] = np.einsum("mnd,b->bmnd", W[..., f], dZ[:, i, j, f])
        db = dZ.sum(axis=(0, 1, 2))
        if mistake == "db_mean":
            db = dZ.mean(axis=(0, 1, 2))
        if mistake == "db_first_example":
            db = dZ.sum(axis=(1, 2))[0]
        if mistake == "no_crop_offset":  # cut the padding from the end, not from both sides
            dX = dXp[:, : X.shape[1], : X.shape[2], :]
        else:
            dX = dXp[:, p : p + X.shape[1], p : p + X.shape[2], :]
        if mistake == "dX_sign":
            dX = -dX
        return {"X": dX, "W": dW, "b": db}

    return forward, backward


S = {"X": (2, 5, 5, 2), "W": (3, 3, 2, 3), "b": (3,)}
L = {"X": (2, 7, 7, 2), "W": (3, 3, 2, 3), "b": (3,)}


def bugs():
    return [
        bug("conv2d/correct", "conv2d", make, S, "", None),
        bug(
            "conv2d/correct-options",
            "conv2d",
            make,
            L,
            "",
            None,
            {"stride": 2, "padding": 1, "dilation": 2},
        ),
        bug("conv2d/overwrite", "conv2d", make, S, "X", "overwrite", mistake="overwrite"),
        bug(
            "conv2d/overwrite-filters-outer",
            "conv2d",
            make,
            S,
            "X",
            "overwrite:filters",
            mistake="overwrite_filters",
        ),
        bug(
            "conv2d/overwrite-filters-outer-strided",
            "conv2d",
            make,
            L,
            "X",
            "overwrite:filters",
            {"stride": 2, "padding": 1},
            mistake="overwrite_filters",
        ),
        bug("conv2d/dW-flipped", "conv2d", make, S, "W", "flipped", mistake="dW_flipped"),
        bug(
            "conv2d/rot180-in-dX",
            "conv2d",
            make,
            S,
            "X",
            "tensor-flipped:W",
            mistake="rot180_in_dx",
        ),
        bug(
            "conv2d/stride-ignored",
            "conv2d",
            make,
            L,
            "X W",
            "option:stride",
            {"stride": 2},
            mistake="stride_ignored",
        ),
        bug(
            "conv2d/dilation-ignored",
            "conv2d",
            make,
            L,
            "X W",
            "option:dilation",
            {"dilation": 2},
            mistake="dilation_ignored",
        ),
        bug(
            "conv2d/no-crop-offset",
            "conv2d",
            make,
            S,
            "X",
            "shifted",
            {"padding": 1},
            mistake="no_crop_offset",
        ),
        bug("conv2d/db-mean", "conv2d", make, S, "b", "scale:mean", mistake="db_mean"),
        bug(
            "conv2d/db-first-example",
            "conv2d",
            make,
            S,
            "b",
            "upstream-only:first",
            mistake="db_first_example",
        ),
        bug(
            "conv2d/dW-first-example",
            "conv2d",
            make,
            S,
            "W",
            "upstream-only:first",
            mistake="dW_first_example",
        ),
        bug(
            "conv2d/dX-sign-padded",
            "conv2d",
            make,
            S,
            "X",
            "sign",
            {"padding": 1},
            mistake="dX_sign",
        ),
        bug("conv2d/uses-output", "conv2d", make, S, "W", None, mistake="uses_output"),
    ]
