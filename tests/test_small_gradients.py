"""Outside tests t14 (V2) and t15 (F32DET, NUMQUOTE): verdicts where the numbers are small or the
inputs large.

- V2: the table's atol is in the gradient's own units. A confident softmax's gradients are all
  below 1e-8, and with atol 1e-7 an all-zero dx passed (rel err 1, reading "good"); a float32
  layer of one's own with gradients of 1e-4 passed a backward off by 2x. The atol now stays a
  thousandth below each tensor's largest gradient unless the round-off measured along a line
  (Engine.loss_noise: the loss of 1e-8 is log(1 + 1e-8), rounded at the 1) is larger; where
  that is over a tenth of the gradient, the step cannot resolve it (never a PASS).
- F32DET: a float64 forward of sin at 1e7 varies within a float32 step, and a test of proportion
  read its curvature as float32's jumps: correct backwards failed, a 0.2% slip passed.
- NUMQUOTE: a FAIL quoted the default step's truncation (0.40 for a slope of 1.57) as the numeric
  value where smaller steps led to the true one.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

RNG = np.random.default_rng(0)
N, C = 8, 5
LABELS = RNG.integers(0, C, N)
SCORES = RNG.normal(size=(N, C)) * 2
SCORES[np.arange(N), LABELS] += 22  # confident and right: every gradient below 1e-8


def softmax_loss(x, y):
    """CS231n's, with its correct gradient."""
    s = x - x.max(axis=1, keepdims=True)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(len(y)), y]).mean()
    dx = p.copy()
    dx[np.arange(len(y)), y] -= 1
    return loss, dx / len(y)


def zeros_loss(x, y):
    return softmax_loss(x, y)[0], np.zeros_like(x)


def double_loss(x, y):  # the / N forgotten... twice over: any factor must show
    loss, dx = softmax_loss(x, y)
    return loss, 2 * dx


TENSORS = {"x": SCORES, "y": LABELS}


def test_a_confident_softmax_checks_its_tiny_gradients():
    good = gradcli.check(forward=softmax_loss, tensors=TENSORS)
    assert good.passed, good.verdict()
    assert good.results["x"].atol < 1e-10  # not 1e-7, above every gradient
    for bad in (zeros_loss, double_loss):
        report = gradcli.check(forward=bad, tensors=TENSORS)
        assert not report.passed and not report.results["x"].unresolved, report.verdict()


def test_answers_of_zeros_fail_for_the_built_in_too():
    zeros = {"x": np.zeros_like(SCORES)}
    report = gradcli.check("softmax_cross_entropy", TENSORS, grads=zeros)
    assert not report.passed


@pytest.mark.parametrize("method", ["forward", "backward"])
def test_a_step_whose_round_off_swallows_the_gradient_never_passes(method):
    # one-sided differences of this loss carry ~1e-8 of round-off (the 1 in log(1 + 1e-8)
    # moves in jumps of its last bit): a zero answer is within it, so nothing can be judged
    report = gradcli.check("softmax_cross_entropy", TENSORS, method=method)
    assert not report.passed and "cannot resolve" in report.results["x"].unresolved
    assert gradcli.check("softmax_cross_entropy", TENSORS, method="complex").passed


def test_a_float32_layer_of_small_gradients_fails_a_factor_of_two():
    x = RNG.normal(size=(12, 6)).astype(np.float32)
    W = (RNG.normal(size=(6, 6)) * 1e-4).astype(np.float32)

    def forward(x, W):
        return np.mean((x @ W) ** 2)

    def backward(grad_output, x, W, half=False):
        dz = grad_output * 2 * (x @ W) / (x @ W).size
        dz = dz / 2 if half else dz
        return {"x": dz @ W.T, "W": x.T @ dz}

    tensors = {"x": x, "W": W}
    assert gradcli.check(forward=forward, backward=backward, tensors=tensors).passed
    wrong = gradcli.check(forward=forward, tensors=tensors,
                          backward=lambda g, x, W: backward(g, x, W, half=True))  # fmt: skip
    assert not wrong.results["W"].passed


def _sin(x):
    return np.sin(x)


@pytest.mark.parametrize("scale", [1e7, 1e8])
def test_a_float64_forward_that_varies_within_a_float32_step_stays_float64(scale):
    x = RNG.uniform(-1, 1, size=(3, 4)) * scale
    report = gradcli.check(forward=_sin, backward=lambda g, x: {"x": g * np.cos(x)},
                           tensors={"x": x})  # fmt: skip
    assert report.passed and not any("float32" in n for n in report.notes), report.verdict()
    slip = gradcli.check(forward=_sin, backward=lambda g, x: {"x": g * np.cos(x) * 1.002},
                         tensors={"x": x})  # fmt: skip
    assert not slip.passed


def test_a_fail_quotes_the_value_smaller_steps_led_to():
    t = 1e6 + RNG.normal(size=6)

    def forward(t):
        return np.tanh(t - 1e6)

    def backward(grad_output, t):  # 0.5% off
        return {"t": grad_output * (1 - np.tanh(t - 1e6) ** 2) * 1.005}

    report = gradcli.check(forward=forward, backward=backward, tensors={"t": t})
    result = report.results["t"]
    assert not report.passed
    # the default step's value there was 0.40 against 1.57: a 4x discrepancy for a 0.5% one
    assert abs(result.numeric / result.analytic - 1 / 1.005) < 1e-4, result.worst
