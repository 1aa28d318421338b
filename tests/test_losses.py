"""Issue 14: labels, indices and targets (never differentiated), scalar outputs (a loss's
upstream gradient is 1), and the layers built on them: embedding, mse, softmax_cross_entropy,
svm. Loop references at several shapes, the checker on them, bug twins that fail on exactly
the wrong tensor, and bad input as one-line usage errors."""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest

import gradcli
from gradcli.errors import GradcliError, OptionError
from gradcli.inputs.spec import load_spec
from gradcli.layers import REGISTRY
from gradcli.numeric.engine import Engine
from gradcli.numeric.methods import METHODS

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from reference import REFERENCES  # noqa: E402
from test_layers import assert_close  # noqa: E402

LOSSES = ("mse", "softmax_cross_entropy", "svm")
NEW = ("embedding", *LOSSES)


def _case(name, lead=(), N=6, C=4, V=7, y_lead=None, seed=0):
    rng = np.random.default_rng(seed)
    y_lead = lead if y_lead is None else y_lead
    if name == "embedding":
        return {"idx": rng.integers(0, V, (*lead, N)), "W": rng.standard_normal((V, C))}
    if name == "mse":
        return {"pred": rng.standard_normal((*lead, N, C)),
                "target": rng.standard_normal((*y_lead, N, C))}  # fmt: skip
    return {"x": 2 * rng.standard_normal((*lead, N, C)), "y": rng.integers(0, C, (*y_lead, N))}


CASES = [
    (name, lead, y_lead)
    for name in NEW
    for lead, y_lead in (((), None), ((3,), None), ((2, 3), ()), ((2, 1), (4,)))
    if not (name == "embedding" and y_lead is not None)
]


@pytest.mark.parametrize("name, lead, y_lead", CASES)
def test_forward_and_backward_match_the_loops(name, lead, y_lead):
    layer = REGISTRY[name]
    t = _case(name, lead, y_lead=y_lead)
    out, cache = layer.forward(t, None)
    assert out.shape == layer.output_shape({n: a.shape for n, a in t.items()}, None)
    g = np.random.default_rng(1).standard_normal(out.shape)
    grads = layer.backward(g, cache)
    ref_forward, ref_backward = REFERENCES[name]
    assert_close(out, ref_forward(t), f"{name} forward")
    ref = ref_backward(g, t)
    assert set(grads) == set(ref) == set(layer.grad_names)  # no gradient for labels
    for k in ref:
        assert grads[k].shape == t[k].shape
        assert_close(grads[k], ref[k], f"{name} d{k}")


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", NEW)
def test_checker_passes_with_batches_of_batches(name, method):
    report = gradcli.check(name, _case(name, (2,), seed=3), method=method)
    assert report.passed, str(report)
    assert set(report.results) == set(REGISTRY[name].grad_names)


# ---------------------------------------------------------------- roles: never differentiated
@pytest.mark.parametrize("name", NEW)
def test_constants_are_never_perturbed(name):
    spec = load_spec(name, None)
    (const,) = spec.layer.constants(spec.shapes)
    engine = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output)
    with pytest.raises(OptionError, match="not differentiated"):
        engine.gradient(const)
    # the engine keeps them integers: a float index could not index
    assert engine.t64[const].dtype == spec.tensors[const].dtype


@pytest.mark.parametrize("name", NEW)
def test_json_lists_no_gradient_for_constants(cli_json, name):
    (const,) = REGISTRY[name].constants()
    comp = cli_json("compute", name)
    assert const in comp["tensors"] and const not in comp["gradients"]
    doc = cli_json("check", name, "--values")
    assert const not in doc["results"] and const not in doc["numeric"]
    assert const not in doc.get("not_checked", [])


