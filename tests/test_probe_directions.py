"""A probe's directions do not cancel a gradient moved from one element to another.

A routing or mask bug's error is d (e_i - e_j): the gradient given to the wrong element of a
pair. Along a direction of +-1 entries it cancels whenever p_i = p_j, half the time, and an
svm counting a margin of -0.001 as active passed `--mode probe` at one seed in four (outside
test t32a F3). Entries +-(1 + k/256) cancel it once in 512. Twin: the right answers pass."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

X = np.array([[2.0, 1.001, -5.0], [0.5, -3.0, -0.501], [0.0, 1.5, -2.0]])
Y = np.array([0, 0, 1])
RIGHT = np.array([[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]) / 3
# row 1's margin of -0.501 - 0.5 + 1 = -0.001 counted as active: -1/3 and 1/3 added
WRONG = RIGHT + np.array([[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]) / 3


@pytest.mark.parametrize("seed", range(16))
def test_a_moved_gradient_fails_the_probe_at_every_seed(seed):
    t = {"x": X, "y": Y}
    wrong = gradcli.check("svm", tensors=t, grads={"x": WRONG}, mode="probe", seed=seed)
    assert not wrong.passed, wrong.verdict()
    right = gradcli.check("svm", tensors=t, grads={"x": RIGHT}, mode="probe", seed=seed)
    assert right.passed, right.verdict()


def test_the_directions_are_no_plus_minus_one():
    from gradcli.numeric.sampling import rademacher

    p = rademacher((1000,), np.random.default_rng(0))
    assert np.all(np.abs(p) >= 1) and np.all(np.abs(p) < 2)
    assert np.unique(np.abs(p)).size > 100  # a pair of equal entries is the rare case
    assert np.all(p * 256 == np.round(p * 256))  # eight bits: a step times it is exact
