"""relu(relu(x @ W1) @ W2) at a zero row of x, on integers (outside test t58a F2): kinks of the
two relus meet, bending both ways, and the coordinates' one-sided slopes bound no right value.
relu'(0) = 1 in both relus is a valid gradient there (within the convex hull of 742 piece
gradients sampled around the point, as torch's is), and failed 'does not match' with a ties
hint; it is not verified now, as a loss's own is (judging._bends_both_ways). The twins: torch's
rule passes, relu'(0) = 2 in the inner relu still fails as a mismatch."""

from pathlib import Path

import numpy as np

import gradcli

DATA = Path(__file__).parent / "fixtures" / "double_relu_t58a.npz"


def _check(inner, outer):
    t = dict(np.load(DATA))
    G = t.pop("G")

    def forward(x, W1, W2):
        return np.maximum(np.maximum(x @ W1, 0) @ W2, 0)

    def backward(grad_output, x, W1, W2):
        a = x @ W1
        h = np.maximum(a, 0)
        z = h @ W2
        dz = grad_output * np.where(z > 0, 1.0, np.where(z < 0, 0.0, outer))
        da = (dz @ W2.T) * np.where(a > 0, 1.0, np.where(a < 0, 0.0, inner))
        return {"x": da @ W1.T, "W1": x.T @ da, "W2": h.T @ dz}

    return gradcli.check("custom", t, grad_output=G, forward=forward, backward=backward)


def test_a_valid_rule_at_nested_kinks_is_not_verified_rather_than_wrong():
    r = _check(1.0, 1.0)
    assert not r.passed and "does not match" not in r.verdict(), str(r)
    assert "where kinks bending both ways meet" in r.verdict()
    assert all(res.passed or res.unresolved for res in r.results.values())


def test_torchs_rule_passes_and_a_slope_of_two_still_fails():
    assert _check(0.0, 0.0).passed
    r = _check(2.0, 0.0)
    assert not r.passed and "not match" in r.verdict(), str(r)
