"""--impl of a built-in layer without kinks: no kink is looked for in your forward.

A CS231n naive conv whose dx slips (the kernel flipped) failed at 6,144 coordinates, and each
was examined for kinks conv2d does not have, 2-3 times the right one's check (outside test
t38a F2). Once your forward agrees with a built-in declaring no kink, none is looked for, as
for the built-in itself. Twins: the slip still fails; a relu of yours (kinks declared by the
built-in) and a custom layer (no built-in to agree with) keep theirs.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.numeric import kinks

SPEC = {"x": np.random.default_rng(0).normal(size=(4, 5)),
        "W": np.random.default_rng(1).normal(size=(3, 5)),
        "b": np.random.default_rng(2).normal(size=3)}


def _linear(slip: float):
    def forward(x, W, b):
        return x @ W.T + b

    def backward(grad_output, x, W, b):
        return {"x": grad_output @ W * slip, "W": grad_output.T @ x, "b": grad_output.sum(0)}

    return forward, backward


def test_no_kink_is_looked_for_where_the_built_in_has_none(monkeypatch):
    called = []
    real = kinks.detected
    monkeypatch.setattr(kinks, "detected", lambda *a, **k: called.append(1) or real(*a, **k))
    forward, backward = _linear(1.5)
    r = gradcli.check("linear", SPEC, forward=forward, backward=backward)
    assert not r.passed and not r.results["x"].passed and r.results["W"].passed
    assert not called
    forward, backward = _linear(1.0)
    assert gradcli.check("linear", SPEC, forward=forward, backward=backward).passed


@pytest.mark.parametrize("layer", ["relu", None])
def test_kinks_are_still_looked_for_elsewhere(monkeypatch, layer):
    called = []
    real = kinks.detected
    monkeypatch.setattr(kinks, "detected", lambda *a, **k: called.append(1) or real(*a, **k))
    x = np.array([[0.5, -1.0, 2.0], [1.5, -0.3, 0.7]])

    def forward(x):
        return np.maximum(x, 0)

    def backward(grad_output, x):
        return {"x": grad_output * (x > 0) * 1.5}  # wrong where x > 0

    r = gradcli.check(layer, {"x": x}, forward=forward, backward=backward)
    assert not r.passed
    if layer is None:  # a custom layer: its failing coordinates are examined for kinks
        assert called
