"""With --grads, the line "built-in dx matches / does not match" compares our own backward
with numerical values refined at smaller steps only where your answer failed, and only as far
as your answer needed: a layernorm at eps 1e-12 with a constant row (slopes about 1e6) read
"built-in dx does not match (5.65e-05)" beside an answer 1.5x off there, our dx being torch's
(outside test t57a F7). Where ours fails, the numerical values are confirmed for ours too."""

import dataclasses

import numpy as np

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
