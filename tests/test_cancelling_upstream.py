"""An upstream gradient whose terms cancel (y.sum() through a softmax or a normalization: the
gradient is 0 in theory) is judged at the size of its terms, not at its own round-off: the
correct backward passed nowhere under central differences ('cannot resolve') and failed under
the complex step. Wrong backwards still fail there, and a confident softmax, whose terms are
as small as its gradient, is still not resolved for a backward keeping the diagonal alone."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

RNG = np.random.default_rng(0)
CASES = {
    "softmax": {"x": RNG.standard_normal((4, 6))},
    "batchnorm": {"x": RNG.standard_normal((8, 5)), "gamma": RNG.standard_normal(5),
                  "beta": RNG.standard_normal(5)},
    "layernorm": {"x": RNG.standard_normal((4, 7)), "gamma": np.ones(7),
                  "beta": RNG.standard_normal(7)},
    "groupnorm": {"X": RNG.standard_normal((4, 4, 6)), "gamma": np.ones(6), "beta": np.zeros(6)},
}
METHODS = ("central", "forward", "central4", "complex")


def _ones(name):
    return np.ones(np.shape(gradcli.compute(name, CASES[name]).output))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CASES)
def test_correct_backward_passes(name, method):
    r = gradcli.check(name, CASES[name], grad_output=_ones(name), method=method)
    assert r.passed, {n: x.reason or x.worst[:1] for n, x in r.results.items() if not x.passed}


@pytest.mark.parametrize("name", CASES)
def test_correct_backward_passes_in_float32(name):
    r = gradcli.check(name, CASES[name], grad_output=_ones(name), dtype="float32")
    assert r.passed


def _wrong(name):
    """A classic slip of each layer, as answers at an upstream gradient of ones."""
    t, g = CASES[name], _ones(name)
    right = gradcli.compute(name, t, grad_output=g).gradients
    if name == "softmax":  # the Jacobian's diagonal alone
        e = np.exp(t["x"] - t["x"].max(-1, keepdims=True))
        y = e / e.sum(-1, keepdims=True)
        return {"x": g * y * (1 - y)}
    if name == "groupnorm":  # off by 1e-4 of its terms (forward differences' atol is 1e-5)
        return {**right, "X": right["X"] + 1e-4}
    x = t["x"]
    axis = 0 if name == "batchnorm" else -1
    sigma = np.sqrt(x.var(axis=axis, keepdims=True) + 1e-5)
    return {**right, "x": g * t["gamma"] / sigma}  # the statistics taken as constants


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CASES)
def test_wrong_backward_fails(name, method):
    r = gradcli.check(name, CASES[name], grad_output=_ones(name), method=method,
                      grads=_wrong(name))
    assert not r.passed


def test_confident_softmax_diagonal_alone_still_not_passed():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 5))
    x[:, 1] += 38
    dy = rng.standard_normal((3, 5))
    e = np.exp(x - x.max(-1, keepdims=True))
    y = e / e.sum(-1, keepdims=True)
    r = gradcli.check("softmax", {"x": x}, grad_output=dy, grads={"x": dy * y * (1 - y)})
    assert not r.passed
