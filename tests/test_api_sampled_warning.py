"""assert_gradients passing on a sample the budget chose says so with gradcli.SampledWarning: a
CI's assert_gradients of a custom MLP passed a dW1 wrong at one element of 16,384, 64 sampled
per tensor, with nothing to see (outside test t70b F2). Twins: a sample asked for, and a full
check, warn nothing; -W error makes the silent pass a failure."""

import warnings

import numpy as np
import pytest

import gradcli

RNG = np.random.default_rng(0)
T = {"x": RNG.standard_normal((16, 32)), "W": RNG.standard_normal((32, 32)), "b": np.zeros(32)}


def _forward(x, W, b):  # noqa: N803
    return np.tanh(x @ W + b)


def _backward(grad_output, x, W, b):  # noqa: N803
    d = grad_output * (1 - np.tanh(x @ W + b) ** 2)
    return {"x": d @ W.T, "W": x.T @ d, "b": d.sum(0)}


def test_a_pass_on_the_budgets_sample_warns():
    with pytest.warns(gradcli.SampledWarning, match="passed on a sample of coordinates"):
        r = gradcli.assert_gradients(forward=_forward, backward=_backward, tensors=T,
                                     budget=0.01)  # fmt: skip
    assert r.passed and r.check.mode == "sample"


@pytest.mark.parametrize("mode", ["sample", "full", None])
def test_twin_no_warning_where_nothing_was_left_out_unasked(mode):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = gradcli.assert_gradients(forward=_forward, backward=_backward, tensors=T,
                                     mode=mode)  # fmt: skip
    assert r.passed


def test_as_an_error_it_fails_the_test():
    with warnings.catch_warnings():
        warnings.simplefilter("error", gradcli.SampledWarning)
        with pytest.raises(gradcli.SampledWarning):
            gradcli.assert_gradients(forward=_forward, backward=_backward, tensors=T,
                                     budget=0.01)  # fmt: skip