def test_grads_answers_need_no_label_and_refuse_one(cli, cli_json, tmp_path, assert_usage_error):
    comp = cli_json("compute", "softmax_cross_entropy")
    dx = np.array(comp["gradients"]["x"]["values"])
    answers = tmp_path / "answers.npz"
    np.savez(answers, dx=dx)
    doc = cli_json("check", "softmax_cross_entropy", "--grads", answers)
    assert doc["passed"] and list(doc["results"]) == ["x"]
    wrong = dx.copy()
    wrong[1, 2] += 1e-3  # the twin: a wrong answer fails
    np.savez(answers, dx=wrong)
    assert cli_json("check", "softmax_cross_entropy", "--grads", answers, code=1)["passed"] is False
    np.savez(answers, dx=dx, dy=np.zeros(5))
    assert_usage_error(cli("check", "softmax_cross_entropy", "--grads", answers),
                       "y is not differentiated")  # fmt: skip
    np.save(tmp_path / "dy.npy", np.zeros(5))
    assert_usage_error(
        cli("check", "softmax_cross_entropy", "--grads", tmp_path / "dy.npy", "--wrt", "y"),
        "not differentiated",
    )


def test_api_grads_refuse_a_label_gradient():
    t = _case("svm")
    with pytest.raises(GradcliError, match="not differentiated"):
        gradcli.check("svm", t, grads={"dy": np.zeros(6)})


# ---------------------------------------------------------------- integers for them only
def _spec(write_spec, layer, tensors):
    lines = "".join(f"  {k}: {v}\n" for k, v in tensors.items())
    return write_spec(f"layer: {layer}\ntensors:\n{lines}")


def test_integer_files_for_labels_only(cli, cli_json, write_spec, tmp_path, assert_usage_error):
    np.save(tmp_path / "y.npy", np.array([0, 3, 1], dtype=np.int32))
    np.save(tmp_path / "yf.npy", np.array([0.0, 3.0, 1.0]))
    np.save(tmp_path / "xi.npy", np.arange(12).reshape(3, 4))
    ok = _spec(write_spec, "svm", {"x": "{shape: [3, 4]}", "y": "y.npy"})
    doc = cli_json("compute", "svm", ok)
    assert doc["tensors"]["y"]["values"] == [0, 3, 1]
    bad = _spec(write_spec, "svm", {"x": "{shape: [3, 4]}", "y": "yf.npy"})
    assert_usage_error(cli("check", "svm", bad), "tensors.y", "expected integer values")
    bad = _spec(write_spec, "svm", {"x": "xi.npy", "y": "y.npy"})
    assert_usage_error(cli("check", "svm", bad), "tensors.x", "expected floating-point values")
    bad = _spec(write_spec, "svm", {"x": "{shape: [3, 4]}", "y": "[0, 1.5, 2]"})
    assert_usage_error(cli("check", "svm", bad), "tensors.y", "expected integers")


def test_api_labels_are_integers():
    x = np.random.default_rng(0).standard_normal((3, 4))
    assert gradcli.check("softmax_cross_entropy", {"x": x, "y": [0, 3, 1]}).passed
    assert gradcli.check("softmax_cross_entropy", {"x": x, "y": np.array([0, 3, 1])}).passed
    with pytest.raises(GradcliError, match="expected integers"):
        gradcli.check("softmax_cross_entropy", {"x": x, "y": np.array([0.0, 3.0, 1.0])})


def test_labels_drawn_from_the_seed_in_range(cli_json, write_spec):
    for seed in range(5):
        y = np.array(load_spec("svm", None, seed=seed).tensors["y"])
        assert y.dtype == np.int64 and y.min() >= 0 and y.max() < 4
    path = write_spec("layer: embedding\nseed: 3\ntensors:\n  idx: {shape: [200], classes: 2}\n"
                      "  W: {shape: [9, 2]}\n")  # fmt: skip
    idx = cli_json("compute", "embedding", path)["tensors"]["idx"]["values"]
    assert set(idx) == {0, 1}  # classes: 2 of the 9 rows


