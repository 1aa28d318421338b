"""A step below the loss's rounding reads nothing: the refinement (numeric/refine.py) stops there.

A confident classifier's loss of 1e-9 is log(1 + 1e-9), rounded at the 1. A failing coordinate
is differenced at smaller steps, and below a few of the 1's last bits per step every difference
reads exactly 0: a slope of 0, read on nothing. A user's backward answering 0 for an element of
1.3e-9 (half the largest gradient, resolved at the default step by 500 last bits) passed as
'1 confirmed at smaller steps' under central differences; 16 of 963 such zero answers passed
so under central, forward and backward differences. Now the halving stops there, undecided: the
default step's value stands and the zero fails, and where the round-off that an exact 0 implies
covers the failure at the default step, the coordinate cannot be resolved (never a mismatch).

Oracle: the gradient written without cancellation (the label's entry as minus the others'
sum, no 1 - p). Twins: the
right answer at the same coordinates passes, and the refinement still confirms a truncation
error (test_measured_roundoff.py, test_truncation.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def confident(seed: int, margin: float) -> dict[str, np.ndarray]:
    """Scores N(0, 4) of 8 examples and 5 classes, each label ahead by ``margin``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8, 5)) * 2
    y = rng.integers(0, 5, 8)
    x[np.arange(8), y] += margin
    return {"x": x, "y": y}


def _probs(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def loss(x: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(_probs(x)[np.arange(len(y)), y]).mean())


def check(t, method, zero_at=None):
    """A user's softmax cross-entropy; its backward answers 0 at flat index ``zero_at``."""

    def backward(grad_output, x, y):
        p = _probs(x)
        g = p.copy()
        g[np.arange(len(y)), y] = -(p.sum(axis=1) - p[np.arange(len(y)), y])
        if zero_at is not None:
            g.flat[zero_at] = 0.0
        return {"x": grad_output * g / len(y)}

    return gradcli.check(forward=loss, backward=backward, tensors=t, method=method)


@pytest.mark.parametrize(("method", "margin", "seed", "j"), [
    ("central", 20, 4, 33), ("central", 20, 6, 21), ("forward", 16, 0, 18),
    ("backward", 16, 4, 26),
])  # fmt: skip
def test_a_zero_answer_is_not_confirmed_where_the_loss_no_longer_moves(method, margin, seed, j):
    t = confident(seed, margin)
    wrong = check(t, method, zero_at=j)
    assert not wrong.passed and not wrong.results["x"].unresolved, wrong.verdict()
    assert check(t, method).passed
