"""``sum(G * maximum(X @ W + b, c))`` at quantized X and W with a zero padding row and
b = c = 0: six pre-activations equal c, and the zeros of X, W, b and c form one tie too large to
read every piece. A backward giving both z and c the full gradient at z == c (or neither)
passed, kept as "ties_unverified" (outside test t43a F5): no move of all the tied values, nor
of one tensor's, has one slope (X's and W's zeros cross the ties), but moving b and c together
does, ``maximum(z + t, c + t) = maximum(z, c) + t``: every valid gradient gives db[h] + dc[h] =
sum_n G[n, h] exactly. Moves of two tensors' tied values together are now read too.

Oracle: that identity (the tester's oracle_el.py reads the slope 1.18922 both ways); torch's
rule (half of G to each side of a tie) meets it, both and none miss it by sum_n G[n, h] at the
tied n."""

import numpy as np
import pytest

import gradcli

_X = np.array([[1.0, -1.0, -1.0, -0.5], [-1.0, 1.0, 1.0, 0.0], [-1.0, -1.0, -0.5, 0.0],
               [0.5, 0.0, -0.5, -1.0], [0.5, 0.5, -1.0, -1.0], [0.0, 0.0, 0.0, 0.0]])  # fmt: skip
_W = np.array([[0.0, 0.0, 0.5, 0.0, -1.0], [0.5, 0.5, 1.0, 0.5, -0.5],
               [-0.5, 0.5, 0.5, 0.5, 1.0], [-0.5, 1.0, -1.0, -1.0, 1.0]])  # fmt: skip
_G = np.array([[0.545, -0.505, -0.183, 0.541, 1.935], [-0.27, -0.244, 1.002, -0.886, -0.292],
               [0.883, 0.58, 0.092, 0.67, -2.828], [1.021, -0.96, -1.669, 0.276, 0.701],
               [-0.445, -1.076, 0.026, -0.053, 1.406],
               [0.747, 0.194, 1.112, -0.206, -0.926]])  # fmt: skip


def _forward(X, W, b, c):
    return float((_G * np.maximum(X @ W + b, c)).sum())


def _backward(rule):
    def backward(grad_output, X, W, b, c):
        z = X @ W + b
        share = {"torch": 0.5, "both": 1.0, "none": 0.0}[rule]
        mz = np.where(z == c, share, z > c)
        mc = np.where(z == c, share, c > z)
        dz = grad_output * _G * mz
        return {"X": dz @ W.T, "W": X.T @ dz, "b": dz.sum(0),
                "c": grad_output * (_G * mc).sum(0)}  # fmt: skip

    return backward


@pytest.mark.parametrize("rule", ["torch", "both", "none"])
def test_both_or_neither_side_of_maximum_fails_where_b_and_c_move_together(rule: str) -> None:
    r = gradcli.check(forward=_forward, backward=_backward(rule),
                      tensors={"X": _X, "W": _W, "b": np.zeros(5), "c": np.zeros(5)},
                      grad_output=1.0, budget=3.0)  # fmt: skip
    if rule == "torch":
        assert r.passed, str(r)
    else:
        assert not r.passed and not r.results["c"].passed, str(r)
