"""A forward that is not deterministic: no tensor passes on its finite differences.

A student's dropout drawing its mask anew at each call (np.random.rand in forward and again
in backward) failed the check as a whole, but its dx row read PASS 'within noise' at a
relative error of 1, and JSON said results.x.passed = true (outside test t38a F1): a script
reading one tensor's verdict was told the gradient was right. Each tensor is now 'cannot
check'. Twin: the same dropout with its mask from a fixed seed passes, tensor by tensor.
"""

from __future__ import annotations

import json

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
