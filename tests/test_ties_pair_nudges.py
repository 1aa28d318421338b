"""Two ties a pair's move crosses with jumps that cancel at the point (X[0, 1] against W1[2, 2]
of CS231n's net on integers, t57a's generator at seed 2) must be told apart at the nudged
points: with every other tied position nudged as far, the two sat on opposite sides at all
eight, and torch's backward failed at a slope no piece of its own gives. The points in the
pair's plane alone are read as well (numeric/balance.py _judge). And at seed 1, the value of a
tensor within its tolerance of a kink's side is no 'slope the forward has on neither side'."""

import numpy as np
import pytest
from tiny_mlp import relu_mlp

import gradcli


def _net(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (6, 4)).astype(float)
    W1 = rng.integers(-2, 3, (4, 8)).astype(float)
    b1 = rng.integers(-1, 2, (8,)).astype(float)
    W2, b2 = rng.normal(size=(8, 3)), rng.normal(size=3)
    return dict(x=x, W1=W1, b1=b1, W2=W2, b2=b2, y=rng.integers(0, 3, 6))


@pytest.mark.parametrize("at_zero", [0.0, 1.0])
def test_one_rule_everywhere_passes_where_a_pairs_ties_cancel(at_zero):
    r = gradcli.check(relu_mlp(at_zero), _net(2), grad_output=1.0)
    assert r.passed, str(r)


def test_a_rule_mixed_there_still_fails():
    r = gradcli.check(relu_mlp({"b1": 1.0}), _net(2), grad_output=1.0)
    assert not r.passed and not r.results["b1"].passed, str(r)


def test_a_tie_rule_mix_is_no_slope_off_both_sides():
    r = gradcli.check(relu_mlp({"b1": 1.0}), _net(1), grad_output=1.0)
    assert not r.passed
    for name in ("x", "b1"):
        if not r.results[name].passed:
            causes = [h.cause for h in r.results[name].hints]
            assert "kink-slope" not in causes and "tie-rule" in causes, (name, causes)
