"""With --grads, the line "built-in dx matches / does not match" compares our own backward
with numerical values refined at smaller steps only where your answer failed, and only as far
as your answer needed: a layernorm at eps 1e-12 with a constant row (slopes about 1e6) read
"built-in dx does not match (5.65e-05)" beside an answer 1.5x off there, our dx being torch's
(outside test t57a F7). Where ours fails, the numerical values are confirmed for ours too."""

import dataclasses

import numpy as np
import pytest

import gradcli
from gradcli.layers import layernorm as module


def _tensors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8))
    x[1] = 0.5  # a constant row: its slopes are about 1 / sqrt(eps)
    return {"x": x, "gamma": rng.standard_normal(8), "beta": rng.standard_normal(8)}


def _answer(scale_row1=1.5):
    dx = gradcli.compute("layernorm", _tensors(), options={"eps": 1e-12}).gradients["x"].copy()
    dx[1] *= scale_row1
    return dx


def test_our_own_backward_matches_beside_an_answer_off_at_the_steep_row():
    r = gradcli.check("layernorm", _tensors(), options={"eps": 1e-12}, grads={"x": _answer()})
    assert not r.passed and not r.results["x"].passed
    assert r.check.builtin["x"].passed, r.check.builtin["x"]


def test_a_wrong_builtin_backward_still_does_not_match(monkeypatch):
    """The twin: our backward 1% off at one element of the steep row reads 'does not match'."""
    layer = module.LAYER
    backward = layer.backward

    def off(dout, cache):
        grads = dict(backward(dout, cache))
        grads["x"] = np.array(grads["x"], copy=True)
        grads["x"][1, 3] *= 1.01
        return grads

    monkeypatch.setattr(module, "LAYER", dataclasses.replace(layer, backward=off))
    r = gradcli.check("layernorm", _tensors(), options={"eps": 1e-12}, grads={"x": _answer()})
    assert not r.check.builtin["x"].passed, r.check.builtin["x"]


@pytest.mark.parametrize("layer", ["relu", "maxpool2d", "svm"])
def test_the_built_in_line_holds_ours_to_its_own_side_of_a_kink(layer):
    """Answers taking the other valid side of each kink (relu'(0) = 1, a window's last maximum,
    margins >= 0) pass, and the line on our own backward read 'built-in dx does not match (max
    rel error 1)': it was held to the readings taken for the answers (outside test t65b F3).
    The twin: one such answer off by 1e-3 fails, and ours still matches."""
    rng = np.random.default_rng(2)
    if layer == "relu":
        t, name = {"x": rng.integers(-2, 3, (4, 6)).astype(float)}, "x"
        g = rng.standard_normal((4, 6))
        right = g * (t["x"] >= 0)
    elif layer == "maxpool2d":
        t, name = {"X": rng.integers(0, 2, (4, 4, 1)).astype(float)}, "X"
        g = rng.standard_normal((2, 2, 1))
        right = np.zeros_like(t["X"])
        for i in range(2):
            for j in range(2):
                w = t["X"][2 * i:2 * i + 2, 2 * j:2 * j + 2, 0].ravel()
                k = 3 - int(np.argmax(w[::-1]))  # the last maximum
                right[2 * i + k // 2, 2 * j + k % 2, 0] = g[i, j, 0]
    else:
        x, y = rng.integers(0, 3, (6, 4)).astype(float), rng.integers(0, 4, 6)
        t, name, g = {"x": x, "y": y}, "x", None
        m = x - x[np.arange(6), y][:, None] + 1
        m[np.arange(6), y] = -1
        right = (m >= 0).astype(float)
        right[np.arange(6), y] = -(m >= 0).sum(axis=1)
        right /= 6
    ours = gradcli.compute(layer, t, grad_output=g).gradients[name]
    differ = np.flatnonzero((right != ours).ravel() & (right != 0).ravel())
    assert differ.size  # the answers take the other side somewhere
    r = gradcli.check(layer, t, grad_output=g, grads={name: right})
    assert r.passed and r.check.builtin[name].passed, (r.verdict(), r.check.builtin[name])
    wrong = right.copy()
    wrong.flat[differ[0]] *= 1.001
    r = gradcli.check(layer, t, grad_output=g, grads={name: wrong})
    assert not r.passed and r.check.builtin[name].passed, r.verdict()
