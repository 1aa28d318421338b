"""float32 checks: each gradient is allowed its own measured float32 round-off on top of the
float64 numerical side's error (checking/precision.py), so an error far above the round-off
fails, where fixed float32 tolerances (atol 1e-4, rtol 1e-3) let small real bugs through."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.checking.check import compute
from gradcli.checking.precision import levels
from gradcli.inputs.spec import load_spec


def _ln_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return gamma * (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps) + beta


def _ln_backward(ddof=0, cast=None):
    def backward(grad_output, x, gamma, beta, eps=1e-5):
        if cast is not None:  # a user's code computing in float32 whatever it is given
            x, gamma, grad_output = (np.asarray(a, dtype=cast) for a in (x, gamma, grad_output))
        mu = x.mean(-1, keepdims=True)
        inv = 1 / np.sqrt(x.var(-1, keepdims=True, ddof=ddof) + eps)
        xh, dxh = (x - mu) * inv, grad_output * gamma
        dx = inv * (dxh - dxh.mean(-1, keepdims=True) - xh * (dxh * xh).mean(-1, keepdims=True))
        return {"x": dx, "gamma": (grad_output * xh).sum(0), "beta": grad_output.sum(0)}

    return backward


def _ln_tensors(d=600, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((1, d)), "gamma": rng.standard_normal(d),
            "beta": rng.standard_normal(d)}  # fmt: skip


def _check(layer, tensors, **kw):
    kw.setdefault("mode", "sample")
    kw.setdefault("samples", 16)
    return gradcli.check(layer, tensors, dtype="float32", top=1, **kw)


def test_measured_round_off_is_the_backward_in_float64_against_float32():
    spec = load_spec("linear", None, dtype="float32")
    comp = compute(spec)
    found = levels(spec, comp)
    assert set(found) == set(comp.gradients)
    t64 = {n: np.asarray(a, dtype=np.float64) for n, a in spec.tensors.items()}
    _, cache = spec.layer.forward(t64, spec.options)
    g64 = spec.layer.backward(np.asarray(spec.grad_output, dtype=np.float64), cache)
    for n, level in found.items():
        assert level.source == "measured"
        assert level.absolute == np.max(np.abs(comp.gradients[n] - g64[n]))


def test_unbiased_variance_in_layernorm_backward_fails_in_float32():
    """The outside tester's L7: ddof=1 in the backward over 600 elements is a relative error of
    ~8e-4, within the old fixed rtol 1e-3, and thousands of times the measured round-off."""
    tensors = _ln_tensors()
    right = _check("layernorm", tensors, forward=_ln_forward, backward=_ln_backward())
    assert right.passed
    wrong = _check("layernorm", tensors, forward=_ln_forward, backward=_ln_backward(ddof=1))
    assert not wrong.passed and not wrong.results["x"].passed
    assert wrong.results["gamma"].max_rel_error < 1e-3  # what the old tolerances let through


def test_float32_only_backward_is_held_to_the_builtin_round_off():
    """A backward that computes in float32 whatever it is given has no float64 run: the
    built-in layer's round-off at the same point stands in (16x); the bug still fails."""
    tensors = _ln_tensors(seed=1)
    right = _check("layernorm", tensors, forward=_ln_forward,
                   backward=_ln_backward(cast=np.float32))  # fmt: skip
    assert right.passed
    assert {r.roundoff_source for r in right.results.values()} == {"built-in"}
    wrong = _check("layernorm", tensors, forward=_ln_forward,
                   backward=_ln_backward(ddof=1, cast=np.float32))  # fmt: skip
    assert not wrong.passed


@pytest.mark.parametrize("how", ["impl", "answers"])
def test_a_relative_scale_error_of_1e3_fails_in_float32(how):
    spec = load_spec("linear", None, dtype="float32")
    tensors = {n: np.asarray(a, dtype=np.float64) for n, a in spec.tensors.items()}
    layer = spec.layer
    if how == "answers":
        grads = {n: np.asarray(g) for n, g in compute(spec).gradients.items()}
        assert gradcli.check("linear", tensors, dtype="float32", grads=grads).passed
        grads["W"] = grads["W"] * np.float32(1 + 1e-3)
        report = gradcli.check("linear", tensors, dtype="float32", grads=grads, top=1)
    else:
        def forward(x, W, b):
            return layer.forward({"x": x, "W": W, "b": b}, spec.options)[0]

        def backward(grad_output, x, W, b, scale=1.0):
            g = layer.backward(grad_output, layer.forward({"x": x, "W": W, "b": b},
                                                          spec.options)[1])  # fmt: skip
            return {**g, "W": g["W"] * scale}

        ok = gradcli.check("linear", tensors, dtype="float32", forward=forward, backward=backward)
        assert ok.passed
        report = gradcli.check("linear", tensors, dtype="float32", forward=forward, top=1,
                               backward=lambda *a, **k: backward(*a, **k, scale=1 + 1e-3))
    assert not report.passed and not report.results["W"].passed
    assert report.results["W"].max_rel_error < 1.1e-3


