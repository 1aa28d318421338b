"""A forward returning a tuple of arrays of different shapes is told why it is refused: items
of one shape are stacked into one output (outside test t60b F5: 'got tuple' alone, beside a
same-shape tuple accepted silently). The twin: the same-shape tuple is checked."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.errors import UserCodeError

X = {"x": np.random.default_rng(1).normal(size=(3, 2))}


def test_a_ragged_tuple_says_what_is_stacked():
    with pytest.raises(UserCodeError, match=r"got tuple of 2 items \(\[3, 2\], \[1, 2\]\): "
                                            r"items of one shape are stacked"):
        gradcli.check(forward=lambda x: (x, x[:1]),
                      backward=lambda grad_output, x: {"x": grad_output}, tensors=X)


def test_the_twin_a_same_shape_tuple_is_checked():
    r = gradcli.check(forward=lambda x: (x, 2 * x),
                      backward=lambda grad_output, x: {"x": grad_output[0] + 2 * grad_output[1]},
                      tensors=X)  # fmt: skip
    assert r.passed, r.verdict()


def test_a_grad_output_beside_a_forward_of_yours_says_what_the_forward_returned():
    """A forward returning a tuple of 3 arrays, stacked to (3, ...), read as the spec's
    grad_output at fault alone (outside test t63b F7); the built-in's message is unchanged."""
    g = np.ones((3, 2))
    with pytest.raises(gradcli.GradcliError, match=r"shape \[3, 3, 2\] \(what your forward "
                                                   r"returns: an array, or a tuple"):
        gradcli.check(forward=lambda x: (x, x, x), backward=lambda grad_output, x: {"x": x},
                      tensors=X, grad_output=g)  # fmt: skip
    with pytest.raises(gradcli.GradcliError, match=r"output's shape \[2, 5\], got \[3, 2\]$"):
        gradcli.check("linear", {"x": np.ones((2, 4)), "W": np.ones((5, 4))}, grad_output=g)
