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
NESTED = Path(__file__).parent / "fixtures" / "nested_relu_t59a.npz"


def _check(inner, outer, data=DATA, dW1_outer=None, shift=0.0):
    """relu'(0) = ``inner``, ``outer`` at the two relus; dW1's outer one ``dW1_outer`` where
    given; dx[0, 0] + ``shift`` at the upstream gradient G (linear in it)."""
    t = dict(np.load(data))
    G = t.pop("G")

    def forward(x, W1, W2):
        return np.maximum(np.maximum(x @ W1, 0) @ W2, 0)

    def backward(grad_output, x, W1, W2):
        a = x @ W1
        h = np.maximum(a, 0)
        z = h @ W2
        def da(slope):
            dz = grad_output * np.where(z > 0, 1.0, np.where(z < 0, 0.0, slope))
            return dz, (dz @ W2.T) * np.where(a > 0, 1.0, np.where(a < 0, 0.0, inner))

        dz, d = da(outer)
        dx = d @ W1.T
        dx[0, 0] += shift * float((grad_output * G).sum() / (G * G).sum())  # linear in it
        dW1 = x.T @ (d if dW1_outer is None else da(dW1_outer)[1])
        return {"x": dx, "W1": dW1, "W2": h.T @ dz}

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


def test_ties_no_piece_read_explains_are_no_pass():
    """A tie the directions read neither holds as a mix nor contradicts ("ties_unverified")
    passed with exit 0: a dW1 taking relu'(0) = -1 at the outer relu, 2.69 off every valid
    gradient (outside test t59a F1), and torch's dx 1e-3 off at a zero row (t58a F1). Not
    verified now; torch's rule on the same data passes (the twin)."""
    wrong = _check(1.0, 0.0, NESTED, dW1_outer=-1.0)
    assert not wrong.passed and not wrong.results["W1"].passed, str(wrong)
    shifted = _check(0.0, 0.0, shift=1e-3)
    assert not shifted.passed and not shifted.results["x"].passed, str(shifted)
    assert _check(0.0, 0.0, NESTED).passed and _check(1.0, 0.0, NESTED).passed
