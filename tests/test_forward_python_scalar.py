"""A loss returned as a Python float (``float(loss)``, torch's ``loss.item()``) has no dtype of
its own: under a float32 check it is read in float32, as every float tensor the forward was
given is, where a right float32 svm broke the forward's dtype contract (outside test t68b F5).
Twin: a NumPy float64 scalar is float64 work and still breaks it. Oracle: CS231n's svm_loss."""

import numpy as np
import pytest

import gradcli

X = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
Y = np.array([0, 2, 1, 1])


def _svm(x, y):
    n = x.shape[0]
    m = np.maximum(0, x - x[np.arange(n), y][:, None] + x.dtype.type(1))
    m[np.arange(n), y] = 0
    dx = (m > 0).astype(x.dtype)
    dx[np.arange(n), y] = -dx.sum(axis=1)
    return m.sum() / x.dtype.type(n), dx / x.dtype.type(n)


@pytest.mark.parametrize("how", [float, lambda v: v.item()], ids=["float", "item"])
def test_a_python_float_loss_is_read_in_float32(how):
    def svm_loss(x, y):
        loss, dx = _svm(x, y)
        return how(loss), dx

    r = gradcli.check("svm", {"x": X, "y": Y}, forward=svm_loss, dtype="float32")
    assert r.passed, r.verdict()


def test_twin_a_numpy_float64_loss_still_breaks_the_dtype_contract():
    def svm_loss(x, y):
        loss, dx = _svm(x, y)
        return np.float64(loss), dx

    r = gradcli.check("svm", {"x": X, "y": Y}, forward=svm_loss, dtype="float32")
    assert not r.passed and "dtype" in r.verdict(), r.verdict()


def test_a_gradcli_form_forward_returning_a_python_float_too():
    def forward(x, y):
        return float(_svm(x, y)[0])

    def backward(grad_output, x, y):
        return {"x": _svm(x, y)[1] * np.float32(grad_output)}

    r = gradcli.check("svm", {"x": X, "y": Y}, forward=forward, backward=backward,
                      dtype="float32")  # fmt: skip
    assert r.passed, r.verdict()
