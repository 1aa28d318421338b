"""A continuous forward with many kinks is not a rounding (outside test t45a F2).

A right ``np.sort`` of 200 values a row was read as float16 work: along a line through the
point its outputs swap ranks many times, bending at every swap, and fit no few straight pieces,
as a rounding's cells do not either. Its steps became float16's (0.099) and nothing resolved.
What tells them apart: a rounding jumps, by its whole cell however short the interval that
holds the jump; a continuous output's change shrinks with the interval. Oracles: the forwards'
construction (np.sort, a running maximum and abs are continuous; float16 and float32 casts and
np.round are not), and torch's sort backward for the verdicts."""

import numpy as np
import pytest

import gradcli
from gradcli.numeric import jumps

RNG = np.random.default_rng(11)
X = RNG.standard_normal((2, 200))


class _Forward:
    def __init__(self, f):
        self.f = f

    def forward(self, t, options):
        return self.f(**t), None


CONTINUOUS = {
    "sort": lambda x: np.sort(x, axis=-1),
    "running max": lambda x: np.maximum.accumulate(x, axis=-1),
    "sort then abs": lambda x: np.abs(np.sort(x, axis=-1)),
}
ROUNDING = {
    "sort of float16": lambda x: np.sort(x.astype(np.float16), axis=-1).astype(np.float64),
    "sort of float32": lambda x: np.sort(x.astype(np.float32), axis=-1).astype(np.float64),
    "sort of x rounded": lambda x: np.sort(np.round(x, 3), axis=-1),
    "float16 branch beside a sort": lambda x: np.sort(x, axis=-1) + np.tanh(x.astype(np.float16)),
}


@pytest.mark.parametrize("case", list(CONTINUOUS))
def test_a_continuous_forward_with_many_kinks_is_float64(case):
    f = _Forward(CONTINUOUS[case])
    assert not jumps.float16_jumps(f, {"x": X}, None)
    assert not jumps.float32_jumps(f, {"x": X}, None)


@pytest.mark.parametrize("case", list(ROUNDING))
def test_the_twin_roundings_beside_it_are_still_found(case):
    f = _Forward(ROUNDING[case])
    assert jumps.float16_jumps(f, {"x": X}, None) or jumps.float32_jumps(f, {"x": X}, None)


def _sort_backward(shift=0):
    def backward(grad_output, x):
        idx = np.argsort(x, axis=-1, kind="stable")
        dx = np.zeros_like(x)
        np.put_along_axis(dx, idx, np.roll(grad_output, shift, axis=-1), axis=-1)
        return {"x": dx}

    return backward


def test_a_right_sort_of_200_a_row_passes_and_a_wrong_one_fails():
    g = RNG.standard_normal(X.shape)
    right = gradcli.check("custom", {"x": X}, grad_output=g,
                          forward=lambda x: np.sort(x, axis=-1), backward=_sort_backward())
    assert right.passed, right.verdict()
    assert "float16" not in " ".join(right.notes)
    wrong = gradcli.check("custom", {"x": X}, grad_output=g,
                          forward=lambda x: np.sort(x, axis=-1), backward=_sort_backward(1))
    assert not wrong.passed
    assert "does not match (dx)" in wrong.verdict()
