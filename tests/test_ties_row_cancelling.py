"""A whole MLP as one custom loss on integers (outside test t55b F2): linear -> relu -> linear
-> softmax cross-entropy, x in {-2..2}, W1 and W2 in {-1, 0, 1}, b1 = 0. Row 2's units 0, 1, 2
and 4 are tied at 0. Moving x[2, 0] against W1[0, 1] holds unit 0 still while units 1, 2 move
up and unit 4 down, and their parts cancel at the point with these integer weights: the loss
reads one slope along the move at every point of its plane, yet torch's piece (every tied unit
off, entered by lowering b1) gives it another. numeric/balance.py took the move to pin the
slope down and failed torch's backward (dx[2, 2]: analytic 0, numeric 0.0556), and at another
draw paired two ties of one output weighted 1 and -1723 (their jumps cancelling), failing
dW1[0, 0] with the other one-sided slope. The nudged points now move every tied position, and
a pair's nudges must resolve its own jumps.

Oracle: torch's rule (a > 0) and the a >= 0 rule are each one slope per unit shared by every
tensor, a valid gradient; the mixed one (dx from a > 0, dW1 and db1 from a >= 0) fails."""

import numpy as np
import pytest

import gradcli

X = [[1, 2, 2, 0], [2, 2, 2, -2], [0, 1, -1, -1], [1, 2, 0, -2], [1, 2, -1, 0], [-1, 2, -2, 0]]
W1 = [[1, 0, -1, 1], [1, 1, 1, 0], [1, 1, 0, 1], [0, -1, 0, 0], [-1, 1, 0, 1]]
W2 = [[-1, 0, -1, -1, 0], [0, 0, 0, 1, 0], [0, 1, 1, 0, -1]]


def _case():
    return {"x": np.array(X, float), "W1": np.array(W1, float), "b1": np.zeros(5),
            "W2": np.array(W2, float), "y": np.array([0, 0, 1, 1, 1, 2])}  # fmt: skip


class _Mlp:
    def __init__(self, dx_rule, rule):
        self.dx_rule, self.rule = dx_rule, rule

    def forward(self, x, W1, b1, W2, y):
        return self._both(x, W1, b1, W2, y)[0]

    def backward(self, grad_output, x, W1, b1, W2, y):
        return {n: grad_output * g for n, g in self._both(x, W1, b1, W2, y)[1].items()}

    def _both(self, x, W1, b1, W2, y):
        a = x @ W1.T + b1
        r = np.maximum(a, 0)
        z = r @ W2.T
        m = z.max(1, keepdims=True)
        lse = m + np.log(np.exp(z - m).sum(1, keepdims=True))
        n = x.shape[0]
        P = np.exp(z - lse)
        P[np.arange(n), y] -= 1
        dz = P / n
        dr = dz @ W2
        da, dax = dr * self.rule(a), dr * self.dx_rule(a)
        return (lse[:, 0] - z[np.arange(n), y]).mean(), {
            "x": dax @ W1, "W1": da.T @ x, "b1": da.sum(0), "W2": dz.T @ r}


def _gt(a):
    return a > 0


def _ge(a):
    return a >= 0


@pytest.mark.parametrize("rule", [_gt, _ge], ids=["torch", "a>=0"])
def test_one_rule_for_every_tensor_passes(rule):
    r = gradcli.check(_Mlp(rule, rule), _case())
    assert r.passed, r.verdict()


def test_twin_rules_mixed_across_tensors_fail():
    r = gradcli.check(_Mlp(_gt, _ge), _case())
    assert not r.passed


def test_two_ties_of_one_output_are_no_pair():
    """Another draw: x[1, 0] (two units of row 1 tied) and W1[0, 0] (unit 0 of row 5) share
    only the loss; weighted 1 and -1723 their jumps cancel, and the slack of the nudged points
    (1723 times W1's slope) hid their pieces' differences: torch's dW1[0, 0], the right-hand
    slope, was compared with the left-hand one and failed. dW1 is no mismatch now (dx's tie
    there is still left not verified: no piece read)."""
    t = {"x": np.array([[1, 2, -2, 2], [0, 0, 1, -1], [2, -2, -1, -1], [0, 0, -2, -2],
                        [-2, -2, -2, 2], [-2, 1, 1, -1]], float),
         "W1": np.array([[-1, 0, -1, 1], [-1, 1, 1, 1], [-1, 0, 0, 0], [0, 1, 0, -1],
                         [1, 0, 1, -1]], float), "b1": np.zeros(5),
         "W2": np.array([[0, 1, -1, -1, 0], [1, -1, 1, 0, -1], [0, 1, 1, 1, -1]], float),
         "y": np.array([0, 2, 2, 2, 0, 0])}  # fmt: skip
    r = gradcli.check(_Mlp(_gt, _gt), t)
    assert r.results["W1"].passed and r.results["W2"].passed, r.verdict()
    assert all(res.passed or res.band == "not verified" for res in r.results.values())
