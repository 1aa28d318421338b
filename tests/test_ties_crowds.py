"""Ties too large for every order (numeric/crowds.py): a zero padding row fed to ``relu(X W1 +
b1)`` with CS231n's zero-initialized ``b1`` puts every hidden unit of that row at relu's kink
(9 interacting values at 0), a digit on a zero background does the same to a conv's outputs,
and a loss of ``max_pool2d(relu(x))`` over integer x ties 6 values in overlapping windows. A
correct backward (torch's: relu's 0 at 0, a window's first maximum) failed there "as computed".

Oracle: the pieces written by hand. ``relu(X W1 + b1)``'s gradient with every tied unit inactive
(the region ``b1 < 0`` touching the point) is torch's, exactly; with every one active, the
``>= 0`` mask's; relu's slope 2 (or -1) at 0 and masks wrong away from the ties are no piece's
and no mix's. A max-pool's tied inputs each given the window's whole gradient sum to k times the
slope of moving them together, which every piece gives once. Each passing case has a twin that
fails."""

import numpy as np
import pytest

import gradcli

_RNG = np.random.default_rng(3)
_X = _RNG.normal(size=(3, 4))
_X[1] = 0.0  # a padding row
_NET = {"X": _X, "W1": _RNG.normal(size=(4, 5)) * 0.5, "b1": np.zeros(5),
        "W2": _RNG.normal(size=(5, 3)) * 0.5, "b2": _RNG.normal(size=3) * 0.1}  # fmt: skip
_Y = _RNG.integers(0, 3, 3)


def _two_layer(mask):
    """CS231n's TwoLayerNet.loss (affine - relu - affine - softmax) as one layer, its relu's
    backward ``dh * mask(a, s)``."""

    def forward(X, W1, b1, W2, b2):
        s = np.maximum(0, X @ W1 + b1) @ W2 + b2
        s = s - s.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        return -logp[np.arange(X.shape[0]), _Y].mean()

    def backward(grad_output, X, W1, b1, W2, b2):
        a = X @ W1 + b1
        h = np.maximum(0, a)
        s = h @ W2 + b2
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        ds = p.copy()
        ds[np.arange(X.shape[0]), _Y] -= 1
        ds *= grad_output / X.shape[0]
        da = ds @ W2.T * mask(a, s)
        return {"X": da @ W1.T, "W1": X.T @ da, "b1": da.sum(0), "W2": h.T @ ds, "b2": ds.sum(0)}

    return forward, backward


def _check_net(mask):
    forward, backward = _two_layer(mask)
    return gradcli.check(forward=forward, backward=backward, tensors=_NET, grad_output=1.0)


def test_a_correct_two_layer_net_passes_at_a_zero_row_with_zero_bias():
    r = _check_net(lambda a, s: a > 0)  # torch's relu' (0) = 0: every tied unit inactive
    assert r.passed, str(r)
    assert any("mix of the gradients of pieces" in n for n in r.notes), r.notes
    assert not any(v.ties_unverified for v in r.results.values())


@pytest.mark.parametrize("mask", [
    lambda a, s: (a > 0) + 2.0 * (a == 0),  # relu's slope 2 at 0: no piece's, no mix's
    lambda a, s: a > 0.3,  # wrong away from the ties (0.208 masked)
], ids=["slope-2-at-0", "threshold"])  # fmt: skip
def test_a_wrong_relu_mask_still_fails_at_a_zero_row(mask):
    r = _check_net(mask)
    assert not r.passed
    assert not r.results["b1"].passed or not r.results["X"].passed, str(r)


_POOL_RNG = np.random.default_rng(0)
_XI = _POOL_RNG.integers(-1, 3, size=(5, 5)).astype(float)
_U = _POOL_RNG.normal(size=16)  # each 2x2 window's upstream weight


