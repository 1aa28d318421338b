"""float32 answers where float32 cannot compute the gradient at all (outside test t37a F3).

tanh at x = [-10, -9, 8, 10]: 1 - tanh(x)^2 rounds to 0 in float32 there, dx is at most 3.4e-7,
and each element's float32 allowance (16 units of its terms) reached 1e-6: dx negated in full
passed under --dtype float32. Where the allowance at the largest element reaches half of it,
the tensor cannot be resolved in float32, whatever the answer. Twins: the same answers in
float64 are judged (the negation fails, the truth passes); an ordinary point passes in float32."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

X = np.array([-10.0, -9.0, 8.0, 10.0])
G = np.array([0.3125, -0.8125, 0.75, -0.5])
TRUE = G * (1 - np.tanh(X) ** 2)


@pytest.mark.parametrize("method", ["central", "complex"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_saturated_tanh_cannot_be_resolved_in_float32(sign, method):
    r = gradcli.check("tanh", {"x": X}, grad_output=G, grads={"x": sign * TRUE},
                      dtype="float32", method=method)  # fmt: skip
    assert not r.passed and r.results["x"].unresolved, r.verdict()
    assert "float32" in r.results["x"].unresolved


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_twin_in_float64_the_sign_is_checked(sign):
    r = gradcli.check("tanh", {"x": X}, grad_output=G, grads={"x": sign * TRUE})
    assert r.passed is (sign > 0), r.verdict()


def test_the_twin_an_ordinary_point_passes_in_float32():
    x = np.array([-1.0, -0.5, 0.3, 1.2])
    answer = (G * (1 - np.tanh(x) ** 2)).astype(np.float32)
    r = gradcli.check("tanh", {"x": x}, grad_output=G, grads={"x": answer}, dtype="float32")
    assert r.passed, r.verdict()
