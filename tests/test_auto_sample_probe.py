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


def _pool(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _pool_back(grad_output, x):
    n, h, w, c = x.shape
    xr = (x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4)
          .reshape(n, h // 2, w // 2, c, 4))  # fmt: skip
    d = np.zeros_like(xr)
    np.put_along_axis(d, xr.argmax(-1)[..., None], grad_output[..., None], -1)
    return {"x": d.reshape(n, h // 2, w // 2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
            .reshape(n, h, w, c)}  # fmt: skip


def test_a_right_max_pool_of_many_windows_passes_as_a_sample():
    x = np.random.default_rng(0).standard_normal((16, 32, 32, 8))
    r = gradcli.check(forward=_pool, backward=_pool_back, tensors={"x": x}, budget=2.0, seed=0)
    assert r.results["x"].mode == "sample" and r.passed, r.verdict()


def test_a_right_float32_forward_passes_as_a_sample():
    """A forward computing in float32 (a student's accidental cast) has a probe's round-off far
    above float64's: its right backward failed the automatic sample's probe at every seed
    (outside test t45a F6); the probe is not taken for it."""
    rng = np.random.default_rng(0)
    x, W = rng.standard_normal((200, 300)), rng.standard_normal((300, 20)) * 0.1

    def forward(x, W):
        return np.tanh(x.astype(np.float32) @ W.astype(np.float32)).astype(np.float64)

    def backward(grad_output, x, W):
        d = grad_output * (1 - np.tanh(x @ W) ** 2)
        return {"x": d @ W.T, "W": x.T @ d}

    r = gradcli.check(forward=forward, backward=backward, tensors={"x": x, "W": W}, budget=2.0,
                      seed=0)  # fmt: skip
    assert r.passed, r.verdict()
