"""A user's own formula rounding what float64 cannot hold (t25 F3): a textbook sigmoid's
``y * (1 - y)`` at ``y = 1.0`` reads 0 for a slope of 1e-16, a saturated softmax's
``y * (g - (g * y).sum())`` reads 0 at its top output for -1.4e-28 beside terms of 2. No nudge
of the inputs reaches that rounding, and the complex step, which has none, read them "wrong"
with a missing-term hint. Each element is now held to how far its backward moves when every
rounding operation is moved by float64's last bits (checking/lastbit.rounded_floor, run in
long double). The twins: wrong formulas at the same points still fail, a mask that flips at a
tie counts nothing, and code that leaves long double measures nothing."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.checking import lastbit

pytestmark = pytest.mark.skipif(
    float(np.finfo(np.longdouble).eps) * 64 > float(np.finfo(np.float64).eps),
    reason="no long double finer than float64 on this platform",
)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def sigmoid_textbook(grad_output, x):
    y = sigmoid(x)
    return {"x": grad_output * y * (1 - y)}


def softmax(x):
    e = np.exp(x - x.real.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def softmax_textbook(grad_output, x):
    y = softmax(x)
    return {"x": y * (grad_output - (grad_output * y).sum(-1, keepdims=True))}


def softmax_exact(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The oracle: dx_i = y_i sum_j y_j (g_i - g_j), in which nothing cancels."""
    y = softmax(x)
    return y * (y[..., None, :] * (g[..., :, None] - g[..., None, :])).sum(-1)


