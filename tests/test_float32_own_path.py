"""A float32 path of the user's own is not its own round-off (outside test t21 F2): a tanh
whose backward is 3% off only in float32 passed, its float32-against-float64 difference taken
as round-off (an atol of 12%). --impl of a built-in: capped at the built-in's own round-off;
a custom layer: a typical element moved by more than 1e-3 of itself is not round-off. Twins:
correct float32 code passes, an ill-conditioned few entries (a confident classifier) too."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

X = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)


def _tanh(factor):
    def forward(x):
        return np.tanh(x)

    def backward(grad_output, x):
        d = grad_output * (1 - np.tanh(x) ** 2)
        if x.dtype == np.float32:
            d = d * np.float32(factor)
        return {"x": d}

    return forward, backward


@pytest.mark.parametrize(("factor", "passed"), [(1.03, False), (1.0, True)])
def test_custom_float32_path(factor, passed):
    forward, backward = _tanh(factor)
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": X}, dtype="float32")
    assert r.passed is passed
    assert any("float32 path of its own" in n for n in r.check.notes) is not passed


@pytest.mark.parametrize(("factor", "passed"), [(1.03, False), (1.0, True)])
def test_impl_of_a_builtin_float32_path(factor, passed):
    forward, backward = _tanh(factor)
    r = gradcli.check("tanh", {"x": X}, forward=forward, backward=backward, dtype="float32")
    # the gradient's own row, not only the comparison with the built-in backward
    assert r.results["x"].passed is passed


def test_custom_confident_classifier_in_float32_passes():
    """p - 1 at the labels rounds to 1% in float32: a few entries, not the typical one."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 4))
    y = rng.integers(0, 4, 8)
    x[np.arange(8), y] += 15

    def forward(x, y):
        m = x.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
        return np.mean(lse - x[np.arange(len(y)), y])

    def backward(grad_output, x, y):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        return {"x": grad_output * p / len(y)}

    r = gradcli.check(forward=forward, backward=backward,
                      tensors={"x": x.astype(np.float32), "y": y}, dtype="float32")
    assert r.passed, r.results["x"]
