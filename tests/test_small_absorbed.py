"""Elements far below the atol whose differences no step reads (outside test t44b F3, F5).

Elements smaller than the atol are held to their own round-off where the step reads them far
more finely (tests/test_below_atol.py). Two kinds of forward hide such an element from every
step, and right backwards failed there:
- a textbook softmax over logits 10 N(0, 1): a logit whose exponential is 1e-19 of its row's
  sum never moves the sum, so every difference reads y_i g_i and misses -y_i sum(g y);
- gelu as ``init gelu --impl`` writes it: ``1 + tanh(u)`` at x = -7 is one ulp of 1, frozen at
  every step (each difference read 1.1e-16 where the slope is -1e-14), and at x = -6 it rounds
  in a staircase aligned with the powers of two the steps were (three steps read the same
  slope, 1.2e-3 off). Steps off that grid scatter there; the frozen elements are read again
  from our own gelu's backward, where yours implements it (written as your own custom layer,
  with no built-in to ask, such elements still fail: README, "Left open").

Oracles: the formulas evaluated in extended precision (np.longdouble) and gradcli's built-in
gelu (which does not cancel there). Twins: the same layers with a real bug still fail."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcli

C = math.sqrt(2 / math.pi)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _softmax_back(grad_output, x):
    y = _softmax(x)
    return {"x": y * (grad_output - (grad_output * y).sum(-1, keepdims=True))}


def _softmax_no_sum(grad_output, x):  # the twin: the normalizer's term forgotten
    return {"x": _softmax(x) * grad_output}


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(C * (x + 0.044715 * x**3)))


def _gelu_back(grad_output, x):
    t = np.tanh(C * (x + 0.044715 * x**3))
    slope = 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * C * (1 + 3 * 0.044715 * x**2)
    return {"x": grad_output * slope}


def _gelu_no_cube(grad_output, x):  # the twin: d/dx of the cubic term forgotten
    t = np.tanh(C * (x + 0.044715 * x**3))
    return {"x": grad_output * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * C)}


def test_the_premise_the_right_answers_are_right_to_their_last_bits():
    x = np.random.default_rng(0).standard_normal((16, 32)) * 10
    g = np.random.default_rng(1).standard_normal((16, 32))
    xl, gl = x.astype(np.longdouble), g.astype(np.longdouble)
    e = np.exp(xl - xl.max(-1, keepdims=True))
    y = e / e.sum(-1, keepdims=True)
    exact = y * (gl - (gl * y).sum(-1, keepdims=True))
    assert np.allclose(_softmax_back(g, x)["x"], exact.astype(np.float64), rtol=1e-12, atol=0)


@pytest.mark.parametrize("scale", [5.0, 10.0])
def test_a_textbook_softmax_over_wide_logits_passes(scale):
    x = np.random.default_rng(0).standard_normal((16, 32)) * scale
    r = gradcli.check(forward=_softmax, backward=_softmax_back, tensors={"x": x})
    assert r.passed, r.verdict()
    wrong = gradcli.check(forward=_softmax, backward=_softmax_no_sum, tensors={"x": x})
    assert not wrong.passed and not wrong.results["x"].unresolved, wrong.verdict()


def test_the_skeleton_gelu_passes_at_pre_activations_of_scale_2():
    x = np.random.default_rng(0).standard_normal((64, 128)) * 2
    assert x.min() < -7  # (frozen there) and above -6.4 too (a staircase)
    r = gradcli.check("gelu", {"x": x}, forward=_gelu, backward=_gelu_back)
    assert r.passed, r.verdict()
    wrong = gradcli.check("gelu", {"x": x}, forward=_gelu, backward=_gelu_no_cube)
    assert not wrong.passed and not wrong.results["x"].unresolved, wrong.verdict()


def test_our_gelu_does_not_cancel_where_the_skeleton_s_forward_does():
    """The second reading the check takes for yours: ours at x = -6.8, against the formula in
    extended precision."""
    from gradcli.layers import REGISTRY

    gelu = REGISTRY["gelu"]
    x = np.array([-7.074047428347668, -6.81417835, -6.42059759])
    _, cache = gelu.forward({"x": x}, gelu.options())
    ours = gelu.backward(np.ones(3), cache)["x"]
    xl = x.astype(np.longdouble)
    t = np.tanh(np.longdouble(C) * (xl + np.longdouble(0.044715) * xl**3))
    exact = 0.5 * (1 + t) + 0.5 * xl * (1 - t**2) * np.longdouble(C) * (
        1 + 3 * np.longdouble(0.044715) * xl**2)  # fmt: skip
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        pytest.skip("no extended precision here")
    # (longdouble cancels too, at 1e-4 of these: its 64 bits against the 1 of 1 + t)
    assert np.allclose(ours, exact.astype(np.float64), rtol=1e-3, atol=0)


def test_the_twin_a_sign_flipped_small_element_beside_a_huge_one_fails():
    """exp's dx of 4e-8 sign-flipped beside one of 4.9e8 (exp(20)): the element's own output is
    read exactly, and it must fail (outside test t45a F1, against a rule since dropped that
    excused errors within 64 ulps of the tensor's largest gradient)."""
    x = np.array([[-17.0, 0.5, 1.0, 2.0], [3.0, -1.0, 0.2, 20.0]])

    def backward(grad_output, x):
        d = grad_output * np.exp(x)
        return {"x": np.where(x < -10, -d, d)}

    r = gradcli.check(forward=np.exp, backward=backward, tensors={"x": x},
                      grad_output=np.ones((2, 4)))  # fmt: skip
    assert not r.passed and r.results["x"].worst_index == (0, 0), r.verdict()
