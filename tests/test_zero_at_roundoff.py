"""A gradient that is 0 in theory and carries round-off on both sides, where the model of the
differences' round-off (each output rounded on its own) is far above what they read: identical
weight rows round every output alike, and a centred upstream gradient cancels it (t18 R-F8).
Measured at every such coordinate, the differences resolve it; wrong answers still fail."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def _symmetric(seed: int, rows_apart: float = 0.0):
    rng = np.random.default_rng(seed)
    x = np.abs(rng.standard_normal((2, 64)))  # a relu's output
    W = np.ones((10, 64)) + rows_apart * rng.standard_normal((10, 64))
    g = rng.standard_normal((2, 10))
    g -= g.mean(axis=1, keepdims=True)  # what an svm or softmax hands a symmetric layer
    return {"x": x, "W": W, "b": np.zeros(10)}, g


def _answers(t, g):
    return {"x": g @ t["W"], "W": g.T @ t["x"], "b": g.sum(0)}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("method", ["central", "forward", "central4"])
def test_correct_symmetric_linear_passes(seed, method):
    t, g = _symmetric(seed)
    r = gradcli.check("linear", t, grad_output=g, method=method)
    assert r.passed, {n: x.reason for n, x in r.results.items()}


@pytest.mark.parametrize("seed", range(3))
def test_zero_answer_passes_and_a_small_one_fails(seed):
    t, g = _symmetric(seed)
    a = _answers(t, g)
    assert gradcli.check("linear", t, grad_output=g, grads={**a, "x": np.zeros((2, 64))}).passed
    # 1e-6 is above the atol of a gradient of this layer's size (its terms, about 1): not 0
    r = gradcli.check("linear", t, grad_output=g, grads={**a, "x": np.full((2, 64), 1e-6)})
    assert not r.passed


@pytest.mark.parametrize("seed", range(3))
def test_rows_apart_the_zero_answer_fails(seed):
    # the same layout with rows 1e-6 apart: dx is about 1e-6, and 0 is wrong
    t, g = _symmetric(seed, rows_apart=1e-6)
    a = _answers(t, g)
    r = gradcli.check("linear", t, grad_output=g, grads={**a, "x": np.zeros((2, 64))})
    assert not r.passed
