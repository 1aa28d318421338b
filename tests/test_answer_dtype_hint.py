"""An answer file holding the right dx as float16 failed 'suspicious' with no word of its
dtype, an integer one as silently (outside test t55a F7): a failing answer given in a dtype too
coarse for a gradient says so first. Twin: the same answer in float64 passes, and a float16
answer that is wrong beyond its rounding still fails, with the dtype said beside."""

import numpy as np

import gradcli

T = {"x": np.random.default_rng(0).standard_normal((4, 6)),
     "W": np.random.default_rng(1).standard_normal((5, 6)), "b": np.zeros(5)}  # fmt: skip


def _answers():
    comp = gradcli.compute("linear", T)
    return {n: np.array(g) for n, g in comp.gradients.items()}, comp.grad_output


def test_a_float16_answer_says_its_dtype():
    grads, g = _answers()
    assert gradcli.check("linear", T, grads=grads, grad_output=g).passed
    grads["x"] = grads["x"].astype(np.float16)
    r = gradcli.check("linear", T, grads=grads, grad_output=g)
    assert not r.passed
    hints = r.results["x"].hints
    assert hints[0].cause == "answer-dtype" and "given as float16" in hints[0], hints
    assert r.results["W"].passed and not r.results["W"].hints


def test_an_integer_answer_says_its_fractions_are_lost():
    grads, g = _answers()
    grads["W"] = grads["W"].astype(np.int64)
    r = gradcli.check("linear", T, grads=grads, grad_output=g)
    assert not r.passed and "given as int64: its fractions are lost" in r.results["W"].hints[0]
