"""Two speed paths of the numerical engine, each against the plain path and with a twin that a
wrong backward still fails through it:

- terms (``Layer.terms``): a loss is a sum of per-row terms (mse's per element); the engine
  differences the terms, so coloring works across rows (softmax_cross_entropy's x: C colors,
  not N*C passes), and where the layer recomputes the one term a coordinate moves
  (``Terms.moved``: svm's margins), every coordinate at once, term by term;
- sources (``Layer.sources``): each output reads one coordinate at most (embedding's lookup,
  flatten's reshape), so every coordinate moves in one pass.

Both are declarations the engine verifies before trusting: a wrong one falls back, with a note,
to the plain path and stays exact."""

import dataclasses
import pathlib
import sys

import numpy as np
import pytest

import gradcli
from gradcli.layers import REGISTRY
from gradcli.layers.base import Terms
from gradcli.numeric.engine import Engine

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from reference import REFERENCES  # noqa: E402


def _tensors(name, seed=0):
    rng = np.random.default_rng(seed)
    if name == "embedding":
        return {"idx": rng.integers(0, 9, (3, 5)), "W": rng.standard_normal((9, 4))}
    if name == "flatten":
        return {"x": rng.standard_normal((3, 4, 2, 5))}
    if name == "mse":
        return {"pred": rng.standard_normal((6, 5)), "target": rng.standard_normal((6, 5))}
    return {"x": 2 * rng.standard_normal((6, 5)), "y": rng.integers(0, 5, (6,))}


# name -> (tensor, forward passes at most a full central check may take through the path)
PATHS = {"mse": ("pred", 2), "svm": ("x", 10), "softmax_cross_entropy": ("x", 10),
         "embedding": ("W", 2), "flatten": ("x", 2)}  # fmt: skip
TERMWISE = {"svm"}  # term by term (Terms.moved): one evaluation per coordinate and point


def _through(name, info):
    """Whether a result went through the name's path."""
    return info.incremental and not info.coloring if name in TERMWISE else info.coloring


def _engine(name, t, layer=None, **kw):
    layer = layer or REGISTRY[name]
    out, _ = layer.forward(t, layer.make_options(None))
    g = np.random.default_rng(1).standard_normal(np.shape(out))
    return Engine(layer, t, layer.make_options(None), g, **kw), g


@pytest.mark.parametrize("name", sorted(PATHS))
@pytest.mark.parametrize("method", ["central", "complex"])
def test_the_path_agrees_with_the_reference_in_few_passes(name, method):
    tensor, passes = PATHS[name]
    t = _tensors(name)
    engine, g = _engine(name, t, method=method)
    grad, info = engine.gradient(tensor)
    assert _through(name, info) and not info.note
    if name not in TERMWISE:
        assert info.forward_passes <= passes
    plain, plain_info = engine.gradient(tensor, coloring=False)
    assert plain_info.forward_passes > 2 * info.forward_passes or name in TERMWISE
    ref = REFERENCES[name][1](g, t)[tensor]
    tol = 1e-13 if method == "complex" else 1e-8
    np.testing.assert_allclose(grad, ref, atol=tol * np.abs(ref).max())
    np.testing.assert_allclose(plain, ref, atol=tol * np.abs(ref).max())


def test_terms_with_leading_batches_broadcast_against_the_labels():
    rng = np.random.default_rng(3)
    t = {"x": rng.standard_normal((2, 1, 6, 5)), "y": rng.integers(0, 5, (3, 6))}
    engine, g = _engine("svm", t)
    grad, info = engine.gradient("x")
    assert info.coloring and not info.note  # x moves a term of each label batch: colored
    ref = REFERENCES["svm"][1](g, t)["x"]
    np.testing.assert_allclose(grad, ref, atol=1e-8 * np.abs(ref).max())


def _wrong(name, corrupt, seed=0):
    """A check of ``name`` with our right gradients corrupted (as --grads answers): the
    numerical side is the built-in's, through its path."""
    t = _tensors(name, seed)
    layer = REGISTRY[name]
    out, cache = layer.forward(t, layer.make_options(None))
    g = np.random.default_rng(2).standard_normal(np.shape(out))
    grads = {n: np.array(v) for n, v in layer.backward(g, cache).items()}
    return gradcli.check(name, t, grads=corrupt(grads, t), grad_output=g)


