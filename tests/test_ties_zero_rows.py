"""Zero rows of x fed to ``relu(x @ W1 + b) @ V`` with ``b`` at CS231n's zero start: every unit
of those rows sits at relu's kink, 60 of them a row, and one ``x[0, i]`` turns on the units
with ``W1[i, k] > 0`` one way and those with ``W1[i, k] < 0`` the other.

torch's backward (relu'(0) = 0: dx of a zero row is 0) failed 'does not match' (dx[0, 59]:
analytic 0, numeric 0.0073) at weights of 0.05: the nudged lines that bound what the pieces
may give (numeric/nudged.py) ended about twenty nudges short of the units' kinks, each at
``|nudge of x @ W1 + b| / |W1[i, k]|``, so the range read missed every unit off. Lines whose
two opposite nudges end in different slopes are now read again, longer. The crowds' directions
(numeric/crowds.py) crossed a kink of another row (|a| = 1.4e-3 at a move of 1.9e-3) and
entered no piece; one whose speeds span far is read again closer.

Oracle: for one x[0, i] the values right rules give are sum_k s_k c[0, k] W1[i, k] for s_k in
[0, 1] (c = g V^T), 0 among them (torch's, every s_k = 0); relu'(0) = -1 gives s_k outside
[0, 1] and fails."""

from functools import cache

import numpy as np

import gradcli


def _case():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 60))
    x[:2] = 0.0
    return {"x": x, "W1": 0.05 * rng.standard_normal((60, 60)), "b": np.zeros(60),
            "V": 0.1 * rng.standard_normal((60, 3))}  # fmt: skip


def _forward(x, W1, b, V):
    return np.maximum(x @ W1 + b, 0) @ V


def _backward(at_zero):
    def backward(grad_output, x, W1, b, V):
        a = x @ W1 + b
        d = (grad_output @ V.T) * np.where(a == 0, at_zero, a > 0)
        return {"x": d @ W1.T, "W1": x.T @ d, "b": d.sum(0), "V": np.maximum(a, 0).T @ grad_output}

    return backward


@cache
def _torchs():
    """torch's rule (relu'(0) = 0, ``a > 0`` in every tensor) checked once, for the two tests
    that need it passing here."""
    return gradcli.check("custom", _case(), forward=_forward, backward=_backward(0.0))


def test_torchs_relu_passes_at_zero_rows_beside_a_zero_bias():
    r = _torchs()
    assert r.passed, r.verdict()


def test_twin_a_slope_outside_the_pieces_cannot_pass_where_the_budget_cuts_its_crowd():
    """relu'(0) = -1: at ``--budget 5`` the crowd's pieces read neither hold nor contradict it,
    and the moves that bound every right value (numeric/crowds.py ``_boxed``) were cut to
    their sum, within which it lies: 'not verified, your values kept', a PASS (it was 'not
    verified' before only because no direction entered a piece). A crowd the budget cut
    short cannot pass now; at the default budget it fails as a mismatch."""
    r = gradcli.check("custom", _case(), forward=_forward, backward=_backward(-1.0), budget=5)
    assert not r.passed
    assert "dx is not verified" in r.verdict(), r.verdict()
    assert any("cut short" in n or "ran out before the moves" in n for n in r.notes), r.notes
    # its reading says so, not "cannot resolve", which is the step's (outside test t54a F3)
    assert r.results["x"].band == "not verified", r.results["x"].band


def test_masks_mixed_across_tensors_at_zero_rows_fail():
    """dx and dW1 from ``a > 0`` with db from ``a >= 0`` is no mix of pieces, and no piece read
    contradicts it; it was kept unverified (exit 0) because no move holding every tie still was
    found: the units' ties lie inside each output's sum. Those moves are now found from the
    gradients of the pieces around the point (numeric/balance.py ``_pieced``), and it fails
    (outside test t51a F1); the twin, relu'(0) = 0 in every tensor (``a > 0``: torch's rule),
    passes."""

    def backward(rule):
        def b(grad_output, x, W1, b, V):
            a = x @ W1 + b
            c = grad_output @ V.T
            d = c * (a > 0)
            return {"x": d @ W1.T, "W1": x.T @ d, "b": (c * rule(a)).sum(0),
                    "V": np.maximum(a, 0).T @ grad_output}  # fmt: skip

        return b

    r = gradcli.check("custom", _case(), forward=_forward, backward=backward(lambda a: a >= 0))
    assert not r.passed, r.verdict()
    # the twin, ``a > 0`` in every tensor, is torch's rule: the same run as the first test's
    t, g = _case(), np.random.default_rng(5).standard_normal((8, 3))
    assert ((t["x"] @ t["W1"]) == 0).sum() == 120  # both zero rows' 60 units at the kink
    torchs = _backward(0.0)(g, **t)
    for n, v in backward(lambda a: a > 0)(g, **t).items():
        np.testing.assert_array_equal(v, torchs[n], err_msg=n)
    right = _torchs()
    assert right.passed, right.verdict()

