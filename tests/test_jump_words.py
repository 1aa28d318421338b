"""A forward that jumps at ties (out[n] = x[n, k] w[k], k = argmax x[n], weights differing
between tied columns) was told its round-off was too large, and to take a larger --eps
(outside test t65b F6): where the tensor met kinks, the reason says the forward may jump
there instead. The twin: a relu at its zeros, which bends, resolves and says no jump."""

from __future__ import annotations

import numpy as np

import gradcli

X = np.array([[0, 1, 1, 0], [0, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 1, 0]], float)
W = np.array([-2.03255243, 1.41042348, -0.04763224, 2.52232741])


def gather(x, w):
    k = x.argmax(-1)
    return x[np.arange(len(x)), k] * w[k]


def gather_back(grad_output, x, w):
    n, k = np.arange(len(x)), x.argmax(-1)
    dx = np.zeros_like(x)
    dx[n, k] = grad_output * w[k]
    dw = np.zeros_like(w)
    np.add.at(dw, k, grad_output * x[n, k])
    return {"x": dx, "w": dw}


def test_a_jump_at_ties_is_named_beside_round_off():
    r = gradcli.check("custom", {"x": X, "w": W}, forward=gather, backward=gather_back)
    res = r.results["x"]
    assert not r.passed
    assert res.unresolved.startswith("cannot resolve dx"), res.unresolved  # the jump read
    assert "the forward jumps rather than bends" in res.unresolved, res.unresolved
    relu = gradcli.check("relu", {"x": np.array([-1.0, 0.0, 2.0, 0.0])})
    assert relu.passed and not relu.results["x"].unresolved
