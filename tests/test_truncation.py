"""Truncation is not a bug: a coordinate that fails at the default step is differenced again at
smaller steps (numeric/refine.py) and passes only when its discrepancy shrinks as truncation
predicts (h^p) to within tolerance. The outside tester's cases (finding L3: normalizations and
softmax of x with a large common offset, whose default step eps * |x| is far above the row's
spread) pass with the built-in backward; their twins with classic bugs still fail, at the same
offsets, without being called kinks; a smooth layer with strong curvature is no kink, a relu's
zero still is."""

import json

import numpy as np
import pytest

import gradcli
from gradcli.numeric import refine


def offset(shape, at, seed=0):
    return at + np.random.default_rng(seed).standard_normal(shape)


def norms(at_ln=1e3, at=1e4):
    """The tester's specs (FINDINGS.md, L3): name -> (tensors, options)."""
    r = np.random.default_rng(1)
    return {
        "layernorm": ({"x": offset((3, 8), at_ln), "gamma": r.normal(size=8),
                       "beta": r.normal(size=8)}, {}),
        "batchnorm": ({"x": offset((6, 3), at), "gamma": r.normal(size=3),
                       "beta": r.normal(size=3)}, {}),
        "softmax": ({"x": offset((4, 5), at)}, {}),
        "softmax_cross_entropy": ({"x": offset((4, 5), at), "y": np.array([0, 3, 1, 4])}, {}),
        "groupnorm": ({"X": offset((2, 3, 4), at), "gamma": r.normal(size=4),
                       "beta": r.normal(size=4)}, {"groups": 2}),
    }  # fmt: skip


@pytest.mark.parametrize("name", list(norms()))
def test_a_large_common_offset_passes_the_builtin(name):
    tensors, options = norms()[name]
    raw = gradcli.check(name, tensors, options=options, budget=0, mode="full")
    report = gradcli.check(name, tensors, options=options)
    assert report.passed, str(report)
    x = "X" if name == "groupnorm" else "x"
    r = report.results[x]
    assert r.refined > 0 and r.kinks == 0  # confirmed at smaller steps, not called kinks
    assert raw.passed  # a forced mode refines every failing coordinate too


@pytest.mark.parametrize("method", ["central4", "forward", "backward"])
def test_other_methods_refine_their_own_stencil(method):
    tensors, options = norms()["layernorm"]
    tensors = {**tensors, "x": offset((3, 8), 1e4)}  # central4's step is 8 on a spread of 1
    report = gradcli.check("layernorm", tensors, method=method)
    assert report.passed, str(report)
    assert report.results["x"].kinks == 0


def _ln(x, gamma, beta, eps=1e-5):
    xh = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return gamma * xh + beta, xh


def _bn(x, gamma, beta, eps=1e-5):
    xh = (x - x.mean(0)) / np.sqrt(x.var(0) + eps)
    return gamma * xh + beta, xh


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def ln_backward(drop):
    """layernorm's backward, the term ``drop`` left out, or scaled by 1 + 1e-5 ("scaled":
    an error below the default step's truncation error, above rtol)."""

    def backward(grad_output, x, gamma, beta, eps=1e-5):
        _, xh = _ln(x, gamma, beta, eps)
        r = 1 / np.sqrt(x.var(-1, keepdims=True) + eps)
        d = grad_output * gamma
        mean = 0 if drop == "mean" else d.mean(-1, keepdims=True)
        proj = 0 if drop == "proj" else xh * (d * xh).mean(-1, keepdims=True)
        dx = r * (d - mean - proj) * (1 + 1e-5 if drop == "scaled" else 1)
        return {"x": dx, "gamma": (grad_output * xh).sum(0), "beta": grad_output.sum(0)}

    return backward


def bn_backward(grad_output, x, gamma, beta, eps=1e-5):
    """batchnorm's backward without the mean term (CS231n's classic slip)."""
    _, xh = _bn(x, gamma, beta, eps)
    d = grad_output * gamma
    dx = (d - xh * (d * xh).mean(0)) / np.sqrt(x.var(0) + eps)
    return {"x": dx, "gamma": (grad_output * xh).sum(0), "beta": grad_output.sum(0)}


def softmax_backward(grad_output, x):
    """softmax's backward without the -s * sum(g * s) term."""
    return {"x": _softmax(x) * grad_output}


TWINS = {
    "layernorm without the mean term": ("layernorm", _ln, ln_backward("mean")),
    "layernorm without the projection": ("layernorm", _ln, ln_backward("proj")),
    "layernorm off by 1e-5": ("layernorm", _ln, ln_backward("scaled")),
    "batchnorm without the mean term": ("batchnorm", _bn, bn_backward),
    "softmax without -s * s": ("softmax", _softmax, softmax_backward),
}


@pytest.mark.parametrize(("twin", "method"), [(t, "central") for t in TWINS]
                         + [("layernorm off by 1e-5", "central4")])
