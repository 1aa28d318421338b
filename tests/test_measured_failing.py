"""A user's forward that rounds at numbers far larger than its outputs: the round-off model
(a few eps of each output) misses it, and an exact backward failed (outside test t30a F1: a
one-pass variance, mean(x^2) - mean(x)^2 at x = 1e4, rounds at 1e8; 3e-7 off where the model
said 1e-15). Its failing elements have their round-off measured along their own lines at
small steps (tolerances._measured_failing). Twins: a slip there still fails, and a curved
forward's curvature, which grows with the step, never passes for round-off (tanh(1e4 x) under
central4's step of 7e-4 passed a 1% slip when it was measured at the default step)."""

import numpy as np
import pytest

import gradcli

X = 1e4 + np.random.default_rng(0).standard_normal((3, 16))


def _variance(x):
    return (x**2).mean(axis=1) - x.mean(axis=1) ** 2


def _variance_back(scale: float):
    def backward(grad_output, x):
        m = x.mean(axis=1, keepdims=True)
        return {"x": grad_output[:, None] * scale * 2 * (x - m) / x.shape[1]}

    return backward


@pytest.mark.parametrize("method", ["central", "central4"])
def test_an_exact_backward_of_a_one_pass_variance_passes(method):
    report = gradcli.check(forward=_variance, backward=_variance_back(1.0), tensors={"x": X},
                           method=method)  # fmt: skip
    assert report.passed, report.verdict()


@pytest.mark.parametrize("method", ["central", "central4"])
def test_the_twin_a_one_percent_slip_of_it_fails(method):
    report = gradcli.check(forward=_variance, backward=_variance_back(1.01), tensors={"x": X},
                           method=method)  # fmt: skip
    assert not report.passed and not report.results["x"].unresolved, report.verdict()


RNG = np.random.default_rng(0)
CURVED = {
    "tanh(1e4 x)": (lambda x: np.tanh(1e4 * x), lambda x: 1e4 * (1 - np.tanh(1e4 * x) ** 2),
                    1e-4 * RNG.normal(size=(3, 4))),
    "sin(1e3 x)": (lambda x: np.sin(1e3 * x), lambda x: 1e3 * np.cos(1e3 * x),
                   RNG.normal(size=(3, 4))),
}


@pytest.mark.parametrize("case", list(CURVED))
@pytest.mark.parametrize("method", ["central", "central4"])
@pytest.mark.parametrize("where", ["one", "all"])
def test_a_curved_forward_never_passes_a_slip_as_its_round_off(case, method, where):
    f, d, x = CURVED[case]

    def slip(grad_output, x):
        g = grad_output * d(x)
        if where == "one":
            g.flat[5] *= 1.001
            return {"x": g}
        return {"x": g * 1.01}

    report = gradcli.check(forward=lambda x: f(x), backward=slip, tensors={"x": x}, method=method)
    assert not report.passed, report.verdict()
    right = gradcli.check(forward=lambda x: f(x), backward=lambda grad_output, x: {
        "x": grad_output * d(x)}, tensors={"x": x}, method=method)  # fmt: skip
    assert right.passed, right.verdict()
