"""A gradient off by a multiple of its own tensor is named: CS231n's most common slip, the
regularization's ``reg * W`` left out of dW (or ``2 reg W`` for ``0.5 reg sum(W^2)``; an L1
penalty's ``reg * sign(W)``), was caught on the right tensor with no word of why (outside
tests t71b F5, t72b F6). The hint says
``numeric - dW = c x W``, with c the missing (c > 0) or extra (c < 0) factor; in a net with
ties it is read away from the kinks, whose numeric is a side's slope. Twins: an error that is no
multiple of W (a constant, a transpose's), the right gradient, and a W of one value (a multiple
of it is a constant) get no such hint."""

import numpy as np
import pytest

import gradcli

REG = 0.1


def _softmax_loss(s, y):
    s = s - s.max(1, keepdims=True)
    p = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    return p, -np.log(p[np.arange(len(y)), y]).mean()


def _check(extra, W=None, relu=False, seed=0, l1=False):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (6, 5)).astype(float) if relu else rng.normal(size=(6, 5))
    y = rng.integers(0, 3, 6)
    if W is None:  # whole numbers under a relu: scores summing to exactly 0, at its kink
        W = rng.integers(-2, 3, (5, 3)).astype(float) if relu else rng.normal(size=(5, 3))
    b = np.zeros(3)

    def forward(x, y, W, b):
        a = x @ W + b
        penalty = REG * np.abs(W).sum() if l1 else 0.5 * REG * (W**2).sum()
        return _softmax_loss(np.maximum(a, 0) if relu else a, y)[1] + penalty

    def backward(grad_output, x, y, W, b):
        a = x @ W + b
        p, _ = _softmax_loss(np.maximum(a, 0) if relu else a, y)
        ds = p.copy()
        ds[np.arange(len(y)), y] -= 1
        da = ds / len(y) * ((a > 0) if relu else 1)
        dW = x.T @ da + REG * (np.sign(W) if l1 else W) + extra(W)
        return {"x": da @ W.T * grad_output, "W": dW * grad_output, "b": da.sum(0) * grad_output}

    return gradcli.check("custom", {"x": x, "y": y, "W": W, "b": b}, forward=forward,
                         backward=backward)  # fmt: skip


@pytest.mark.parametrize(("extra", "c", "words"), [
    (lambda W: -REG * W, "0.1", "a term 0.1 x W is missing from dW"),
    (lambda W: REG * W, "-0.1", "dW has 0.1 x W too much"),
])  # fmt: skip
def test_a_missing_or_doubled_l2_term_is_named(extra, c, words):
    res = _check(extra).results["W"]
    assert not res.passed and [h.cause for h in res.hints] == [f"own-multiple:{c}"], res.hints
    assert words in str(res.hints[0]) and "everywhere" in str(res.hints[0])


def test_it_is_read_away_from_kinks():
    r = _check(lambda W: -REG * W, relu=True, seed=0)
    res = r.results["W"]
    assert [h.cause for h in res.hints] == ["own-multiple:0.1"], (r.verdict(), res.hints)
    assert "away from kinks" in str(res.hints[0])


@pytest.mark.parametrize("extra", [lambda W: 0.1 + 0 * W, lambda W: 0.1 * W[::-1, ::-1]])
def test_twins_other_errors_get_no_such_hint(extra):
    res = _check(extra).results["W"]
    assert not res.passed
    assert not any(str(h.cause).startswith("own-multiple") for h in res.hints), res.hints


def test_twins_the_right_gradient_and_a_constant_tensor():
    assert _check(lambda W: 0 * W).passed
    res = _check(lambda W: -REG * W, W=np.full((5, 3), 0.5)).results["W"]
    assert not res.passed
    assert not any(str(h.cause).startswith("own-multiple") for h in res.hints), res.hints


def test_a_missing_l1_term_is_named_by_its_sign():
    res = _check(lambda W: -REG * np.sign(W), l1=True).results["W"]
    assert [h.cause for h in res.hints] == ["own-sign:0.1"], res.hints
    assert "a term 0.1 x sign(W) is missing from dW" in str(res.hints[0])
    assert _check(lambda W: 0 * W, l1=True).passed


def test_a_tensor_of_one_magnitude_names_both_readings():
    """W of only ±0.5 (sign-initialised weights): 0.1 W is 0.05 sign(W), and an L2 slip read
    as an L1 penalty alone sent a student after an abs the loss does not have (outside test
    t73b F1)."""
    W = np.where(np.random.default_rng(1).normal(size=(5, 3)) > 0, 0.5, -0.5)
    res = _check(lambda W: -REG * W, W=W).results["W"]
    assert [h.cause for h in res.hints] == ["own-multiple:0.1 or own-sign:0.05"], res.hints
    assert "W holds only ±0.5" in str(res.hints[0])


def test_the_factor_is_said_in_the_spec_s_reg():
    """CS231n's linear classifiers' ``reg * sum(W * W)``: its 2 reg W left out reads
    ``0.2 (= 2 x reg)`` (outside test t73b F2)."""
    rng = np.random.default_rng(2)
    x, t, W = rng.normal(size=(6, 4)), rng.normal(size=(6, 3)), rng.normal(size=(4, 3))

    def forward(x, t, W, reg):
        return 0.5 * ((x @ W - t) ** 2).sum() + reg * (W * W).sum()

    def backward(grad_output, x, t, W, reg):
        return {"W": grad_output * (x.T @ (x @ W - t))}  # 2 reg W left out

    r = gradcli.check("custom", {"x": x, "t": t, "W": W}, options={"reg": 0.1},
                      forward=forward, backward=backward, data=["x", "t"])  # fmt: skip
    res = r.results["W"]
    assert [h.cause for h in res.hints] == ["own-multiple:0.2"], res.hints
    assert "a term 0.2 (= 2 x reg) x W is missing from dW" in str(res.hints[0])
