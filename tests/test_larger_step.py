"""A tensor the automatic step cannot resolve for its round-off alone passes at a larger step
(checking/larger.py). y = sin(x) + 1e-9 sum(sin(w)): dw of 2e-9 beside a modelled round-off
of 1.6e-9 read "cannot resolve dw", exit 1, on right code that --method central4 and eps 1e-3
pass (outside test t60b F1). Twins: a dw zeroed or negated still never passes, and a step the
user chose is theirs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gradcli

RNG = np.random.default_rng(7)
T = {"x": RNG.normal(size=(3, 4)), "w": RNG.normal(size=3)}


def _layer(k: float):
    def forward(x, w):
        return np.sin(x) + 1e-9 * np.sin(w).sum()

    def backward(grad_output, x, w):
        return {"x": grad_output * np.cos(x), "w": k * 1e-9 * grad_output.sum() * np.cos(w)}

    return forward, backward


def test_the_right_tiny_gradient_passes_at_a_larger_step():
    f, b = _layer(1.0)
    r = gradcli.check(forward=f, backward=b, tensors=T)
    assert r.passed, r.verdict()
    assert any(n.startswith("dw: the round-off at the automatic step") for n in r.notes), r.notes
    # the step the user gives is theirs: there it cannot be resolved
    mine = gradcli.check(forward=f, backward=b, tensors=T, eps=json.loads(r.to_json())["eps"])
    assert not mine.passed and mine.results["w"].unresolved, mine.verdict()


@pytest.mark.parametrize("k", [0.0, -1.0, 1.5])
def test_a_wrong_tiny_gradient_never_passes(k):
    f, b = _layer(k)
    r = gradcli.check(forward=f, backward=b, tensors=T)
    assert not r.passed and not r.results["w"].passed, r.verdict()
    assert r.results["x"].passed