def saturated_logits(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every row confident by far more than float64 holds: scale 200."""
    rng = np.random.default_rng(seed)
    return 200 * rng.standard_normal((3, 5)), rng.standard_normal((3, 5))


SATURATED_X = np.array([[40.0, 41.0, 39.0, 38.5], [36.5, 45.0, 37.0, 42.0]])


@pytest.mark.parametrize("seed", range(3))
def test_a_saturated_custom_softmax_passes_the_complex_step(seed):
    x, g = saturated_logits(seed)
    r = gradcli.check(forward=softmax, backward=softmax_textbook, tensors={"x": x},
                      grad_output=g, method="complex")  # fmt: skip
    assert r.passed, r.verdict()
    # the backward's float64 answer really is off (the oracle), and a note says where
    a = softmax_textbook(g, x)["x"]
    exact = softmax_exact(x, g)
    assert np.any(np.abs(a - exact) > 0.5 * np.abs(exact))  # the top output's element
    assert any("own round-off" in n for n in r.notes), r.notes


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("wrong", ["flip", "diagonal"])
def test_wrong_softmax_formulas_at_the_same_points_fail(seed, wrong):
    def backward(grad_output, x):
        y = softmax(x)
        if wrong == "flip":
            return {"x": y * ((grad_output * y).sum(-1, keepdims=True) - grad_output)}
        return {"x": y * (1 - y) * grad_output}  # the Jacobian's diagonal alone

    x, g = saturated_logits(seed)
    r = gradcli.check(forward=softmax, backward=backward, tensors={"x": x}, grad_output=g,
                      method="complex")  # fmt: skip
    assert not r.passed


def test_the_textbook_sigmoid_passes_the_complex_step_where_every_output_is_1():
    r = gradcli.check(forward=sigmoid, backward=sigmoid_textbook, tensors={"x": SATURATED_X},
                      method="complex")  # fmt: skip
    assert r.passed, r.verdict()


@pytest.mark.parametrize("wrong", [
    lambda g, y: g * y,  # (1 - y) dropped: 1 against 1e-16
    lambda g, y: -g * y,
    lambda g, y: g * y * (1 - y) + 1e-12 * np.abs(g),  # beyond what its rounding moves
])  # fmt: skip
def test_wrong_sigmoid_formulas_where_every_output_is_1_fail(wrong):
    def backward(grad_output, x):
        return {"x": wrong(grad_output, sigmoid(x))}

    r = gradcli.check(forward=sigmoid, backward=backward, tensors={"x": SATURATED_X},
                      method="complex")  # fmt: skip
    assert not r.passed


def test_a_wrong_sigmoid_among_unsaturated_elements_fails():
    x = np.array([[0.3, -1.2, 38.0, 2.0], [36.5, 0.0, -0.7, 45.0]])

    def backward(grad_output, x):
        y = sigmoid(x)
        return {"x": 1.5 * grad_output * y * (1 - y)}

    for method in ("complex", "central"):
        r = gradcli.check(forward=sigmoid, backward=backward, tensors={"x": x}, method=method)
        assert not r.passed, method


def _floor(forward, backward, tensors, g):
    """rounded_floor of the user's code through the API's own layer (as a check builds it)."""
    captured = {}
    original = lastbit.rounded_floor

    def spy(spec, under_test, *rest):
        captured.update(original(spec, under_test, *rest))
        return captured

    lastbit.rounded_floor = spy
    try:
        gradcli.check(forward=forward, backward=backward, tensors=tensors, grad_output=g,
                      method="complex")  # fmt: skip
    finally:
        lastbit.rounded_floor = original
    return captured


def test_the_floor_covers_the_formulas_own_error():
    """Independent oracle: the textbook softmax's float64 error at each element (against the
    cancellation-free formula) is within the floor measured for it."""
    for seed in range(3):
        x, g = saturated_logits(seed)
        floor = _floor(softmax, softmax_textbook, {"x": x}, g)["x"]
        error = np.abs(softmax_textbook(g, x)["x"] - softmax_exact(x, g))
        assert np.all(error <= floor), seed
        # and it is rounding, of the size of the terms (|g| ~ 1), not the gradient's size
        assert floor.max() < 1e-13


def test_a_mask_flipping_at_a_tie_counts_nothing():
    """A route read off a recomputed product: each rounding of ``x * w`` breaks the tie another
    way, the element jumps by the whole upstream gradient at either unit: not rounding."""

    def forward(x, w):
        return (x * w).max(axis=1)

    def backward(grad_output, x, w):  # wrong: every tied maximum takes the whole gradient
        m = ((x * w) == (x * w).max(axis=1, keepdims=True)).astype(float)
        return {"x": m * w * grad_output[:, None], "w": m * x * grad_output[:, None]}

    x = np.array([[1.0, 1.0, 0.3], [2.0, 2.0, 2.0], [0.5, 0.1, 0.5]])
    t = {"x": x, "w": np.ones((3, 3))}
    g = np.array([0.7, -1.3, 0.4])
    floor = _floor(forward, backward, t, g)
    assert all(np.all(f <= 1e-10) for f in floor.values()), floor  # rounding, not g's jumps
    r = gradcli.check(forward=forward, backward=backward, tensors=t, grad_output=g,
                      method="complex")  # fmt: skip
    assert not r.passed


def test_code_leaving_long_double_measures_nothing():
    """A backward casting to float64 (torch does the same) rounds in float64 whatever is moved
    in long double: no floor, the saturated sigmoid fails under the complex step as before."""

    def backward(grad_output, x):
        y = sigmoid(np.asarray(x, dtype=np.float64))
        return {"x": np.asarray(grad_output, dtype=np.float64) * y * (1 - y)}

    floor = _floor(sigmoid, backward, {"x": SATURATED_X}, np.ones(SATURATED_X.shape))
    assert all(not np.any(f) for f in floor.values())
    r = gradcli.check(forward=sigmoid, backward=backward, tensors={"x": SATURATED_X},
                      method="complex")  # fmt: skip
    assert not r.passed


@pytest.mark.parametrize("pad", [
    lambda g, d: d + (1e20 * g - 1e20 * g),  # exactly 0 in float64, moved a lot by rounding
    lambda g, d: (d + 1e20) - 1e20,  # every element 0 in float64 (and in long double)
])  # fmt: skip
@pytest.mark.parametrize("method", ["central", "complex"])
def test_rounding_float64_does_not_suffer_sets_no_tolerance(pad, method):
    """Outside test t26 F9: twice the gradient plus a float64-exact zero term passed, its
    floor measured on rounding that only the long double run had; so did a shift by 1e20
    that leaves 0. The floor is never beyond the float64 answer's distance from long double's."""

    def backward(grad_output, x):
        return {"x": pad(grad_output, 2 * grad_output * (1 - np.tanh(x) ** 2))}

    x = np.random.default_rng(0).standard_normal((4, 5))
    def forward(x):
        return np.tanh(x)

    r = gradcli.check(forward=forward, backward=backward, tensors={"x": x}, method=method)
    assert not r.passed  # (an element whose slope is below 64 units of the terms may pass 0)


def test_an_assert_on_float64_keeps_the_floor():
    """Outside test t27 N10: the floor was measured on long double copies, which a backward
    asserting float64 refused, and the same numbers failed "wrong"; it runs in float64 now."""

    def backward(grad_output, x):
        assert x.dtype == np.float64 and grad_output.dtype == np.float64
        return softmax_textbook(grad_output, x)

    x, g = saturated_logits(0)
    r = gradcli.check(forward=softmax, backward=backward, tensors={"x": x}, grad_output=g,
                      method="complex")  # fmt: skip
    assert r.passed, r.verdict()


@pytest.mark.parametrize("method", ["central", "forward", "central4"])
@pytest.mark.parametrize("make", ["softmax", "layernorm"])
def test_an_upstream_gradient_of_ones_through_a_custom_normalization_passes(make, method):
    """Outside test t27 N8: L = sum(softmax(x)) is constant, dx = 0 in theory and 1e-17 of
    round-off either side; a custom softmax or layernorm under it read 'cannot resolve' for a
    while (the outputs' reach held against a gradient of round-off). It is judged at the size
    of its terms, read from the same differences under upstream gradients of random signs
    (the reach is no longer asked only where an element fails: t36b F1). Twin: a missing
    term."""
    x = np.random.default_rng(1).normal(size=(8, 10)) * 2

    def ln_forward(x):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)

    def ln_backward(grad_output, x, wrong=False):
        inv = 1 / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
        xhat = (x - x.mean(-1, keepdims=True)) * inv
        d = grad_output
        mean_term = 0 if wrong else d.mean(-1, keepdims=True)
        return {"x": inv * (d - mean_term - xhat * (d * xhat).mean(-1, keepdims=True))}

    forward, backward = (softmax, softmax_textbook) if make == "softmax" else (
        ln_forward, ln_backward)  # fmt: skip
    ones = np.ones_like(x)
    assert gradcli.check(forward=forward, backward=backward, tensors={"x": x},
                         grad_output=ones, method=method).passed  # fmt: skip
    if make == "layernorm":  # the twin: the mean's term dropped, at the same point
        wrong = gradcli.check(forward=forward, tensors={"x": x}, grad_output=ones, method=method,
                              backward=lambda grad_output, x: ln_backward(grad_output, x, True))
        assert not wrong.passed


def test_a_constant_large_output_sets_no_cap():
    """Outside test t28 R6: beside an output of 1e12 that no input moves, the cap on the floor
    (64 units of max|g| max|y| / max|x|) was 0.05 for gradients of 2, and a backward 1% off
    plus a float64-exact zero term passed under the complex step. The cap takes the outputs
    the tensor moves. Twin: the right backward passes."""

    def forward(x):
        return np.stack([np.tanh(x), np.full_like(x, 1e12)])

    def backward_of(scale):
        def backward(grad_output, x):
            g = grad_output[0]
            return {"x": scale * g * (1 - np.tanh(x) ** 2) + (1e20 * g - 1e20 * g)}

        return backward

    x = np.random.default_rng(0).standard_normal((4, 6))
    for scale, passed in ((1.0, True), (1.01, False)):
        r = gradcli.check(forward=forward, backward=backward_of(scale), tensors={"x": x},
                          method="complex")  # fmt: skip
        assert r.passed is passed, (scale, r.verdict())


def test_the_floor_keeps_within_max_memory():
    """Its arrays (six of the tensors' size, x and the upstream gradient) are held to a quarter
    of --max-memory: at 1 MB (the least accepted) a 2,732-element saturated sigmoid, just past
    the 2,730 that fit, is not measured, and fails as before under the complex step; at the
    default it is, and passes (its elements held to their float64 answer's own distance from
    the long double run)."""
    x = np.random.default_rng(3).uniform(37, 45, size=(2, 1366))
    # 6 float64 arrays of x's and the upstream gradient's elements: 262,272 bytes, just past
    # a quarter of 1 MB (262,144)
    assert 2**20 / 4 < 8 * lastbit.HELD * 2 * x.size <= 2**20 / 4 + 8 * lastbit.HELD * 4
    # the floor is measured on every element whatever is checked: 32 sampled coordinates (all
    # saturated) read it as every coordinate does, at a fraction of the cost
    for max_memory, passed in ((1, False), (None, True)):  # MB
        kw = {} if max_memory is None else {"max_memory": max_memory}
        r = gradcli.check(forward=sigmoid, backward=sigmoid_textbook, tensors={"x": x},
                          method="complex", mode="sample", samples=32, **kw)  # fmt: skip
        assert r.passed is passed, (max_memory, r.verdict())
