"""Issue 14's sequence steps (rnn_step, lstm_step): loop references at odd shapes with
broadcast batches, the checker on them in every method, bug twins that fail on exactly the
wrong tensor, the footprints' coloring, and bad shapes as one-line usage errors."""

from __future__ import annotations

import json
import pathlib
import sys
import textwrap
import warnings

import numpy as np
import pytest

import gradcli
from gradcli.layers import REGISTRY
from gradcli.numeric.coloring import _period, build_coloring
from gradcli.numeric.methods import METHODS

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from reference import REFERENCES  # noqa: E402
from test_layers import assert_close  # noqa: E402


def _rnn(D, H, x=(), h=()):
    return {"x": (*x, D), "prev_h": (*h, H), "Wx": (D, H), "Wh": (H, H), "b": (H,)}


def _lstm(D, H, x=(), h=(), c=()):
    return {"x": (*x, D), "prev_h": (*h, H), "prev_c": (*c, H), "Wx": (D, 4 * H),
            "Wh": (H, 4 * H), "b": (4 * H,)}  # fmt: skip


SHAPES = [
    ("rnn_step", _rnn(1, 1)),
    ("rnn_step", _rnn(5, 2, x=(3,), h=(3,))),
    ("rnn_step", _rnn(2, 4, x=(2, 3))),  # one initial state for every example
    ("rnn_step", _rnn(3, 3, x=(1, 2), h=(4, 1))),  # both broadcast
    ("lstm_step", _lstm(1, 1)),
    ("lstm_step", _lstm(3, 2, x=(4,), h=(4,), c=(4,))),
    ("lstm_step", _lstm(2, 3, x=(2, 1), h=(3,), c=())),
    ("lstm_step", _lstm(4, 1, c=(2,))),  # only the cell state has a batch
]


