"""The numerical engine: every method against the loop references and each other, coloring
against the plain path, footprint verification, sample/probe modes, sweep, tolerances."""

import dataclasses
import pathlib
import sys

import numpy as np
import pytest

from gradcli.checking.check import CheckOptions, check
from gradcli.checking.sweep import run_sweep
from gradcli.errors import OptionError
from gradcli.inputs.spec import Spec, load_spec
from gradcli.layers import REGISTRY
from gradcli.layers.base import same
from gradcli.numeric.engine import Engine, numerical_gradients
from gradcli.numeric.methods import METHODS

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from reference import REFERENCES  # noqa: E402

LAYERS = list(REGISTRY)
# how close each method gets to the exact gradient on the small default specs (normalized)
ACCURACY = {"central": 1e-8, "forward": 1e-5, "backward": 1e-5, "central4": 1e-10, "complex": 1e-13}


def normalized_error(a, b):
    return float(np.max(np.abs(a - b))) / (float(np.max(np.abs(b))) or 1.0)


def with_layer(spec, **changes):
    return dataclasses.replace(spec, layer=dataclasses.replace(spec.layer, **changes))


def batched_spec(name, seed=0):
    """The default spec with a batch of 2 on the input (leading axes on the input)."""
    layer = REGISTRY[name]
    rng = np.random.default_rng(seed)
    tensors = {}
    for t in (i for i in layer.tensors if i.name in layer.default_shapes):
        shape = layer.default_shapes[t.name]
        shape = (2, *shape) if t.role in ("input", "target", "index") else shape
        # labels and indices: integers, in range for every default (C, V >= 2)
        index = t.role == "index"
        tensors[t.name] = rng.integers(0, 2, shape) if index else rng.standard_normal(shape)
    # settled from the spec's shapes, as build_spec does (dropout's mask covers the batch)
    options = layer.resolve_options(
        layer.make_options({}), {n: a.shape for n, a in tensors.items()}
    )
    out, _ = layer.forward(tensors, options)
    g = rng.standard_normal(out.shape)
    return Spec(layer, "float64", seed, options, tensors, g, "<test>")


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", LAYERS)
def test_every_method_matches_loop_reference(name, method):
    spec = load_spec(name, None, seed=1)
    ref = REFERENCES[name][1](np.asarray(spec.grad_output), dict(spec.tensors))
    num = numerical_gradients(
        spec.layer, spec.tensors, spec.options, spec.grad_output, method=method
    )
    for t in spec.layer.grad_names:
        assert normalized_error(num[t], ref[t]) < ACCURACY[method], (t, method)


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("batched", [False, True])
def test_coloring_equals_plain_path(name, batched):
    spec = batched_spec(name) if batched else load_spec(name, None)
    engine = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output)
    for t in spec.layer.grad_names:
        colored, info = engine.gradient(t, coloring=True)
        plain, plain_info = engine.gradient(t, coloring=False)
        assert not info.note and not plain_info.coloring
        # two finite differences of the same function: equal to within their round-off
        atol = max(1e-10, info.noise + plain_info.noise)
        np.testing.assert_allclose(colored, plain, rtol=1e-9, atol=atol)
        if info.coloring:  # fewer forward passes is the point
            assert info.forward_passes < plain_info.forward_passes


def test_coloring_counts_for_conv2d():
    """X needs kh*kw*C_in colors, W needs kh*kw*C_in (C_out never overlaps), b needs one."""
    spec = load_spec("conv2d", None)  # X 5x5x2, W 3x3x2x3
    engine = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output)
    assert engine.groups_needed("X") == 3 * 3 * 2
    assert engine.groups_needed("W") == 3 * 3 * 2
    assert engine.groups_needed("b") == 1


def test_wrong_footprint_is_caught_and_falls_back():
    """A declaration that says X[i, j, d] only moves Z[i, j, :] is too small; the run-time
    verification must catch it, fall back to one coordinate per pass, and stay exact."""
    spec = load_spec("conv2d", None)
    good = spec.layer.footprint

    def too_small(name, shapes, options):
        if name != "X":
            return good(name, shapes, options)
        H, W, _ = shapes["X"]
        return (same(0, H), same(1, W), None)

    bad = with_layer(spec, footprint=too_small)
    engine = Engine(bad.layer, bad.tensors, bad.options, bad.grad_output)
    grad, info = engine.gradient("X")
    assert "footprint of X is wrong" in info.note and not info.coloring
    ref = REFERENCES["conv2d"][1](np.asarray(spec.grad_output), dict(spec.tensors))
    assert normalized_error(grad, ref["X"]) < 1e-8
    report = check(bad)
    assert any("footprint of X" in n for n in report.notes) and report.passed


def test_complex_step_refuses_a_forward_that_drops_the_imaginary_part():
    spec = load_spec("linear", None)
    good = spec.layer.forward

    def real_only(tensors, options):
        out, cache = good({n: np.real(a) for n, a in tensors.items()}, options)
        return out, cache

    with pytest.raises(OptionError, match="not complex-safe"):
        check(with_layer(spec, forward=real_only), method="complex")


