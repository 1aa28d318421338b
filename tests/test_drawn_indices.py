"""The points gradcli draws to compare an --impl's backward with the built-in's redraw the
spec's indices and labels at the second point, from the spec's own values with one repeated
(outside test t26 F6): embedding's classic ``dW[idx] += dout``, which loses a repeated index's
share, passed wherever the spec's indices were distinct. Oracle: np.add.at accumulates."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.checking.userwork import drawn_points


def forward(idx, W):
    return W[idx]


def fancy(grad_output, idx, W):
    dW = np.zeros_like(W)
    dW[idx] += grad_output  # a repeated index keeps one share
    return {"W": dW}


def accumulated(grad_output, idx, W):
    dW = np.zeros_like(W)
    np.add.at(dW, idx, grad_output)
    return {"W": dW}


TENSORS = {"idx": np.array([0, 3, 1, 4]), "W": np.random.default_rng(0).normal(size=(5, 3))}


@pytest.mark.parametrize(("backward", "passed"), [(fancy, False), (accumulated, True)])
def test_distinct_spec_indices_do_not_hide_lost_repeats(backward, passed):
    r = gradcli.check("embedding", TENSORS, forward=forward, backward=backward)
    assert r.passed is passed, r.verdict()


def test_the_redrawn_indices_stay_among_the_specs_and_repeat():
    spec = gradcli.check("embedding", TENSORS, forward=forward, backward=accumulated).spec
    points = drawn_points(spec)
    assert np.array_equal(points[0][0]["idx"], TENSORS["idx"])
    second = points[1][0]["idx"]
    assert set(second.tolist()) <= set(TENSORS["idx"].tolist())
    assert np.unique(second).size < second.size