@pytest.mark.parametrize(
    "layer, tensors, key, needle",
    [
        ("embedding", {"idx": "[0, 7, 2]", "W": "{shape: [5, 3]}"}, "tensors.idx", "idx[1] = 7"),
        ("embedding", {"idx": "[[0, -1]]", "W": "{shape: [5, 3]}"}, "tensors.idx",
         "idx[0, 1] = -1"),
        ("embedding", {"idx": "{shape: [3], classes: 6}", "W": "{shape: [5, 3]}"},
         "tensors.idx.classes", "from 1 to 5"),
        ("embedding", {"idx": "{shape: [3], init: normal}", "W": "{shape: [5, 3]}"},
         "tensors.idx.init", "init: labels"),
        ("svm", {"x": "{shape: [3, 4]}", "y": "[0, 4, 1]"}, "tensors.y", "y[1] = 4"),
        ("softmax_cross_entropy", {"x": "{shape: [3, 4]}", "y": "[0, 1]"}, "tensors.y", "[3]"),
        ("softmax_cross_entropy", {"x": "{shape: [4]}", "y": "[0]"}, "tensors.x", "core axis"),
        ("softmax_cross_entropy", {"x": "{shape: [4]}", "y": "[0]"}, "tensors.x",
         "N rows of C class scores with integer labels y (N,)"),
        # 3-D scores are a batch of losses: the labels' shape names x's (it said [3] alone)
        ("softmax_cross_entropy", {"x": "{shape: [2, 3, 4]}", "y": "[0, 1]"}, "tensors.y",
         "y must have shape [2, 3] or [3] (..., N), one integer label per row of the scores x "
         "[2, 3, 4]"),
        ("svm", {"x": "{shape: [2, 3, 4]}", "y": "{shape: [2, 4], init: labels}"}, "tensors.y",
         "y must have shape [2, 3] or [3] (..., N)"),
        ("svm", {"x": "{shape: [3, 4]}", "y": "[0, 1]"}, "tensors.y", "y must have shape [3] (N,)"),
        ("mse", {"pred": "{shape: [3, 4]}", "target": "{shape: [3, 5]}"}, "tensors.target",
         "[..., 3, 4]"),
        ("mse", {"pred": "{shape: [2, 3, 4]}", "target": "{shape: [5, 3, 4]}"},
         "tensors.target", "broadcast"),
        # no class count to name when x has no class axis (it was 0 ... 2**62 - 1)
        ("softmax_cross_entropy", {"x": "[1.0, 2.0, 3.0]", "y": "[0.5, 1.0, 1.0]"}, "tensors.y",
         "expected integers (class or row numbers), got floating-point"),
        # a row of labels for two rows of x is a slip, not a batch of one loss
        ("svm", {"x": "[[1, 2, 3], [0, 5, 1]]", "y": "[[0, 2]]"}, "tensors.y",
         "y must have shape [2] (N,), got [1, 2]"),
        ("softmax_cross_entropy", {"x": "{shape: [3, 4]}", "y": "[[0, 1, 2]]"}, "tensors.y",
         "would be batches that x [3, 4] does not have"),
        ("mse", {"pred": "{shape: [3, 4]}", "target": "{shape: [2, 3, 4]}"}, "tensors.target",
         "would be batches"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_naming_the_key(cli, write_spec, assert_usage_error, layer,
                                              tensors, key, needle):  # fmt: skip
    assert_usage_error(cli("check", layer, _spec(write_spec, layer, tensors)), key, needle)


def test_cs231n_loss_refuses_batches_of_scores_naming_the_key(cli, write_spec, assert_usage_error):
    spec = _spec(write_spec, "softmax_cross_entropy",
                 {"x": "{shape: [2, 3, 4]}", "y": "{shape: [2, 3], init: labels}"})  # fmt: skip
    layers = pathlib.Path(__file__).parent / "fixtures" / "cs231n" / "layers.py"
    assert_usage_error(cli("check", "softmax_cross_entropy", spec, "--impl", layers),
                       "softmax_loss takes x with 2 axes (x (N, C) scores, y (N,) integer labels)",
                       "this spec's tensors.x has shape [2, 3, 4]")  # fmt: skip


# ---------------------------------------------------------------- scalar outputs
@pytest.mark.parametrize("name", LOSSES)
def test_a_loss_upstream_gradient_is_one_and_compute_shows_the_loss(cli_json, name):
    doc = cli_json("compute", name)
    assert doc["output"]["shape"] == [] and doc["grad_output"]["values"] == 1.0
    spec = load_spec(name, None)
    expected = REFERENCES[name][0](dict(spec.tensors))
    assert doc["output"]["values"] == pytest.approx(float(expected), rel=1e-14)
    g = REFERENCES[name][1](np.array(1.0), dict(spec.tensors))
    (grad,) = g.values()
    np.testing.assert_allclose(doc["gradients"][next(iter(g))]["values"], grad, rtol=1e-13)


def test_a_given_upstream_gradient_scales_the_loss_gradient(write_spec):
    base = "layer: mse\nseed: 2\ntensors:\n  pred: {shape: [3, 2]}\n  target: {shape: [3, 2]}\n"
    one = gradcli.compute("mse", load_spec("mse", str(write_spec(base, "a.yaml"))).tensors)
    twice = load_spec("mse", str(write_spec(base + "grad_output: 2.5\n", "b.yaml")))
    report = gradcli.check_spec(str(write_spec(base + "grad_output: 2.5\n", "c.yaml")))
    assert report.passed
    from gradcli.checking.compute import compute

    np.testing.assert_allclose(compute(twice).gradients["pred"], 2.5 * one.gradients["pred"])


def test_the_mean_mixes_the_batch_so_n_is_core():
    """N is a core axis: the engine's batch count for x is its axes in front of N only, and
    moving one example moves the one loss (no per-example output to color)."""
    spec = load_spec("softmax_cross_entropy", None)
    engine = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output)
    assert engine.batch == {"x": 0, "y": 0}
    assert spec.layer.footprint is None  # dense: every coordinate moves the loss


# ---------------------------------------------------------------- bug twins
def _twin(name, change):
    layer = REGISTRY[name]

    def forward(**kw):
        return layer.forward(kw, None)[0]

    def backward(grad_output, **kw):
        grads = dict(layer.backward(grad_output, layer.forward(kw, None)[1]))
        return change(grads, kw)

    return forward, backward


TWINS = {
    "softmax_cross_entropy": lambda g, kw: {"x": g["x"] * kw["x"].shape[-2]},  # forgot the 1/N
    "svm": lambda g, kw: {"x": np.where(g["x"] < 0, 0.0, g["x"])},  # no push on the true class
    "mse": lambda g, kw: {"pred": g["pred"] / 2},  # forgot the 2 of the square
}


@pytest.mark.parametrize("name", sorted(TWINS))
def test_loss_bug_twins_fail_on_x(name):
    t = _case(name, seed=4)
    fwd, good = _twin(name, lambda g, kw: g)
    assert gradcli.check(name, t, forward=fwd, backward=good).passed
    fwd, bad = _twin(name, TWINS[name])
    report = gradcli.check(name, t, forward=fwd, backward=bad)
    assert [n for n, r in report.results.items() if not r.passed] == list(REGISTRY[name].grad_names)


def test_embedding_twin_losing_repeated_indices_fails_on_the_repeated_row():
    layer = REGISTRY["embedding"]
    t = {"idx": np.array([[3, 0, 3], [1, 3, 2]]),
         "W": np.random.default_rng(5).standard_normal((5, 4))}  # fmt: skip

    def forward(idx, W):
        return W[idx]

    def backward(grad_output, idx, W):
        dW = np.zeros_like(W)
        dW[idx.ravel()] += grad_output.reshape(-1, W.shape[1])  # buffered: 3 counts once
        return {"W": dW}

    def right(grad_output, idx, W):
        return layer.backward(grad_output, layer.forward({"idx": idx, "W": W}, None)[1])

    assert gradcli.check("embedding", t, forward=forward, backward=right).passed
    report = gradcli.check("embedding", t, forward=forward, backward=backward)
    r = report.results["W"]
    assert not r.passed and r.worst_index[0] == 3


def test_loss_example_specs_in_json(cli_json):
    for name in NEW:
        path = pathlib.Path(__file__).parent.parent / "specs" / f"{name}.yaml"
        doc = cli_json("check", name, path)
        assert doc["passed"] and list(doc["results"]) == list(REGISTRY[name].grad_names)
        json.dumps(doc)


# ---------------------------------------------------------------- svm's kinks (the hinge)
def _brute_svm_kinks(x, y, step):
    """Loop by loop: moving x[n, c] alone by step[n, c], does some margin of row n meet 0 in
    the segment (start, end] (or sit at 0 for a zero step)?"""
    out = np.zeros(x.shape, dtype=bool)
    N, C = x.shape
    for n in range(N):
        for c in range(C):
            moved = x[n].copy()
            moved[c] += step[n, c]
            for k in range(C):
                if k == y[n]:
                    continue
                m0 = x[n, k] - x[n, y[n]] + 1.0
                m1 = moved[k] - moved[y[n]] + 1.0
                if m0 == m1:  # this margin does not move
                    hit = step[n, c] == 0 and m0 == 0 and c in (k, y[n])
                else:
                    hit = (m0 < 0 <= m1) or (m0 > 0 >= m1)
                out[n, c] |= bool(hit)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_svm_kinks_agree_with_a_brute_force_walk(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (5, 4)).astype(float)  # integer scores: margins tie at 0 often
    y = rng.integers(0, 4, 5)
    for step in (np.full(x.shape, 0.5), np.full(x.shape, -0.5), np.zeros(x.shape),
                 rng.choice([-1.0, 0.0, 1.0], x.shape)):  # fmt: skip
        got = REGISTRY["svm"].kinks("x", {"x": x, "y": y}, None, step)
        np.testing.assert_array_equal(got, _brute_svm_kinks(x, y, step))
    assert REGISTRY["svm"].kinks("y", {"x": x, "y": y}, None, np.zeros(5)) is None


def test_svm_at_a_margin_tie_passes_counting_the_kinks(cli_json, write_spec):
    """Row 0's margin for class 1 is exactly 0 (x[0,1] - x[0,0] + 1 = 0): a central difference
    there crosses the hinge's corner; both scores it involves are kinks, nothing else."""
    path = write_spec("layer: svm\ntensors:\n  x: [[1.0, 0.0], [0.0, 0.0]]\n  y: [0, 1]\n")
    doc = cli_json("check", "svm", path)
    assert doc["passed"] and doc["results"]["x"]["kinks"] == 2


def test_svm_wrong_hinge_backward_still_fails_at_ties():
    """The classic slip (no push down on the true class) fails on coordinates away from the
    kinks, at exact ties too; the right backward passes on the same scores."""
    x = np.array([[1.0, 0.0, 0.5], [0.0, 0.0, 2.0], [3.0, 2.0, -1.0]])  # row 0 and 2: ties
    t = {"x": x, "y": np.array([0, 1, 0])}
    fwd, good = _twin("svm", lambda g, kw: g)
    report = gradcli.check("svm", t, forward=fwd, backward=good)
    assert report.passed and report.results["x"].kinks > 0
    fwd, bad = _twin("svm", TWINS["svm"])
    report = gradcli.check("svm", t, forward=fwd, backward=bad)
    assert not report.results["x"].passed
