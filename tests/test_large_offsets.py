"""Outside test t15 (F32DET (c)): a layer varying on a scale far below |x|, whose outputs carry
the rounding of far larger numbers (a layernorm's x - mean at x = 1e8 + N(0, 1): 1e-8 where the
round-off model, a few eps of each output, reads 1e-16). Its smaller steps jittered as 1/h and
a correct backward FAILed ("still moving after 20 halvings"). The refinement now measures the
round-off of the coordinates it leaves undecided (numeric/refine.measured) and halves them again
against it: a correct backward passes, a 0.5% slip fails, and where no step can resolve the
gradient the verdict says "cannot resolve", never a mismatch.

Oracle: torch's layer_norm gradient (when installed) on the same x, and the closed forms.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

X = np.random.default_rng(0).normal(size=(3, 6))


def layernorm(slip: float = 0.0):
    def forward(x):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5)

    def backward(grad_output, x):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        xh, g = (x - mu) / np.sqrt(var + 1e-5), grad_output
        dx = (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True))
        return {"x": dx / np.sqrt(var + 1e-5) * (1 + slip)}

    return forward, backward


def shifted_tanh(offset: float, slip: float = 0.0):
    def forward(x):
        return np.tanh(x - offset)

    def backward(grad_output, x):
        return {"x": grad_output * (1 - np.tanh(x - offset) ** 2) * (1 + slip)}

    return forward, backward


def test_a_layernorm_far_from_zero_passes_and_a_slip_fails():
    forward, backward = layernorm()
    x = 1e8 + X[:2]
    report = gradcli.check(forward=forward, backward=backward, tensors={"x": x})
    assert report.passed, report.verdict()
    _, wrong = layernorm(slip=5e-3)
    bad = gradcli.check(forward=forward, backward=wrong, tensors={"x": x})
    assert not bad.passed and not bad.results["x"].unresolved, bad.verdict()


def test_the_layernorm_backward_is_right_by_torch():
    torch = pytest.importorskip("torch")
    forward, backward = layernorm()
    x, g = 1e8 + X, np.random.default_rng(1).normal(size=X.shape)
    t = torch.tensor(x, requires_grad=True)
    torch.nn.functional.layer_norm(t, (6,), eps=1e-5).backward(torch.tensor(g))
    assert np.abs(t.grad.numpy() - backward(g, x)["x"]).max() < 1e-6


def test_a_gradient_no_step_resolves_is_not_blamed():
    # at 1e12 x carries 1.2e-4 of rounding against a spread of 1: no step differences tanh
    # to 1e-6; the slip of 1e-3 could not show either
    forward, backward = shifted_tanh(1e12)
    x = 1e12 + X[:1]
    report = gradcli.check(forward=forward, backward=backward, tensors={"x": x})
    assert not report.passed and report.results["x"].unresolved, report.verdict()
    assert "cannot resolve" in report.verdict()


def test_a_slip_at_a_resolvable_offset_still_fails():
    forward, _ = shifted_tanh(1e9)
    _, wrong = shifted_tanh(1e9, slip=5e-3)
    bad = gradcli.check(forward=forward, backward=wrong, tensors={"x": 1e9 + X[:1]})
    assert not bad.passed and not bad.results["x"].unresolved, bad.verdict()
    _, right = shifted_tanh(1e9)
    assert gradcli.check(forward=forward, backward=right, tensors={"x": 1e9 + X[:1]}).passed
