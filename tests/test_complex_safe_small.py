"""A small complex-unsafe term (np.abs of an L1 penalty, x |x| at one element) under
--method complex: the complex step drops it, so the backward without it passed and the right
one failed (outside test t21 F4). Refused now; twins: a complex-safe forward is checked."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.errors import OptionError

RNG = np.random.default_rng(0)
PRED, TARGET = RNG.standard_normal((8, 4)), RNG.standard_normal((8, 4))


def _l1(lam, with_term):
    def forward(pred, target):
        return np.mean((pred - target) ** 2) + lam * np.sum(np.abs(pred))

    def backward(grad_output, pred, target):
        d = 2 * (pred - target) / pred.size + (lam * np.sign(pred) if with_term else 0)
        return {"pred": grad_output * d}

    return forward, backward


@pytest.mark.parametrize("with_term", [True, False])
def test_a_small_l1_term_is_refused_under_complex(with_term):
    forward, backward = _l1(1e-6, with_term)
    with pytest.raises(OptionError, match="not complex-safe"):
        gradcli.check(forward=forward, backward=backward, data=["target"],
                      tensors={"pred": PRED, "target": TARGET}, method="complex")


def test_one_unsafe_element_of_many_is_refused():
    x = RNG.standard_normal(500)
    x[0] = 1e-4

    def forward(x):
        y = np.tanh(x)
        y[0] = x[0] * abs(x[0])
        return y

    def backward(grad_output, x):
        d = 1 - np.tanh(x) ** 2
        d[0] = 2 * abs(x[0])
        return {"x": grad_output * d}

    with pytest.raises(OptionError, match="not complex-safe"):
        gradcli.check(forward=forward, backward=backward, tensors={"x": x}, method="complex")


@pytest.mark.parametrize(("with_term", "passed"), [(True, True), (False, False)])
def test_twin_a_safe_l2_term_is_checked(with_term, passed):
    lam = 1e-6

    def forward(pred, target):
        return np.mean((pred - target) ** 2) + lam * np.sum(pred * pred)

    def backward(grad_output, pred, target):
        d = 2 * (pred - target) / pred.size + (2 * lam * pred if with_term else 0)
        return {"pred": grad_output * d}

    r = gradcli.check(forward=forward, backward=backward, data=["target"],
                      tensors={"pred": PRED, "target": TARGET}, method="complex")
    assert r.passed is passed


@pytest.mark.parametrize("lam", [1e-8])
@pytest.mark.parametrize("shape", [(8, 4), (64, 64)])
def test_an_l1_term_of_1e_8_is_refused_too(lam, shape):
    """t22 N8: at lam 1e-8 the finer step's own larger round-off 'explained' the gap; it
    explains it only if the real reading moved towards the complex step's."""
    rng = np.random.default_rng(1)
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    forward, backward = _l1(lam, True)
    with pytest.raises(OptionError, match="not complex-safe"):
        gradcli.check(forward=forward, backward=backward, data=["target"],
                      tensors={"pred": pred, "target": target}, method="complex")


def _one_element(square_by_abs, factor):
    def forward(x):
        y = np.tanh(x)
        y[0] = x[0] * (abs(x[0]) if square_by_abs else x[0])
        return y

    def backward(grad_output, x):
        d = 1 - np.tanh(x) ** 2
        d[0] = factor * (abs(x[0]) if square_by_abs else x[0])
        return {"x": grad_output * d}

    return forward, backward


@pytest.mark.parametrize("factor", [2, 1])  # the right derivative, and one without the 2
def test_one_unsafe_element_past_1024_is_refused(factor):
    """t22 N8: past the 1024 elements compared one by one before the check, 64 random picks
    and a line through every element missed y[0] = x0 |x0|; the right backward failed, the
    one without the 2 passed. Every coordinate the complex step reads is held to central
    differences now (1,100 elements here, just past it, for time)."""
    x = np.random.default_rng(2).standard_normal(1100)
    x[0] = 1e-4
    forward, backward = _one_element(True, factor)
    with pytest.raises(OptionError, match="not complex-safe"):
        gradcli.check(forward=forward, backward=backward, tensors={"x": x}, method="complex")


@pytest.mark.parametrize(("factor", "passed"), [(2, True), (1, False)])
def test_twin_a_safe_element_past_1024_is_checked(factor, passed):
    x = np.random.default_rng(2).standard_normal(1100)
    x[0] = 1e-2
    forward, backward = _one_element(False, factor)
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": x}, method="complex")
    assert r.passed is passed


def test_a_forward_refusing_complex_input_is_named_not_complex_safe():
    """t25 F5: np.hypot raises TypeError on complex input: a bare 'forward raised TypeError'
    gave no advice; it is a forward the complex step cannot use."""

    def forward(x):
        y = x * x
        y[0] = np.hypot(x[0], 0.0) ** 2
        return y

    def backward(grad_output, x):
        return {"x": grad_output * 2 * x}

    x = np.random.default_rng(3).standard_normal(6)
    with pytest.raises(OptionError, match="not complex-safe: on complex input forward raised"):
        gradcli.check(forward=forward, backward=backward, tensors={"x": x}, method="complex")
    assert gradcli.check(forward=forward, backward=backward, tensors={"x": x}).passed


@pytest.mark.parametrize("scale", [10.0, 1e-4])
def test_a_cast_of_complex_values_to_real_is_not_complex_safe(scale):
    """Outside test t33a F4: 3 * x.astype(np.float16) + x at |x| = 10 drops the imaginary part
    of the float16 branch, flat inside its cells at float64's steps too, so the complex step
    and central differences agreed on the branch's 0, and a backward without it passed. numpy
    says so (ComplexWarning): refused. Twin: a real cast-free forward is still accepted."""
    x = np.random.default_rng(0).normal(size=(2, 3)) * scale

    def forward(x):
        return 3 * x.astype(np.float16).astype(np.float64) + x

    with pytest.raises(gradcli.GradcliError, match="casts complex values to real"):
        gradcli.check(forward=forward, backward=lambda grad_output, x: {"x": grad_output * 1.0},
                      tensors={"x": x}, method="complex")  # fmt: skip
    ok = gradcli.check(forward=lambda x: 3 * x + x, tensors={"x": x}, method="complex",
                       backward=lambda grad_output, x: {"x": grad_output * 4.0})
    assert ok.passed
