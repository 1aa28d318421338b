"""conv1d z[i] = sum_j w[j] xp[i*s + j*d] + b, as loops over windows and taps (seed form,
with a batch, and with channels), one flag per classic mistake."""

from __future__ import annotations

import numpy as np

from bugcorpus.corpus import bug


def _pad(x, p, channels):
    width = [(0, 0)] * x.ndim
    width[-2 if channels else -1] = (p, p)
    return np.pad(x, width)


def make(mistake: str = ""):
    def forward(x, w, b, stride=1, padding=0, dilation=1):
        channels = w.ndim == 3
        xp = _pad(x, padding, channels)
        n, k = xp.shape[-2 if channels else -1], w.shape[0]
        m = (n - dilation * (k - 1) - 1) // stride + 1
        outs = []
        for i in range(m):
            win = [xp[..., i * stride + j * dilation, :] if channels
                   else xp[..., i * stride + j * dilation] for j in range(k)]  # fmt: skip
            if channels:
                outs.append(sum(win[j] @ w[j] for j in range(k)) + b)
            else:
                outs.append(sum(win[j] * w[j] for j in range(k)) + b)
        return np.stack(outs, axis=-2 if channels else -1)

    def backward(grad_output, x, w, b, stride=1, padding=0, dilation=1):
        channels = w.ndim == 3
        dz = grad_output
        xp = _pad(x, padding, channels)
        dxp, dw = np.zeros_like(xp), np.zeros_like(w)
        k = w.shape[0]
        m = dz.shape[-2 if channels else -1]
        s = 1 if mistake == "stride_ignored" else stride
        d = 1 if mistake == "dilation_ignored" else dilation
        last = m - 1 if mistake == "loop_off_by_one" else m
        for i in range(last):
            for j in range(k):
                t = i * s + j * d
                if channels:
                    g, xt = dz[..., i, :], xp[..., t, :]
                    wj = w[k - 1 - j] if mistake == "flipped_kernel" else w[j]
                    contrib = g @ wj.T
                    if mistake == "overwrite":
                        dxp[..., t, :] = contrib
                    else:
                        dxp[..., t, :] += contrib
                    xt2, g2 = xt.reshape(-1, xt.shape[-1]), g.reshape(-1, g.shape[-1])
                    if mistake == "dw_transposed":  # C_in == C_out: (c, e) for (e, c)
                        dw[j] += g2.T @ xt2
                    elif mistake == "dw_mean":
                        dw[j] += xt2.T @ g2 / len(g2)
                    else:
                        dw[j] += xt2.T @ g2
                else:
                    g = dz[..., i]
                    wj = w[k - 1 - j] if mistake == "flipped_kernel" else w[j]
                    if mistake == "overwrite":
                        dxp[..., t] = g * wj
                    elif mistake == "uses_output":
                        dxp[..., t] += forward(x, w, b, stride, padding, dilation)[..., i] * wj
                    else:
                        dxp[..., t] += g * wj
                    dw[j] += np.sum(g * xp[..., t])
        if mistake == "edge_twice" and not channels:  # the last window "handled" once more
            for j in range(k):
                dxp[..., (m - 1) * s + j * d] += dz[..., m - 1] * w[j]
        db = dz.reshape(-1, dz.shape[-1]).sum(axis=0) if channels else np.sum(dz)
        if mistake == "db_first":
            db = np.sum(dz[0])
        if mistake == "dw_mean":
            db = db / dz.reshape(-1, dz.shape[-1]).shape[0]
        lo = padding - 1 if mistake == "crop_off_by_one" else padding
        n = x.shape[-2 if channels else -1]
        dx = dxp[..., lo : lo + n, :] if channels else dxp[..., lo : lo + n]
        return {"x": dx, "w": dw, "b": db}

    return forward, backward


SEED = {"x": (9,), "w": (3,), "b": ()}
BATCH = {"x": (3, 9), "w": (3,), "b": ()}
CH = {"x": (2, 8, 3), "w": (3, 3, 4), "b": (4,)}
SQ = {"x": (2, 8, 3), "w": (3, 3, 3), "b": (3,)}


def bugs():
    return [
        bug("conv1d/correct", "conv1d", make, SEED, "", None),
        bug(
            "conv1d/correct-options",
            "conv1d",
            make,
            CH,
            "",
            None,
            {"stride": 2, "padding": 1, "dilation": 2},
        ),
        bug("conv1d/overwrite", "conv1d", make, SEED, "x", "overwrite", mistake="overwrite"),
        bug(
            "conv1d/flipped-kernel-in-dx",
            "conv1d",
            make,
            BATCH,
            "x",
            "tensor-flipped:w",
            mistake="flipped_kernel",
        ),
        bug(
            "conv1d/crop-off-by-one",
            "conv1d",
            make,
            BATCH,
            "x",
            "shifted",
            {"padding": 2},
            mistake="crop_off_by_one",
        ),
        bug(
            "conv1d/stride-ignored",
            "conv1d",
            make,
            BATCH,
            "x w",
            "option:stride",
            {"stride": 2},
            mistake="stride_ignored",
        ),
        bug(
            "conv1d/dilation-ignored",
            "conv1d",
            make,
            CH,
            "x w",
            "option:dilation",
            {"dilation": 2},
            mistake="dilation_ignored",
        ),
        bug(
            "conv1d/db-first-example",
            "conv1d",
            make,
            BATCH,
            "b",
            "upstream-only:first",
            mistake="db_first",
        ),
        bug(
            "conv1d/loop-off-by-one",
            "conv1d",
            make,
            CH,
            "x w",
            "upstream-without:last",
            {"padding": 1},
            mistake="loop_off_by_one",
        ),
        bug(
            "conv1d/dw-mean",
            "conv1d",
            make,
            CH,
            "w b",
            {"w": "scale:1/batch", "b": "scale:mean"},
            mistake="dw_mean",
        ),
        bug(
            "conv1d/dw-transposed-channels",
            "conv1d",
            make,
            SQ,
            "w",
            "transposed",
            mistake="dw_transposed",
        ),
        bug(
            "conv1d/overwrite-channels-strided",
            "conv1d",
            make,
            CH,
            "x",
            "overwrite",
            {"stride": 2},
            mistake="overwrite",
        ),
        bug("conv1d/last-window-twice", "conv1d", make, BATCH, "x", None, mistake="edge_twice"),
        bug("conv1d/uses-output", "conv1d", make, BATCH, "x", None, mistake="uses_output"),
    ]
