"""The activations' classic wrong backward passes are named by their cause, verified by
recomputation; the right ones get no hint."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

X = np.random.default_rng(0).standard_normal((4, 5))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _leaky(x):
    return np.where(x > 0, x, 0.01 * x)


BUGS = [  # (layer, forward, wrong backward, the cause named)
    ("relu", lambda x: np.maximum(x, 0), lambda g, x: g * (x < 0), "relu:mask-inverted"),
    ("relu", lambda x: np.maximum(x, 0), lambda g, x: g, "relu:no-mask"),
    ("relu", lambda x: np.maximum(x, 0), lambda g, x: g * (g > 0), "relu:mask-on-dy"),
    ("leaky_relu", _leaky, lambda g, x: g * (x > 0), "leaky_relu:no-slope"),
    ("sigmoid", _sigmoid, lambda g, x: g * x * (1 - x), "sigmoid:x-for-output"),
    ("tanh", np.tanh, lambda g, x: g * (1 - x**2), "tanh:x-for-output"),
    ("tanh", np.tanh, lambda g, x: g * (1 - np.tanh(x)), "tanh:not-squared"),
    ("softmax", _softmax, lambda g, x: g * _softmax(x) * (1 - _softmax(x)),
     "softmax:diagonal-only"),
    ("softmax", _softmax, lambda g, x: g * _softmax(x), "softmax:no-rowsum"),
]  # fmt: skip
RIGHT = [
    ("relu", lambda x: np.maximum(x, 0), lambda g, x: g * (x > 0)),
    ("sigmoid", _sigmoid, lambda g, x: g * _sigmoid(x) * (1 - _sigmoid(x))),
    ("tanh", np.tanh, lambda g, x: g * (1 - np.tanh(x) ** 2)),
    ("softmax", _softmax,
     lambda g, x: _softmax(x) * (g - (g * _softmax(x)).sum(-1, keepdims=True))),
]  # fmt: skip


def _check(layer, fwd, bwd):
    return gradcli.check(
        layer, {"x": X},
        forward=lambda x: fwd(x), backward=lambda grad_output, x: {"x": bwd(grad_output, x)},
    )  # fmt: skip


@pytest.mark.parametrize(("layer", "fwd", "bwd", "cause"), BUGS, ids=[b[3] for b in BUGS])
def test_a_classic_activation_bug_is_named(layer, fwd, bwd, cause):
    report = _check(layer, fwd, bwd)
    assert not report.passed
    hints = report.results["x"].hints
    assert [h.cause for h in hints] == [cause]
    assert all(h.verified for h in hints)


@pytest.mark.parametrize(("layer", "fwd", "bwd"), RIGHT, ids=[r[0] for r in RIGHT])
def test_the_right_backward_gets_no_hint(layer, fwd, bwd):
    report = _check(layer, fwd, bwd)
    assert report.passed and not report.results["x"].hints
