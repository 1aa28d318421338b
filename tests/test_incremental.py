"""Incremental evaluation (Layer.perturbed, attention's dense tensors): the loss at a moved
coordinate against the loop reference's forward, the engine's gradients through it against the
loop reference's backward and the plain path, and the run-time check catching a wrong one."""

import dataclasses
import itertools
import pathlib
import sys

import numpy as np
import pytest

import gradcli
from gradcli.checking.check import check
from gradcli.inputs.spec import Spec, load_spec
from gradcli.layers import REGISTRY
from gradcli.numeric.engine import Engine
from gradcli.render.jsondoc import check_doc

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import reference as ref  # noqa: E402

ATT = REGISTRY["attention"]
REF_FORWARD, REF_BACKWARD = ref.OPTION_REFERENCES["attention"]
# (causal, heads, W_O, batch): every combination the incremental path must get right
GRID = list(itertools.product([False, True], [1, 2], [False, True], [(), (2,)]))


def point(causal, heads, w_o, batch, seed=0):
    rng = np.random.default_rng(seed)
    T, d, dk, dv = 5, 6, 4, 4
    t = {
        "X": rng.standard_normal((*batch, T, d)),
        "W_Q": rng.standard_normal((d, dk)),
        "W_K": rng.standard_normal((d, dk)),
        "W_V": rng.standard_normal((d, dv)),
    }
    if w_o:
        t["W_O"] = rng.standard_normal((dv, 3))
    raw = {"causal": causal, "heads": heads}
    out, cache = ATT.forward(t, ATT.make_options(raw))
    g = rng.standard_normal(out.shape)
    return t, raw, cache, g


def reference_loss(t, raw, g, name, j, value):
    """sum(g * out) at the moved point: the loop reference for real values; it is real-only,
    so a complex step is evaluated by the layer's own (complex-safe) forward."""
    moved = {k: np.array(v, dtype=np.result_type(v, value)) for k, v in t.items()}
    moved[name].reshape(-1)[j] = value
    if np.iscomplexobj(value):
        return np.sum(g * ATT.forward(moved, ATT.make_options(raw))[0])
    examples = [moved["X"]] if moved["X"].ndim == 2 else list(moved["X"])
    gs = [g] if moved["X"].ndim == 2 else list(g)
    return sum(
        np.sum(gb * REF_FORWARD({**moved, "X": x}, **raw))
        for gb, x in zip(gs, examples, strict=True)
    )


@pytest.mark.parametrize("causal, heads, w_o, batch", GRID)
@pytest.mark.parametrize("name", ["X", "W_Q", "W_K", "W_V"])
def test_perturbed_loss_equals_loop_reference(causal, heads, w_o, batch, name):
    """Every coordinate moved by a large real step (against the loop reference) and by a
    complex step: the incremental loss equals sum(g * forward) at the moved point."""
    t, raw, cache, g = point(causal, heads, w_o, batch)
    x = t[name].ravel()
    idx = np.arange(x.size)
    if name == "W_V" and not w_o:  # W_V[e, v] moves output column v only: colored instead
        assert ATT.perturbed(name, cache, g, idx, x) is None
        return
    for values in (x + 0.3, x + 1e-3j):
        fast = ATT.perturbed(name, cache, g, idx, values)
        want = np.array([reference_loss(t, raw, g, name, j, values[j]) for j in idx])
        scale = float(np.sum(np.abs(g))) * max(1.0, float(np.max(np.abs(want))))
        assert np.max(np.abs(fast - want)) <= 1e-13 * scale
        if np.iscomplexobj(values):  # the imaginary part is what the complex step reads
            assert np.max(np.abs(fast.imag - want.imag)) <= 1e-15 * scale


def test_perturbed_declines_what_it_does_not_cover():
    t, raw, cache, g = point(False, 1, True, ())
    assert ATT.perturbed("W_O", cache, g, np.array([0]), np.array([1.0])) is None
    assert ATT.perturbed("W_V", cache, g, np.array([0]), np.array([1.0])) is not None


def spec_for(t, raw, g):
    return Spec(
        layer=ATT, tensors=t, options=ATT.make_options(raw), grad_output=g,
        dtype="float64", seed=0, source="test",
    )  # fmt: skip


@pytest.mark.parametrize("causal, heads, w_o, batch", GRID)
@pytest.mark.parametrize("method", ["central", "complex"])
def test_incremental_gradients_equal_reference_and_plain_path(causal, heads, w_o, batch, method):
    t, raw, cache, g = point(causal, heads, w_o, batch, seed=1)
    fast = Engine(ATT, t, ATT.make_options(raw), g, method=method)
    plain = Engine(ATT, t, ATT.make_options(raw), g, method=method)
    expected = {}
    examples = [t["X"]] if not batch else list(t["X"])
    for b, x in enumerate(examples):
        grads = REF_BACKWARD(g if not batch else g[b], {**t, "X": x}, **raw)
        for k, v in grads.items():
            if k == "X":
                expected.setdefault("X", []).append(v)
            else:
                expected[k] = expected.get(k, 0) + v
    expected["X"] = np.array(expected["X"]).reshape(t["X"].shape)
    tol = 1e-8 if method == "central" else 1e-13
    for name in ("X", "W_Q", "W_K"):
        grad, info = fast.gradient(name)
        assert info.incremental and not info.note
        base, base_info = plain.gradient(name, coloring=False)
        assert not base_info.incremental
        scale = float(np.max(np.abs(expected[name])))
        assert np.max(np.abs(grad - expected[name])) <= tol * scale
        assert np.max(np.abs(grad - base)) <= tol * scale


