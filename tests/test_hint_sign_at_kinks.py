"""A sign flip whose every failing element sits at a kink is named as one: CS231n's zero bias
beside all-zero rows of x (padding) puts every b of relu(x W + b) at relu's kink, and db = -db
was told 'fails only at kinks ... outside the two one-sided slopes', sending the student to the
relu mask (outside test t72b F3). Each failing value, negated, lies between its sides, and no
other element is nonzero. The twin: relu'(0) = -1 elementwise negates the tied elements only,
and stays a kink's slope (tests/test_hints_t14.py); the right layer passes."""

import numpy as np

import gradcli

RNG = np.random.default_rng(3)
X = np.vstack([RNG.integers(-2, 3, (4, 5)), np.zeros((2, 5))]).astype(float)
T = {"x": X, "W": np.round(RNG.standard_normal((5, 6)), 1), "b": np.zeros(6)}


def _forward(x, W, b):  # noqa: N803
    return np.maximum(x @ W + b, 0)


def _backward(flip: bool):
    def backward(grad_output, x, W, b):  # noqa: N803
        d = grad_output * (x @ W + b > 0)
        return {"x": d @ W.T, "W": x.T @ d, "b": -d.sum(0) if flip else d.sum(0)}

    return backward


def test_a_sign_flip_at_kinks_is_named_a_sign_flip():
    assert np.all((X @ T["W"])[4:] == 0)  # every unit tied at the zero rows
    r = gradcli.check("custom", T, forward=_forward, backward=_backward(True))
    res = r.results["b"]
    assert not res.passed and [h.cause for h in res.hints] == ["sign"], res.hints
    assert r.results["x"].passed and r.results["W"].passed, str(r)


def test_twin_the_right_layer_passes():
    assert gradcli.check("custom", T, forward=_forward, backward=_backward(False)).passed
