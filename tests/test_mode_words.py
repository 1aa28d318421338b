"""Outside test t12 (F9): a sampled or probed PASS says what it compared. "all 3 gradients
match" alone reads as every element's claim: a probe's direction sums every element, so one
element 1e-4 off in 32,768 passed, and the API's budget switched to a sample unseen. The probe's
note gives the size of one wrong element it would see; the oracle: an element off by half of
it passes the probe (a full check fails it), off by twice it fails the probe (then every
element is compared)."""

from __future__ import annotations

import re

import numpy as np

import gradcli

RNG = np.random.default_rng(0)
# dW of 4,096 elements: a direction's tolerance, 1e-9 of their sum, is coarser than the full
# check's 1e-7 + 1e-6 |n| at its largest element
T = {"x": RNG.normal(size=(4, 128)), "W": RNG.normal(size=(32, 128)), "b": RNG.normal(size=32)}
G = RNG.normal(size=(4, 32))


def _answers(off: float = 0.0) -> dict:
    """linear's gradients at the upstream G as answers (gradcli's linear stacks its copies:
    a full check of 4,096 elements is fast), dW[2, 3] off by ``off``."""
    dW = G.T @ T["x"]
    dW[2, 3] += off
    return {"grads": {"x": G @ T["W"], "W": dW, "b": G.sum(0)}, "grad_output": G}


def test_a_probe_says_what_it_compared_and_how_small_an_error_it_sees():
    report = gradcli.check("linear", T, mode="probe", **_answers())
    assert report.passed
    assert report.verdict().endswith("(probe mode: dx, dW, db along 2 random directions)")
    (note,) = [n for n in report.notes if n.startswith("probe: one wrong element")]
    sees = float(re.search(r"dW ([0-9.e+-]+)", note).group(1))
    unseen = gradcli.check("linear", T, mode="probe", **_answers(0.5 * sees))
    assert unseen.passed and unseen.results["W"].mode == "probe"
    assert not gradcli.check("linear", T, mode="full", **_answers(0.5 * sees)).passed
    seen = gradcli.check("linear", T, mode="probe", **_answers(2 * sees))  # then element-wise
    assert seen.results["W"].mode == "full" and not seen.passed
    assert any(n.startswith("probe of dW disagreed") for n in seen.notes), seen.notes


def test_no_probe_note_where_a_probe_sees_finer_than_a_full_check():
    """The twins: a full check says nothing of modes or probes, nor does a probe of a small
    tensor, whose tolerance is finer than a full check's."""
    small = {"x": T["x"][:2, :4], "W": T["W"][:3, :4], "b": T["b"][:3]}
    full = gradcli.check("linear", small)
    assert full.verdict() == "PASS  linear: all 3 gradients match the numerical ones"
    probed = gradcli.check("linear", small, mode="probe")
    assert probed.passed and not any(n.startswith("probe:") for n in probed.notes + full.notes)


def test_a_sample_the_budget_chose_says_how_many_coordinates_it_compared():
    small = {"x": T["x"][:4, :8], "W": T["W"][:6, :8], "b": T["b"][:6]}
    report = gradcli.check("linear", small, budget=1e-9, samples=5)
    assert report.passed and report.results["W"].mode == "sample"
    words = report.verdict()
    assert "(sample mode: " in words and "dx, dW, db at 15 of 86 coordinates)" in words, words


class _Scaled:  # y = tanh(x) w: two gradients
    def forward(self, x, w):
        return np.tanh(x) * w

    def backward(self, grad_output, x, w):
        return {"x": grad_output * w * (1 - np.tanh(x) ** 2), "w": grad_output * np.tanh(x)}


def test_two_gradients_are_both():
    """"all 2 gradients" read oddly (t62b F6): two are both, one is the gradient, three all 3."""
    x, w = np.linspace(-1, 1, 6), np.linspace(0.5, 2, 6)
    report = gradcli.check(_Scaled(), {"x": x, "w": w})
    assert report.verdict() == "PASS  custom: both gradients match the numerical ones"
