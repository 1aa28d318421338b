"""A normalization far from 0 under the complex step: its backward's floor takes the inputs'
last bits too.

A layer norm at 1e7 + N(0, 1) rounds x - mean at 1e-9 in any float64 code; the floor moved
only the saved arrays (at 1) by their last bits, and the complex step, exact, failed the
built-in's right dx 1e-8 off (outside test t35b F3, t36b F3). Twins: a dx 1e-5 off, without
its variance term, or negated still fails there; at 1e2 + N(0, 1) a 1e-7 slip still fails.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def _t(offset: float, seed: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": offset + rng.normal(size=(4, 8)), "gamma": rng.normal(size=8),
            "beta": 0.1 * rng.normal(size=8)}


def _no_variance(t: dict, g: np.ndarray) -> np.ndarray:
    x = t["x"]
    var = x.var(-1, keepdims=True)
    dxh = g * t["gamma"]
    return (dxh - dxh.mean(-1, keepdims=True)) / np.sqrt(var + 1e-5)


@pytest.mark.parametrize("layer", ["layernorm", "groupnorm"])
@pytest.mark.parametrize("offset", [1e7, 1e8])
def test_far_from_zero_the_built_in_passes_the_complex_step(layer, offset):
    t = _t(offset)
    if layer == "groupnorm":
        t = {"X": t["x"].reshape(2, 2, 8), "gamma": t["gamma"], "beta": t["beta"]}
    r = gradcli.check(layer, t, method="complex")
    assert r.passed, {n: x.worst[:1] for n, x in r.results.items()}


@pytest.mark.parametrize("offset", [1e7, 1e2])
def test_slips_still_fail_there(offset):
    t = _t(offset)
    c = gradcli.compute("layernorm", t)
    right = dict(c.gradients)
    slips = [{**right, "x": right["x"] * (1 + (1e-5 if offset > 1e3 else 1e-7))},
             {**right, "x": -right["x"]},
             {**right, "x": _no_variance(t, c.grad_output)}]
    for wrong in slips:
        r = gradcli.check("layernorm", t, method="complex", grads=wrong)
        assert not r.passed and not r.results["x"].passed
