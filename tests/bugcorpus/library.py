"""The library's layers (layernorm, batchnorm, maxpool2d) written the CS231n way, one flag per
classic mistake."""

from __future__ import annotations

import numpy as np

from bugcorpus.corpus import bug


def make_norm(mistake: str = "", over: str = "features"):
    """layernorm (statistics over the features, the last axis) or batchnorm (over N, axis 0)."""
    ax = -1 if over == "features" else 0

    def forward(x, gamma, beta, eps=1e-5):
        mu = x.mean(axis=ax, keepdims=True)
        var = x.var(axis=ax, keepdims=True)
        return gamma * (x - mu) / np.sqrt(var + eps) + beta

    def backward(grad_output, x, gamma, beta, eps=1e-5):
        dout = grad_output
        n = x.shape[ax]
        mu = x.mean(axis=ax, keepdims=True)
        var = x.var(axis=ax, keepdims=True)
        std = np.sqrt(var + eps)
        xhat = (x - mu) / std
        dxhat = dout if mistake == "no_gamma" else dout * gamma
        s1 = dxhat.sum(axis=ax, keepdims=True)
        s2 = (dxhat * xhat).sum(axis=ax, keepdims=True)
        if mistake == "no_variance_term":
            s2 = 0
        if mistake == "no_mean_term":
            s1 = 0
        dx = (n * dxhat - s1 - xhat * s2) / (n * std)
        if mistake == "constants":
            dx = dxhat / std
        rows = dout.reshape(-1, dout.shape[-1])
        dgamma = (dout * xhat).reshape(-1, dout.shape[-1]).sum(axis=0)
        dbeta = rows.sum(axis=0)
        if mistake == "dgamma_no_xhat":
            dgamma = rows.sum(axis=0)
        if mistake == "dbeta_mean":
            dbeta = rows.mean(axis=0)
        if mistake == "dx_noise":
            dx = dx * (1 + 1e-3 * np.sin(np.arange(dx.size))).reshape(dx.shape)
        return {"x": dx, "gamma": dgamma, "beta": dbeta}

    return forward, backward