def test_batchnorm_with_n_minus_1_in_one_term_fails_in_float32():
    rng = np.random.default_rng(2)
    n = 600
    tensors = {"x": rng.standard_normal((n, 2)), "gamma": rng.standard_normal(2),
               "beta": rng.standard_normal(2)}  # fmt: skip

    def forward(x, gamma, beta, eps=1e-5):
        return gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + beta

    def backward(grad_output, x, gamma, beta, eps=1e-5, last=n):
        inv = 1 / np.sqrt(x.var(0) + eps)
        xh, dxh = (x - x.mean(0)) * inv, grad_output * gamma
        dx = inv * (dxh - dxh.sum(0) / n - xh * (dxh * xh).sum(0) / last)
        return {"x": dx, "gamma": (grad_output * xh).sum(0), "beta": grad_output.sum(0)}

    assert _check("batchnorm", tensors, forward=forward, backward=backward).passed
    wrong = _check("batchnorm", tensors, forward=forward,
                   backward=lambda *a, **k: backward(*a, **k, last=n - 1))  # fmt: skip
    assert not wrong.passed and not wrong.results["x"].passed


def _f32_forward(x, gamma, beta, eps=1e-5):
    return _ln_forward(*(np.asarray(a, dtype=np.float32) for a in (x, gamma, beta)),
                       eps=np.float32(eps))  # fmt: skip


@pytest.mark.parametrize("back", [lambda y, x: y, lambda y, x: np.asarray(y, dtype=x.dtype)])
def test_a_forward_computing_in_float32_is_recognized(back):
    """Returning float32 for float64 inputs, or only float32 numbers (cast back to the
    inputs' dtype)."""
    from gradcli.numeric.engine import Engine
    from gradcli.numeric.methods import EPS

    tensors = _ln_tensors(d=8)
    report = _check("layernorm", tensors, forward=lambda **t: back(_f32_forward(**t), t["x"]),
                    backward=_ln_backward(cast=np.float32))  # fmt: skip
    assert report.passed, report.results
    assert any("your forward computes in float32" in n for n in report.notes)
    spec = load_spec("linear", None)
    assert Engine(spec.layer, spec.tensors, spec.options, spec.grad_output).unit == EPS


def test_float32_user_code_of_a_builtin_is_differenced_on_the_builtin():
    """Forward and backward computing in float32 whatever they are given: float32 differences
    would blur a 5e-4 error; the built-in forward, which agrees with the user's, is differenced
    in float64, and the built-in's round-off stands in for the backward's."""
    tensors = _ln_tensors(seed=3)
    right = _check("layernorm", tensors, forward=_f32_forward,
                   backward=_ln_backward(cast=np.float32))  # fmt: skip
    assert right.passed and any("differenced" in n or "built-in forward" in n
                                for n in right.notes)  # fmt: skip
    wrong = _check("layernorm", tensors, forward=_f32_forward,
                   backward=_ln_backward(ddof=1, cast=np.float32))  # fmt: skip
    assert not wrong.passed


def test_custom_float32_layer_passes_and_its_bug_fails():
    """No built-in to stand in: the user's float32 forward is differenced with float32 steps,
    its round-off estimated in float32, and held to FLOAT32_FORWARD's tolerances."""
    rng = np.random.default_rng(4)
    tensors = {"x": rng.standard_normal((4, 32)), "W": rng.standard_normal((32, 5)) / 6}

    def forward(x, W):
        return np.tanh(np.asarray(x, np.float32) @ np.asarray(W, np.float32))

    def backward(grad_output, x, W, scale=1.0):
        x, W = np.asarray(x, np.float32), np.asarray(W, np.float32)
        dz = np.asarray(grad_output, np.float32) * (1 - np.tanh(x @ W) ** 2)
        return {"x": dz @ W.T, "W": (x.T @ dz) * np.float32(scale)}

    kw = {"dtype": "float32", "tensors": tensors, "forward": forward, "top": 1, "mode": "sample",
          "samples": 16}
    right = gradcli.check(backward=backward, **kw)
    assert right.passed, {n: r.reason for n, r in right.results.items()}
    assert {r.roundoff_source for r in right.results.values()} == {"estimated"}
    wrong = gradcli.check(backward=lambda *a, **k: backward(*a, **k, scale=1.01), **kw)
    assert not wrong.passed and not wrong.results["W"].passed


class _Linear32:
    """A user's linear layer computing in float32; ``wrong``: one element of dx off by 1%."""

    def __init__(self, wrong: bool = False):
        self.wrong = wrong

    def forward(self, x, W, b):
        return np.asarray(x, np.float32) @ np.asarray(W, np.float32).T + np.asarray(b, np.float32)

    def backward(self, grad_output, x, W, b):
        g = np.asarray(grad_output, np.float32)
        dx = g @ np.asarray(W, np.float32)
        if self.wrong:
            dx[3, 2] *= 1.01
        return {"x": dx, "W": g.T @ np.asarray(x, np.float32), "b": g.sum(0)}


@pytest.mark.parametrize("wrong", [False, True])
def test_a_float32_custom_layer_is_resolved_by_the_outputs_its_coordinates_move(wrong):
    """A correct float32 linear of your own, 12 rows of 64 outputs, failed "cannot resolve dx":
    without a footprint every x coordinate was charged the round-off of all 768 outputs, where
    it moves its row's 64 (the outside tester's F1). The twin: one element 1% off still fails,
    as a mismatch."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 8)).astype(np.float32)
    W = (rng.standard_normal((64, 8)) / 8).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    report = gradcli.check(_Linear32(wrong), {"x": x, "W": W, "b": b}, dtype="float32")
    assert not any(r.unresolved for r in report.results.values())
    assert report.passed is not wrong
    assert report.results["x"].passed is not wrong and report.results["W"].passed
