"""Round-off the model misses, measured.

Outside test t15 (F32DET (c)): a layer varying on a scale far below |x|, whose outputs carry the
rounding of far larger numbers (a layernorm's x - mean at x = 1e8 + N(0, 1): 1e-8 where the
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
    x = 1e8 + X[:1]
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


# A confident classifier's loss of 1e-10 is log(1 + 1e-10), rounded at the 1: a staircase at
# the kink detector's steps. One side read flat, the other one jump of round-off, and the
# detector called it a kink, where any value between the sides passes: a gradient 10x too large
# there passed (issue 14, "Kinks: no false failures, no hidden bugs").
def _confident(seed=4, margin=25):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8, 5)) * 2
    y = rng.integers(0, 5, 8)
    x[np.arange(8), y] += margin
    return {"x": x, "y": y}


def _softmax_loss(x, y, wrong_at=None):
    s = x - x.max(axis=1, keepdims=True)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    dx = p.copy()
    dx[np.arange(len(y)), y] -= 1
    dx /= len(y)
    if wrong_at is not None:
        dx.flat[wrong_at] *= 10
    return -np.log(p[np.arange(len(y)), y]).mean(), dx


def test_round_off_alone_makes_no_kink_and_hides_no_bug():
    tensors = _confident()
    good = gradcli.check(forward=_softmax_loss, tensors=tensors, method="forward")
    # a PASS, or "cannot resolve" (the round-off of gradients of 1e-11: test_confident.py),
    # never a mismatch, and no kink
    x = good.results["x"]
    assert (good.passed or x.unresolved) and x.kinks == 0, good.verdict()
    # the coordinate the detector called a kink, its gradient 10x too large
    bad = gradcli.check(forward=lambda x, y: _softmax_loss(x, y, wrong_at=13), tensors=tensors,
                        method="forward")  # fmt: skip
    assert not bad.passed and bad.results["x"].kinks == 0, bad.verdict()


def test_a_users_abs_keeps_its_kink():
    # the twin: a real kink at x = 0 is still read as one (any slope between -1 and 1 passes)
    x = np.array([[0.0, 0.7, -1.3]])
    report = gradcli.check(forward=lambda x: np.abs(x), backward=lambda g, x: {"x": g * np.sign(x)},
                           tensors={"x": x}, method="forward")  # fmt: skip
    assert report.passed and report.results["x"].kinks == 1, report.verdict()
    wrong = gradcli.check(forward=lambda x: np.abs(x),
                          backward=lambda g, x: {"x": g * np.sign(x) + 3 * (x == 0)},
                          tensors={"x": x}, method="forward")  # fmt: skip
    assert not wrong.passed, wrong.verdict()