def test_sampled_coordinates_use_the_incremental_path():
    t, raw, cache, g = point(True, 2, False, ())
    engine = Engine(ATT, t, ATT.make_options(raw), g)
    coords = np.array([0, 7, 13])
    grad, info = engine.gradient("X", coords=coords)
    full, _ = engine.gradient("X")
    assert info.incremental and info.coordinates == 3
    assert np.allclose(grad.ravel()[coords], full.ravel()[coords], rtol=0, atol=1e-12)
    assert np.isnan(np.delete(grad.ravel(), coords)).all()


def test_wrong_incremental_path_is_caught_and_falls_back():
    """A perturbed that forgets one term (here: row t's own score S[t, t] is left unmoved,
    an error of order step^2 and more) must fail the run-time check; the engine falls back to
    full forward passes, says so, and the check still passes."""
    spec = load_spec("attention", None)
    good = ATT.perturbed

    def off(name, cache, g, idx, values):
        loss = good(name, cache, g, idx, values)
        if loss is None or name != "W_Q":
            return loss
        return loss + 1e-6 * (np.asarray(values) - cache["W_Q"].ravel()[idx])

    bad = dataclasses.replace(spec, layer=dataclasses.replace(ATT, perturbed=off))
    engine = Engine(bad.layer, bad.tensors, bad.options, bad.grad_output)
    grad, info = engine.gradient("W_Q")
    assert not info.incremental and "incremental evaluation of W_Q disagrees" in info.note
    plain, _ = engine.gradient("W_Q", coloring=False)
    assert np.array_equal(grad, plain)
    report = check(bad)
    assert report.passed and any("incremental evaluation of W_Q" in n for n in report.notes)
    # its twin: the same wrong path, trusted, would have shifted dW_Q by 1e-6 everywhere
    assert engine.incremental("X") == ""


def test_check_reports_the_incremental_path_in_json():
    spec = load_spec("attention", None)
    report = check(spec)
    assert report.results["X"].numerics.incremental
    assert not report.results["W_V"].numerics.incremental  # colored instead
    doc = check_doc(spec, report)
    assert doc["results"]["X"]["incremental"] is True


@pytest.mark.parametrize("xshape", [(5,), (2, 3, 5)])
def test_linear_perturbed_loss_equals_the_forward_everywhere(xshape):
    """linear's closed forms (a move of W[o, i], x[..., i] or b[o]) against its plain
    forward at every coordinate, in runs and scattered, real and complex; its twin (W's
    transpose taken for x's path) is off."""
    layer, rng = REGISTRY["linear"], np.random.default_rng(5)
    t = {"x": rng.standard_normal(xshape), "W": rng.standard_normal((4, 5)),
         "b": rng.standard_normal(4)}  # fmt: skip
    out, cache = layer.forward(t, None)
    g = rng.standard_normal(out.shape)
    scale = np.sum(np.abs(g * out))
    for name in ("W", "x", "b"):
        v = t[name].ravel()
        for idx in (np.arange(v.size), rng.permutation(v.size)):
            for move in (0.3, 1e-20j):
                values = v[idx] + move * (1 + np.abs(v[idx]))
                fast = layer.perturbed(name, cache, g, idx, values)
                for k, j in enumerate(idx):
                    moved = v.astype(np.result_type(v, values))
                    moved[j] = values[k]
                    y = layer.forward({**t, name: moved.reshape(t[name].shape)}, None)[0]
                    assert abs(fast[k] - np.sum(g * y)) <= 1e-13 * scale, (name, j, move)
    wrong = dict(cache, W=np.ascontiguousarray(cache["W"][::-1]))
    idx = np.arange(t["x"].size)
    off = layer.perturbed("x", wrong, g, idx, t["x"].ravel() + 0.3)
    assert np.max(np.abs(off - layer.perturbed("x", cache, g, idx, t["x"].ravel() + 0.3))) > 1e-3


def test_linear_uses_its_incremental_path_and_a_wrong_backward_still_fails():
    rng = np.random.default_rng(6)
    t = {"x": rng.standard_normal((3, 6)), "W": rng.standard_normal((4, 6)),
         "b": rng.standard_normal(4)}  # fmt: skip
    report = gradcli.check("linear", t)
    assert report.passed
    assert all(r.numerics.incremental for r in report.results.values())
    g = rng.standard_normal((3, 4))
    bad = {"x": g @ t["W"], "W": (g.T @ t["x"]) * 1.001, "b": g.sum(axis=0)}
    r = gradcli.check("linear", t, grad_output=g, grads=bad)
    assert not r.passed and not r.results["W"].passed and r.results["x"].passed
