"""A small MLP as one custom loss on integers, two zero rows, zero biases (outside test t56a
F1): torch's backward 1e-3 off at dx[1, 0] (a zero row: every hidden unit of the row tied) or
at db1[2] passed in every mode. The moves that hold every tie still (x's zero rows by u, b1 by
-W1.T u) take it in, but among the terms such a move sums, most cancelling, a miss of 1e-4 of
their sum was taken for round-off; a judged move now holds the answer to a millionth of it,
beside the slope's own noise and slack.

Oracle: every valid gradient is one slope s in [0, 1] per tied unit shared by dx, dW1 and db1
(an LP puts the shifted answers 1e-3 off the nearest); torch's (s = 0), s = 1 and s = 0.3 pass."""

import numpy as np
import pytest
from tiny_mlp import relu_mlp

import gradcli


def _case(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(6, 5)).astype(float)
    x[1] = x[4] = 0.0
    return {"x": x, "W1": rng.integers(-1, 2, size=(5, 7)).astype(float), "b1": np.zeros(7),
            "W2": rng.integers(-1, 2, size=(7, 4)).astype(float), "b2": np.zeros(4),
            "y": rng.integers(0, 4, size=6)}  # fmt: skip


@pytest.mark.parametrize("at_zero", [0.0, 1.0, 0.3], ids=["torch", "one", "share"])
def test_valid_slopes_pass(at_zero):
    r = gradcli.check(relu_mlp(at_zero), _case(), grad_output=1.0, budget=5)
    assert r.passed, r.verdict()


@pytest.mark.parametrize("shift", [("x", (1, 0)), ("b1", (2,))], ids=["dx[1,0]", "db1[2]"])
def test_twin_a_1e_3_slip_at_a_fully_tied_coordinate_fails(shift):
    r = gradcli.check(relu_mlp(0.0, (*shift, 1e-3)), _case(), grad_output=1.0, budget=5)
    assert not r.passed, r.verdict()


def test_right_rules_pass_where_the_null_moves_read_4e_6_off():
    """The other side (outside test t57a F2): an integer MLP whose null-space and aligned moves
    read a right answer 4e-6 of their terms off; held there to a millionth, torch's rule failed
    dW1 and db1 (with a false tie-rule hint). Those moves keep the ten-thousandth."""
    d = np.load(__file__.rsplit("/", 1)[0] + "/fixtures/mlp_int_ties_t57a.npz")
    t = {"x": d["X"], "W1": d["W1"], "b1": d["b1"], "W2": d["W2"], "b2": d["b2"], "y": d["y"]}
    for at_zero in (0.0, 1.0):
        r = gradcli.check(relu_mlp(at_zero), t, grad_output=1.0)
        assert r.passed, r.verdict()
