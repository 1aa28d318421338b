"""A NaN the backward returns at the check's own upstream gradient is the value check's finding
('not finite'); the contracts are not blamed for it (a NaN at dx[0, 0] also read 'the backward
breaks its contract: zero_upstream (dx), linearity (dx)', sending the reader after an
upstream-gradient bug that is not there: outside test t60b F4). Twins: a NaN only where the
upstream gradient is 0 still breaks zero_upstream, and a term without grad_output beside
the NaN still does too."""

from __future__ import annotations

import numpy as np

import gradcli

X = {"x": np.random.default_rng(0).normal(size=(3, 4))}


def forward(x):
    return np.sin(x)


def test_a_nan_in_the_gradient_is_not_a_broken_contract():
    def backward(grad_output, x):
        g = grad_output * np.cos(x)
        g[0, 0] = np.nan
        return {"x": g}

    r = gradcli.check(forward=forward, backward=backward, tensors=X)
    assert not r.passed and "not finite" in r.verdict()
    assert "contract" not in r.verdict(), r.verdict()


def test_the_twins_still_break_it():
    def nan_at_zero(grad_output, x):
        return {"x": grad_output / np.abs(grad_output) * np.abs(grad_output) * np.cos(x)}

    r = gradcli.check(forward=forward, backward=nan_at_zero, tensors=X)
    assert "zero_upstream" in r.verdict(), r.verdict()

    def offset_beside_nan(grad_output, x):
        g = grad_output * np.cos(x) + 0.1
        g[0, 0] = np.nan
        return {"x": g}

    r = gradcli.check(forward=forward, backward=offset_beside_nan, tensors=X)
    assert "zero_upstream" in r.verdict(), r.verdict()
