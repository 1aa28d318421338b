"""'your backward vs the built-in backward at the points gradcli drew: PASS' under a failure at
ties read as a contradiction (outside test t68c F4): the drawn points have no ties, and the line
says so where the failing tensor's worst element is at a kink. Twin: a backward wrong away
from any tie keeps the plain line. Oracle: max-pool routes each window's gradient to one
maximum; giving every tied maximum the whole of it is wrong there."""

import numpy as np

import gradcli

X = np.array([[[1.0], [1.0], [0.0], [2.0]], [[0.5], [1.0], [2.0], [2.0]]])


def _forward(X, size=2, stride=None, padding=0):
    s = size if stride is None else stride
    H, W, C = X.shape[-3:]
    Z = np.empty(X.shape[:-3] + ((H - size) // s + 1, (W - size) // s + 1, C))
    for i in range(Z.shape[-3]):
        for j in range(Z.shape[-2]):
            Z[..., i, j, :] = X[..., i * s:i * s + size, j * s:j * s + size, :].max(axis=(-3, -2))
    return Z


def _backward(scale_away):
    def backward(grad_output, X, size=2, stride=None, padding=0):
        s = size if stride is None else stride
        dX = np.zeros_like(X)
        for i in range(grad_output.shape[-3]):
            for j in range(grad_output.shape[-2]):
                win = X[..., i * s:i * s + size, j * s:j * s + size, :]
                m = win == win.max(axis=(-3, -2), keepdims=True)  # every tied max: all of it
                dX[..., i * s:i * s + size, j * s:j * s + size, :] += (
                    m * grad_output[..., i:i + 1, j:j + 1, :])
        return {"X": dX * scale_away}

    return backward


def test_the_drawn_points_line_says_they_have_no_ties():
    r = gradcli.check("maxpool2d", {"X": X}, forward=_forward, backward=_backward(1.0))
    assert not r.passed
    text = " ".join(r.table(width=100).split())
    assert "drew: PASS (those points have no ties or kinks, which is where dX fails" in text, text


def test_twin_a_backward_wrong_everywhere_keeps_the_plain_line():
    r = gradcli.check("maxpool2d", {"X": X}, forward=_forward, backward=_backward(1.5))
    assert not r.passed
    assert "those points have no ties" not in r.table(width=100)
