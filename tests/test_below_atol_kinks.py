"""An integer MLP's confident row (its gradient about 5e-8) holding a relu tie (outside test
t57a F1): torch's backward gives dX[3, 1] the left one-sided slope, -4.97e-8, where the right
one is -1.77e-8. Below the atol, elements the step reads finely are held to their own
round-off (tolerances.below_atol), and every central difference there reads the mean of the
two sides, at every step alike: the right answer was held to 3e-14 and failed. An element
whose two one-sided slopes stay apart as the step shrinks, the answer between them, is left
to the kinks' rule. Twin: an answer beyond both sides there still fails."""

import numpy as np
import pytest
from tiny_mlp import relu_mlp

import gradcli


def _case():
    d = np.load(__file__.rsplit("/", 1)[0] + "/fixtures/mlp_int_tiny_kink_t57a.npz")
    return {"x": d["X"], "W1": d["W1"], "b1": d["b1"], "W2": d["W2"], "b2": d["b2"], "y": d["y"]}


@pytest.mark.parametrize("at_zero", [0.0, 1.0], ids=["torch", "a>=0"])
def test_a_side_of_a_tiny_kink_passes(at_zero):
    r = gradcli.check(relu_mlp(at_zero), _case(), grad_output=1.0)
    assert r.passed, r.verdict()


def test_twin_beyond_both_sides_of_it_fails():
    r = gradcli.check(relu_mlp(0.0, ("x", (3, 1), -6e-8)), _case(), grad_output=1.0)
    assert not r.passed and not r.results["x"].passed, r.verdict()