def _mse_row_twice(g, t):
    g["pred"][2] *= 2  # one row's dx off by a factor 2
    return g


def _svm_no_margins(g, t):
    keep = np.arange(5) == t["y"][:, None]
    g["x"] = np.where(keep, g["x"], 0.0)  # the margin terms left out: only the true class
    return g


def _ce_no_onehot(g, t):
    g["x"] = g["x"] + (np.arange(5) == t["y"][:, None]) / len(t["y"])  # forgot the -1
    return g


def _embedding_duplicates_once(g, t):
    # dW[idx] += dout, buffered: a repeated index counts once
    dW = np.zeros_like(g["W"])
    dout = np.random.default_rng(2).standard_normal((*t["idx"].shape, 4))  # _wrong's upstream
    dW[t["idx"].ravel()] += dout.reshape(-1, 4)
    g["W"] = dW
    return g


def _flatten_transposed(g, t):
    g["x"] = np.ascontiguousarray(g["x"].swapaxes(-1, -2)).reshape(g["x"].shape)
    return g


def _svm_counts_the_true_class(g, t):
    """The true class's own margin (always 1) counted among the active ones: its score pushed
    down once more, 1/N times the upstream gradient (_wrong's)."""
    dloss = np.random.default_rng(2).standard_normal(())
    g["x"][np.arange(len(t["y"])), t["y"]] -= dloss / len(t["y"])
    return g


TWINS = {"mse": _mse_row_twice, "svm": _svm_no_margins,
         "softmax_cross_entropy": _ce_no_onehot, "embedding": _embedding_duplicates_once,
         "flatten": _flatten_transposed, "svm-true-class": _svm_counts_the_true_class}  # fmt: skip


@pytest.mark.parametrize("twin", sorted(TWINS))
def test_a_wrong_backward_still_fails_through_the_path(twin):
    name = twin.split("-")[0]
    assert _wrong(name, lambda g, t: g).passed  # the right one passes
    report = _wrong(name, TWINS[twin])
    r = report.results[PATHS[name][0]]
    assert _through(name, r.numerics) and not r.passed
    if twin == "svm-true-class":  # the labels' scores fail, and nothing else
        bad = {tuple(w["index"]) for w in r.worst}
        assert bad and bad <= {(n, int(c)) for n, c in enumerate(_tensors("svm")["y"])}


def test_mse_off_in_one_row_fails_in_that_row_only():
    report = _wrong("mse", _mse_row_twice)
    r = report.results["pred"]
    assert not r.passed and {w["index"][0] for w in r.worst} == {2}


def test_embedding_duplicates_fail_on_the_repeated_rows_only():
    t = _tensors("embedding")
    counts = np.bincount(t["idx"].ravel(), minlength=9)
    r = _wrong("embedding", _embedding_duplicates_once).results["W"]
    assert not r.passed
    assert {w["index"][0] for w in r.worst} <= set(np.flatnonzero(counts > 1))


def test_terms_that_do_not_add_up_are_caught_and_the_output_used():
    """A loss declaring terms that are not its output (here: twice it) must not be trusted."""
    layer = REGISTRY["svm"]
    half = Terms(lambda t, o: (2 * layer.terms.forward(t, o)[0], {}), 1, layer.terms.footprint)
    bad = dataclasses.replace(layer, terms=half)
    t = _tensors("svm")
    engine, g = _engine("svm", t, layer=bad)
    grad, info = engine.gradient("x")
    assert "do not add up" in info.note
    ref = REFERENCES["svm"][1](g, t)["x"]
    np.testing.assert_allclose(grad, ref, atol=1e-8 * np.abs(ref).max())


@pytest.mark.parametrize("shift", [1, 0])
def test_wrong_sources_are_caught_and_fall_back(shift):
    """A source map off by one row (shift 1), or one saying a read row is read nowhere
    (shift 0: every source -1 but one), fails its verification."""
    layer = REGISTRY["embedding"]

    def wrong(name, t, options):
        src = layer.sources(name, t, options)
        if shift:
            return (src + 4 * shift) % t["W"].size
        out = np.full_like(src, -1)
        out.flat[0] = src.flat[0]
        return out

    t = _tensors("embedding")
    engine, g = _engine("embedding", t, layer=dataclasses.replace(layer, sources=wrong))
    grad, info = engine.gradient("W")
    assert "footprint of W is wrong" in info.note and not info.coloring
    ref = REFERENCES["embedding"][1](g, t)["W"]
    np.testing.assert_allclose(grad, ref, atol=1e-8 * np.abs(ref).max())


