"""float32 answers held to their own terms' rounding, not to the other gradients' (outside test
t37a F6). Twin: the right float32 answer passes under central differences."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

LN = {"x": np.array([[-1.875, 11285230.0, 1.03125, -1.40625]]),
      "gamma": np.array([1.0625, 0.75, 0.1875, 0.3125]),
      "beta": np.array([-0.1875, 0.875, -1.125, -0.4375])}  # fmt: skip
LN_G = np.array([[0.25, 1.8125, -0.75, -1.0625]])


@pytest.mark.parametrize("method", ["forward", "backward"])
def test_a_layernorms_small_dx_is_not_held_to_its_dgammas_rounding_in_float32(method):
    """Outside test t37a F6: a layer norm with a feature of 1e7 has a dx of 6e-8 beside a
    dgamma of 3; held to 64 float32 units of that (2.3e-5), its dx passed zeroed and negated
    under one-sided steps, where float64 says it cannot be resolved. Its own terms round at
    1e-13: it is held to those, and the step cannot resolve it either way."""
    right = gradcli.check("layernorm", LN, grad_output=LN_G).computation.gradients
    for dx in (0 * right["x"], -right["x"]):
        r = gradcli.check("layernorm", LN, grad_output=LN_G, grads={**right, "x": dx},
                          method=method, dtype="float32")  # fmt: skip
        assert not r.results["x"].passed, r.verdict()


def test_the_twin_the_right_float32_answer_passes_under_central():
    right = gradcli.check("layernorm", LN, grad_output=LN_G).computation.gradients
    answer = {k: np.asarray(v, dtype=np.float32) for k, v in right.items()}
    r = gradcli.check("layernorm", LN, grad_output=LN_G, grads=answer, dtype="float32")
    assert r.passed, r.verdict()
