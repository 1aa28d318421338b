"""A failure at ties is the failing tensor's own: relu(x W + b) on integer data (zero rows,
b = 0), with one tensor wrong, read '3 of 3 gradients do not match' with numbers made up for
the right ones, as the moves holding ties still carried the wrong tensor's error into them
(outside test t65b F2). Each failing tensor is checked alone, the others together again.
Twins: the right rules pass (torch's and relu'(0) = 1); rules mixed across tensors, each
right alone, blame the one whose rule differs from the others' (t67b F1), and two on two
rules both fail."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

X = np.array([[1, 2, -2, 2], [0, 0, 1, -1], [2, -2, -1, -1], [0, 0, -2, -2],
              [-2, -2, -2, 2], [-2, 1, 1, -1]], dtype=float)  # fmt: skip
W = np.array([[-1, 0, -1, 1, -1], [1, 1, 1, -1, 0], [0, 0, 0, 1, 0], [-1, 1, 0, 1, -1]],
             dtype=float)  # fmt: skip
T = {"x": X, "W": W, "b": np.zeros(5)}
G = np.random.default_rng(0).standard_normal((6, 5))


def forward(x, W, b):  # noqa: N803
    return np.maximum(x @ W + b, 0)


def answers(rule: str) -> dict[str, np.ndarray]:
    a = X @ W
    m = (a >= 0) if rule == "ge" else (a > 0)
    gm = G * m
    out = {"x": gm @ W.T, "W": X.T @ gm, "b": gm.sum(0)}
    if rule == "dx-twice":
        out["x"] = 2 * out["x"]
    elif rule == "dW-sign":
        out["W"][0, 0] *= -1
    elif rule == "db-flipped":
        out["b"] = (G * (a <= 0)).sum(0)
    elif rule == "mixed":  # dx by a > 0, dW and db by a >= 0: dx is the odd one out
        out["W"], out["b"] = X.T @ (G * (a >= 0)), (G * (a >= 0)).sum(0)
    elif rule == "db-ge":  # dx and dW by torch's a > 0, db by a >= 0 (outside test t67b F1)
        out["b"] = (G * (a >= 0)).sum(0)
    return out


@pytest.mark.parametrize(("rule", "wrong"), [
    ("gt", set()), ("ge", set()), ("dx-twice", {"x"}), ("dW-sign", {"W"}),
    ("db-flipped", {"b"}), ("mixed", {"x"}), ("db-ge", {"b"}),
])  # fmt: skip
def test_a_failure_at_ties_is_the_wrong_tensors_own(rule, wrong):
    assert np.count_nonzero(X @ W == 0) >= 6  # ties: zero pre-activations
    r = gradcli.check("custom", T, forward=forward, grads=answers(rule), grad_output=G)
    failed = {n for n, res in r.results.items() if not res.passed}
    assert failed == wrong, (rule, r.verdict())
    # (the note of the moves checked without the failing tensor, where they carried its error:
    # a crowd that blames its failing members itself, numeric/crowds.py, leaves none to carry)
    blamed = any("left out. " in n or "pass together without" in n for n in r.notes)
    assert not blamed or 0 < len(wrong) < 3, r.notes


def test_two_tensors_on_mixed_rules_are_both_kept_failing():
    """relu(x W) with dx by a > 0 and dW by a >= 0: each is right alone and neither is the odd
    one out of two, so both fail, as one wrong pair."""
    def fwd(x, W):  # noqa: N803
        return np.maximum(x @ W, 0)

    a = X @ W
    grads = {"x": (G * (a > 0)) @ W.T, "W": X.T @ (G * (a >= 0))}
    r = gradcli.check("custom", {"x": X, "W": W}, forward=fwd, grads=grads, grad_output=G)
    assert {n for n, res in r.results.items() if not res.passed} == {"x", "W"}, r.verdict()
