"""The numerical engine and the checker: agreement with the loop references, and twins that
show the checker catching an injected bug at the right tensor and index."""

import dataclasses
import pathlib
import sys

import numpy as np
import pytest

from gradcli.checking.check import check, compute
from gradcli.checking.compare import compare
from gradcli.checking.report import TOLERANCES
from gradcli.inputs.spec import load_spec
from gradcli.layers import REGISTRY
from gradcli.numeric.engine import numerical_gradients
from gradcli.numeric.methods import steps

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from reference import REFERENCES  # noqa: E402

LAYERS = list(REGISTRY)
CASES = [(name, t) for name, layer in REGISTRY.items() for t in layer.grad_names]


def with_backward(spec, bugged_backward):
    """The same spec, run through a copy of its layer whose backward is ``bugged_backward``."""
    return dataclasses.replace(
        spec, layer=dataclasses.replace(spec.layer, backward=bugged_backward)
    )


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("seed", [0, 3])
def test_numeric_matches_loop_reference(name, seed):
    """The numerical gradient (an independent finite difference) agrees with the seed's
    index formulas written as plain loops."""
    spec = load_spec(name, None, seed=seed)
    numeric = numerical_gradients(spec.layer, spec.tensors, spec.options, spec.grad_output)
    ref = REFERENCES[name][1](np.asarray(spec.grad_output), dict(spec.tensors))
    for t in spec.layer.grad_names:
        np.testing.assert_allclose(numeric[t], ref[t], rtol=1e-7, atol=1e-8, err_msg=t)


@pytest.mark.parametrize("name", LAYERS)
def test_default_specs_pass(name):
    report = check(load_spec(name, None))
    assert report.passed
    assert set(report.results) == set(REGISTRY[name].grad_names)
    # an element a millionth of the largest (lstm_step's dWh[2, 15], 1.25e-6) reads the
    # differences' round-off as a relative error of 7e-6: the absolute error says it is none
    assert all(r.max_rel_error < 1e-6 or r.max_abs_error < 1e-9 for r in report.results.values())


@pytest.mark.parametrize("name", LAYERS)
def test_float32_specs_pass_float32_tolerances(name):
    spec = load_spec(name, None, dtype="float32")
    report = check(spec)
    comp, numeric = report.computation, report.numeric
    assert all(g.dtype == np.float32 for g in comp.gradients.values())
    assert all(g.dtype == np.float64 for g in numeric.values())  # reference is always float64
    # the numerical side's own tolerances (float64's), each tensor's atol raised by the float32
    # round-off measured on its gradient (checking/precision.py), not by fixed 1e-4 / 1e-3
    assert report.passed and (report.atol, report.rtol) == TOLERANCES[("float64", "central")]
    for r in report.results.values():
        largest = float(np.max(np.abs(comp.gradients[r.name]), initial=0.0))
        assert r.roundoff_source == "measured"
        allowed = max(4 * r.roundoff, 16 * 2**-23) * largest
        assert report.atol <= r.atol <= report.atol + allowed * 1.01 + 1e-12


def _sizable(grads, tensor):
    """The first element from flat index 3 on that is at least 1/10 of the tensor's largest (a
    1e-4 relative error on an element 1000x smaller, e.g. leaky_relu's slope 0.01, is below the
    absolute tolerance by design)."""
    g = np.abs(np.asarray(grads[tensor], dtype=np.float64))
    order = np.roll(np.arange(g.size), -(3 % g.size))
    k = next(int(i) for i in order if g.flat[i] >= 0.1 * g.max())
    return np.unravel_index(k, g.shape)


@pytest.mark.parametrize(("name", "tensor"), CASES)
def test_checker_catches_one_wrong_element(name, tensor):
    """Twin of the passing tests: one gradient element off by 1e-4 relative fails, and the
    report names that tensor and that index; every other tensor still passes."""
    spec = load_spec(name, None)
    good = spec.layer.backward
    target = _sizable(good(spec.grad_output, spec.layer.forward(spec.tensors, spec.options)[1]),
                      tensor)  # fmt: skip

    def bugged(dout, cache):
        grads = dict(good(dout, cache))
        g = np.array(grads[tensor], dtype=np.float64)
        g[target] *= 1 + 1e-4
        g[target] += 0 if g[target] else 1e-4  # an exact zero still moves
        grads[tensor] = g
        return grads

    report = check(with_backward(spec, bugged))
    assert not report.passed
    r = report.results[tensor]
    assert not r.passed and r.worst_index == tuple(int(i) for i in target)
    assert all(o.passed for n, o in report.results.items() if n != tensor)


