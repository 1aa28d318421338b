"""A kernel gradient flipped along axes gradcli does not know is named: the README promises a
spatially flipped copy is matched for a layer with no built-in backward, but only a conv's own
axes were tried, and a CS231n-layout (F, C, HH, WW) kernel flipped on its last two axes got no
hint (outside test t72b F4). Tried: the last two axes, the last, every axis. Twins: a transpose
is still named a transpose, and the right gradient passes."""

import numpy as np
import pytest

import gradcli

RNG = np.random.default_rng(0)


def _check(shape, wrong):
    A, W = RNG.standard_normal(shape), RNG.standard_normal(shape)  # noqa: N806

    def forward(W, A):  # noqa: N803
        return np.tanh(W * A)

    def backward(grad_output, W, A):  # noqa: N803
        d = grad_output * (1 - np.tanh(W * A) ** 2)
        return {"W": wrong(d * A), "A": d * W}

    return gradcli.check("custom", {"W": W, "A": A}, forward=forward, backward=backward)


@pytest.mark.parametrize(("shape", "wrong", "words"), [
    ((2, 3, 4, 4), lambda g: g[:, :, ::-1, ::-1], "its last two axes"),
    ((2, 3, 5), lambda g: g[..., ::-1], "its last axis"),
    ((3, 4), lambda g: g[::-1, ::-1], "its last two axes"),
    ((2, 3, 4), lambda g: g[::-1, ::-1, ::-1], "every axis"),
])  # fmt: skip
def test_a_flipped_kernel_gradient_is_named(shape, wrong, words):
    res = _check(shape, wrong).results["W"]
    assert not res.passed and [h.cause for h in res.hints] == ["flipped"], res.hints
    assert words in str(res.hints[0])


def test_twins_a_transpose_and_the_right_gradient():
    res = _check((4, 5, 5), lambda g: g.transpose(0, 2, 1)).results["W"]
    assert [h.cause for h in res.hints] == ["transposed"], res.hints
    assert _check((2, 3, 4, 4), lambda g: g).passed
