"""Outside test t12 (F5): a forward computing in float32 inside but returning float64 (a matmul
in float32 under a float64 bias: AMP, a cached float32 weight) made a correct backward read
"wrong" with no note: its differences at float64 steps are float32 round-off. Its output moves
in float32's steps when one input moves below float32's resolution (numeric/stacking.py), so it
is checked as a float32 forward, with the note. Twins: a wrong backward of it still fails, and
float64 forwards (one with a 1e4 bias, whose last bits are coarser) keep float64's check."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

RNG = np.random.default_rng(0)
T = {"x": RNG.normal(size=(4, 6)), "W": RNG.normal(size=(5, 6)) * 0.25, "b": RNG.normal(size=5)}
FLOAT32 = "your forward computes in float32"


def mixed(x, W, b):
    return (x.astype(np.float32) @ W.astype(np.float32).T).astype(np.float64) + b


def exact(x, W, b):
    return x @ W.T + b


def backward(grad_output, x, W, b):
    return {"x": grad_output @ W, "W": grad_output.T @ x, "b": grad_output.sum(0)}


def test_a_float32_matmul_under_a_float64_output_is_read_as_float32():
    report = gradcli.check(forward=mixed, backward=backward, tensors=T)
    assert report.passed, report.verdict()
    # what was observed (t14 H5): its output is float64, its round-off float32's
    said = "(it returns float64 but carries float32-sized round-off here: its output is blind"
    assert any(n.startswith(f"{FLOAT32} {said}") for n in report.notes), report.notes

    def scaled(grad_output, x, W, b):  # twin: dW 1% off, beyond float32's tolerance
        return {**backward(grad_output, x, W, b), "W": 1.01 * grad_output.T @ x}

    wrong = gradcli.check(forward=mixed, backward=scaled, tensors=T)
    assert not wrong.passed and not wrong.results["W"].passed and wrong.results["x"].passed


@pytest.mark.parametrize("bias", [1.0, 1e4])
def test_float64_forwards_keep_float64s_check(bias):
    tensors = {**T, "b": T["b"] * bias}
    report = gradcli.check(forward=exact, backward=backward, tensors=tensors)
    assert report.passed and not any(n.startswith(FLOAT32) for n in report.notes), report.notes
    assert report.results["W"].atol < 1e-6  # float64's tolerance, not float32's 1e-4
