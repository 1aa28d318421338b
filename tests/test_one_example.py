"""Outside test t14 (P1): `check linear --impl layers.py` on the default spec (one example)
passed CS231n's affine_backward with ``db = dout.mean(axis=0)``: a sum and a mean over a batch of
one agree. The check cannot tell them apart there, so it says so; on a batch it fails the slip."""

from __future__ import annotations

import numpy as np

import gradcli

AFFINE = '''
import numpy as np

def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b, (x, w, b)

def affine_backward(dout, cache):
    x, w, b = cache
    return (dout @ w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T @ dout, dout.mean(axis=0)
'''
ONE = "the spec holds one example"


def test_one_example_is_said_and_a_batch_fails_the_mean():
    mine: dict = {}
    exec(AFFINE, mine)
    fns = {"forward": mine["affine_forward"], "backward": mine["affine_backward"]}
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(3, 4)), rng.normal(size=3)
    one = gradcli.check("linear", {"x": rng.normal(size=4), "W": W, "b": b}, **fns)
    assert one.passed and any(n.startswith(ONE) for n in one.notes), one.notes
    batch = gradcli.check("linear", {"x": rng.normal(size=(6, 4)), "W": W, "b": b}, **fns)
    assert not batch.results["b"].passed and not any(n.startswith(ONE) for n in batch.notes)


def test_a_layer_with_nothing_summed_over_examples_says_nothing():
    report = gradcli.check("relu", {"x": np.array([1.0, -2.0, 3.0])},
                           forward=lambda x: np.maximum(x, 0),
                           backward=lambda g, x: {"x": g * (x > 0)})  # fmt: skip
    assert report.passed and not any(n.startswith(ONE) for n in report.notes)


def test_a_loss_over_several_rows_is_not_one_example():
    # a loss's x (N, C) holds its examples in a core axis: 5 rows are 5 examples, 1 row one
    def softmax_loss(x, y):
        p = np.exp(x - x.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        dx = p.copy()
        dx[np.arange(len(y)), y] -= 1
        return -np.log(p[np.arange(len(y)), y]).mean(), dx / len(y)

    rng = np.random.default_rng(1)
    for rows, said in ((5, False), (1, True)):
        report = gradcli.check("softmax_cross_entropy", {"x": rng.normal(size=(rows, 3)),
                               "y": rng.integers(0, 3, rows)}, forward=softmax_loss)  # fmt: skip
        assert report.passed and any(n.startswith(ONE) for n in report.notes) is said, report.notes


def _mse_fns(n_scale: bool) -> dict:
    """mse in gradcli's form; without ``n_scale`` the backward leaves the loss's 1/N out."""

    def backward(g, pred, target):
        d = 2 * (pred - target) / pred.shape[-1]
        return {"pred": g * d / (pred.shape[0] if n_scale else 1)}

    return {"forward": lambda pred, target: np.mean((pred - target) ** 2), "backward": backward}


def test_examples_on_a_core_axis_are_examples():
    """The outside tester's N1: a loss's N of 4 is four examples, where the 1/N left out FAILs;
    the note is said only where N is one, where that slip passes."""
    rng = np.random.default_rng(1)
    four = {"pred": rng.normal(size=(4, 3)), "target": rng.normal(size=(4, 3))}
    right = gradcli.check("mse", four, **_mse_fns(True))
    assert right.passed and not any(n.startswith(ONE) for n in right.notes), right.notes
    assert not gradcli.check("mse", four, **_mse_fns(False)).passed  # the twin: it is caught
    one = {"pred": rng.normal(size=(1, 3)), "target": rng.normal(size=(1, 3))}
    slip = gradcli.check("mse", one, **_mse_fns(False))
    assert slip.passed and any(n.startswith(ONE) for n in slip.notes), slip.notes


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_backward(axis: int):
    def backward(grad_output, x):
        y = _softmax(x)
        return {"x": y * (grad_output - (grad_output * y).sum(axis=axis, keepdims=True))}

    return backward


def test_the_default_spec_catches_a_reduction_over_the_wrong_axis():
    """The outside tester's S1: on softmax's default spec of one row, axis 0 is the last axis,
    and a backward summing over the batch passed. The default holds several rows (layernorm's
    too, the other layer reducing over its last axis)."""
    assert gradcli.check("softmax", forward=_softmax, backward=_softmax_backward(-1)).passed
    wrong = gradcli.check("softmax", forward=_softmax, backward=_softmax_backward(0))
    assert not wrong.passed and not wrong.results["x"].passed
    from gradcli.layers import REGISTRY

    for name in ("softmax", "layernorm"):
        shape = REGISTRY[name].default_shapes["x"]
        assert len(shape) == 2 and min(shape) > 1, (name, shape)