def _pool_loss(all_ties: bool):
    """sum_w U[w] max_pool2d(relu(x), 2, stride 1)[w]; its backward routes a window's gradient
    to its first maximum (torch's) or to every tied one (CS231n's ``win == win.max()``)."""
    starts = [(i, j) for i in range(4) for j in range(4)]

    def forward(x):
        r = np.maximum(x, 0)
        return sum(u * r[i : i + 2, j : j + 2].max() for u, (i, j) in zip(_U, starts, strict=True))

    def backward(grad_output, x):
        r = np.maximum(x, 0)
        dr = np.zeros_like(r)
        for u, (i, j) in zip(_U, starts, strict=True):
            win = r[i : i + 2, j : j + 2]
            m = (win == win.max()).ravel().astype(float)
            if not all_ties:
                m[np.flatnonzero(m)[1:]] = 0.0
            dr[i : i + 2, j : j + 2] += grad_output * u * m.reshape(2, 2)
        return {"x": dr * (x > 0)}

    return forward, backward


def test_torch_max_pool_of_relu_over_integers_passes_at_six_tied_values():
    forward, backward = _pool_loss(all_ties=False)
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": _XI}, grad_output=1.0)
    assert r.passed, str(r)


def test_every_tied_maximum_given_the_whole_gradient_still_fails():
    forward, backward = _pool_loss(all_ties=True)
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": _XI}, grad_output=1.0)
    assert not r.passed


F, S = 5, 8  # filters, side: 65 zeros of x and b, more than are moved one by one


def _conv_relu_pool(relu_mask, f=F):
    """CS231n's conv_relu_pool (3x3 conv pad 1, relu, 2x2 max-pool) on x (1, 1, S, S), f
    filters."""

    def conv(x, w, b):
        xp = np.pad(x[0, 0], 1)
        cols = np.lib.stride_tricks.sliding_window_view(xp, (3, 3)).reshape(S * S, 9)
        return (cols @ w.reshape(f, 9).T + b).T.reshape(f, S, S), cols

    def forward(x, w, b):
        r = np.maximum(conv(x, w, b)[0], 0)
        return r.reshape(f, S // 2, 2, S // 2, 2).max(axis=(2, 4))

    def backward(grad_output, x, w, b):
        a, cols = conv(x, w, b)
        r = np.maximum(a, 0)
        half = S // 2
        win = r.reshape(f, half, 2, half, 2).transpose(0, 1, 3, 2, 4).reshape(f, half, half, 4)
        first = np.eye(4)[win.argmax(axis=-1)]  # torch's: the first maximum
        dr = (first * grad_output[..., None]).reshape(f, S // 2, S // 2, 2, 2)
        dr = dr.transpose(0, 1, 3, 2, 4).reshape(f, S, S)
        da = (dr * relu_mask(a)).reshape(f, S * S)
        dcols = da.T @ w.reshape(f, 9)
        dxp = np.zeros((S + 2, S + 2))
        for n, (i, j) in enumerate((i, j) for i in range(S) for j in range(S)):
            dxp[i : i + 3, j : j + 3] += dcols[n].reshape(3, 3)
        return {"x": dxp[1:-1, 1:-1][None, None], "w": (da @ cols).reshape(f, 1, 3, 3),
                "b": da.sum(axis=1)}  # fmt: skip

    return forward, backward


_DIGIT = np.zeros((1, 1, S, S))
_DIGIT[0, 0, 3:5, 3:5] = [[0.9, 0.4], [0.7, 1.0]]  # a digit on a zero background
_CONV = {"x": _DIGIT, "w": np.random.default_rng(4).normal(size=(F, 1, 3, 3)) * 0.3,
         "b": np.zeros(F)}  # fmt: skip
_G = np.random.default_rng(5).normal(size=(F, S // 2, S // 2))


def test_torch_conv_relu_pool_passes_on_a_zero_background():
    # its twins: the relu masks above, wrong away from the ties (a wrong mask here, read along
    # every direction at 65 tied values, costs 2 s of CPU)
    forward, backward = _conv_relu_pool(lambda a: a > 0)
    r = gradcli.check(forward=forward, backward=backward, tensors=_CONV, grad_output=_G)
    assert r.passed, str(r)
