"""Outputs a step leaves where they are: their share of the gradient is lost in their rounding.

An output moved by less than its last bit reads exactly 0 there. Where the gradient is smaller
than the share such outputs may hide, the differences read something else, and the step cannot
resolve it, whatever the answer.

- softmax([0, 40]) under [1, 2]: y1 = 1 - 4e-18 rounds to 1, so the differences read y0's move
  alone, the exact negation of dx. The negated answer passed and the right one failed (outside
  test t36a F2).
- attention at X = 6 N(0, 1): every softmax row saturated, dW_Q of 2.5e-10 is the share of A's
  rows that the step of W_Q leaves at 1. The incremental path reads whole losses, and the
  outputs it moved were reread one by one, never the ones it did not: a negated, zeroed or 10%
  slip of dW_Q passed under central and forward differences. It is 'cannot resolve' at the
  real steps (tolerances._unmoved: the declared footprint's outputs that did not move), and
  read again by the complex step, which subtracts nothing (checking/complex_recheck.py): the
  right answers pass there, the slips stay unresolved; at a step the user gives, 'cannot
  resolve'.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

SLIPS = {"negated": -1.0, "zeroed": 0.0, "10%": 1.1}


def _saturated_attention():
    rng = np.random.default_rng(0)
    t = {"X": 6 * rng.normal(size=(5, 6)), "W_Q": rng.normal(size=(6, 4)),
         "W_K": rng.normal(size=(6, 4)), "W_V": rng.normal(size=(6, 4))}  # fmt: skip
    g = rng.normal(size=(5, 4))
    right = gradcli.check("attention", t, grad_output=g, method="complex")
    assert right.passed, right.verdict()
    return t, g, right.computation.gradients


@pytest.mark.parametrize("slip", [*SLIPS, "none"])
@pytest.mark.parametrize("method", ["central", "forward", "central4"])
def test_a_saturated_attentions_dw_q_is_never_passed_under_real_steps(method, slip):
    t, g, right = _saturated_attention()
    answer = {**right, "W_Q": SLIPS.get(slip, 1.0) * right["W_Q"]}
    report = gradcli.check("attention", t, grad_output=g, grads=answer, method=method)
    result = report.results["W_Q"]
    # unresolved under the real steps, read again by the complex step (checking/
    # complex_recheck.py), which passes the right answer; the slips stay unresolved
    if slip == "none":
        assert result.passed and result.method == "complex", report.verdict()
    else:
        assert not result.passed and result.unresolved, report.verdict()
    assert report.results["W_V"].passed
    report = gradcli.check("attention", t, grad_output=g, grads=answer, method=method,
                           eps={"central": 6.06e-6, "forward": 1.5e-8, "central4": 7e-4}[method])
    # a step given is kept: there the real steps alone cannot resolve it either way
    assert not report.results["W_Q"].passed and report.results["W_Q"].unresolved


@pytest.mark.parametrize("slip", list(SLIPS))
def test_the_twin_the_complex_step_reads_it(slip):
    t, g, right = _saturated_attention()
    answer = {**right, "W_Q": SLIPS[slip] * right["W_Q"]}
    report = gradcli.check("attention", t, grad_output=g, grads=answer, method="complex")
    result = report.results["W_Q"]
    assert not result.passed and not result.unresolved, report.verdict()


CONFIDENT = np.array([[0.0, 40.0]])
UPSTREAM = np.array([[1.0, 2.0]])
# dx_i = y_i (g_i - sum_j g_j y_j): -y0 y1 and +y0 y1, y0 = e^-40 / (1 + e^-40)
TRUE_DX = np.array([[-1.0, 1.0]]) * np.exp(-40.0) / (1 + np.exp(-40.0)) ** 2


@pytest.mark.parametrize("method", ["central", "forward", "backward", "central4"])
def test_a_confident_softmax_under_unequal_upstream_is_never_passed_negated(method):
    for answer in (-TRUE_DX, TRUE_DX):
        report = gradcli.check("softmax", {"x": CONFIDENT}, grad_output=UPSTREAM,
                               grads={"x": answer}, method=method)  # fmt: skip
        # read again by the complex step (checking/complex_recheck.py): the truth passes
        assert report.passed == (answer is TRUE_DX), report.verdict()


def test_the_twin_the_complex_step_passes_the_truth_and_fails_its_negation():
    right = gradcli.check("softmax", {"x": CONFIDENT}, grad_output=UPSTREAM,
                          grads={"x": TRUE_DX}, method="complex")  # fmt: skip
    assert right.passed, right.verdict()
    wrong = gradcli.check("softmax", {"x": CONFIDENT}, grad_output=UPSTREAM,
                          grads={"x": -TRUE_DX}, method="complex")  # fmt: skip
    assert not wrong.passed and not wrong.results["x"].unresolved, wrong.verdict()