def _tensors(shapes, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return {n: scale * rng.standard_normal(s) for n, s in shapes.items()}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name, shapes", SHAPES)
def test_forward_and_backward_match_the_loops(name, shapes, seed):
    layer = REGISTRY[name]
    t = _tensors(shapes, seed)
    out, cache = layer.forward(t, layer.make_options({}))
    assert out.shape == layer.output_shape(shapes, None)
    g = np.random.default_rng(seed + 10).standard_normal(out.shape)
    grads = layer.backward(g, cache)
    ref_forward, ref_backward = REFERENCES[name]
    assert_close(out, ref_forward(t), f"{name} forward")
    ref = ref_backward(g, t)
    assert set(grads) == set(ref)
    for k in ref:
        assert grads[k].shape == t[k].shape, k
        assert_close(grads[k], ref[k], f"{name} d{k}")


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name, shapes", SHAPES[1:4] + SHAPES[5:])
def test_checker_passes_at_broadcast_batches(name, shapes, method):
    report = gradcli.check(name, _tensors(shapes, 3, scale=0.7), method=method)
    assert report.passed, str(report)
    assert set(report.results) == set(shapes)


def test_lstm_output_stacks_next_h_and_next_c():
    """The documented layout: out[..., 0, :] = next_h, out[..., 1, :] = next_c, against a
    hand computation of one unit with every gate at a known value."""
    layer = REGISTRY["lstm_step"]
    # D = H = 1, Wx = Wh = 0, so the gates are the biases: i = s(0), f = s(ln 3), o = s(-ln 3)
    b = np.array([0.0, np.log(3.0), -np.log(3.0), np.arctanh(0.5)])
    t = {"x": np.ones(1), "prev_h": np.ones(1), "prev_c": np.array([2.0]),
         "Wx": np.zeros((1, 4)), "Wh": np.zeros((1, 4)), "b": b}  # fmt: skip
    out, _ = layer.forward(t, None)
    c = 0.75 * 2.0 + 0.5 * 0.5
    np.testing.assert_allclose(out, [[0.25 * np.tanh(c)], [c]], rtol=1e-15)


def test_saturated_gates_stay_finite_without_warnings():
    layer = REGISTRY["lstm_step"]
    t = _tensors(_lstm(2, 2, x=(2,)), 0, scale=500.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, cache = layer.forward(t, None)
        grads = layer.backward(np.ones_like(out), cache)
    assert np.isfinite(out).all() and all(np.isfinite(g).all() for g in grads.values())


# ---------------------------------------------------------------- bug twins: the wrong tensor
RNN_MODULE = """
import numpy as np

def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)

def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h**2)
    return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)

class Good:
    forward = staticmethod(rnn_step_forward)
    backward = staticmethod(rnn_step_backward)

class TransposedWh:
    forward = staticmethod(rnn_step_forward)

    @staticmethod
    def backward(dnext_h, cache):
        dx, dh, dWx, dWh, db = rnn_step_backward(dnext_h, cache)
        return dx, dh, dWx, dWh.T, db  # da^T prev_h instead of prev_h^T da
"""


def test_cs231n_rnn_step_through_impl_and_its_twin(cli, tmp_path):
    """A student's rnn_step_forward/backward pass on the example spec; the twin whose dWh is
    transposed fails on dWh alone."""
    mine = tmp_path / "rnn_layers.py"
    mine.write_text(textwrap.dedent(RNN_MODULE))
    spec = pathlib.Path(__file__).parent.parent / "specs" / "rnn_step.yaml"
    good = cli("check", "rnn_step", spec, "--impl", f"{mine}:Good", "--format", "json")
    assert good.exit_code == 0, good.stderr
    bad = cli("check", "rnn_step", spec, "--impl", f"{mine}:TransposedWh", "--format", "json")
    assert bad.exit_code == 1, bad.stderr
    failed = [n for n, r in json.loads(bad.stdout)["results"].items() if not r["passed"]]
    assert failed == ["Wh"]


def _lstm_backward_without_forget_gate(dout, cache):
    grads = dict(REGISTRY["lstm_step"].backward(dout, cache))
    grads["prev_c"] = grads["prev_c"] / cache["f"]  # the classic slip: dprev_c = dc, not dc * f
    return grads


def test_lstm_twin_forgetting_the_forget_gate_fails_on_prev_c_only():
    layer = REGISTRY["lstm_step"]
    t = _tensors(_lstm(3, 4, x=(2,), h=(2,), c=(2,)), 5, scale=0.8)

    def forward(**kw):
        return layer.forward(kw, None)[0]

    def backward(grad_output, **kw):
        return layer.backward(grad_output, layer.forward(kw, None)[1])

    def bad_backward(grad_output, **kw):
        return _lstm_backward_without_forget_gate(grad_output, layer.forward(kw, None)[1])

    assert gradcli.check("lstm_step", t, forward=forward, backward=backward).passed
    bad = gradcli.check("lstm_step", t, forward=forward, backward=bad_backward)
    assert [n for n, r in bad.results.items() if not r.passed] == ["prev_c"]


# ---------------------------------------------------------------- coloring
def _classes_disjoint(lo, hi, p):
    """Brute force: within each residue class mod p, no two non-empty windows overlap."""
    for a in range(len(lo)):
        for b in range(a + p, len(lo), p):
            if lo[a] < hi[a] and lo[b] < hi[b] and lo[a] < hi[b] and lo[b] < hi[a]:
                return False
    return True


@pytest.mark.parametrize("seed", range(30))
def test_period_of_unordered_windows_keeps_classes_disjoint(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    lo = rng.integers(0, 30, n)
    hi = lo + rng.integers(0, 4, n)
    p = _period(lo, hi)
    assert 1 <= p <= n and _classes_disjoint(lo, hi, p)
    assert not any(_classes_disjoint(lo, hi, q) for q in range(1, p))  # and the fewest colors


def test_period_twin_overlapping_windows_get_no_shared_color():
    """The gate columns j and j + H of an LSTM move the same unit: never one color."""
    H = 3
    u = np.arange(4 * H) % H
    p = _period(u, u + 1)
    assert p > 1 and all((k * p) % H for k in range(1, 4 * H // p + 1) if k * p < 4 * H)
    assert not _classes_disjoint(u, u + 1, H)  # the oracle does tell overlapping classes


@pytest.mark.parametrize("tensor", ["Wx", "Wh", "b", "prev_c"])
def test_lstm_full_check_colors_stay_few(tensor):
    """A full check of a (D, 4H) weight costs O(D) passes, not O(4 D H)."""
    layer = REGISTRY["lstm_step"]
    shapes = _lstm(16, 64, x=(8,), h=(8,), c=(8,))
    out_shape = layer.output_shape(shapes, None)
    col = build_coloring(layer.footprint(tensor, shapes, None), shapes[tensor], out_shape)
    colors = int(np.prod(col.periods))
    assert colors <= 8 * max(1, int(np.prod(shapes[tensor][:-1]))), col.periods


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "layer, tensors, key",
    [
        ("rnn_step", "x: {shape: [2, 4]}\n  prev_h: {shape: [2, 3]}\n  Wx: {shape: [4, 4]}\n"
                     "  Wh: {shape: [3, 3]}", "Wx"),
        ("rnn_step", "x: {shape: [2, 4]}\n  prev_h: {shape: [2, 3]}\n  Wx: {shape: [4, 3]}\n"
                     "  Wh: {shape: [3, 4]}", "Wh"),
        ("rnn_step", "x: {shape: [2, 4]}\n  prev_h: {shape: [3, 3]}\n  Wx: {shape: [4, 3]}\n"
                     "  Wh: {shape: [3, 3]}", "prev_h"),
        ("rnn_step", "x: {shape: [4]}\n  prev_h: {shape: [3]}\n  Wx: {shape: [4, 3]}\n"
                     "  Wh: {shape: [3, 3]}\n  b: [1.0, 2.0]", "b"),
        ("lstm_step", "x: {shape: [4]}\n  prev_h: {shape: [3]}\n  prev_c: {shape: [2]}\n"
                      "  Wx: {shape: [4, 12]}\n  Wh: {shape: [3, 12]}", "prev_c"),
        ("lstm_step", "x: {shape: [4]}\n  prev_h: {shape: [3]}\n  prev_c: {shape: [3]}\n"
                      "  Wx: {shape: [4, 3]}\n  Wh: {shape: [3, 12]}", "Wx"),
        ("lstm_step", "x: {shape: [2, 4]}\n  prev_h: {shape: [3]}\n  prev_c: {shape: [5, 3]}\n"
                      "  Wx: {shape: [4, 12]}\n  Wh: {shape: [3, 12]}", "prev_c"),
    ],
)  # fmt: skip
def test_bad_shapes_are_one_line_naming_the_key(cli, write_spec, assert_usage_error, layer,
                                                tensors, key):  # fmt: skip
    path = write_spec(f"layer: {layer}\ntensors:\n  {tensors}\n")
    assert_usage_error(cli("check", layer, path), f"tensors.{key}")
