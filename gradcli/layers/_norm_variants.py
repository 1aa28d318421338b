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
    }  # fmt: skip
