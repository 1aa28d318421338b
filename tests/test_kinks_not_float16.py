"""A piecewise-linear forward at inputs of 1e-3 is float64 work, not a float16 path.

The lines that look for a float16 path move every input by cells of 1 (2^-7 a step and more),
far beyond inputs of 1e-3: a max of 0.0003 beside 0.0001, or clip(x, -1e-3, 1e-3) at
1.000001e-3, crosses its kinks before the first move, which leaves the same offset at every
scale as a jump does. gradcli said 'your forward computes in float16', took steps of 0.15 and
passed a max routed to the runner-up (outside test t32a F1, F4). The twin: a float16 path
beside float64 work at the same inputs is still found (tests/test_float32_branch.py has the
ones at inputs of 1)."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

X = np.array([[0.0009, 0.0009001, 0.0002], [-0.0005, 0.0003, 0.0001]])
G = np.array([1.3, -0.7])


def row_max(x):
    return x.max(axis=1)


def routed(runner_up: bool):
    def backward(grad_output, x):
        i = x.argmax(axis=1)
        if runner_up:
            i[0] = np.argsort(-x[0], kind="stable")[1]
        d = np.zeros_like(x)
        d[np.arange(x.shape[0]), i] = grad_output
        return {"x": d}

    return backward


@pytest.mark.parametrize("method", ["central", "forward", "backward"])
def test_a_max_at_1e_3_is_no_float16_path(method):
    right = gradcli.check(forward=row_max, backward=routed(False), tensors={"x": X},
                          grad_output=G, method=method)  # fmt: skip
    assert right.passed, right.verdict()
    assert not any("float16" in n for n in right.notes), right.notes
    wrong = gradcli.check(forward=row_max, backward=routed(True), tensors={"x": X},
                          grad_output=G, method=method)  # fmt: skip
    assert not wrong.passed and not wrong.results["x"].unresolved, wrong.verdict()


C = 1e-3


def clip(x):
    return np.clip(x, -C, C)


def clip_backward(widen: float):
    def backward(grad_output, x):
        return {"x": grad_output * ((x > -C - widen) & (x < C + widen))}

    return backward


G5 = np.array([1.3, 0.8, 0.3, -0.2, -0.7])


def _clip_twins(x: np.ndarray, wrong_backward, method: str) -> None:
    """The right clip backward passes at ``x``, read as float64 work; ``wrong_backward``
    fails."""
    right = gradcli.check(forward=clip, backward=clip_backward(0.0), tensors={"x": x},
                          grad_output=G5, method=method)  # fmt: skip
    assert right.passed, right.verdict()
    assert not any("float16" in n for n in right.notes), right.notes
    wrong = gradcli.check(forward=clip, backward=wrong_backward, tensors={"x": x},
                          grad_output=G5, method=method)  # fmt: skip
    assert not wrong.passed, wrong.verdict()


@pytest.mark.parametrize("method", ["central", "forward", "backward"])
def test_clip_at_1e_3_is_no_float16_path(method):
    # the wrong one: the mask widened by 2e-8, slope 1 at +-1.00001e-3, which are clipped
    x = np.array([0.00100001, 0.00099999, -0.00099999, -0.00100001, 0.0003])
    _clip_twins(x, clip_backward(2e-8), method)


@pytest.mark.parametrize("method", ["central", "forward", "backward", "central4"])
def test_clip_crossed_among_the_moves_is_no_float16_path(method):
    """1e-6 from its bounds, clip's lines cross one bound among the moves, or both: the
    output lies on straight pieces that meet, which no rounding leaves, and the right
    backward failed with 'does not match' (t32a F4). Twin: a mask dropping the middle
    element fails."""

    def dropped(grad_output, x):
        return {"x": grad_output * ((x > -C) & (x < C) & (np.abs(x) > 1e-3 / 2))}

    _clip_twins(np.array([0.001001, 0.000999, -0.000999, -0.001001, 0.0003]), dropped, method)


def test_a_float16_path_beside_float64_work_is_still_found():
    x = np.random.default_rng(0).normal(size=(3, 4))

    def forward(x):
        return np.tanh(x.astype(np.float16)).astype(np.float64) + x

    def backward(grad_output, x):  # the float16 branch dropped
        return {"x": grad_output * 1.0}

    report = gradcli.check(forward=forward, backward=backward, tensors={"x": x})
    assert any("float16" in n for n in report.notes), report.notes
    assert not report.passed


X_SMALL = np.array([[0.0031, -0.0127, 0.0089], [0.0142, -0.0056, 0.0113]])


def tanh16(x):
    return np.tanh(x.astype(np.float16)).astype(np.float64) + x


@pytest.mark.parametrize("method", ["central", "forward", "backward"])
def test_a_float16_path_at_inputs_of_1e_2_is_still_read(method):
    """Outside test t33a F3, F5: with the inputs below 2^-6 left unmoved by the float16 lines
    (a cure for the kinks above, withdrawn), tanh(x16) + x at |x| ~ 0.01 was float64 work, its
    right backward failed and one dropping the branch passed."""
    right = gradcli.check(forward=tanh16, tensors={"x": X_SMALL}, method=method,
                          backward=lambda grad_output, x: {
                              "x": grad_output * (2 - np.tanh(x) ** 2)})  # fmt: skip
    assert right.passed or right.results["x"].unresolved, right.verdict()
    dropped = gradcli.check(forward=tanh16, tensors={"x": X_SMALL}, method=method,
                            backward=lambda grad_output, x: {"x": grad_output * 1.0})
    assert not dropped.passed, dropped.verdict()