# ---------------------------------------------------------------- term by term (Terms.moved)
def _svm_with_ties(lead=()):
    """Scores on a grid of quarters: margins exactly 0 and exact ties with the label's score."""
    rng = np.random.default_rng(4)
    return {"x": rng.integers(-6, 7, (*lead, 6, 5)) / 4, "y": rng.integers(0, 5, (6,))}


@pytest.mark.parametrize("lead", [(), (2,)])
@pytest.mark.parametrize("move", [0.25, -1e-3, 0.5e-3j])
def test_svm_moved_is_the_forwards_term_at_every_coordinate(lead, move):
    """Each coordinate alone, against the terms' forward on a copy moved there (a quarter
    crosses margins and ties; the complex move is the complex step's arithmetic)."""
    t = _svm_with_ties(lead)
    terms = REGISTRY["svm"].terms
    cache = terms.forward(t, None)[1]
    x = t["x"].ravel()
    idx = np.arange(x.size)
    where, got = terms.moved("x", t, cache, idx, x + move)
    same = x.astype(np.result_type(x, move))  # the unmoved terms in the same arithmetic
    T = terms.forward({**t, "x": same.reshape(t["x"].shape)}, None)[0].ravel()
    for j in idx:
        copy = same.copy()
        copy[j] += move
        want = terms.forward({**t, "x": copy.reshape(t["x"].shape)}, None)[0].ravel()
        assert not np.delete(want - T, where[j]).any(), j  # no other term moved
        assert abs(got[j] - want[where[j]]) <= 1e-15, j


def _fake_moved(kind):
    moved = REGISTRY["svm"].terms.moved

    def wrong(name, t, cache, idx, values):
        where, T = moved(name, t, cache, idx, values)
        if kind == "label":  # the label's score moves only its own (zero) margin: right
            N, C = t["x"].shape[-2:]  # at the point, wrong wherever it moves
            rest = (cache["sums"].ravel()[where] - cache["margins"].ravel()[idx]) / N
            true = idx % C == np.asarray(t["y"])[where]
            T = np.where(true, rest, T)
        if kind == "row":
            where = (where + 1) % len(t["y"])
        return (where, T) if kind != "shape" else (where[:-1], T)

    return wrong


@pytest.mark.parametrize("kind", ["label", "row", "shape"])
@pytest.mark.parametrize("method", ["central", "forward"])
def test_a_wrong_term_shortcut_is_caught_and_the_colors_used(kind, method):
    layer = REGISTRY["svm"]
    terms = dataclasses.replace(layer.terms, moved=_fake_moved(kind))
    t = _tensors("svm")
    engine, g = _engine("svm", t, layer=dataclasses.replace(layer, terms=terms), method=method)
    grad, info = engine.gradient("x")
    assert "term-by-term evaluation of x disagrees" in info.note and info.coloring
    ref = REFERENCES["svm"][1](g, t)["x"]
    np.testing.assert_allclose(grad, ref, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("method", ["central", "forward", "complex"])
def test_term_by_term_agrees_with_the_colors(method):
    t = _svm_with_ties((2,))
    t["x"] = t["x"] + np.random.default_rng(5).uniform(0.01, 0.2, t["x"].shape)  # off kinks
    engine, g = _engine("svm", t, method=method)
    grad, info = engine.gradient("x")
    assert info.incremental and not info.note and info.forward_passes == engine.rows(60)
    sub = engine.terms("x")
    sub.moved_term, sub._termwise = None, {}
    colored, cinfo = engine.gradient("x")
    assert cinfo.coloring
    np.testing.assert_allclose(grad, colored, rtol=0, atol=1e-9 * np.abs(colored).max())
    np.testing.assert_allclose(info.noise_at, cinfo.noise_at, rtol=1e-12)
