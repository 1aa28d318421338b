"""A layernorm with eps 1e-60 at a constant row (outside test t55a F1): its dx there is about
1e30 (torch's too), a slope the steps (down to 1e-12) never approach: the differences double
as the step halves. The right backward read 'does not match', reading 'wrong' (at eps 1e-30
'cannot resolve'); now every failure still moving after the halvings is 'cannot resolve'.
Twins: a wrong dx at an ordinary eps is still a mismatch; the same tiny eps stays a FAIL."""

import numpy as np

import gradcli

ROWS = {"x": np.array([[0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 0.5, 3.0]]), "gamma": np.ones(4)}


def test_a_slope_no_step_approaches_cannot_be_resolved():
    r = gradcli.check("layernorm", ROWS, options={"eps": 1e-60})
    assert not r.passed
    assert r.results["x"].band == "cannot resolve", r.verdict()
    assert "cannot resolve dx at any step" in r.verdict()


def test_twin_a_wrong_dx_at_an_ordinary_eps_is_a_mismatch():
    right = gradcli.compute("layernorm", ROWS, options={"eps": 1e-5})
    grads = {n: np.array(g) for n, g in right.gradients.items()}
    grads["x"][1, 2] += 0.1
    r = gradcli.check("layernorm", ROWS, options={"eps": 1e-5}, grads=grads,
                      grad_output=right.grad_output)  # fmt: skip
    assert not r.passed and r.results["x"].band == "wrong", r.verdict()


def test_one_huge_row_scaled_is_no_factor_everywhere():
    """Row 1 constant under eps 1e-20 has a gradient of 1e10 beside rows of 1: an answer with
    that row alone 1.5x off read "dx = 1.5 x the right gradient everywhere", the right rows
    within a tolerance the large row set (outside test t57a F5). Twin: 1.5x everywhere is
    still named."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 8))
    x[1] = 0.7
    t = {"x": x, "gamma": rng.standard_normal(8), "beta": rng.standard_normal(8)}
    comp = gradcli.compute("layernorm", t, options={"eps": 1e-20})
    grads = {n: np.array(g) for n, g in comp.gradients.items()}
    grads["x"][1] *= 1.5
    r = gradcli.check("layernorm", t, options={"eps": 1e-20}, grads=grads,
                      grad_output=comp.grad_output)  # fmt: skip
    assert not r.passed
    assert not any("everywhere" in h for h in r.results["x"].hints), r.results["x"].hints
    grads["x"] = 1.5 * np.array(comp.gradients["x"])
    r = gradcli.check("layernorm", t, options={"eps": 1e-20}, grads=grads,
                      grad_output=comp.grad_output)  # fmt: skip
    assert any("1.5 x the right gradient everywhere" in h for h in r.results["x"].hints), (
        r.results["x"].hints)
