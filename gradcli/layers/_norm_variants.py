"""The normalizations' backward as named terms, and their classic wrong variants (for the
diagnosis, gradcli.checking.hypotheses). With dxhat = dy gamma and r = 1/sqrt(var + eps):

    dx = r dxhat  -  r mean(dxhat)  -  r xhat mean(dxhat xhat)
         (direct)    (mean term)       (variance term)

the means over the axes the statistics run over (layernorm: the features; batchnorm: N and
the spatial axes; groupnorm: a group's channels and the spatial axes, on X grouped as
(..., [H, W,] groups, C/groups): each group is a normalization of its own, with the same slips).
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
    found = slips(xhat, r, dy, dxhat, axes)
    out = {cause: (text, {"x": dx}) for cause, (text, dx) in found.items()}
    m = int(np.prod([xhat.shape[a] for a in axes]))
    if m > 2:
        # the backward's own statistics recomputed with the unbiased variance (np.var(ddof=1),
        # Bessel's m - 1) where the forward's are biased: dgamma sqrt((m-1)/m) times the right
        # one, and dx from that xhat and r (outside test t60a F2: no hint, or 'a constant
        # factor this layer does not name')
        var = np.mean((xhat / r) ** 2, axis=axes, keepdims=True)
        eps = 1.0 / r**2 - var
        r_u = 1.0 / np.sqrt(var * m / (m - 1) + eps)
        xhat_u = xhat / r * r_u
        dx = r_u * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                    - xhat_u * np.mean(dxhat * xhat_u, axis=axes, keepdims=True))  # fmt: skip
        grads = {"x": dx}
        gamma = np.shape(cache["gamma"])
        dgamma = (dy * xhat_u).reshape(-1, dy.shape[-1]).sum(axis=0)
        if dgamma.shape == gamma:
            grads["gamma"] = dgamma
        out["norm:unbiased-statistics"] = (
            f"with its statistics recomputed using the unbiased variance (over m - 1 = "
            f"{m - 1}, np.var(ddof=1)) where the forward's is biased (over m = {m})",
            grads)
    return out


def slips(
    xhat: np.ndarray, r: np.ndarray, dy: np.ndarray, dxhat: np.ndarray, axes: tuple[int, ...],
    x: str = "x", y: str = "y", per: str = "", other: bool = True,
) -> dict:  # fmt: skip
    """{cause: (what the backward did, d``x``)} on arrays whose ``axes`` are a
    normalization's (``r``: kept along them); ``per``: where the means run, said after the
    formula; ``other``: also the means over the other normalization's axes (layernorm's and
    batchnorm's)."""
    mean = r * dxhat.mean(axis=axes, keepdims=True)
    var = r * xhat * np.mean(dxhat * xhat, axis=axes, keepdims=True)
    direct = r * dxhat
    hat = f"{x}hat"
    # (r named: a hint quoting it undefined sent a student to `explain`: outside test t44a N6)
    how = (f"d{x} = r (d{hat} - mean(d{hat}) - {hat} mean(d{hat} {hat})), d{hat} = d{y} gamma, "
           f"r = 1/sqrt(var + eps){per}")
    return {
        # each term named as the formula writes it: "the mean term" of a formula with two
        # means left a student guessing which (outside test t52b F5)
        "norm:no-mean-term": (f"without the mean term of d{x}, - mean(d{hat}) ({how})",
                              direct - var),
        "norm:no-variance-term": (f"without the variance term of d{x}, - {hat} mean(d{hat} "
                                  f"{hat}) ({how})", direct - mean),
        "norm:statistics-constant": (
            f"with the mean and the variance treated as constants (d{x} = r d{hat}: both terms "
            f"through them left out; {how})", direct),
        "norm:no-gamma": (
            f"with d{hat} = d{y}, gamma left out ({how})", _norm.dnormalize(dy, xhat, r, axes)),
        **_staged(xhat, r, dxhat, direct, mean, var, axes, how, x, other),
    }  # fmt: skip


def _staged(xhat: np.ndarray, r: np.ndarray, dxhat: np.ndarray, direct: np.ndarray,
            mean: np.ndarray, var: np.ndarray, axes: tuple[int, ...], how: str, x: str,
            other_axes: bool) -> dict:  # fmt: skip
    """The slips of a backward written stage by stage (xc = x - mu, var, std, xhat: CS231n's
    batchnorm_backward): the mean's path summed without its 1/m (dx = dxc + dmu), the
    variance's 2 xc / m as 2 xc / (m - 1), and (``other_axes``) the means taken over the other
    normalization's axes (a layernorm reduced over the batch)."""
    m = int(np.prod([xhat.shape[a] for a in axes]))
    out: dict = {}
    if m > 1:
        out["norm:mean-path-sum"] = (
            f"with the mean's path summed, not averaged: d{x} = d{x}c + dmu where d{x}c + dmu / "
            f"{m} belongs (mu's 1/m left out; {how})", direct - var - m * mean)
        out["norm:unbiased-variance"] = (
            f"with the variance's path through 2 {x}c / (m - 1) where 2 {x}c / m belongs (m = "
            f"{m}: the variance is the biased one; {how})", direct - mean - var * m / (m - 1))
    other = (-2,) if axes == (-1,) else (-1,)
    if other_axes and xhat.ndim >= 2 and other != axes and xhat.shape[other[0]] > 1:
        o_mean = r * dxhat.mean(axis=other, keepdims=True)
        o_var = r * xhat * np.mean(dxhat * xhat, axis=other, keepdims=True)
        said = "the batch (axis N)" if other == (-2,) else "the features (the last axis)"
        out["norm:other-axes"] = (
            f"with the means of d{x} taken over {said}, not over the axes the statistics run "
            f"over ({how})", direct - o_mean - o_var)
    return out
