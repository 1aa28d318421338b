"""A forward that is not deterministic: no tensor passes on its finite differences.

A student's dropout drawing its mask anew at each call (np.random.rand in forward and again
in backward) failed the check as a whole, but its dx row read PASS 'within noise' at a
relative error of 1, and JSON said results.x.passed = true (outside test t38a F1): a script
reading one tensor's verdict was told the gradient was right. Each tensor is now 'cannot
check'. Twin: the same dropout with its mask from a fixed seed passes, tensor by tensor.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import gradcli

SPEC = """layer: dropout
seed: 8
options:
  p: 0.3
  seed: 11
tensors:
  x: {shape: [2, 4, 5], init: normal}
"""
CODE = """import numpy as np
def forward(x, p=0.5, seed=0):
    mask = {mask} >= p
    return x * mask / (1 - p)
def backward(grad_output, x, p=0.5, seed=0):
    mask = {mask} >= p
    return {{"x": grad_output * mask / (1 - p)}}
"""


@pytest.mark.parametrize("method", ["central", "forward"])
def test_a_mask_drawn_anew_passes_no_tensor(tmp_path, method):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    code = tmp_path / "drop.py"
    code.write_text(CODE.format(mask="np.random.rand(*x.shape)"))
    r = gradcli.check_spec(spec, impl=str(code), method=method)
    assert not r.passed
    assert not r.results["x"].passed and r.results["x"].unresolved
    x = json.loads(r.to_json())["results"]["x"]
    assert x["passed"] is False and "not deterministic" in x["reason"]


def test_a_fixed_mask_passes(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    code = tmp_path / "drop.py"
    code.write_text(CODE.format(mask="np.random.default_rng(seed).random(x.shape)"))
    r = gradcli.check_spec(spec, impl=str(code))
    assert r.passed and r.results["x"].passed


def _intermittent(every: int, slip: float):
    calls = [0]
    rng = np.random.default_rng(0)

    def forward(x, W):
        calls[0] += 1
        y = np.tanh(x @ W)
        if every and calls[0] % every == 0:  # state: noise on every few calls
            y = y + 1e-10 * rng.standard_normal(y.shape)
        return y

    def backward(grad_output, x, W):
        d = grad_output * (1 - np.tanh(x @ W) ** 2) * slip
        return {"x": d @ W.T, "W": x.T @ d}

    return forward, backward


def test_state_that_changes_every_few_calls_is_found_after_the_differences():
    # noise on every 7th call passed the first calls, and its jumps were read as kinks: a
    # backward 1e-5 off passed (outside test t39a F1)
    t = {"x": np.random.default_rng(1).normal(size=(4, 3)),
         "W": np.random.default_rng(2).normal(size=(3, 2))}
    forward, backward = _intermittent(7, 1 + 1e-5)
    r = gradcli.check(forward=forward, backward=backward, tensors=t)
    assert not r.passed
    assert all(x.unresolved for x in r.results.values())
    forward, backward = _intermittent(0, 1 + 1e-5)  # deterministic: a plain mismatch
    r = gradcli.check(forward=forward, backward=backward, tensors=t)
    assert not r.passed and not r.results["x"].unresolved
    forward, backward = _intermittent(0, 1.0)
    assert gradcli.check(forward=forward, backward=backward, tensors=t).passed
