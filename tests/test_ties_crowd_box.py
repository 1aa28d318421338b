"""Ties too large for every order, left "not verified" (numeric/crowds.py), are first held to
the range Clarke's sum rule leaves them (outside test t43a F3).

``L = sum_n G_n max_j x[n, j] + sum(relu(x @ W))`` at x in {0, 0.5, 1} with a zero row: each
row's maximum is tied 2 to 8 ways, beside relu's zeros. CS231n's mask (every tied maximum
given G_n) and "half to each" passed at --budget 3, exit 0, "not verified, your values kept".
Oracle: for each row, the sum of dx over its tied maxima must lie in G_n plus what relu's
pieces at its zeros may add (a superset of every right value, read on lines nudged off the
point): both rules leave it; the right rules (any one winner, an even split) stay within and
still pass."""

import numpy as np
import pytest

import gradcli

RNG = np.random.default_rng(7)
N, M = 6, 8
X = RNG.integers(0, 3, size=(N, M)).astype(float) * 0.5  # 2-6 tied maxima a row
X[-1] = 0.0  # a padding row: 8 tied maxima
W = RNG.integers(-2, 3, size=(M, 5)).astype(float) * 0.5
G = RNG.normal(size=N)


def _max_part(x, g, rule):
    tied = x == x.max(axis=1, keepdims=True)
    if rule == "first":
        d = np.zeros_like(x)
        d[np.arange(len(x)), x.argmax(1)] = g
        return d
    k = tied.sum(1, keepdims=True)
    share = {"even": 1.0 / k, "all": 1.0, "half": np.where(k > 1, 0.5, 1.0)}[rule]
    return tied * g[:, None] * share


def _layer(rule):
    def forward(x, W):
        return float((G * x.max(axis=1)).sum() + np.maximum(x @ W, 0).sum())

    def backward(grad_output, x, W):
        dz = (x @ W > 0) * float(grad_output)
        return {"x": _max_part(x, float(grad_output) * G, rule) + dz @ W.T, "W": x.T @ dz}

    return forward, backward


# (a right rule of this loss passing: tests/test_ties_both_ways.py and the cases below)
@pytest.mark.parametrize(("rule", "right"), [("all", False), ("half", False)])
def test_a_crowds_rule_outside_its_range_fails_at_a_small_budget(rule, right):
    forward, backward = _layer(rule)
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": X, "W": W}, budget=3)
    assert r.passed is right, r.verdict()
    if not right:
        assert "not match (dx" in r.verdict()


def _padded():
    rng = np.random.default_rng(2)
    x = np.round(rng.standard_normal((4, 12, 6)), 2)
    for n, length in enumerate((12, 9, 5, 3)):
        x[n, length:] = 0.0  # zero-padded sequences: 19 all-zero rows
    return {"x": x, "W": np.round(rng.standard_normal((6, 8)), 2), "b": np.zeros(8)}, \
        rng.standard_normal((4, 12, 8))


@pytest.mark.parametrize(("at_zero", "right"), [(2.0, False), (0.0, True)])
def test_relus_slope_2_at_zero_padding_fails(at_zero, right):
    """relu(x @ W + b) with CS231n's zero bias on zero-padded sequences: every unit of a
    padded row at relu's kink, one crowd across x, W and b. relu'(0) = 2 passed unverified
    (outside test t46a F2); b_j alone moves every padded row's unit j, [0, sum g] both ways."""
    t, g = _padded()

    def forward(x, W, b):
        return np.maximum(x @ W + b, 0)

    def backward(grad_output, x, W, b):
        a = x @ W + b
        da = grad_output * np.where(a == 0, at_zero, a > 0)
        return {"x": da @ W.T, "W": np.einsum("nti,ntj->ij", x, da), "b": da.sum((0, 1))}

    r = gradcli.check("custom", t, forward=forward, backward=backward, grad_output=g)
    assert r.passed is right, r.verdict()


@pytest.mark.parametrize(("mask_b", "right"), [(">=", False), (">", True)])
def test_the_two_inputs_of_each_relu_in_a_crowd_take_one_piece(mask_b, right):
    """relu(a + b) @ W with a and b both zeroed at ~70% of their places (over 1,024 zeros):
    giving a the mask ``>= 0`` and b ``> 0`` passed unverified (outside test t47a F1). Moving
    a[i, j] up and b[i, j] down leaves their relu where it is: da - db must be 0 there."""
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((24, 32)), rng.standard_normal((24, 32))
    zero = rng.random((24, 32)) < 0.72
    a[zero], b[zero] = 0.0, 0.0
    W, g = rng.standard_normal((32, 8)), rng.standard_normal((24, 8))
    masks = {">": lambda z: z > 0, ">=": lambda z: z >= 0}

    def forward(a, b, W):
        return np.maximum(a + b, 0) @ W

    def backward(grad_output, a, b, W):
        z, gh = a + b, grad_output @ W.T
        return {"a": gh * (z > 0), "b": gh * masks[mask_b](z),
                "W": np.maximum(z, 0).T @ grad_output}  # fmt: skip

    r = gradcli.check("custom", {"a": a, "b": b, "W": W}, grad_output=g, forward=forward,
                      backward=backward)  # fmt: skip
    assert r.passed is right, r.verdict()
