"""central4 on normalizations whose rows vary on a scale far below the step.

central4's step, 7.4e-4 * max(1, |x|), is as wide as a row of spread 1e-3, and 75 times one
of spread 0.01 at x ~ 1000. The halvings read the slope at the truncation rate, but a
modelled round-off stopped them one halving short of confirming (a right layernorm read
1.4e-6 off: outside test t34a F1), or stopped them where the forward, rounded at the offset,
carries more than the model says, and the default step's 5.1 for a slope of 0.41 became the
FAIL's numeric value (t34a F4). Twins: the classic normalization bugs still fail there.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

GN = {"groups": 2}


def _tensors(layer: str, seed: int, scale: float, offset: float = 0.0):
    rng = np.random.default_rng(seed)
    shape = {"layernorm": (2, 64), "batchnorm": (16, 6), "groupnorm": (2, 4, 4, 6)}[layer]
    x = offset + scale * rng.standard_normal(shape)
    c = shape[-1]
    name = "X" if layer == "groupnorm" else "x"
    return {name: x, "gamma": rng.standard_normal(c), "beta": rng.standard_normal(c)}, \
        rng.standard_normal(shape)


CASES = [("layernorm", s, 1e-3, 0.0) for s in range(4)] + \
    [("batchnorm", s, 1e-3, 0.0) for s in range(4)] + \
    [("groupnorm", s, 1e-3, 0.0) for s in range(4)] + \
    [("layernorm", s, 0.01, 1000.0) for s in range(3)] + \
    [("groupnorm", s, 0.01, 100.0) for s in range(3)] + \
    [("layernorm", s, 1e-3, 1e6) for s in range(2)]  # (outside test t35b F1: 'still moving')


@pytest.mark.parametrize(("layer", "seed", "scale", "offset"), CASES)
def test_right_normalizations_pass_under_central4(layer, seed, scale, offset):
    tensors, g = _tensors(layer, seed, scale, offset)
    options = GN if layer == "groupnorm" else None
    r = gradcli.check(layer, tensors, grad_output=g, options=options, method="central4")
    assert r.passed, {n: x.worst[:1] for n, x in r.results.items() if not x.passed}


def _layernorm(slip: str):
    def forward(x, gamma, beta):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return gamma * (x - mu) / np.sqrt(var + 1e-5) + beta

    def backward(grad_output, x, gamma, beta):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        r = 1 / np.sqrt(var + 1e-5)
        xh = (x - mu) * r
        dxh = grad_output * gamma
        if slip == "novar":  # the variance's path dropped
            dx = r * (dxh - dxh.mean(-1, keepdims=True))
        else:
            dx = r * (dxh - dxh.mean(-1, keepdims=True)
                      - xh * (dxh * xh).mean(-1, keepdims=True))
        return {"x": dx, "gamma": (grad_output * xh).sum(0), "beta": grad_output.sum(0)}

    return forward, backward


@pytest.mark.parametrize(("scale", "offset"), [(1e-3, 0.0), (0.01, 1000.0)])
@pytest.mark.parametrize("slip", ["", "novar"])
def test_your_layernorm_under_central4(scale, offset, slip):
    tensors, g = _tensors("layernorm", 0, scale, offset)
    forward, backward = _layernorm(slip)
    r = gradcli.check("layernorm", tensors, grad_output=g, forward=forward,
                      backward=backward, method="central4")
    assert r.passed == (slip == "")
