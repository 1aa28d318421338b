"""Every element read exactly 0 on both sides: the loss read further out says whether that 0 is
a reading.

A linear at x ~ 1e-12 moves z by 6e-18 at W's step, less than its last bit: every dW
difference read 0, and an answer of zeros passed while the right one (4e-12) and a negated
one could not be resolved (outside test t39a F2). Central differences 4096 steps out read the
slope far beyond their rounding: an answer of 0 is not verified there either; the complex step
reads it. Twins: a dead relu, mse at a perfect fit, an svm with every margin met and an even
function at 0 read 0 out there too, and their zeros pass.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def _tiny_linear():
    rng = np.random.default_rng(3)
    return {"x": 1e-12 * rng.normal(size=(4, 5)), "W": rng.normal(size=(3, 5)),
            "b": rng.normal(size=3)}


def test_zeros_read_by_a_swallowed_step_are_not_verified():
    t = _tiny_linear()
    right = dict(gradcli.compute("linear", t).gradients)
    zero = {**right, "W": np.zeros_like(right["W"])}
    r = gradcli.check("linear", t, grads=zero)
    assert not r.passed and r.results["W"].unresolved, r.results["W"]
    r = gradcli.check("linear", t, grads=zero, method="complex")
    assert not r.passed and not r.results["W"].unresolved
    assert gradcli.check("linear", t, grads=right, method="complex").passed


def test_zeros_that_are_readings_pass():
    rng = np.random.default_rng(1)
    x = -np.abs(rng.normal(size=(3, 4))) - 0.1
    assert gradcli.check("relu", {"x": x}).passed
    target = rng.normal(size=(4, 3))
    assert gradcli.check("mse", {"pred": target.copy(), "target": target}).passed
    s = np.zeros((4, 5))
    y = np.arange(4)
    s[np.arange(4), y] = 5.0
    assert gradcli.check("svm", {"x": s, "y": y}).passed
    even = gradcli.check(forward=lambda x: (x ** 2).sum(), tensors={"x": np.zeros(5)},
                         backward=lambda grad_output, x: {"x": 2 * x * grad_output})
    assert even.passed


@pytest.mark.parametrize("scale", [1e-3, 1.0])
def test_at_ordinary_inputs_nothing_changes(scale):
    t = {**_tiny_linear(), "x": scale * np.random.default_rng(4).normal(size=(4, 5))}
    right = dict(gradcli.compute("linear", t).gradients)
    assert gradcli.check("linear", t, grads=right).passed
    assert not gradcli.check("linear", t, grads={**right, "W": 0 * right["W"]}).passed
