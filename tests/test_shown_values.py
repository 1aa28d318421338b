"""compute shows the values a hand derivation goes through (outside test t20 F11: only
attention's were shown), each against an independent numpy formula; they are display only:
not written to -o archives, which check --grads must read back."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.layers import REGISTRY


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _tensors(name, seed=0):
    rng = np.random.default_rng(seed)
    t = {n: rng.standard_normal(s) for n, s in REGISTRY[name].default_shapes.items()}
    if name in ("softmax_cross_entropy", "svm"):
        t["y"] = rng.integers(0, t["x"].shape[-1], t["x"].shape[0])
    return t


def test_lstm_gates():
    t = _tensors("lstm_step")
    a = t["x"] @ t["Wx"] + t["prev_h"] @ t["Wh"] + t["b"]
    H = a.shape[-1] // 4
    i, f, o = (_sigmoid(a[:, k * H:(k + 1) * H]) for k in range(3))
    g = np.tanh(a[:, 3 * H:])
    shown = gradcli.compute("lstm_step", t).intermediates
    for name, want in [("i", i), ("f", f), ("o", o), ("g", g),
                       ("tanh_c", np.tanh(f * t["prev_c"] + i * g))]:
        np.testing.assert_allclose(shown[name], want, rtol=1e-12, atol=1e-15)


def test_rnn_pre_activation():
    t = _tensors("rnn_step")
    a = t["x"] @ t["Wx"] + t["prev_h"] @ t["Wh"] + t["b"]
    np.testing.assert_allclose(gradcli.compute("rnn_step", t).intermediates["a"], a, rtol=1e-12)


@pytest.mark.parametrize(("name", "axis"), [("batchnorm", 0), ("layernorm", -1)])
def test_norm_statistics(name, axis):
    t = _tensors(name)
    x = t["x"]
    mu, var = x.mean(axis=axis), x.var(axis=axis)
    xhat = (x - np.expand_dims(mu, axis)) / np.sqrt(np.expand_dims(var, axis) + 1e-5)
    shown = gradcli.compute(name, t).intermediates
    np.testing.assert_allclose(shown["mu"], mu, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(shown["var"], var, rtol=1e-12)
    np.testing.assert_allclose(shown["xhat"], xhat, rtol=1e-10, atol=1e-12)


def test_loss_values():
    t = _tensors("softmax_cross_entropy")
    e = np.exp(t["x"] - t["x"].max(1, keepdims=True))
    p = gradcli.compute("softmax_cross_entropy", t).intermediates["p"]
    np.testing.assert_allclose(p, e / e.sum(1, keepdims=True), rtol=1e-12)
    t = _tensors("svm")
    x, y = t["x"], t["y"]
    m = np.maximum(0, x - x[np.arange(len(y)), y][:, None] + 1)
    m[np.arange(len(y)), y] = 0
    np.testing.assert_allclose(gradcli.compute("svm", t).intermediates["margins"], m, rtol=1e-12)


@pytest.mark.parametrize("name", ["lstm_step", "batchnorm", "svm"])
def test_an_archive_of_compute_reads_back_as_answers(cli, tmp_path, name):
    out = tmp_path / "a.npz"
    assert cli("compute", name, "-o", str(out)).exit_code == 0
    assert "i" not in np.load(out) and "mu" not in np.load(out)
    result = cli("check", name, "--grads", str(out))
    assert result.exit_code == 0, result.stderr


def test_shapes_table_reads_past_a_nan():
    """One NaN among twelve gradients left every statistic nan (t61b F6), then a count in the
    mean column and infs uncounted (t66b F8): min, max and mean are those of the finite
    values and the norm cell counts the others; an array of finite values reads as before."""
    from gradcli.render.values import stat_cells

    a = np.array([[-1.0, 2.0, np.nan], [0.5, np.nan, 3.0]])
    assert stat_cells(a) == ["-1", "3", "1.125", "2 NaN"]
    assert stat_cells(np.array([1.0, np.inf, -np.inf, np.nan])) == ["1", "1", "1",
                                                                "1 NaN, 1 -inf, 1 inf"]
    assert stat_cells(np.array([1.0, -np.inf, -np.inf])) == ["1", "1", "1", "2 -inf"]
    assert stat_cells(np.array([1.0, 3.0])) == ["1", "3", "2", "3.162"]
    assert stat_cells(np.full(3, np.nan)) == ["", "", "", "3 NaN"]
    assert stat_cells(np.array([1, 2])) == ["1", "2", "1.5", "2.236"]
    # values float64 holds whose squares or sum do not: no inf (outside test t68b F7)
    assert stat_cells(np.array([1e308, 1e308])) == ["1e+308", "1e+308", "1e+308", "1.414e+308"]
    assert stat_cells(np.zeros((0, 3))) == []
