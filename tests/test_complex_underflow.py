"""The complex step's own floor: its step times a slope below float64's smallest normal number.

softmax([0, 700]) under [1, 2]: y0 = e^-700 = 1e-304, and the complex step's imaginary part of
it, h y0 = 1e-324, rounds to 0 or a subnormal. It read dx[0] as 0 against the right -9.9e-305,
and the built-in backward 'did not match'. The step cannot resolve a gradient that small: it
says so now, as the real steps do. Twin: at [0, 30] (dx of 1e-13, far above the floor) the
complex step still passes the right answer and fails a negated one.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

SPEC = """layer: softmax
tensors:
  x: [[0.0, {top}]]
grad_output: [[1.0, 2.0]]
"""


def _dx(top: float) -> np.ndarray:
    y = np.array([np.exp(-top), 1.0]) / (1 + np.exp(-top))
    g = np.array([1.0, 2.0])
    return (y * (g - (y * g).sum()))[None]


def test_a_gradient_the_complex_step_underflows_is_not_a_mismatch(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(top=700.0))
    r = gradcli.check_spec(path, method="complex")
    assert not r.passed
    assert r.results["x"].unresolved, r.results["x"]


@pytest.mark.parametrize("top", [30.0, 300.0])
def test_above_the_floor_the_complex_step_still_judges(tmp_path, top):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(top=top))
    right = _dx(top)
    right[0, 1] = np.exp(-top) / (1 + np.exp(-top)) ** 2  # y0 y1, lost to 2 - (y0 + 2 y1) = 0
    r = gradcli.check_spec(path, method="complex", grads={"x": right})
    assert r.passed, r.results["x"]
    r = gradcli.check_spec(path, method="complex", grads={"x": -right})
    assert not r.passed and not r.results["x"].unresolved
