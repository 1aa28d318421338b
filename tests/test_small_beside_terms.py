"""Small elements of your own layers, beside larger ones or larger terms (outside test t37b).

- F1: L = 0.5 sum(p^2) near its minimum, p = [2e-6, -1e-6, 1.5e-6, 5e-10], dp[3] sign-flipped.
  The smaller steps 'confirmed' it within the atol of 2e-9 (1/1000 of the largest element), and
  the finer reread of elements below the atol skipped what the smaller steps had decided.
- F2: L = sum(1 - cos(K p)) / K^2, K = 1e4, its dp[3] of 2.5e-10 sign-flipped: the reread's
  own round-off, measured over 8 steps of a curve bending at 1e-4, read the curvature as a
  rounding of 1e-16 (for 1e-24), and the slip passed 'within noise' under every real method.
- F3: tanh(x W) computed in float32, dW[0, 0] 10% off under one-sided differences: the model
  allowed 10% where the lines read 0.1%; a note said its terms cancel, which they do not.
- F5: a row normalization under ones + 3e-9 N(0, 1): its dx of 2e-8 is no cancellation's
  round-off, and judged at its terms of 1 a backward holding the variance constant passed.

Oracles: the formulas' own derivatives. Twins: the right backwards pass (or, for F5, where the
step truly cannot read the gradient, say so)."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

REAL = ["central", "central4", "forward", "backward"]


def _flipped(backward):
    def wrong(grad_output, p):
        d = backward(grad_output, p)["p"].copy()
        d[-1] = -d[-1]
        return {"p": d}

    return wrong


def _square(p):
    return 0.5 * np.sum(p * p)


def _square_back(grad_output, p):
    return {"p": grad_output * p}


K = 1e4


def _cos(p):
    return np.sum(1 - np.cos(K * p)) / K**2


def _cos_back(grad_output, p):
    return {"p": grad_output * np.sin(K * p) / K}


CASES = {"square": (_square, _square_back, np.array([2e-6, -1e-6, 1.5e-6, 5e-10])),
         "1 - cos": (_cos, _cos_back, np.array([2e-6, -1e-6, 1.5e-6, 2.5e-10]))}  # fmt: skip


@pytest.mark.parametrize("method", REAL)
@pytest.mark.parametrize("case", CASES)
def test_a_sign_flipped_small_element_of_a_loss_fails(case, method):
    forward, backward, p = CASES[case]
    wrong = gradcli.check(forward=forward, backward=_flipped(backward), tensors={"p": p},
                          method=method)  # fmt: skip
    result = wrong.results["p"]
    assert not wrong.passed and not result.unresolved, wrong.verdict()
    assert result.worst_index == (3,), result.worst
    right = gradcli.check(forward=forward, backward=backward, tensors={"p": p}, method=method)
    assert right.passed, right.verdict()


def _tanh32(x, W):
    return np.tanh(x.astype(np.float32) @ W.astype(np.float32))


def _tanh32_back(slip: float):
    def backward(grad_output, x, W):
        x32, W32 = x.astype(np.float32), W.astype(np.float32)
        y = np.tanh(x32 @ W32)
        d = grad_output.astype(np.float32) * (1 - y * y)
        dW = x32.T @ d
        dW[0, 0] *= slip
        return {"x": d @ W32.T, "W": dW}

    return backward


@pytest.mark.parametrize("method", ["forward", "backward"])
def test_a_float32_forwards_slip_read_finely_by_its_lines_fails(method):
    t = {"x": np.array([[0.34558418, 0.82161814, 0.33043706, -1.3031572],
                        [0.90535587, 0.44637457, -0.5369532, 0.5811181],
                        [0.3645724, 0.2941325, 0.028422242, 0.546713]], dtype=np.float32),
         "W": np.array([[-0.36822703, -0.081454977], [-0.24105966, 0.2994231],
                        [0.019861054, -0.14622837], [-0.39095423, -0.12859613]],
                       dtype=np.float32)}  # fmt: skip
    g = np.array([[0.008142181, -0.2756029], [1.2940638, 1.0067244], [-2.7111626, -1.8890133]],
                 dtype=np.float32)
    notes = []
    for slip, passed in ((1.1, False), (1.0, True)):
        r = gradcli.check(forward=_tanh32, backward=_tanh32_back(slip), tensors=t, grad_output=g,
                          method=method, dtype="float32")  # fmt: skip
        assert r.passed is passed, (slip, r.verdict())
        notes += r.notes
    assert not any("cancel" in n for n in notes), notes


def _norm(x):
    xc = x - x.mean(-1, keepdims=True)
    return xc / np.sqrt((xc * xc).mean(-1, keepdims=True) + 1e-5)


def _norm_back(variance: bool):
    def backward(grad_output, x):
        xc = x - x.mean(-1, keepdims=True)
        inv = 1 / np.sqrt((xc * xc).mean(-1, keepdims=True) + 1e-5)
        xh, g = xc * inv, grad_output
        dx = g - g.mean(-1, keepdims=True)
        if variance:
            dx = dx - xh * (g * xh).mean(-1, keepdims=True)
        return {"x": inv * dx}

    return backward


@pytest.mark.parametrize("noise", [1e-9, 3e-9, 1e-8])
def test_a_normalization_under_nearly_ones_is_not_judged_at_its_terms(noise):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5))
    g = 1 + noise * rng.normal(size=(3, 5))
    wrong = gradcli.check(forward=_norm, backward=_norm_back(False), tensors={"x": x},
                          grad_output=g)  # fmt: skip
    assert not wrong.passed, wrong.verdict()
    right = gradcli.check(forward=_norm, backward=_norm_back(True), tensors={"x": x},
                          grad_output=g)  # fmt: skip
    assert right.passed or right.results["x"].unresolved, right.verdict()


def test_the_twin_under_ones_exactly_it_is_judged_at_its_terms():
    """dx = 0 in theory, the answer its round-off: the terms' scale judges it (t27 N8)."""
    x = np.random.default_rng(0).normal(size=(3, 5))
    for method in REAL:
        r = gradcli.check(forward=_norm, backward=_norm_back(True), tensors={"x": x},
                          grad_output=np.ones((3, 5)), method=method)  # fmt: skip
        assert r.passed, (method, r.verdict())
