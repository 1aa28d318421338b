"""The complex step's safety check compares it with central differences; a central reading
whose step spans the forward's whole rise is no evidence against it (outside test t27 N3):
tanh(1e12 x) at x ~ 1e-12 read 4e5 by central differences for a slope of 8.5e11, and the
complex-safe np.tanh was refused as "not complex-safe". A reading that moves by over a tenth
when the step shrinks has not settled: the refusal says that, not that the forward is unsafe
(neither can be told there). Twin: a forward that drops the imaginary part (np.abs at one
element) at an ordinary scale is still refused as not complex-safe."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.errors import OptionError


def _tanh(scale, at=0.0):
    def forward(x):
        return np.tanh(scale * (x - at))

    def backward(grad_output, x):
        return {"x": grad_output * scale * (1 - np.tanh(scale * (x - at)) ** 2)}

    return forward, backward


def test_a_steep_forward_is_not_called_unsafe():
    # away from 0, where no step of eps x max(1, |x|) reads its rise
    forward, backward = _tanh(1e13, 1.0)
    x = 1 + np.random.default_rng(0).standard_normal((4, 5)) / 1e13
    with pytest.raises(OptionError) as e:
        gradcli.check(forward=forward, backward=backward, tensors={"x": x}, method="complex")
    assert "do not settle" in str(e.value) and "not complex-safe" not in str(e.value)


def test_inputs_far_below_the_step_are_compared_at_their_own_scale():
    # at |x| ~ 1e-12 the real differences are read at a step scaled to the inputs (t37b F6)
    forward, backward = _tanh(1e12)
    x = np.random.default_rng(0).standard_normal((4, 5)) / 1e12
    assert gradcli.check(forward=forward, backward=backward, tensors={"x": x},
                         method="complex").passed  # fmt: skip
    wrong = gradcli.check(forward=forward, backward=lambda grad_output, x: {
        "x": -backward(grad_output, x)["x"]}, tensors={"x": x}, method="complex")
    assert not wrong.passed


def test_a_forward_dropping_the_imaginary_part_is_still_refused():
    def unsafe(x):
        y = x * x
        y.flat[3] = np.abs(y.flat[3] - 0.5)  # |.| drops the imaginary part there
        return y

    def its_backward(grad_output, x):
        d = 2 * x * grad_output
        d.flat[3] *= np.sign(x.flat[3] ** 2 - 0.5)
        return {"x": d}

    x = np.random.default_rng(1).standard_normal((4, 5))
    with pytest.raises(OptionError, match="not complex-safe"):
        gradcli.check(forward=unsafe, backward=its_backward, tensors={"x": x}, method="complex")
