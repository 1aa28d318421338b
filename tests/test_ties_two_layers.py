"""Ties on hyperplanes in two relu layers (numeric/shifts.py's moves of two tensors):
``relu(relu(x W1 + b1) W2 + b2) W3`` at whole-number x, W1 and W2 with zero biases and zero rows
ties units of both layers. Moving b1 alone down turns the first layer's tied units off but
moves the second's by sums of W2 either way, and b2 alone leaves the first's tied, so no single
whole tensor's move entered the piece of CS231n's ``a >= 0`` in both layers: a right backward
read "not verified" or "does not match" (outside test t71a F2). b1 moved up by tau with b2 up
by 256 tau enters it, b1 down with b2 up that of ``a >= 0`` inside and ``a > 0`` outside.

Oracle: the rule's gradient equals the forward's central differences at a point just off the
ties (b1 and b2 moved by 1e-9 and 1e-6 the rule's way: no unit within 1e-9 of its kink, every
other a whole number away). The twins: relu'(0) = 2 in the outer layer, or -1 in the inner,
pass nowhere."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

RULES = {
    "gt": lambda a: (a > 0) * 1.0,
    "ge": lambda a: (a >= 0) * 1.0,
    "two": lambda a: (a > 0) + 2.0 * (a == 0),
    "minus_one": lambda a: (a > 0) - 1.0 * (a == 0),
}
# (inner rule, outer rule) -> the signs b1 and b2 move to enter its piece
SIDES = {"ge": 1.0, "gt": -1.0}


def _tensors(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (12, 6)).astype(float)
    x[:2] = 0
    return {"x": x, "W1": rng.integers(-1, 2, (6, 16)).astype(float), "b1": np.zeros(16),
            "W2": rng.integers(-1, 2, (16, 8)).astype(float), "b2": np.zeros(8),
            "W3": rng.normal(size=(8, 3))}  # fmt: skip


def _forward(x, W1, b1, W2, b2, W3):
    return np.maximum(np.maximum(x @ W1 + b1, 0) @ W2 + b2, 0) @ W3


def _backward(inner, outer):
    def backward(grad_output, x, W1, b1, W2, b2, W3):
        a1 = x @ W1 + b1
        h1 = np.maximum(a1, 0)
        a2 = h1 @ W2 + b2
        da2 = (grad_output @ W3.T) * RULES[outer](a2)
        da1 = (da2 @ W2.T) * RULES[inner](a1)
        return {"x": da1 @ W1.T, "W1": x.T @ da1, "b1": da1.sum(0), "W2": h1.T @ da2,
                "b2": da2.sum(0), "W3": np.maximum(a2, 0).T @ grad_output}  # fmt: skip

    return backward


def _check(inner: str, outer: str, seed: int, **kw):
    return gradcli.check("custom", _tensors(seed), forward=_forward,
                         backward=_backward(inner, outer), seed=seed, **kw)  # fmt: skip


CASES = [("ge", "ge", 0), ("ge", "gt", 4)]  # (both failed before)


@pytest.mark.parametrize(("inner", "outer", "seed"), CASES)
def test_the_rule_is_the_piece_just_off_the_ties(inner, outer, seed):
    t = _tensors(seed)
    a1 = t["x"] @ t["W1"]
    assert (a1 == 0).sum() > 20 and (np.maximum(a1, 0) @ t["W2"] == 0).sum() > 10
    off = dict(t, b1=t["b1"] + 1e-9 * SIDES[inner], b2=t["b2"] + 1e-6 * SIDES[outer])
    a1 = off["x"] @ off["W1"] + off["b1"]
    a2 = np.maximum(a1, 0) @ off["W2"] + off["b2"]
    assert np.abs(a1).min() >= 1e-9 / 2 and np.abs(a2).min() >= 1e-7
    gy = np.random.default_rng(5).normal(size=(12, 3))
    g = _backward(inner, outer)(gy, **t)
    for name in ("x", "W1", "b2"):
        fd = np.zeros_like(t[name])
        for i in np.ndindex(t[name].shape):
            up, down = off[name].copy(), off[name].copy()
            up[i] += 1e-10
            down[i] -= 1e-10
            fd[i] = ((_forward(**dict(off, **{name: up})) - _forward(**dict(off, **{name: down})))
                     * gy).sum() / 2e-10  # fmt: skip
        np.testing.assert_allclose(g[name], fd, atol=2e-3 * np.abs(g[name]).max())


@pytest.mark.parametrize(("inner", "outer", "seed"), CASES)
def test_right_rules_in_both_layers_pass(inner, outer, seed):
    r = _check(inner, outer, seed)
    assert r.passed, r.verdict()


@pytest.mark.parametrize(("inner", "outer"), [("gt", "two"), ("minus_one", "gt")])
def test_wrong_rules_in_either_layer_fail(inner, outer):
    r = _check(inner, outer, 0, budget=3)
    assert not r.passed, r.verdict()