def test_a_bug_at_the_same_offset_still_fails_and_is_no_kink(twin, method):
    name, fwd, bwd = TWINS[twin]
    tensors, _ = norms()[name]

    def forward(*args, **kw):
        out = fwd(*args, **kw)
        return out[0] if isinstance(out, tuple) else out

    report = gradcli.check(name, tensors, forward=forward, backward=bwd, method=method)
    r = report.results["x"]
    assert not report.passed and not r.passed, twin
    assert r.kinks == 0, twin  # no curvature read as a kink (the report said 12)


def test_the_oracle_backwards_pass_at_the_offsets():
    """The twins' forwards with their correct backwards pass: the bug is what fails."""
    tensors, _ = norms()["layernorm"]

    def forward(x, gamma, beta, eps=1e-5):
        return _ln(x, gamma, beta, eps)[0]

    report = gradcli.check("layernorm", tensors, forward=forward, backward=ln_backward(""))
    assert report.passed, str(report)


SMOOTH = {  # strong curvature: the default step's truncation error is beyond rtol
    "sin(100 x)": (lambda x: np.sin(100 * x), lambda x: 100 * np.cos(100 * x), 0.0),
    "exp(x) at 20": (lambda x: np.exp(x), lambda x: np.exp(x), 20.0),
}


@pytest.mark.parametrize(("case", "method"), [
    ("sin(100 x)", "central"), ("sin(100 x)", "central4"), ("exp(x) at 20", "central"),
])  # fmt: skip
def test_strong_curvature_is_no_kink(case, method):
    f, df, at = SMOOTH[case]
    x = offset((4, 5), at, seed=2)

    def backward(scale):
        return lambda grad_output, x: {"x": grad_output * df(x) * scale}

    good = gradcli.check("custom", {"x": x}, forward=f, backward=backward(1.0), method=method)
    assert good.passed and good.results["x"].kinks == 0, str(good)
    bad = gradcli.check("custom", {"x": x}, forward=f, backward=backward(1.001), method=method)
    assert not bad.passed and bad.results["x"].kinks == 0, str(bad)


def test_a_relu_zero_is_still_a_kink_and_a_wrong_mask_still_fails():
    x = np.array([[0.0, 1.5, -2.0, 0.0, 3e-6, -3e-6]])

    def relu(x):
        return np.where(x > 0, x, 0.0)

    def backward(mask):
        return lambda grad_output, x: {"x": grad_output * mask(x)}

    good = gradcli.check("custom", {"x": x}, forward=relu, backward=backward(lambda x: x > 0))
    assert good.passed and good.results["x"].kinks >= 2, str(good)
    bad = gradcli.check("custom", {"x": x}, forward=relu, backward=backward(lambda x: x < 0))
    assert not bad.passed


def test_float32_at_an_offset():
    tensors, _ = norms()["layernorm"]
    t32 = {k: v.astype(np.float32) for k, v in tensors.items()}
    assert gradcli.check("layernorm", t32, dtype="float32").passed
    bad = gradcli.check("layernorm", t32, dtype="float32", forward=lambda x, gamma, beta,
                        eps=1e-5: _ln(x, gamma, beta, eps)[0], backward=ln_backward("proj"))
    assert not bad.passed and bad.results["x"].kinks == 0
    # central4's step at 1e5 is 64 on a spread of 1: its first values saturate (small, moving
    # as 1/h), which is no settled value to stop at
    far = {**t32, "x": offset((3, 8), 1e5).astype(np.float32)}
    assert gradcli.check("layernorm", far, dtype="float32", method="central4").passed


def test_the_json_says_how_many_and_is_byte_identical():
    tensors, _ = norms()["layernorm"]
    docs = [gradcli.check("layernorm", tensors).to_json() for _ in range(2)]
    assert docs[0] == docs[1]
    result = json.loads(docs[0])["results"]["x"]
    assert result["refined"] > 0 and result["refined_halvings"] >= 2
    assert json.loads(docs[0])["results"]["gamma"]["refined"] == 0


def test_a_budget_bounds_the_refinement_and_the_rest_fail(monkeypatch):
    """What the budget leaves out keeps its failure, with a note; none passes unexamined."""
    monkeypatch.setattr(refine, "FLOOR", 4)
    tensors, _ = norms()["layernorm"]
    tensors = {**tensors, "x": offset((16, 8), 1e3)}
    report = gradcli.check("layernorm", tensors, budget=0, samples=64)
    assert report.results["x"].mode == "sample" and not report.results["x"].passed
    assert any("not differenced at smaller steps" in n for n in report.notes)
    assert gradcli.check("layernorm", tensors, mode="sample", samples=64).passed


def test_a_probe_refines_its_directions_and_a_bug_still_fails():
    tensors, _ = norms()["layernorm"]
    report = gradcli.check("layernorm", tensors, mode="probe")
    assert report.passed and report.results["x"].refined == 2, str(report)
    assert not any("probe of dx" in n for n in report.notes)

    def forward(x, gamma, beta, eps=1e-5):
        return _ln(x, gamma, beta, eps)[0]

    bad = gradcli.check("layernorm", tensors, mode="probe", forward=forward,
                        backward=ln_backward("scaled"))  # fmt: skip
    assert not bad.passed and any("probe of dx disagreed" in n for n in bad.notes)
