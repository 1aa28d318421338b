"""The normalizations' backward as named terms, and their classic wrong variants (for the
diagnosis, gradcli.checking.hypotheses). With dxhat = dy gamma and r = 1/sqrt(var + eps):

    dx = r dxhat  -  r mean(dxhat)  -  r xhat mean(dxhat xhat)
         (direct)    (mean term)       (variance term)

the means over the axes the statistics run over (layernorm: the features; batchnorm: N and
the spatial axes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcli.layers import _norm


def variants(cache: dict[str, Any], dy: np.ndarray, axes: tuple[int, ...], k: int) -> dict:
    """{cause: (what the backward did, {"x": dx})} at the forward's ``cache``; k: the axes
    between the statistics' and the channel (gamma's expansion)."""
    xhat, r = cache["xhat"], cache["r"]
    dxhat = dy * _norm.expand(cache["gamma"], k)
    mean = r * dxhat.mean(axis=axes, keepdims=True)
    var = r * xhat * np.mean(dxhat * xhat, axis=axes, keepdims=True)
    direct = r * dxhat
    how = "dx = r (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dy gamma"
    return {
        "norm:no-mean-term": (f"without the mean term of dx ({how})", {"x": direct - var}),
        "norm:no-variance-term": (
            f"without the variance term of dx ({how})", {"x": direct - mean}),
        "norm:statistics-constant": (
            "with the mean and the variance treated as constants (dx = r dxhat: both terms "
            f"through them left out; {how})", {"x": direct}),
        "norm:no-gamma": (
            f"with dxhat = dy, gamma left out ({how})",
            {"x": _norm.dnormalize(dy, xhat, r, axes)}),
        **_staged(xhat, r, dxhat, direct, mean, var, axes, how),
    }  # fmt: skip


def _staged(xhat: np.ndarray, r: np.ndarray, dxhat: np.ndarray, direct: np.ndarray,
            mean: np.ndarray, var: np.ndarray, axes: tuple[int, ...],
            how: str) -> dict:  # fmt: skip
    """The slips of a backward written stage by stage (xc = x - mu, var, std, xhat: CS231n's
    batchnorm_backward): the mean's path summed without its 1/m (dx = dxc + dmu), the
    variance's 2 xc / m as 2 xc / (m - 1), and the means taken over the other normalization's
    axes (a layernorm reduced over the batch)."""
    m = int(np.prod([xhat.shape[a] for a in axes]))
    out: dict = {}
    if m > 1:
        out["norm:mean-path-sum"] = (
            f"with the mean's path summed, not averaged: dx = dxc + dmu where dxc + dmu / {m} "
            f"belongs (mu's 1/m left out; {how})", {"x": direct - var - m * mean})
        out["norm:unbiased-variance"] = (
            f"with the variance's path through 2 xc / (m - 1) where 2 xc / m belongs (m = {m}: "
            f"the variance is the biased one; {how})", {"x": direct - mean - var * m / (m - 1)})
    other = (-2,) if axes == (-1,) else (-1,)
    if xhat.ndim >= 2 and other != axes and xhat.shape[other[0]] > 1:
        o_mean = r * dxhat.mean(axis=other, keepdims=True)
        o_var = r * xhat * np.mean(dxhat * xhat, axis=other, keepdims=True)
        said = "the batch (axis N)" if other == (-2,) else "the features (the last axis)"
        out["norm:other-axes"] = (
            f"with the means of dx taken over {said}, not over the axes the statistics run over "
            f"({how})", {"x": direct - o_mean - o_var})
    return out
