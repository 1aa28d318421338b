"""A backward of yours (gradcli's form) returning a gradient in CS231n's layout is told so, as
an answer file's is: it was a bare shape error (outside test t68c F3). Twin: a shape no layout
explains keeps the plain message. Oracle: conv2d's layouts (W as (kh, kw, C_in, C_out), CS231n's
as (F, C, HH, WW))."""

import numpy as np
import pytest

import gradcli
from gradcli.errors import UserCodeError
from gradcli.layers import REGISTRY


def _backward(reshape):
    conv = REGISTRY["conv2d"]

    def backward(grad_output, X, W, b):
        grads = conv.backward(grad_output, conv.forward({"X": X, "W": W, "b": b}, None)[1])
        return {**grads, "W": reshape(grads["W"])}

    return backward


def _forward(X, W, b):
    return REGISTRY["conv2d"].forward({"X": X, "W": W, "b": b}, None)[0]


def _tensors():
    rng = np.random.default_rng(0)
    return {"X": rng.standard_normal((6, 5, 2)), "W": rng.standard_normal((3, 3, 2, 5)),
            "b": rng.standard_normal(5)}  # fmt: skip


def test_a_dw_in_cs231ns_layout_is_named_with_its_transpose():
    with pytest.raises(UserCodeError) as e:
        gradcli.check("conv2d", _tensors(), forward=_forward,
                      backward=_backward(lambda w: w.transpose(3, 2, 0, 1)))  # fmt: skip
    text = str(e.value)
    assert "is dW in CS231n's layout (F, C, HH, WW)" in text, text
    assert "dW.transpose(2, 3, 1, 0)" in text, text


def test_twin_a_shape_no_layout_explains_is_said_plainly():
    with pytest.raises(UserCodeError) as e:
        gradcli.check("conv2d", _tensors(), forward=_forward,
                      backward=_backward(lambda w: w.reshape(-1)[:10]))  # fmt: skip
    text = str(e.value)
    assert "has shape [10], but W has shape [3, 3, 2, 5]" in text and "CS231n" not in text, text
