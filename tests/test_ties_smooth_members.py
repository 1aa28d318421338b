"""CS231n's two-layer net as one custom loss, with zero rows of X and zero b1 and b2 (outside
test t54a F5): the zero rows put every hidden unit of theirs at relu's kink, and b2's zeros
share that value, but the loss is smooth in b2 (softmax ignores the max it subtracts). The
group the ties' search read took b2 in (its moves' curvature reads as interaction), and b2's
three coordinates were reported 'at a kink', counted in the PASS line. A member that passed
alone and passes at the pieces' value is now left as it was.

Oracle: the loss is smooth in b2 (no kink to report); dX at a zero row is a relu kink, and a
wrong db2 still fails.

And the same net with dX from ``a > 0`` and db1 from ``a >= 0`` (outside test t54a F2) failed
dX, torch's own, with a hint that a tie's members must add up: the hint now says that a move
of X and b1 together holding every tie still gets another slope, the two tensors' rules
differing."""

import numpy as np

import gradcli


def _case(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((8, 4))
    X[[1, 5]] = 0.0
    return {"X": X, "W1": 0.5 * rng.standard_normal((4, 6)), "b1": np.zeros(6),
            "W2": 0.5 * rng.standard_normal((6, 3)), "b2": np.zeros(3),
            "y": np.array([0, 0, 2, 2, 2, 0, 2, 1])}  # fmt: skip


class _Net:
    """forward -> the mean softmax loss; backward: torch's rules (relu'(0) = 0), db2 scaled."""

    def __init__(self, db2_scale=1.0, db1_at_zero=0.0, at_zero=0.0):
        self.db2_scale, self.db1_at_zero, self.at_zero = db2_scale, db1_at_zero, at_zero

    def forward(self, X, W1, b1, W2, b2, y):
        return self._both(X, W1, b1, W2, b2, y)[0]

    def backward(self, grad_output, X, W1, b1, W2, b2, y):
        grads = self._both(X, W1, b1, W2, b2, y)[1]
        return {n: grad_output * g for n, g in grads.items()}

    def _both(self, X, W1, b1, W2, b2, y):
        a = X @ W1 + b1
        h = np.maximum(a, 0)
        s = h @ W2 + b2
        s = s - s.max(1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(1, keepdims=True)
        n = X.shape[0]
        ds = p.copy()
        ds[np.arange(n), y] -= 1
        ds /= n
        da = (ds @ W2.T) * np.where(a == 0, self.at_zero, a > 0)
        db1 = ((ds @ W2.T) * np.where(a == 0, self.db1_at_zero, a > 0)).sum(0)
        return -np.log(p[np.arange(n), y]).mean(), {
            "X": da @ W1.T, "W1": X.T @ da, "b1": db1, "W2": h.T @ ds,
            "b2": self.db2_scale * ds.sum(0)}  # fmt: skip


def test_a_smooth_bias_tied_in_value_with_kinks_is_no_kink():
    r = gradcli.check(_Net(), _case())
    assert r.passed, r.verdict()
    assert r.results["b2"].kinks == 0
    assert r.results["X"].kinks > 0  # the zero rows' relu kinks are still found


def test_twin_a_wrong_db2_still_fails():
    r = gradcli.check(_Net(1.5), _case())
    assert not r.passed
    assert not r.results["b2"].passed, r.verdict()


def test_masks_mixed_across_tensors_are_named_together():
    """(At most draws the mix fails as 'not verified': no piece read holds or refutes it; at
    this one a move holding the ties still shows it wrong, as at t54a's.)"""
    r = gradcli.check(_Net(db1_at_zero=1.0), _case(4))
    assert not r.passed
    hints = [h for res in r.results.values() for h in res.hints]
    rule = [h for h in hints if h.cause == "tie-rule"]
    assert rule, hints
    assert "dX and db1" in rule[0] or "db1 and dX" in rule[0], rule[0]


def test_twin_one_wrong_slope_for_every_tensor_is_no_rule_mismatch():
    """relu'(0) = 2 in every tensor: one rule (an invalid one), no move holding the ties still
    tells it; the slope outside the two sides does."""
    r = gradcli.check(_Net(db1_at_zero=2.0, at_zero=2.0), _case(4))
    assert not r.passed
    assert not any(h.cause == "tie-rule" for res in r.results.values() for h in res.hints)
