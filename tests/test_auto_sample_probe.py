"""A sample that --budget chose reads two random directions over every coordinate too (outside
test t44b F1): tanh of 60,000 inputs, its backward 1.5x off at one element, passed the default
check on 64 sampled coordinates (exit 0), where a probe of the same budget saw it. Now the
sample's PASS is none where the probe disagrees. Twins: the right backward still passes as a
sample, and so does a relu of yours (a kink the probe may cross leaves the sample as it was).
Oracle: d tanh(x)/dx = 1 - tanh(x)^2."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

X = np.random.default_rng(0).standard_normal((200, 300))


def _tanh(x):
    return np.tanh(x)


def _tanh_back(grad_output, x):
    return {"x": grad_output * (1 - np.tanh(x) ** 2)}


def _one_off(grad_output, x):
    g = _tanh_back(grad_output, x)["x"].copy()
    g.flat[30007] *= 1.5
    return {"x": g}


def _relu(x):
    return 1.5 * np.maximum(x, 0)


def _relu_back(grad_output, x):
    return {"x": 1.5 * grad_output * (x > 0)}


def test_one_wrong_element_among_60000_fails_the_automatic_sample():
    r = gradcli.check(forward=_tanh, backward=_one_off, tensors={"x": X})
    assert r.results["x"].mode == "sample"
    assert not r.passed, r.verdict()
    assert any("random direction disagreed" in str(h) for h in r.results["x"].hints)


@pytest.mark.parametrize(("forward", "backward"), [(_tanh, _tanh_back), (_relu, _relu_back)])
def test_the_twins_right_backwards_pass_as_samples(forward, backward):
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": X})
    assert r.results["x"].mode == "sample" and r.passed, r.verdict()