def make_groupnorm(mistake: str = ""):
    """groupnorm, X (B, H, W, C) channel-last, CS231n's spatial_groupnorm_backward per group."""

    def forward(X, gamma, beta, groups=2, eps=1e-5, spatial=2):
        B, H, W, C = X.shape
        Xg = X.reshape(B, H, W, groups, C // groups)
        mu = Xg.mean(axis=(1, 2, 4), keepdims=True)
        var = Xg.var(axis=(1, 2, 4), keepdims=True)
        return gamma * ((Xg - mu) / np.sqrt(var + eps)).reshape(X.shape) + beta

    def backward(grad_output, X, gamma, beta, groups=2, eps=1e-5, spatial=2):
        B, H, W, C = X.shape
        Xg = X.reshape(B, H, W, groups, C // groups)
        mu = Xg.mean(axis=(1, 2, 4), keepdims=True)
        std = np.sqrt(Xg.var(axis=(1, 2, 4), keepdims=True) + eps)
        xhat = (Xg - mu) / std
        dxhat = (grad_output * gamma).reshape(Xg.shape)
        m = H * W * C // groups
        s1 = dxhat.sum(axis=(1, 2, 4), keepdims=True)
        s2 = (dxhat * xhat).sum(axis=(1, 2, 4), keepdims=True)
        if mistake == "no_mean_term":
            s1 = 0
        dX = (m * dxhat - s1 - xhat * s2) / (m * std)
        if mistake == "constants":
            dX = dxhat / std
        dgamma = (grad_output * xhat.reshape(X.shape)).sum(axis=(0, 1, 2))
        return {"X": dX.reshape(X.shape), "gamma": dgamma, "beta": grad_output.sum(axis=(0, 1, 2))}

    return forward, backward


def make_pool(mistake: str = ""):
    """maxpool2d, X (B, H, W, C), windows k x k with stride s (no padding)."""

    def forward(X, size=2, stride=None):
        s = stride or size
        B, H, W, C = X.shape
        Ho, Wo = (H - size) // s + 1, (W - size) // s + 1
        Z = np.empty((B, Ho, Wo, C))
        for i in range(Ho):
            for j in range(Wo):
                Z[:, i, j] = X[:, i * s : i * s + size, j * s : j * s + size].max(axis=(1, 2))
        return Z

    def backward(grad_output, X, size=2, stride=None):
        s = stride or size
        if mistake == "stride_ignored":
            s = size
        dX = np.zeros_like(X)
        Ho, Wo = grad_output.shape[1:3]
        for i in range(Ho):
            for j in range(Wo):
                win = X[:, i * s : i * s + size, j * s : j * s + size]
                mask = win == win.max(axis=(1, 2), keepdims=True)
                g = grad_output[:, i, j][:, None, None]
                if mistake == "spread":  # routed like an average pool
                    dX[:, i * s : i * s + size, j * s : j * s + size] += g / size**2
                elif mistake == "overwrite":
                    dX[:, i * s : i * s + size, j * s : j * s + size] = mask * g
                else:
                    dX[:, i * s : i * s + size, j * s : j * s + size] += mask * g
        if mistake == "first_example":
            dX[1:] = 0
        return {"X": dX}

    return forward, backward


LN = {"x": (4, 6), "gamma": (6,), "beta": (6,)}
BN = {"x": (5, 4), "gamma": (4,), "beta": (4,)}
POOL = {"X": (2, 6, 6, 2)}
GN = {"X": (2, 3, 4, 6), "gamma": (6,), "beta": (6,)}


def bugs():
    ln = dict(make=make_norm, over="features")
    bn = dict(make=make_norm, over="batch")
    return [
        bug("layernorm/correct", "layernorm", shapes=LN, wrong="", cause=None, **ln),
        bug("batchnorm/correct", "batchnorm", shapes=BN, wrong="", cause=None, **bn),
        bug(
            "maxpool2d/correct-overlapping",
            "maxpool2d",
            make_pool,
            POOL,
            "",
            None,
            {"size": 3, "stride": 2},
        ),
        bug(
            "layernorm/no-variance-term",
            "layernorm",
            shapes=LN,
            wrong="x",
            cause="norm:no-variance-term",
            mistake="no_variance_term",
            **ln,
        ),
        bug(
            "layernorm/statistics-constant",
            "layernorm",
            shapes=LN,
            wrong="x",
            cause="norm:statistics-constant",
            mistake="constants",
            **ln,
        ),
        bug(
            "layernorm/dgamma-without-xhat",
            "layernorm",
            shapes=LN,
            wrong="gamma",
            cause="other-tensor:beta",
            mistake="dgamma_no_xhat",
            **ln,
        ),
        bug(
            "layernorm/no-gamma-in-dx",
            "layernorm",
            shapes=LN,
            wrong="x",
            cause="norm:no-gamma",
            mistake="no_gamma",
            **ln,
        ),
        bug(
            "batchnorm/no-mean-term",
            "batchnorm",
            shapes=BN,
            wrong="x",
            cause="norm:no-mean-term",
            mistake="no_mean_term",
            **bn,
        ),
        bug(
            "batchnorm/dbeta-mean",
            "batchnorm",
            shapes=BN,
            wrong="beta",
            cause="scale:mean",
            mistake="dbeta_mean",
            **bn,
        ),
        bug("groupnorm/correct", "groupnorm", make_groupnorm, GN, "", None, {"groups": 3}),
        bug(
            "groupnorm/no-mean-term",
            "groupnorm",
            make_groupnorm,
            GN,
            "X",
            "norm:no-mean-term",
            {"groups": 3},
            mistake="no_mean_term",
        ),
        bug(
            "groupnorm/statistics-constant",
            "groupnorm",
            make_groupnorm,
            GN,
            "X",
            "norm:statistics-constant",
            {"groups": 3},
            mistake="constants",
        ),
        bug(
            "batchnorm/dx-noise",
            "batchnorm",
            shapes=BN,
            wrong="x",
            cause=None,
            mistake="dx_noise",
            **bn,
        ),
        bug(
            "maxpool2d/stride-ignored",
            "maxpool2d",
            make_pool,
            POOL,
            "X",
            "option:stride",
            {"size": 2, "stride": 3},
            mistake="stride_ignored",
        ),
        bug(
            "maxpool2d/first-example",
            "maxpool2d",
            make_pool,
            POOL,
            "X",
            "upstream-only:first",
            mistake="first_example",
        ),
        bug(
            "maxpool2d/spread-like-avgpool",
            "maxpool2d",
            make_pool,
            POOL,
            "X",
            "maxpool:no-argmax-averaged",
            mistake="spread",
        ),
        bug(
            "maxpool2d/overwrite-overlapping",
            "maxpool2d",
            make_pool,
            POOL,
            "X",
            None,
            {"size": 3, "stride": 1},
            mistake="overwrite",
        ),
    ]