RELU = """
import numpy as np

def forward(x):
    return REAL(np.where(np.real(x) > 0, x, 0))

def backward(grad_output, x):
    return {"x": grad_output * (x > 0)}
"""


@pytest.mark.parametrize(("real", "refused"), [("", False), ("np.real", True)])
def test_complex_safety_reads_a_kink_within_the_central_step(tmp_path, real, refused):
    """A correct relu with x = +-1e-6, within the central difference's step of its kink, was
    refused as not complex-safe: the one-sided differences that tell a kink took their own,
    smaller steps and saw none (the outside tester's C1). The twin: a forward dropping the
    imaginary part is still refused at the same point."""
    import gradcli

    mine = tmp_path / "relu.py"
    mine.write_text(RELU.replace("REAL", real))
    x = np.array([1e-6, -1e-6, 0.7, -0.4, 2e-6, -3e-6])
    if refused:
        with pytest.raises(OptionError, match="not complex-safe"):
            gradcli.check(str(mine), {"x": x}, method="complex")
    else:
        assert gradcli.check(str(mine), {"x": x}, method="complex").passed


MAXPOOL = """
import numpy as np

def forward(X, size=2, stride=None, padding=0):
    s = stride or size
    N, H, W, C = X.shape
    Z = np.zeros((N, (H - size) // s + 1, (W - size) // s + 1, C), dtype=X.dtype)
    for i in range(Z.shape[1]):
        for j in range(Z.shape[2]):
            win = X[:, i * s:i * s + size, j * s:j * s + size, :].reshape(N, -1, C)
            k = np.argmax(win.real, axis=1)[:, None, :]
            Z[:, i, j, :] = np.take_along_axis(PART, k, axis=1)[:, 0, :]
    return Z

def backward(grad_output, X, size=2, stride=None, padding=0):
    s = stride or size
    dX = np.zeros_like(X)
    for i in range(grad_output.shape[1]):
        for j in range(grad_output.shape[2]):
            win = X[:, i * s:i * s + size, j * s:j * s + size, :]
            first = win.reshape(len(X), -1, X.shape[3]).argmax(axis=1)
            m, q = np.divmod(first, size)
            for n, c in np.ndindex(len(X), X.shape[3]):
                dX[n, i * s + m[n, c], j * s + q[n, c], c] += grad_output[n, i, j, c]
    return {"X": dX}
"""


@pytest.mark.parametrize(("part", "ties", "refused"), [
    ("win", True, False), ("win", False, False), ("win.real", False, True),
])  # fmt: skip
def test_complex_safety_of_a_max_pool(tmp_path, part, ties, refused):
    """A correct complex-safe max-pool at ties in overlapping windows whose upstream gradients
    have both signs was refused: its value lay outside the loss's two one-sided slopes, which
    understate the valid gradients there; each window's own slopes now bound it. The twin: a
    forward dropping the imaginary part (its output still complex) is refused, where its
    three random coordinates all read 0 both ways (no window's winner) and it failed as if
    the backward were wrong; a line through every element sees it."""
    import gradcli

    mine = tmp_path / "pool.py"
    mine.write_text(MAXPOOL.replace("PART", part))
    rng = np.random.default_rng(9)  # 0/1 values: ties in windows that overlap
    X = rng.integers(0, 2, size=(1, 3, 4, 1)) * 1.0
    G = rng.standard_normal((1, 2, 3, 1))  # of both signs
    if not ties:
        rng = np.random.default_rng(1)
        X, G = rng.standard_normal((2, 5, 5, 2)), rng.standard_normal((2, 4, 4, 2))
    args = (str(mine), {"X": X})
    kw = {"grad_output": G, "options": {"size": 2, "stride": 1}, "method": "complex"}
    if refused:
        with pytest.raises(OptionError, match="not complex-safe"):
            gradcli.check(*args, **kw)
    else:
        assert gradcli.check(*args, **kw).passed


def _off_by(spec, tensor, rel, where=None):
    """The spec with one analytical gradient element of ``tensor`` scaled by 1 + rel."""
    good = spec.layer.backward

    def bugged(dout, cache):
        grads = dict(good(dout, cache))
        g = np.array(grads[tensor], dtype=np.float64)
        idx = where if where is not None else np.unravel_index(np.argmax(np.abs(g)), g.shape)
        g[idx] = g[idx] * (1 + rel) if g[idx] else rel  # an exact zero (an unused row) moves too
        grads[tensor] = g
        return grads

    return with_layer(spec, backward=bugged)


@pytest.mark.parametrize("name", LAYERS)
def test_complex_default_tolerance_catches_1e_9(name):
    spec = load_spec(name, None)
    tensor = spec.layer.grad_names[0]
    assert check(spec, method="complex").passed
    report = check(_off_by(spec, tensor, 1e-9), method="complex")
    assert not report.results[tensor].passed


