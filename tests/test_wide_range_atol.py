"""A gradient whose entries span many orders of magnitude (outside tests t26 F11, t28 R3): the
atol raised to 64 eps of its largest entry (round-off of the analytical side) is no round-off
of its small entries. One exp'(30) = 1e13 raised it to 0.03 and passed its neighbours, of
about 1, 0.5% off; a linear's dW beside a feature of 1.7e15, 2% off. Each element that only
the raised atol passed is held to its own floor (checking/tolerances._own_size); one whose
outputs' round-off hides it cannot be resolved at the step, never passed. Oracles: the
formulas' own derivatives; every verdict has its twin."""

import numpy as np
import pytest

import gradcli

X = np.array([[30.0, 0.1, -0.3, 0.5], [0.2, 0.7, -1.0, 0.0]])


def _exp(x):
    return np.exp(x)


def _exp_back(off: float):
    def backward(grad_output, x):
        d = grad_output * np.exp(x)
        d[0, 1] *= 1 + off  # an element of about 1, beside one of 1e13
        return {"x": d}

    return backward


@pytest.mark.parametrize("method", ["central", "central4", "forward", "complex"])
def test_a_small_element_off_beside_a_huge_one_fails(method):
    report = gradcli.check(forward=_exp, backward=_exp_back(0.005), tensors={"x": X},
                           method=method)  # fmt: skip
    result = report.results["x"]
    assert not report.passed and not result.unresolved, report.verdict()
    assert result.worst_index == (0, 1), result.worst


@pytest.mark.parametrize("method", ["central", "central4", "forward", "complex"])
def test_the_twin_the_right_exp_passes(method):
    report = gradcli.check(forward=_exp, backward=_exp_back(0.0), tensors={"x": X},
                           method=method)  # fmt: skip
    assert report.passed, report.verdict()


LINEAR = {"x": np.array([[1.7e15, 0.3, -1.2, 0.5], [2.0, -0.4, 0.8, 1.1]]),
          "W": np.random.default_rng(0).standard_normal((3, 4)),
          "b": np.array([0.1, -0.2, 0.3])}  # fmt: skip
G = np.random.default_rng(1).standard_normal((2, 3))


def _linear(x, W, b):
    return x @ W.T + b


def _linear_back(off: float):
    def backward(grad_output, x, W, b):
        dW = grad_output.T @ x
        dW[:, 1] *= 1 + off  # a feature of about 1, beside one of 1.7e15
        return {"x": grad_output @ W, "W": dW, "b": grad_output.sum(0)}

    return backward


def test_a_hidden_share_is_never_passed_at_the_step():
    """A step of W moves the output of 1.7e15 by less than its last bit: the small entries
    of dW are unreadable at it, right or 2% off, and neither passes."""
    for off in (0.0, 0.02):
        report = gradcli.check(forward=_linear, backward=_linear_back(off), tensors=LINEAR,
                               grad_output=G)  # fmt: skip
        assert not report.passed, report.verdict()
        assert report.results["W"].unresolved and "dW" in report.verdict(), report.verdict()


def test_under_the_complex_step_the_right_dw_passes_and_the_slip_fails():
    right = gradcli.check(forward=_linear, backward=_linear_back(0.0), tensors=LINEAR,
                          grad_output=G, method="complex")  # fmt: skip
    assert right.passed, right.verdict()
    slip = gradcli.check(forward=_linear, backward=_linear_back(0.02), tensors=LINEAR,
                         grad_output=G, method="complex")  # fmt: skip
    assert not slip.passed and not slip.results["W"].unresolved, slip.verdict()
    assert slip.results["W"].worst_index[1] == 1, slip.results["W"].worst
