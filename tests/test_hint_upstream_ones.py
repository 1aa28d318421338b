"""Answers computed for an upstream gradient of ones (the gradient of y.sum()).

A student's relu gradient (x > 0) * 1.0 was hinted as 'wrong at 3 elements only ... an index,
a slice', and a linear's three gradients got no hint (outside test t38b N4): gradcli draws
its grad_output. The hint now names that, verified. Twins: the answers for the drawn
grad_output pass; a negated one is not blamed on the upstream gradient.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

T = {
    "relu": {"x": np.array([[0.4, 1.5, -2.0], [0.3, -0.1, 0.7]])},
    "linear": {"x": np.random.default_rng(0).normal(size=(4, 3)),
               "W": np.random.default_rng(1).normal(size=(2, 3)),
               "b": np.random.default_rng(2).normal(size=2)},
}


def _causes(report) -> set[str]:
    return {h.cause for r in report.results.values() for h in r.hints
            if getattr(h, "cause", None)}  # fmt: skip


@pytest.mark.parametrize("layer", list(T))
def test_answers_for_ones_are_named(layer):
    t = T[layer]
    ones = gradcli.compute(layer, t, grad_output=np.ones_like(
        gradcli.compute(layer, t).output)).gradients  # fmt: skip
    r = gradcli.check(layer, t, grads=dict(ones))
    assert not r.passed
    assert "upstream-ones" in _causes(r), [h for x in r.results.values() for h in x.hints]


@pytest.mark.parametrize("layer", list(T))
def test_the_drawn_upstream_gradients_answers_pass_and_a_slip_is_not_so_named(layer):
    t = T[layer]
    right = gradcli.compute(layer, t).gradients
    assert gradcli.check(layer, t, grads=dict(right)).passed
    r = gradcli.check(layer, t, grads={n: -v for n, v in right.items()})
    assert not r.passed and "upstream-ones" not in _causes(r)


def test_compute_says_which_upstream_gradient_it_drew():
    x = T["relu"]["x"]
    g = gradcli.compute("relu", {"x": x}).grad_output
    assert g.shape == x.shape and not np.all(g == 1)
    assert gradcli.check("relu", {"x": x}, grads={"x": g * (x > 0)}).passed


@pytest.mark.parametrize("layer", ["softmax", "layernorm"])
def test_through_a_normalization_answers_for_ones_are_zero_and_said_so(layer):
    # the sum of a softmax's outputs is constant: torch's y.sum().backward() gives 1e-16s, and
    # exact zeros were hinted as 'a missing term or path' (outside test t39a N1)
    rng = np.random.default_rng(5)
    t = ({"x": rng.normal(size=(3, 5))} if layer == "softmax" else
         {"x": rng.normal(size=(3, 5)), "gamma": np.ones(5), "beta": np.zeros(5)})
    ones = dict(gradcli.compute(layer, t, grad_output=np.ones((3, 5))).gradients)
    for answer in (ones["x"], np.zeros((3, 5))):
        r = gradcli.check(layer, t, grads={**ones, "x": answer})
        assert not r.results["x"].passed
        said = " ".join(str(getattr(h, "text", h)) for h in r.results["x"].hints)
        assert "upstream gradient of ones" in said, said