@pytest.mark.parametrize("name", LAYERS)
def test_sample_mode_passes_and_catches_a_bug_at_a_sampled_element(name):
    spec = load_spec(name, None)
    report = check(spec, mode="sample", samples=4)
    assert report.passed and report.mode == "sample"
    assert all(r.checked <= 4 for r in report.results.values())
    # the largest-magnitude entries are always sampled
    tensor = spec.layer.grad_names[min(1, len(spec.layer.grad_names) - 1)]
    report = check(_off_by(spec, tensor, 1e-4), mode="sample", samples=4)
    assert not report.results[tensor].passed


@pytest.mark.parametrize("name", LAYERS)
def test_probe_mode_passes_and_names_the_wrong_element(name):
    spec = load_spec(name, None)
    report = check(spec, mode="probe")
    assert report.passed and all(r.mode == "probe" for r in report.results.values())
    tensor = spec.layer.grad_names[0]
    grad = spec.layer.backward(spec.grad_output, spec.layer.forward(spec.tensors, spec.options)[1])
    moving = np.flatnonzero(grad[tensor])  # scaling a zero (max-pooling's losers) changes nothing
    where = np.unravel_index(moving[len(moving) // 2], spec.tensors[tensor].shape)
    report = check(_off_by(spec, tensor, 1e-3, where), mode="probe")
    r = report.results[tensor]
    assert not r.passed and r.mode == "full" and r.worst_index == tuple(map(int, where))
    assert any("probe of d" + tensor + " disagreed" in n for n in report.notes)


def test_auto_mode_samples_above_the_budget():
    spec = load_spec("conv2d", None)
    said = []
    report = check(spec, CheckOptions(budget=0.0, samples=5, notify=said.append))
    assert report.mode == "sample" and report.passed
    assert said and "budget" in said[0] and report.notes[0] == said[0]
    assert check(spec).mode == "full"


def test_float32_reports_its_round_off():
    report = check(load_spec("attention", None, dtype="float32"))
    assert report.passed
    for r in report.results.values():
        assert r.roundoff is not None and 0 < r.roundoff < 1e-5


def test_eps_auto_is_per_method_and_explicit_eps_is_used():
    spec = load_spec("linear", None)
    for m in METHODS:
        assert check(spec, method=m).eps == METHODS[m].auto_eps
    assert check(spec, eps=1e-4).eps == 1e-4
    with pytest.raises(OptionError):
        check(spec, eps=0.0)


def test_sweep_finds_the_regimes():
    rows, best, _ = run_sweep(load_spec("attention", None))
    assert 1e-7 <= best <= 1e-3
    regimes = [r["regime"] for r in rows]
    k = regimes.index("best")
    assert set(regimes[:k]) <= {"truncation"} and set(regimes[k + 1 :]) <= {"round-off"}
    assert rows[0]["error"] > 1e3 * rows[k]["error"] < rows[-1]["error"]


def test_memory_budget_chunks_without_changing_results():
    spec = load_spec("attention", None)
    big = check(spec).numeric
    small = check(spec, max_memory=2**20).numeric
    for n in big:
        np.testing.assert_allclose(small[n], big[n], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(
    ("name", "options", "shapes"),
    [
        (
            "conv2d",
            {"stride": 2, "padding": 1, "dilation": [1, 2]},
            {"X": (2, 7, 8, 2), "W": (3, 2, 2, 3), "b": (3,)},
        ),
        ("conv2d", {"padding": "same"}, {"X": (6, 5, 2), "W": (3, 3, 2, 2), "b": (2,)}),
        (
            "conv1d",
            {"stride": 3, "padding": 2, "dilation": 2},
            {"x": (2, 11, 2), "w": (3, 2, 3), "b": (3,)},
        ),
        ("conv1d", {"stride": 2}, {"x": (9,), "w": (2,), "b": ()}),
        (
            "attention",
            {"causal": True, "heads": 2},
            {"X": (2, 4, 6), "W_Q": (6, 4), "W_K": (6, 4), "W_V": (6, 4), "W_O": (4, 3)},
        ),
    ],
)
def test_coloring_under_options_matches_plain_and_verifies(name, options, shapes):
    layer = REGISTRY[name]
    rng = np.random.default_rng(5)
    tensors = {n: rng.standard_normal(s) for n, s in shapes.items()}
    opts = layer.resolve_options(layer.make_options(options), shapes)
    out, _ = layer.forward(tensors, opts)
    engine = Engine(layer, tensors, opts, rng.standard_normal(out.shape))
    for t in tensors:
        colored, info = engine.gradient(t)
        plain, plain_info = engine.gradient(t, coloring=False)
        assert info.note == ""
        atol = max(1e-10, info.noise + plain_info.noise)  # both are finite differences
        np.testing.assert_allclose(colored, plain, rtol=1e-9, atol=atol)
