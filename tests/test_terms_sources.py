"""Two speed paths of the numerical engine, each against the plain path and with a twin that a
wrong backward still fails through it:

- terms (``Layer.terms``): a loss is a sum of per-row terms (mse's per element); the engine
  differences the terms, so coloring works across rows (svm's x: C colors, not N*C passes);
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
    assert info.coloring and not info.note and info.forward_passes <= passes
    plain, plain_info = engine.gradient(tensor, coloring=False)
    assert plain_info.forward_passes > 2 * info.forward_passes
    ref = REFERENCES[name][1](g, t)[tensor]
    tol = 1e-13 if method == "complex" else 1e-8
    np.testing.assert_allclose(grad, ref, atol=tol * np.abs(ref).max())
    np.testing.assert_allclose(plain, ref, atol=tol * np.abs(ref).max())


def test_terms_with_leading_batches_broadcast_against_the_labels():
    rng = np.random.default_rng(3)
    t = {"x": rng.standard_normal((2, 1, 6, 5)), "y": rng.integers(0, 5, (3, 6))}
    engine, g = _engine("svm", t)
    grad, info = engine.gradient("x")
    assert info.coloring and not info.note
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


TWINS = {"mse": _mse_row_twice, "svm": _svm_no_margins,
         "softmax_cross_entropy": _ce_no_onehot, "embedding": _embedding_duplicates_once,
         "flatten": _flatten_transposed}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TWINS))
def test_a_wrong_backward_still_fails_through_the_path(name):
    assert _wrong(name, lambda g, t: g).passed  # the right one passes
    report = _wrong(name, TWINS[name])
    r = report.results[PATHS[name][0]]
    assert r.numerics.coloring and not r.passed


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
