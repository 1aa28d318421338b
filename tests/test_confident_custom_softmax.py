"""Your softmax at a top logit of 30: its dx is about 1e-13, and a step moves the top output,
1 - 1e-13, by less than its last bit, so every difference carries round-off 30-100 times the
gradient. With no footprint, the check of every output a coordinate moves was skipped, and the
right backward was called wrong under central, forward and backward (outside test t36b F4).
It is 'cannot resolve' now; the complex step passes it, and a backward without its rowsum term
still fails."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def _forward(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _backward(rowsum: bool):
    def backward(grad_output, x):
        y = _forward(x)
        return {"x": y * (grad_output - ((grad_output * y).sum(-1, keepdims=True)
                                         if rowsum else 0.0))}

    return backward


def _case():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5))
    x[:, 0] += 30
    return x, rng.standard_normal((2, 5))


@pytest.mark.parametrize("method", ["central", "forward", "backward"])
def test_right_backward_is_not_called_wrong(method):
    x, g = _case()
    r = gradcli.check(forward=_forward, backward=_backward(True), tensors={"x": x},
                      grad_output=g, method=method)
    assert r.passed or r.results["x"].unresolved, r.verdict()
    wrong = gradcli.check(forward=_forward, backward=_backward(False), tensors={"x": x},
                          grad_output=g, method=method)
    assert not wrong.passed and not wrong.results["x"].unresolved


def test_the_complex_step_reads_it():
    x, g = _case()
    assert gradcli.check(forward=_forward, backward=_backward(True), tensors={"x": x},
                         grad_output=g, method="complex").passed