def test_checker_catches_missing_attention_scale():
    spec = load_spec("attention", None)
    good = spec.layer.backward

    def bugged(dout, cache):  # forgets the 1/sqrt(d_k) on the Q and K paths
        grads = dict(good(dout, cache))
        s = 1 / cache["scale"]
        for n in ("W_Q", "W_K"):
            grads[n] = grads[n] * s
        return grads

    report = check(with_backward(spec, bugged))
    assert not report.results["W_Q"].passed and not report.results["W_K"].passed
    assert report.results["W_V"].passed


def test_checker_catches_transposed_conv2d_kernel_gradient():
    spec = load_spec("conv2d", None)
    good = spec.layer.backward

    def bugged(dout, cache):  # spatially flipped dW: a classic "forgot it's correlation"
        grads = dict(good(dout, cache))
        grads["W"] = grads["W"][::-1, ::-1]
        return grads

    report = check(with_backward(spec, bugged))
    assert not report.results["W"].passed and report.results["X"].passed


def test_numeric_does_not_touch_inputs_and_chunking_agrees_to_round_off():
    spec = load_spec("conv2d", None)
    tensors = {n: np.array(a) for n, a in spec.tensors.items()}
    before = {n: a.copy() for n, a in tensors.items()}
    big = numerical_gradients(spec.layer, tensors, spec.options, spec.grad_output)
    tiny = numerical_gradients(spec.layer, tensors, spec.options, spec.grad_output, max_memory=1)
    for n in tensors:
        np.testing.assert_array_equal(tensors[n], before[n])
        # BLAS may sum in another order for another number of stacked rows
        np.testing.assert_allclose(tiny[n], big[n], rtol=1e-8, atol=1e-9)


def test_numeric_linear_closed_form():
    """L = g . (W x + b): dL/dW = g x^T, dL/db = g, dL/dx = W^T g, and L is linear, so
    central differences are exact up to round-off."""
    spec = load_spec("linear", None)
    x, W = spec.tensors["x"], spec.tensors["W"]
    g = spec.grad_output
    num = numerical_gradients(spec.layer, spec.tensors, spec.options, g)
    np.testing.assert_allclose(num["W"], np.outer(g, x), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(num["b"], g, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(num["x"], W.T @ g, rtol=1e-9, atol=1e-10)


def test_steps_are_powers_of_two_and_exact():
    x = np.array([0.0, 1e-3, 1.0, 3.3, -7.1e5, 1e300])
    h = steps(x, 1e-6)
    np.testing.assert_array_equal(np.exp2(np.round(np.log2(h))), h)
    assert np.all(h <= 1e-6 * np.maximum(1, np.abs(x))) and np.all(
        h > 0.5e-6 * np.maximum(1, np.abs(x))
    )
    for s in (1, -1, 2, -2):  # the stencil's nodes are exactly the points evaluated
        np.testing.assert_array_equal((x + s * h) - x, s * h)


def test_compare_pass_rule_boundary():
    n = np.array([1.0, 2.0, 0.0])
    ok = compare("w", n + np.array([1e-6, 0, 1e-7]), n, atol=1e-7, rtol=1e-6)
    assert ok.passed
    bad = compare("w", n + np.array([0, 0, 1.01e-7]), n, atol=1e-7, rtol=1e-6)
    assert not bad.passed and bad.worst_index == (2,)
    assert bad.max_rel_error == pytest.approx(1.0)  # |a - n| / max(|a|, |n|) with n = 0


def test_compute_gives_every_gradient_and_attention_intermediates():
    comp = compute(load_spec("attention", None))
    assert set(comp.gradients) == {"X", "W_Q", "W_K", "W_V"}
    assert {"Q", "K", "V", "S", "A", "dA", "dS", "dQ", "dK", "dV"} <= set(comp.intermediates)
    np.testing.assert_allclose(comp.intermediates["A"].sum(axis=-1), 1.0, rtol=1e-14)



def test_progress_bar_only_for_a_run_estimated_over_2_s(monkeypatch):
    """A check predicted to take well under 2 s shows no bar (it flashed on every run); one
    predicted to take longer does."""
    from gradcli.checking.check import CheckOptions
    from gradcli.numeric.engine import Engine

    asked: list[int] = []

    def bar(total: int):
        asked.append(total)
        return lambda n: None

    check(load_spec("linear", None), CheckOptions(progress=bar))
    assert asked == []
    monkeypatch.setattr(Engine, "seconds", lambda self, name, groups, coloring, coords: 5.0)
    check(load_spec("linear", None), CheckOptions(progress=bar))
    assert asked and asked[0] > 0
