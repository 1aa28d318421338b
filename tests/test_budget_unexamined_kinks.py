"""A relu of yours at many exact zeros, with a --budget too short to examine every kink.

The failing coordinates the budget left unexamined failed 'at ties of more than 4
interacting equal values' (outside test t38b F1): an elementwise relu's zeros do not
interact, and the cause was the budget. An automatic check now leaves them out as a sample
does (tests/test_budget_sampled_kinks.py); a failed probe's recheck, whose sample cannot pass,
still fails them, and its verdict names the budget. Twin: with the budget to examine them
all, the same layer passes.
"""

from __future__ import annotations

import numpy as np

import gradcli


class Relu:
    def forward(self, x):
        return np.maximum(x, 0)

    def backward(self, grad_output, x):
        return {"x": grad_output * (x > 0)}


def _x():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(16, 32))
    x[rng.random(x.shape) < 0.3] = 0.0
    return x


def test_an_automatic_check_passes_them_as_a_sample():
    r = gradcli.check(Relu(), {"x": _x()}, budget=0.5)
    assert r.passed and "sample mode" in r.verdict(), r.verdict()


def test_the_budget_is_named_as_the_cause():
    r = gradcli.check(Relu(), {"x": _x()}, budget=0.5, mode="probe")
    assert not r.passed
    assert "left unexamined for kinks" in r.verdict(), r.verdict()
    assert "interacting equal values" not in r.verdict()


def test_with_the_budget_to_examine_them_it_passes():
    assert gradcli.check(Relu(), {"x": _x()}, mode="full").passed
