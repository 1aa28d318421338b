"""Zeros of ``relu(x) @ W``: each unit its own kink, none tied to another (outside test t45a F7).

On a zero row (a digit's background, zero padding, dead units) every zero reaches every output
of its row, so the zeros form one tie group and are linked. Moving one zero up and another down
gives the slope ``c_a`` on the right and ``-c_b`` on the left (``c = W g``, the unit's weight
times the upstream gradient): where c_a and c_b have opposite signs the line is straight or
bends one way, and its one-sided slopes left out 0, the value of relu'(0) = 0 for both, which
torch gives. A right layer was called "wrong". Oracle: relu is separable, so any value in
[0, c] per zero, chosen independently, is a valid gradient (Clarke's, for the pieces
touching x); written by hand below. The twins: the members of one unit (``relu(a + b)`` at
``a + b == 0``) must still take one piece, a max's tie still sums to its one slope, and a
value outside [0, c] still fails."""

import numpy as np
import pytest

import gradcli

K = 16  # units a row


def _data(seed):
    rng = np.random.default_rng(seed)
    x = np.abs(rng.standard_normal((5, 2 * K)))
    x[[1, 3]] = 0.0  # all-zero rows
    x[0, ::3] = 0.0
    return x, rng.standard_normal((2 * K, 6)), rng.standard_normal((5, 6))


def _relu_mm(scale_at_zero=0.0):
    def forward(x, W):
        return np.maximum(x, 0) @ W

    def backward(grad_output, x, W):
        piece = np.where(x > 0, 1.0, np.where(x == 0, scale_at_zero, 0.0))
        return {"x": (grad_output @ W.T) * piece, "W": np.maximum(x, 0).T @ grad_output}

    return forward, backward


@pytest.mark.parametrize("seed", [0])  # seed 1 failed before the fix exactly as seed 0 did
def test_relu_then_a_matrix_passes_on_zero_rows(seed):
    x, W, g = _data(seed)
    for at_zero in (0.0, 1.0, 0.5):  # relu'(0): torch's 0, a mask >= 0, a half
        forward, backward = _relu_mm(at_zero)
        r = gradcli.check("custom", {"x": x, "W": W}, grad_output=g, forward=forward,
                          backward=backward)  # fmt: skip
        assert r.passed, (seed, at_zero, r.verdict())


@pytest.mark.parametrize("seed", [1])
def test_a_value_outside_the_units_pieces_still_fails(seed):
    x, W, g = _data(seed)
    for at_zero in (2.0, -1.0):
        forward, backward = _relu_mm(at_zero)
        r = gradcli.check("custom", {"x": x, "W": W}, grad_output=g, forward=forward,
                          backward=backward)  # fmt: skip
        assert not r.passed, (seed, at_zero)
        assert "dx" in r.verdict() and "dW" not in r.verdict().split(";")[0]


@pytest.mark.parametrize("seed", [0])
def test_the_two_inputs_of_one_unit_still_take_one_piece(seed):
    x, W, g = _data(seed)
    W = W[:K]
    x[:, K:] = -x[:, :K]  # a + b == 0 on every unit, not only on the zero rows
    x[0, K:] = 0.0
    up = lambda g_, a, b: g_ @ W.T  # noqa: E731

    def forward(x, W):
        return np.maximum(x[..., :K] + x[..., K:], 0) @ W

    def backward(ma, mb):
        def bw(grad_output, x, W):
            s = x[:, :K] + x[:, K:]
            u = up(grad_output, None, None)
            return {"x": np.concatenate([u * ma(s), u * mb(s)], axis=1),
                    "W": np.maximum(s, 0).T @ grad_output}  # fmt: skip

        return bw

    right = gradcli.check("custom", {"x": x, "W": W}, grad_output=g, forward=forward,
                          backward=backward(lambda s: s > 0, lambda s: s > 0))  # fmt: skip
    assert right.passed, right.verdict()
    # budget 3: the zero rows' crowd (86 zeros) is left unverified within it as within 60 s,
    # and rows 2 and 4 fail alike, at half the cost
    mixed = gradcli.check("custom", {"x": x, "W": W}, grad_output=g, forward=forward,
                          backward=backward(lambda s: s > 0, lambda s: s >= 0),
                          budget=3.0)  # fmt: skip
    assert not mixed.passed
    assert "does not match (dx)" in mixed.verdict()


def test_a_max_tie_given_whole_to_each_still_fails():
    x, W, g = _data(0)
    W = W[:K]
    x[:, K:] = x[:, :K]  # every pair tied, zero rows included

    def forward(x, W):
        return np.maximum(x[..., :K], x[..., K:]) @ W

    def backward(grad_output, x, W):
        a, b = x[:, :K], x[:, K:]
        u = grad_output @ W.T
        return {"x": np.concatenate([u * (a >= b), u * (b >= a)], axis=1),
                "W": np.maximum(a, b).T @ grad_output}  # fmt: skip

    r = gradcli.check("custom", {"x": x, "W": W}, grad_output=g, forward=forward,
                      backward=backward)  # fmt: skip
    assert not r.passed and "does not match (dx)" in r.verdict()


@pytest.mark.parametrize(("at_zero", "right"), [(0.0, True), (2.0, False)])
def test_a_digit_batchs_thousand_zeros_are_no_tie(at_zero, right):
    """Two flattened digits' background: ~1,250 zeros (outside test t46a F1). Moved all
    together their moves add up, to the rounding of 1,250 differences (sqrt(1,250) of one's:
    the zeros were read as interacting, "not verified"), and a link's two slopes are its ends'
    own added: two units of their own, bounding nothing beyond each one's interval. Three
    outputs rather than ten classes: every zero still reaches several outputs of its row, and
    the code before the fix still left these 1,278 zeros "not verified". The twin samples 128
    coordinates at budget 1, as it did at budget 2 with ten outputs."""
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal((2, 784)))
    x[:, rng.random(784) < 0.8] = 0.0
    W, g = 0.05 * rng.standard_normal((784, 3)), rng.standard_normal((2, 3))
    forward, backward = _relu_mm(at_zero)
    r = gradcli.check("custom", {"x": x, "W": W}, grad_output=g, forward=forward,
                      backward=backward, budget=60.0 if right else 1.0)  # fmt: skip
    assert r.passed is right, r.verdict()
    if not right:
        assert "does not match (dx)" in r.verdict()
