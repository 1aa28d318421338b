"""A tensor whose effect on the outputs is below their last bit at the step reads exactly 0
there: outputs [1e3 tanh(x), 1e12 + w] move by less than half of 1e12's last bit when w moves
a step. The right dw 'could not be resolved' while an answer of zeros passed ('good', rel err
0) through the rule for gradients that are round-off beside the other tensors' (outside test
t26 F3): those coordinates moved no output, so the model counted them no round-off and nothing
was measured. Now they are, and their lines must stay flat out to 4096 steps (the README's flat
test) before 0 is accepted. Twins: the right dw reads the same 'cannot resolve' and passes
under the complex step; a dead relu and mse at a perfect fit still pass with 0."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def _point(c: float = 1.0, seed: int | None = None):
    if seed is None:  # the outside tester's point
        x = np.array([0.00123015, 0.29874554, -0.27413786, -0.89059184, -0.45467079, -0.99164655])
        w = np.array([0.0601436, 1.34021525, -0.49220652])
    else:
        rng = np.random.default_rng(seed)
        x, w = rng.standard_normal(6), rng.standard_normal(3)

    def forward(x, w):
        return np.concatenate([1e3 * np.tanh(x), 1e12 + c * w])

    def dx(g, x):
        return 1e3 * g[:6] * (1 - np.tanh(x) ** 2)

    return forward, dx, {"x": x, "w": w}


@pytest.mark.parametrize(("c", "seed"), [(1.0, None), (1e-2, None), (1.0, 2), (1e-2, 0)])
def test_zero_dw_below_the_last_bit_is_not_passed(c, seed):
    forward, dx, t = _point(c, seed)
    r = gradcli.check(forward=forward, backward=lambda g, x, w: {"x": dx(g, x), "w": 0 * w},
                      tensors=t)  # fmt: skip
    assert not r.passed and r.results["w"].unresolved, r.results["w"]
    assert r.results["x"].passed


def test_the_right_dw_reads_the_same_and_passes_under_the_complex_step():
    forward, dx, t = _point()

    def backward(g, x, w):
        return {"x": dx(g, x), "w": 1.0 * g[6:]}

    r = gradcli.check(forward=forward, backward=backward, tensors=t, eps=6.06e-6)
    assert not r.passed and r.results["w"].unresolved
    assert gradcli.check(forward=forward, backward=backward, tensors=t, method="complex").passed
    # at the automatic step, read again by the complex step (checking/complex_recheck.py)
    r = gradcli.check(forward=forward, backward=backward, tensors=t)
    assert r.passed and r.results["w"].method == "complex", r.verdict()
    zeros = gradcli.check(forward=forward, tensors=t, method="complex",
                          backward=lambda g, x, w: {"x": dx(g, x), "w": 0 * w})  # fmt: skip
    assert not zeros.passed and not zeros.results["w"].within


def test_a_dead_relu_beside_large_outputs_passes_with_zero():
    rng = np.random.default_rng(1)
    t = {"x": rng.standard_normal(6), "w": -1.0 - np.abs(rng.standard_normal(3))}

    def forward(x, w):
        return np.concatenate([1e9 * np.tanh(x), np.maximum(w, 0.0)])

    def backward(g, x, w):
        return {"x": 1e9 * g[:6] * (1 - np.tanh(x) ** 2), "w": g[6:] * (w > 0)}

    r = gradcli.check(forward=forward, backward=backward, tensors=t)
    assert r.passed, {n: x.reason for n, x in r.results.items()}
    wrong = gradcli.check(forward=forward, tensors=t,
                          backward=lambda g, x, w: {**backward(g, x, w), "w": g[6:]})  # fmt: skip
    assert not wrong.passed and not wrong.results["w"].passed


def test_mse_at_a_perfect_fit_passes_with_zero():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3))
    r = gradcli.check("mse", {"pred": x, "target": x.copy()})
    assert r.passed, {n: v.reason for n, v in r.results.items()}
    t = {"x": x, "y": x.copy(), "w": rng.standard_normal(5)}

    def forward(x, y, w):  # a fit's loss beside a large smooth output
        return np.concatenate([[0.5 * np.sum((x - y) ** 2)], 1e3 * np.tanh(w)])

    def backward(g, x, y, w):
        return {"x": g[0] * (x - y), "y": g[0] * (y - x), "w": 1e3 * g[1:] * (1 - np.tanh(w) ** 2)}

    r = gradcli.check(forward=forward, backward=backward, tensors=t)
    assert r.passed, {n: v.reason for n, v in r.results.items()}


@pytest.mark.parametrize("shape", [(4, 5), (20, 20)])
@pytest.mark.parametrize("used", [False, True])
def test_a_parameter_no_output_reads_beside_large_outputs_passes_with_0(used, shape):
    """Outside test t27 N13: y = x + where(m, w, 0) with m all False, x ~ 1e8: w's lines
    never move, yet 4096 steps left 1/4096 of the round-off above atol and dw = 0 'could not
    be resolved'. Moved far enough (up to 2^20 steps) they prove it flat. Twin: with m all
    True the same zeros are wrong, and fail."""
    rng = np.random.default_rng(0)
    x = 1e8 + 1e6 * rng.standard_normal(shape)
    m = np.full(shape, used)

    def forward(x, w):
        return x + np.where(m, w, 0.0)

    def backward(grad_output, x, w):
        return {"x": grad_output, "w": np.zeros_like(w)}

    r = gradcli.check(forward=forward, backward=backward,
                      tensors={"x": x, "w": rng.standard_normal(shape)})  # fmt: skip
    assert r.passed is (not used), r.results["w"]
