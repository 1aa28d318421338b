"""The worst element of a tensor failing both at kinks and away from them: at a kink the
numerical value is one side's slope, or the piece nearest the answer, so the summary, the worst
table and the reading speak of the failures away from it (outside test t66b F2: an svm answer
1.0001 times the right one read 'worst dx[n=2, c=3]: yours 0, numeric 3.33e-05', 'wrong', at a
tie whose group's 1e-4 was moved onto a partner that was right). Oracle: CS231n's svm gradient
(margins > 0) by hand; the margins of 0 at these integer scores are ties."""

import numpy as np

import gradcli

X = np.array([[1.0, 0.0, 2.0, 1.0], [3.0, 2.0, 3.0, 0.0], [0.0, 0.0, 0.0, -1.0]])
Y = np.array([0, 2, 1])


def _dx(x, y):
    n = len(y)
    m = x - x[np.arange(n), y][:, None] + 1.0
    m[np.arange(n), y] = 0.0
    dx = (m > 0).astype(float)
    dx[np.arange(n), y] = -dx.sum(axis=1)
    return dx / n, m


def test_a_scaled_answer_is_worst_away_from_the_ties_and_slightly_off():
    dx, m = _dx(X, Y)
    assert np.any(m == 0), "no tie"
    r = gradcli.check("svm", {"x": X, "y": Y}, grads={"x": 1.0001 * dx})
    x = r.results["x"]
    assert not r.passed
    assert m[tuple(x.worst_index)] != 0, x.worst_index  # not at a tie
    assert x.band == "slightly off", x.band
    assert abs(x.analytic / x.numeric - 1.0001) < 1e-9


def test_twin_an_answer_wrong_only_at_a_tie_is_worst_there():
    """Away from the ties the answer is right: the failure at a tie is the one to show."""
    dx, m = _dx(X, Y)
    tie = tuple(np.argwhere((m == 0) & (np.arange(4) != Y[:, None]))[0])
    wrong = dx.copy()
    wrong[tie] = 2.0  # no slope of the hinge (0 or 1/3 there)
    r = gradcli.check("svm", {"x": X, "y": Y}, grads={"x": wrong})
    assert not r.passed
    assert tuple(r.results["x"].worst_index) == tie, r.results["x"].worst_index
    assert r.results["x"].band == "wrong"


def test_a_tie_far_outside_its_slopes_stays_worst_beside_small_errors_elsewhere():
    """relu's dx 1.0001 times the right one away from the ties and 5 dy at them, outside both
    one-sided slopes [0, dy]: the ties' errors, thousands of times the others', read 'slightly
    off' with no tie in the table (outside test t69b F1). Oracle: relu's derivative by hand."""
    rng = np.random.default_rng(0)
    x = np.round(rng.standard_normal((4, 10)), 1)
    x[rng.random(x.shape) < 0.3] = 0.0
    g = rng.standard_normal(x.shape)
    dx = np.where(x > 0, 1.0001 * g, np.where(x == 0, 5 * g, 0.0))
    r = gradcli.check("relu", {"x": x}, grad_output=g, grads={"x": dx})
    res = r.results["x"]
    assert not r.passed
    assert x[tuple(res.worst_index)] == 0, res.worst_index  # a tie
    assert res.band == "wrong", res.band
