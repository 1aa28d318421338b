"""One float32 operation in a forward of the user's (AMP's `(x32 @ W32).astype(float64) + b`)
put every tensor under the float32 forward's allowance (atol 1e-4, rtol 1e-3): a db
sign-flipped at an element of 4e-5, zeroed there, or 0.09% off everywhere passed 'within noise',
though b never touches float32 (outside test t26 F4). A tensor the output follows below
float32's resolution, whose loss along its lines is smooth to float64's rounding, is now
differenced at float64's steps and held to float64's tolerances; the others keep the
allowance. Twins: the right backward passes (x and W still at float32's allowance), and so do
forwards where a tensor has a float32 path beside a float64 one (a residual) or a float64 path
that curves (tanh(b), which float32 steps would blur)."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

FLOAT32 = "your forward computes in float32"


def _f32(x, W):
    return (x.astype(np.float32) @ W.astype(np.float32)).astype(np.float64)


def amp(x, W, b):
    return _f32(x, W) + b


def right(grad_output, x, W, b):
    return {"x": grad_output @ W.T, "W": x.T @ grad_output, "b": grad_output.sum(0)}


def _point(seed: int):
    rng = np.random.default_rng(seed)
    t = {"x": rng.normal(size=(8, 16)), "W": rng.normal(size=(16, 4)) * 0.3,
         "b": rng.normal(size=4)}  # fmt: skip
    g = rng.normal(size=(8, 4))
    g[:, 2] += 4e-5 / 8 - g[:, 2].mean()  # db[2] = 4e-5: below the float32 allowance's atol
    return t, g


def _with_db(change):
    def backward(grad_output, x, W, b):
        return {**right(grad_output, x, W, b), "b": change(grad_output.sum(0))}

    return backward


def _flipped(db):
    db = db.copy()
    db[2] = -db[2]
    return db


def _zeroed(db):
    db = db.copy()
    db[2] = 0.0
    return db


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("change", [_flipped, _zeroed, lambda db: db * 1.0009],
                         ids=["flipped", "zeroed", "scaled"])  # fmt: skip
def test_a_wrong_float64_bias_gradient_fails(seed, change):
    t, g = _point(seed)
    r = gradcli.check(forward=amp, backward=_with_db(change), tensors=t, grad_output=g)
    assert not r.passed and not r.results["b"].passed, r.results["b"]
    assert r.results["x"].passed and r.results["W"].passed


@pytest.mark.parametrize("seed", range(3))
def test_the_right_backward_passes_with_float32_allowance_for_x_and_W_only(seed):
    t, g = _point(seed)
    r = gradcli.check(forward=amp, backward=right, tensors=t, grad_output=g)
    assert r.passed, {n: v.reason for n, v in r.results.items()}
    assert r.results["b"].atol < 1e-6  # float64's
    assert r.results["x"].atol >= 1e-5 and r.results["W"].atol >= 1e-5  # float32's allowance
    said = [n for n in r.notes if n.startswith(FLOAT32)]
    assert said and "the differences of db carry none" in said[0], r.notes


def test_a_tensor_with_a_float32_path_beside_a_float64_one_keeps_the_allowance():
    t, g = _point(0)

    def residual(x, W, b):
        return _f32(x, W) + x[:, :4] + b

    def backward(grad_output, x, W, b):
        dx = grad_output @ W.T
        dx[:, :4] += grad_output
        return {"x": dx, "W": x.T @ grad_output, "b": grad_output.sum(0)}

    r = gradcli.check(forward=residual, backward=backward, tensors=t, grad_output=g)
    assert r.passed, {n: v.reason for n, v in r.results.items()}
    assert r.results["x"].atol >= 1e-5 and r.results["b"].atol < 1e-6


def test_a_curved_float64_path_passes_at_float64_steps():
    t, g = _point(1)

    def curved(x, W, b):
        return _f32(x, W) + np.tanh(3 * b)

    def backward(grad_output, x, W, b):
        return {**right(grad_output, x, W, b),
                "b": 3 * grad_output.sum(0) * (1 - np.tanh(3 * b) ** 2)}  # fmt: skip

    r = gradcli.check(forward=curved, backward=backward, tensors=t, grad_output=g)
    assert r.passed, {n: v.reason for n, v in r.results.items()}
    assert r.results["b"].atol < 1e-6
