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
pass nowhere.

A rule that differs between tensors (dx from ``a > 0`` beside dW1 and db1 from ``a >= 0``) gives
each tensor values between its own one-sided slopes, and no move holds both layers' ties still
(each output sums kinks of both orientations), so it passed at seeds 0 and 7 (outside test
t73a F1). Where no move held the ties together, the coordinates at a kink of every tensor are
now held to one mix of the pieces read (numeric/shifts.consistent): none gives them, and the
tensors are "not verified". Oracle: a move keeping every tied unit of both layers tied (the
null space of their pre-activations' gradients), along which every piece touching the point
has one slope, the forward's central difference: the mixed backward gives it another."""

from __future__ import annotations

from pathlib import Path

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


def _mixed(grad_output, x, W1, b1, W2, b2, W3):
    """dx from a > 0 beside dW1 and db1 from a >= 0 in the inner layer: no gradient."""
    got = _backward("gt", "gt")(grad_output, x, W1, b1, W2, b2, W3)
    a1 = x @ W1 + b1
    a2 = np.maximum(a1, 0) @ W2 + b2
    da1 = (((grad_output @ W3.T) * (a2 > 0)) @ W2.T) * (a1 >= 0)
    return {**got, "W1": x.T @ da1, "b1": da1.sum(0)}


def _held_still(t):
    """A unit move of (x, W1, b1, W2, b2) keeping every tied unit of both layers tied."""
    keys = ["x", "W1", "b1", "W2", "b2"]
    off = np.cumsum([0] + [t[k].size for k in keys])
    x, W1, W2 = t["x"], t["W1"], t["W2"]
    a1 = x @ W1 + t["b1"]
    h1 = np.maximum(a1, 0)
    a2 = h1 @ W2 + t["b2"]

    def unit(i, j):  # the gradient of a1[i, j]
        v = np.zeros(off[-1])
        v[off[0] + i * x.shape[1] : off[0] + (i + 1) * x.shape[1]] = W1[:, j]
        v[off[1] + np.arange(x.shape[1]) * W1.shape[1] + j] = x[i]
        v[off[2] + j] = 1.0
        return v

    rows = [unit(i, j) for i, j in zip(*np.nonzero(a1 == 0), strict=True)]
    for i, m in zip(*np.nonzero(a2 == 0), strict=True):
        v = sum(W2[j, m] * unit(i, j) for j in np.flatnonzero(a1[i] > 0))
        v = v + np.zeros(off[-1])
        v[off[3] + np.arange(W2.shape[0]) * W2.shape[1] + m] = h1[i]
        v[off[4] + m] = 1.0
        rows.append(v)
    _, sv, vt = np.linalg.svd(np.array(rows))
    null = vt[(sv > 1e-9 * sv[0]).sum() :]
    return null, keys, off


@pytest.mark.parametrize("seed", [0, 7])
def test_a_rule_that_differs_between_tensors_is_not_verified(seed):
    t = _tensors(seed)
    gy = np.random.default_rng(5).normal(size=(12, 3))
    null, keys, off = _held_still(t)
    wrong = np.concatenate([_mixed(gy, **t)[k].ravel() for k in keys])
    right = np.concatenate([_backward("gt", "gt")(gy, **t)[k].ravel() for k in keys])
    c = null.T @ (null @ (wrong - right))
    c /= np.linalg.norm(c)

    def loss(s):
        moved = {k: t[k] + s * c[a:b].reshape(t[k].shape)
                 for k, a, b in zip(keys, off[:-1], off[1:], strict=True)}  # fmt: skip
        return (_forward(**{**t, **moved}) * gy).sum()

    slope = (loss(1e-6) - loss(-1e-6)) / 2e-6
    assert abs(right @ c - slope) < 1e-6 < 1e-2 < abs(wrong @ c - slope)
    r = gradcli.check("custom", t, forward=_forward, backward=_mixed, seed=seed)
    assert not r.passed and "at ties across tensors" in r.verdict(), r.verdict()
    assert all(res.passed or res.unresolved for res in r.results.values()), r.verdict()


def _leaky(slope_at_0: float):
    def forward(x, W1, b1, W2, b2, W3):
        def f(a):
            return np.where(a > 0, a, 0.1 * a)

        return f(f(x @ W1 + b1) @ W2 + b2) @ W3

    def backward(grad_output, x, W1, b1, W2, b2, W3):
        def d(a):
            return np.where(a > 0, 1.0, np.where(a < 0, 0.1, slope_at_0))

        a1 = x @ W1 + b1
        h1 = np.where(a1 > 0, a1, 0.1 * a1)
        a2 = h1 @ W2 + b2
        da2 = (grad_output @ W3.T) * d(a2)
        da1 = (da2 @ W2.T) * d(a1)
        return {"x": da1 @ W1.T, "W1": x.T @ da1, "b1": da1.sum(0), "W2": h1.T @ da2,
                "b2": da2.sum(0), "W3": np.where(a2 > 0, a2, 0.1 * a2).T @ grad_output}  # fmt: skip

    return forward, backward


@pytest.mark.parametrize(("slope", "right"), [(0.5, True), (2.0, False)])
def test_leaky_relu_s_half_way_slope_in_both_layers_is_a_mix(slope, right):
    """leaky_relu'(0) = 0.5 in both layers (slope 0.1 below 0) is a mix of the four corner
    pieces (each layer's tied units on or off), with weights that differ from the first mix a
    sample of 8 coordinates took: read along every piece at the rest, it passes (outside test
    t74a F4 read it "not verified at ties across tensors"). Twin: 2 at 0 fails."""
    forward, backward = _leaky(slope)
    t = dict(np.load(Path(__file__).parent / "fixtures" / "leaky_two_layers_t74a.npz"))
    gy = t.pop("G")
    r = gradcli.check("custom", t, forward=forward, backward=backward, grad_output=gy, seed=0,
                      budget=60 if right else 3)  # fmt: skip
    assert r.passed == right, r.verdict()


def test_a_nan_in_one_tensor_leaves_the_others_judged_as_before():
    """A NaN in db1 fails db1 as not finite; the check of one mix across tensors, which has no
    moves of b1 then (a tensor with a NaN is left out of the pieces), read the right dx, dW1,
    dW2 and db2 "not verified at ties across tensors" (found in review). Twin: the NaN still
    fails."""

    def backward(grad_output, **t):
        g = _backward("gt", "gt")(grad_output, **t)
        g["b1"] = g["b1"].copy()
        g["b1"][0] = np.nan
        return g

    r = gradcli.check("custom", _tensors(0), forward=_forward, backward=backward, seed=0)
    assert not r.passed and "db1 is not finite" in r.verdict(), r.verdict()
    assert [n for n, res in r.results.items() if not res.passed] == ["b1"], r.verdict()
