"""Your layer's gradient lost in the rounding of the forward's terms.

Under the complex step, one that cancels to 0 (an upstream gradient of ones through a layer
norm or a softmax: outside test t35a F8, F9).

The complex step reads the rounding of the forward's terms there (5.6e-17 beside outputs of
1): a right answer of exactly 0 failed as 'a missing term or path', and the layer norm was
refused as 'not complex-safe' against a central reading that was itself its round-off. Now it
is 'cannot resolve' (check it under another grad_output). Twin: a softmax backward without its
rowsum term is still 'does not match'.

Under real steps, your softmax at a top logit of 30: its dx is about 1e-13, and a step moves
the top output, 1 - 1e-13, by less than its last bit, so every difference carries round-off
30-100 times the gradient. With no footprint, the check of every output a coordinate moves was
skipped, and the right backward was called wrong under central, forward and backward (outside
test t36b F4). It is 'cannot resolve' now; the complex step passes it, and a backward without
its rowsum term still fails."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def _layernorm_forward(x):
    xc = x - x.mean(-1, keepdims=True)
    return xc / np.sqrt((xc * xc).mean(-1, keepdims=True) + 1e-5)


def _layernorm_backward(grad_output, x):
    xc = x - x.mean(-1, keepdims=True)
    r = 1 / np.sqrt((xc * xc).mean(-1, keepdims=True) + 1e-5)
    xh, g = xc * r, grad_output
    return {"x": r * (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True))}


def test_layer_norm_at_1e3_under_ones():
    x = 1e3 + np.random.default_rng(0).standard_normal((3, 5))
    r = gradcli.check(forward=_layernorm_forward, backward=_layernorm_backward,
                      tensors={"x": x}, grad_output=np.ones((3, 5)), method="complex")
    assert not r.passed and r.results["x"].unresolved, r.verdict()


def _softmax_forward(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _softmax_backward(rowsum: bool):
    def backward(grad_output, x):
        y = _softmax_forward(x)
        s = (grad_output * y).sum(-1, keepdims=True) if rowsum else 0.0
        return {"x": y * (grad_output - s)}

    return backward


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_under_ones(dtype):
    x = np.random.default_rng(1).standard_normal((2, 4))
    if dtype == "float32":
        x = x.astype(np.float32)
    g = np.ones((2, 4), dtype=x.dtype)
    right = gradcli.check(forward=_softmax_forward, backward=_softmax_backward(True),
                          tensors={"x": x}, grad_output=g, method="complex", dtype=dtype)
    assert right.passed or right.results["x"].unresolved, right.verdict()
    wrong = gradcli.check(forward=_softmax_forward, backward=_softmax_backward(False),
                          tensors={"x": x}, grad_output=g, method="complex", dtype=dtype)
    assert not wrong.passed and not wrong.results["x"].unresolved, wrong.verdict()


def _confident():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5))
    x[:, 0] += 30
    return x, rng.standard_normal((2, 5))


@pytest.mark.parametrize("method", ["central", "forward", "backward"])
def test_confident_softmax_is_not_called_wrong(method):
    x, g = _confident()
    r = gradcli.check(forward=_softmax_forward, backward=_softmax_backward(True),
                      tensors={"x": x}, grad_output=g, method=method)
    assert r.passed or r.results["x"].unresolved, r.verdict()
    wrong = gradcli.check(forward=_softmax_forward, backward=_softmax_backward(False),
                          tensors={"x": x}, grad_output=g, method=method)
    assert not wrong.passed and not wrong.results["x"].unresolved


def test_the_complex_step_reads_a_confident_softmax():
    x, g = _confident()
    assert gradcli.check(forward=_softmax_forward, backward=_softmax_backward(True),
                         tensors={"x": x}, grad_output=g, method="complex").passed
