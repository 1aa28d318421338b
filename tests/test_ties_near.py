"""Near-ties of a built-in layer's own kinks (outside test t9, K4 and K7): values equal in exact
arithmetic but apart by round-off (1 ulp ... 1e-10), and margins the forward rounds to 0.

A coordinate whose kink lies closer than any step whose round-off the tolerance allows cannot
be checked on a clean side: it is checked like a tie (numeric/kinks.py), so the built-in
backward passes with every method, while the bugs the ties catch (every tied element, a
routing outside the window's maxima, a hinge counted on one side only) still fail. Oracles:
the built-in backward is the exact derivative at the point (it routes to the strict maximum,
counts the margins the forward found > 0); the wrong ones are written by hand."""

import numpy as np
import pytest

import gradcli
from gradcli.layers import REGISTRY

U = 2.0**-52  # one ulp of 1.0


# ---------------------------------------------------------------- svm: margins rounded to 0
def _svm_forward(x, y):
    """svm's forward in the built-in's own arithmetic: x - (x_y - 1)."""
    n = x.shape[0]
    m = x - (x[np.arange(n), y][:, None] - 1.0)
    m[np.arange(n), y] = 0
    return np.maximum(m, 0).sum() / n


def _svm_counting(ge_class, ge_true):
    """A backward whose class columns count margins >= 0 (``ge_class``) or > 0, and whose true
    class counts them the same way or not (``ge_true``)."""

    def backward(grad_output, x, y):
        n = x.shape[0]
        m = x - (x[np.arange(n), y][:, None] - 1.0)
        m[np.arange(n), y] = -1.0
        a, b = (m >= 0 if ge_class else m > 0), (m >= 0 if ge_true else m > 0)
        dx = a.astype(float)
        dx[np.arange(n), y] = -b.sum(axis=1)
        return {"x": grad_output * dx / n}

    return backward


@pytest.mark.parametrize("big", [1e17, 1e300])
def test_svm_at_scores_whose_margins_round_to_zero(big):
    """x - (x_y - 1) is exactly 0 at 1e17 (x - x_y + 1 would be 1): the kink map computes the
    margins as the forward does, so the scores are at the hinge's corner, and dx = 0 (the
    forward's, torch's) lies between the one-sided slopes."""
    x, y = np.full((1, 3), big), np.array([0])
    kinks = REGISTRY["svm"].kinks("x", {"x": x, "y": y}, None, np.zeros(x.shape))
    assert kinks.all()
    for method in ("central", "forward", "complex"):
        r = gradcli.check("svm", {"x": x, "y": y}, method=method)
        assert r.passed, (method, str(r))
        assert r.results["x"].kinks == 3
    # twins: a class counted but not the true class's push (or the reverse) fails
    for cls, true in ((True, False), (False, True)):
        r = gradcli.check("svm", {"x": x, "y": y}, forward=_svm_forward,
                          backward=_svm_counting(cls, true))  # fmt: skip
        assert not r.passed, (cls, true)
    r = gradcli.check("svm", {"x": x, "y": y}, forward=_svm_forward,
                      backward=_svm_counting(True, True))  # fmt: skip
    assert r.passed, str(r)  # every margin at 0 counted on both sides: a valid subgradient
