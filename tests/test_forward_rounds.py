"""A forward of the user's that rounds more than ours (a one-pass variance E[x^2] - E[x]^2 at
x ~ 100 cancels 1e4 of its digits) is no other function: it agrees with ours in extended
precision, and the numerical gradients difference ours (outside test t21 F3: 'your forward
does not match the built-in forward' over 2e-12, and at x ~ 1000 a correct dx 'does not
match'). Twins: another function (the unbiased variance) and a wrong backward still fail."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def _layernorm(ddof=0, one_pass=True, dx_factor=1.0):
    def forward(x, gamma, beta):
        mu = x.mean(axis=-1, keepdims=True)
        if one_pass:
            var = (x * x).mean(axis=-1, keepdims=True) - mu * mu
        else:
            var = x.var(axis=-1, keepdims=True, ddof=ddof)
        return gamma * (x - mu) / np.sqrt(var + 1e-5) + beta

    def backward(grad_output, x, gamma, beta):
        mu = x.mean(axis=-1, keepdims=True)
        r = 1 / np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + 1e-5)
        xhat = (x - mu) * r
        d = grad_output * gamma
        dx = r * (d - d.mean(-1, keepdims=True) - xhat * (d * xhat).mean(-1, keepdims=True))
        return {"x": dx * dx_factor, "gamma": (grad_output * xhat).sum(0),
                "beta": grad_output.sum(0)}

    return forward, backward


def _tensors(offset):
    rng = np.random.default_rng(0)
    return {"x": offset + rng.standard_normal((4, 16)), "gamma": rng.standard_normal(16),
            "beta": rng.standard_normal(16)}  # fmt: skip


@pytest.mark.parametrize("offset", [0.0, 100.0, 1000.0])
def test_a_one_pass_variance_passes(offset):
    forward, backward = _layernorm()
    r = gradcli.check("layernorm", _tensors(offset), forward=forward, backward=backward)
    assert r.passed, (r.forward, {n: x.worst[:1] for n, x in r.results.items()})
    rounds = any("rounds more than the built-in" in n for n in r.check.notes)
    assert rounds == (offset >= 100)


@pytest.mark.parametrize("offset", [100.0, 1000.0])
def test_another_function_still_does_not_match(offset):
    forward, backward = _layernorm(ddof=1, one_pass=False)  # the unbiased variance
    r = gradcli.check("layernorm", _tensors(offset), forward=forward, backward=backward)
    assert not r.passed and not r.forward.passed


@pytest.mark.parametrize("offset", [100.0, 1000.0])
def test_a_wrong_backward_still_fails(offset):
    forward, backward = _layernorm(dx_factor=1.001)
    r = gradcli.check("layernorm", _tensors(offset), forward=forward, backward=backward)
    assert not r.passed and not r.results["x"].passed
