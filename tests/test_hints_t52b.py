"""Classic slips a student wrote that FAILED without a hint, or with a hint that read wrong
(outside test t52b F1-F6). Each hint is verified (the candidate reproduces the values), so a
new candidate cannot name a wrong cause; each test checks that the right code still passes.

- max-pool's backward stepping its windows 1 apart (its stride defaults to its window), and
  one ignoring stride 2 with windows of 3 (looping over the forward's outputs, whose last
  windows it clips at the input's end);
- gelu's tanh derivative not squared (1 - t where 1 - t^2 belongs), as tanh's own slip is;
- sigmoid's s (1 - x); attention's dV = A dout; groupnorm's means over every channel;
- avgpool's window side named once (no 'or equally ... an extra factor 2'); batchnorm's
  missing mean term named as the formula writes it."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcli

RNG = np.random.default_rng(3)


def _windows(X, size, s):
    H, W = X.shape[-3:-1]
    Ho, Wo = (H - size) // s + 1, (W - size) // s + 1
    return Ho, Wo


def _pool_forward(X, size=2, stride=None, padding=0):
    s = stride or size
    Ho, Wo = _windows(X, size, s)
    Z = np.empty(X.shape[:-3] + (Ho, Wo, X.shape[-1]))
    for i in range(Ho):
        for j in range(Wo):
            Z[..., i, j, :] = X[..., i * s : i * s + size, j * s : j * s + size, :].max((-3, -2))
    return Z


def _pool_backward(step):
    def backward(grad_output, X, size=2, stride=None, padding=0):
        s = step(stride or size, size)
        dX = np.zeros_like(X)
        Ho, Wo, C = grad_output.shape[-3:]
        for i in range(Ho):
            for j in range(Wo):
                for c in range(C):
                    win = X[i * s : i * s + size, j * s : j * s + size, c]
                    m, n = np.unravel_index(np.argmax(win), win.shape)
                    dX[i * s + m, j * s + n, c] += grad_output[i, j, c]
        return {"X": dX}

    return backward


POOLS = [
    ({"size": 2}, lambda s, k: 1, "with stride 1 (the forward uses 2)"),
    ({"size": 3, "stride": 2}, lambda s, k: k, "with stride at its default, the window's size, 3"),
]


@pytest.mark.parametrize(("options", "step", "said"), POOLS, ids=["stride-1", "stride-ignored"])
def test_a_pools_stride_slip_is_named(options, step, said):
    X = RNG.standard_normal((7, 7, 2))
    r = gradcli.check("maxpool2d", {"X": X}, options=options, forward=_pool_forward,
                      backward=_pool_backward(step))  # fmt: skip
    assert not r.passed
    assert said in str(r.results["X"].hints[0]), r.results["X"].hints
    right = gradcli.check("maxpool2d", {"X": X}, options=options, forward=_pool_forward,
                          backward=_pool_backward(lambda s, k: s))  # fmt: skip
    assert right.passed, right.verdict()


C = math.sqrt(2 / math.pi)


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(C * (x + 0.044715 * x**3)))


def _gelu_back(power):
    def backward(grad_output, x):
        t = np.tanh(C * (x + 0.044715 * x**3))
        du = C * (1 + 3 * 0.044715 * x**2)
        return {"x": grad_output * (0.5 * (1 + t) + 0.5 * x * (1 - t**power) * du)}

    return backward


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _sigmoid_back(slip):
    def backward(grad_output, x):
        s = _sigmoid(x)
        return {"x": grad_output * s * (1 - (x if slip else s))}

    return backward


ELEMENTWISE = [
    ("gelu", _gelu, _gelu_back, (1, 2), "0.5 x (1 - t) du/dx where 0.5 x (1 - t^2) du/dx"),
    ("sigmoid", _sigmoid, _sigmoid_back, (True, False), "dy y (1 - x) instead of dy y (1 - y)"),
]


@pytest.mark.parametrize(("layer", "forward", "make", "args", "said"), ELEMENTWISE,
                         ids=[e[0] for e in ELEMENTWISE])
def test_an_activations_derivative_slip_is_named(layer, forward, make, args, said):
    x = RNG.standard_normal(12)
    r = gradcli.check(layer, {"x": x}, forward=forward, backward=make(args[0]))
    assert not r.passed and said in str(r.results["x"].hints[0]), r.results["x"].hints
    assert gradcli.check(layer, {"x": x}, forward=forward, backward=make(args[1])).passed


def _attention_forward(X, W_Q, W_K, W_V):
    A = _softmax(X @ W_Q @ (X @ W_K).T / math.sqrt(W_Q.shape[1]))
    return A @ (X @ W_V)


def _softmax(S):
    e = np.exp(S - S.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _attention_back(slip):
    def backward(grad_output, X, W_Q, W_K, W_V):
        Q, K, V = X @ W_Q, X @ W_K, X @ W_V
        r = math.sqrt(Q.shape[1])
        A = _softmax(Q @ K.T / r)
        dV = (A if slip else A.T) @ grad_output
        dA = grad_output @ V.T
        dS = A * (dA - (dA * A).sum(-1, keepdims=True))
        dQ, dK = dS @ K / r, dS.T @ Q / r
        return {"X": dQ @ W_Q.T + dK @ W_K.T + dV @ W_V.T, "W_Q": X.T @ dQ, "W_K": X.T @ dK,
                "W_V": X.T @ dV}  # fmt: skip

    return backward


def test_attentions_dv_without_the_transpose_is_named():
    t = {"X": RNG.standard_normal((5, 4)), "W_Q": RNG.standard_normal((4, 3)),
         "W_K": RNG.standard_normal((4, 3)), "W_V": RNG.standard_normal((4, 3))}  # fmt: skip
    r = gradcli.check("attention", t, forward=_attention_forward, backward=_attention_back(True))
    assert not r.passed
    assert "dV = A dout (the right one is A^T dout" in str(r.results["W_V"].hints[0])
    assert gradcli.check("attention", t, forward=_attention_forward,
                         backward=_attention_back(False)).passed  # fmt: skip


def _groupnorm(X, gamma, beta, groups=2):
    Xg = X.reshape(X.shape[:-1] + (groups, X.shape[-1] // groups))
    mu = Xg.mean((0, 1, 3), keepdims=True)
    r = 1 / np.sqrt(Xg.var((0, 1, 3), keepdims=True) + 1e-5)
    return gamma * ((Xg - mu) * r).reshape(X.shape) + beta, r


def _groupnorm_back(every):
    def backward(grad_output, X, gamma, beta, groups=2):
        _, r = _groupnorm(X, gamma, beta, groups)
        Xg = X.reshape(X.shape[:-1] + (groups, X.shape[-1] // groups))
        xh = (Xg - Xg.mean((0, 1, 3), keepdims=True)) * r
        d = (grad_output * gamma).reshape(xh.shape)
        axes = (0, 1, 2, 3) if every else (0, 1, 3)
        dX = r * (d - d.mean(axes, keepdims=True) - xh * (d * xh).mean(axes, keepdims=True))
        xhf = xh.reshape(X.shape)
        return {"X": dX.reshape(X.shape), "gamma": (grad_output * xhf).sum((0, 1)),
                "beta": grad_output.sum((0, 1))}  # fmt: skip

    return backward


def test_groupnorms_means_over_every_channel_are_named():
    t = {"X": RNG.standard_normal((3, 3, 4)), "gamma": RNG.standard_normal(4),
         "beta": RNG.standard_normal(4)}  # fmt: skip

    def forward(X, gamma, beta, groups=2):
        return _groupnorm(X, gamma, beta, groups)[0]

    r = gradcli.check("groupnorm", t, options={"groups": 2}, forward=forward,
                      backward=_groupnorm_back(True))  # fmt: skip
    assert not r.passed
    assert "over every channel of the example, not over each group's" in str(
        r.results["X"].hints[0])
    assert gradcli.check("groupnorm", t, options={"groups": 2}, forward=forward,
                         backward=_groupnorm_back(False)).passed  # fmt: skip


def test_avgpools_window_side_is_named_once():
    def forward(X):
        n, H, W, Cn = X.shape
        return X.reshape(n, H // 2, 2, W // 2, 2, Cn).mean(axis=(2, 4))

    def backward(grad_output, X):  # divided by 2 where 4 belongs
        g = np.repeat(np.repeat(grad_output, 2, axis=1), 2, axis=2)
        return {"X": g / 2}

    r = gradcli.check("avgpool2d", {"X": RNG.standard_normal((3, 4, 4, 3))}, forward=forward,
                      backward=backward)  # fmt: skip
    hint = str(r.results["X"].hints[0])
    assert "divided by 2, one side of the window, where its 4 elements belong" in hint, hint
    assert "or equally" not in hint and "multiplied by 2:" not in hint, hint
