"""A normalization's backward that recomputes its statistics with the unbiased variance
(np.var(ddof=1)) where the forward's is biased: dx and dgamma named by a verified hint (outside
test t60a F2: no hint at N = 6, 'a constant factor this layer does not name' for dgamma's
sqrt((N-1)/N) at N = 100). The answers are written here from the formulas; the twin: the
biased statistics pass."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

EPS = 1e-5


def _backward(x, gamma, dy, axis, ddof):
    mu = x.mean(axis=axis, keepdims=True)
    r = 1 / np.sqrt(x.var(axis=axis, ddof=ddof, keepdims=True) + EPS)
    xh = (x - mu) * r
    dxh = dy * gamma
    dx = r * (dxh - dxh.mean(axis=axis, keepdims=True)
              - xh * (dxh * xh).mean(axis=axis, keepdims=True))  # fmt: skip
    return {"x": dx, "gamma": (dy * xh).reshape(-1, x.shape[-1]).sum(0)}


@pytest.mark.parametrize(("layer", "axis", "shape"), [("batchnorm", 0, (6, 4)),
                                                      ("layernorm", -1, (3, 7)),
                                                      ("batchnorm", 0, (100, 3))])
@pytest.mark.parametrize("ddof", [0, 1])
def test_unbiased_statistics_in_the_backward_are_named(layer, axis, shape, ddof):
    rng = np.random.default_rng(5)
    x = rng.normal(size=shape)
    gamma = rng.normal(size=shape[-1])
    dy = rng.normal(size=shape)
    t = {"x": x, "gamma": gamma, "beta": np.zeros(shape[-1])}
    answer = _backward(x, gamma, dy, axis, ddof)
    r = gradcli.check(layer, t, options={"eps": EPS}, grad_output=dy, grads=answer)
    if ddof == 0:
        assert r.passed, r.verdict()
        return
    for name in ("x", "gamma"):
        res = r.results[name]
        assert not res.passed
        assert res.hints[0].cause == "norm:unbiased-statistics" and res.hints[0].verified, (
            name, res.hints)


def test_dgamma_alone_from_the_unbiased_std_names_its_factor():
    rng = np.random.default_rng(6)
    x, gamma, dy = rng.normal(size=(10, 3)), rng.normal(size=3), rng.normal(size=(10, 3))
    t = {"x": x, "gamma": gamma, "beta": np.zeros(3)}
    right = _backward(x, gamma, dy, 0, 0)
    r = gradcli.check("batchnorm", t, options={"eps": EPS}, grad_output=dy,
                      grads={"gamma": right["gamma"] * np.sqrt(9 / 10)})  # fmt: skip
    hints = r.results["gamma"].hints
    assert not r.passed and any(h.cause == "scale:unbiased-std" for h in hints), hints
