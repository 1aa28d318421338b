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


def test_twin_an_answer_wrong_beyond_its_dtype_is_not_told_only_of_the_dtype():
    """2x the right gradient saved as float16 was told only of float16's rounding (outside
    test t57a F4): the dtype is said only where it explains every failing element."""
    grads, g = _answers()
    grads = {n: (2 * a).astype(np.float16) for n, a in grads.items()}
    r = gradcli.check("linear", T, grads=grads, grad_output=g)
    assert not r.passed
    assert not any(h.cause == "answer-dtype" for res in r.results.values() for h in res.hints)
    ints = {n: np.zeros(a.shape, dtype=np.int64) for n, a in _answers()[0].items()}
    r = gradcli.check("linear", T, grads=ints, grad_output=g)
    assert not any(h.cause == "answer-dtype" for res in r.results.values() for h in res.hints)
