"""Issue 14's activations, softmax, flatten and dropout: the loop references at option grids and
batched shapes, their options and shapes refused naming the key, and twins: a wrong backward
fails on exactly the wrong tensor, through the CLI (--impl) and the API."""

import json
import pathlib
import sys
import textwrap

import numpy as np
import pytest

import gradcli
from gradcli.errors import OptionError, ShapeError
from gradcli.layers import REGISTRY

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from reference_activations import REFERENCES  # noqa: E402

NAMES = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", "flatten", "dropout")
GRID = {
    "relu": [{}],
    "leaky_relu": [{}, {"alpha": 0.2}, {"alpha": 1}, {"alpha": -0.5}, {"alpha": 7.5}],
    "sigmoid": [{}],
    "tanh": [{}],
    "gelu": [{}],
    "softmax": [{}],
    "flatten": [{}, {"start": 0}, {"start": 2}, {"start": -1}, {"start": -3}],
    "dropout": [{}, {"p": 0}, {"p": 0.1, "seed": 5}, {"p": 0.9, "seed": 123}],
}
SHAPES = [(7,), (3, 4), (2, 3, 4), (2, 1, 3, 5)]


def resolved(layer, raw, shapes):
    return layer.resolve_options(layer.make_options(raw), shapes)


def assert_close(actual, expected, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * scale, err_msg=what)


def grid():
    for name in NAMES:
        for raw in GRID[name]:
            for shape in SHAPES:
                if name == "flatten" and not -len(shape) <= raw.get("start", 1) < len(shape):
                    continue
                yield pytest.param(name, raw, shape, id=f"{name}-{raw}-{shape}")


@pytest.mark.parametrize("name, raw, shape", list(grid()))
def test_matches_loop_reference(name, raw, shape):
    layer, rng = REGISTRY[name], np.random.default_rng(len(shape))
    x = rng.standard_normal(shape) * 3
    opts = resolved(layer, raw, {"x": shape})
    y, cache = layer.forward({"x": x}, opts)
    ref_forward, ref_backward = REFERENCES[name]
    assert_close(y, ref_forward({"x": x}, **raw), f"{name} {raw} forward")
    assert y.shape == layer.output_shape({"x": shape}, opts)
    dy = rng.standard_normal(y.shape)
    assert_close(layer.backward(dy, cache)["x"], ref_backward(dy, {"x": x}, **raw)["x"], "dx")


@pytest.mark.parametrize("name, raw", [(n, r) for n in NAMES for r in GRID[n]])
def test_probe_axes_are_copies_of_the_spec(name, raw):
    """The engine stacks perturbed copies on a new leading axis: each copy is the spec's own
    forward (dropout's mask and flatten's axes are settled from the spec, not the array)."""
    layer, rng = REGISTRY[name], np.random.default_rng(1)
    shape = (2, 3, 4)
    opts = resolved(layer, raw, {"x": shape})
    copies = rng.standard_normal((3, *shape))
    stacked, _ = layer.forward({"x": copies}, opts)
    for p in range(3):
        assert_close(stacked[p], layer.forward({"x": copies[p]}, opts)[0], f"copy {p}")


def test_relu_at_exact_zero_is_zero_slope_and_complex_safe():
    layer = REGISTRY["relu"]
    x = np.array([-1.0, 0.0, 2.0])
    y, cache = layer.forward({"x": x}, None)
    assert list(layer.backward(np.ones(3), cache)["x"]) == [0.0, 0.0, 1.0]  # torch's choice
    z, _ = layer.forward({"x": x + 1e-20j}, None)  # the complex step keeps the branch's slope
    assert list(z.imag / 1e-20) == [0.0, 0.0, 1.0]


def test_sigmoid_never_overflows():
    x = np.array([-800.0, -30.0, 0.0, 30.0, 800.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y, _ = REGISTRY["sigmoid"].forward({"x": x}, None)
        yc, _ = REGISTRY["sigmoid"].forward({"x": x + 1e-20j}, None)
    assert_close(y, [0.0, 1 / (1 + np.exp(30)), 0.5, 1 / (1 + np.exp(-30)), 1.0], "sigmoid")
    assert np.all(np.isfinite(yc))


def test_softmax_rows_sum_to_one_at_large_scores():
    x = np.random.default_rng(0).standard_normal((4, 6)) * 500
    y, _ = REGISTRY["softmax"].forward({"x": x}, None)
    assert_close(y.sum(axis=-1), np.ones(4), "rows")


def test_dropout_p0_is_the_identity_and_the_mask_is_the_documented_one():
    x = np.random.default_rng(0).standard_normal((3, 5))
    layer = REGISTRY["dropout"]
    y0, _ = layer.forward({"x": x}, resolved(layer, {"p": 0}, {"x": x.shape}))
    assert np.array_equal(y0, x)
    y, _ = layer.forward({"x": x}, resolved(layer, {"p": 0.4, "seed": 9}, {"x": x.shape}))
    keep = np.random.default_rng(9).random(x.shape) >= 0.4
    assert_close(y, x * keep / 0.6, "mask")
    assert 0 < keep.sum() < keep.size  # the seed's mask drops some and keeps some


def test_flatten_is_torch_flatten_start_dim_1():
    x = np.arange(24.0).reshape(2, 3, 4)
    y, _ = REGISTRY["flatten"].forward({"x": x}, resolved(REGISTRY["flatten"], {}, {"x": x.shape}))
    assert np.array_equal(y, x.reshape(2, 12))


BAD_OPTIONS = [
    ("leaky_relu", {"alpha": "big"}, "options.alpha"),
    ("leaky_relu", {"alpha": float("nan")}, "options.alpha"),
    ("leaky_relu", {"alpha": True}, "options.alpha"),
    ("dropout", {"p": 1}, "options.p"),
    ("dropout", {"p": 1.0}, "options.p"),
    ("dropout", {"p": -0.1}, "options.p"),
    ("dropout", {"p": "half"}, "options.p"),
    ("dropout", {"seed": -1}, "options.seed"),
    ("dropout", {"seed": 1.5}, "options.seed"),
    ("flatten", {"start": "1"}, "options.start"),
    ("flatten", {"start": 1.0}, "options.start"),
    ("relu", {"alpha": 0.1}, "options.alpha"),
]


@pytest.mark.parametrize("name, raw, key", BAD_OPTIONS)
def test_bad_options_name_the_key(name, raw, key):
    with pytest.raises(OptionError) as e:
        REGISTRY[name].make_options(raw)
    assert e.value.key == key


def test_flatten_start_outside_x_is_refused_naming_start(cli, tmp_path, assert_usage_error):
    spec = tmp_path / "f.yaml"
    spec.write_text("options: {start: 3}\ntensors:\n  x: {shape: [2, 3, 4]}\n")
    assert_usage_error(cli("check", "flatten", spec), "options.start", "[-3, 2]")
    with pytest.raises(OptionError):
        resolved(REGISTRY["flatten"], {"start": -4}, {"x": (2, 3, 4)})
    with pytest.raises(ShapeError):
        REGISTRY["softmax"].output_shape({"x": ()}, None)


@pytest.mark.parametrize("p", ["1", "1.0", "2"])
def test_dropout_p_1_is_refused_in_one_line(cli, tmp_path, assert_usage_error, p):
    spec = tmp_path / "d.yaml"
    spec.write_text(f"options: {{p: {p}}}\ntensors:\n  x: {{shape: [2, 3]}}\n")
    assert_usage_error(cli("check", "dropout", spec), "options.p", "0 <= p < 1")


# each: a correct user layer and its bug (the one a student writes)
IMPL = {
    "relu": ("dout * (x > 0)", "dout * (x >= -0.5)"),
    "leaky_relu": ("dout * np.where(x > 0, 1.0, 0.01)", "dout * np.where(x > 0, 1.0, -0.01)"),
    "sigmoid": ("dout * s * (1 - s)", "dout * s"),
    "tanh": ("dout * (1 - t ** 2)", "dout * (1 - t)"),
    "gelu": ("dout * gd", "dout * 0.5 * (1 + th)"),
    "softmax": ("y * (dout - (dout * y).sum(-1, keepdims=True))", "y * dout"),
    "flatten": ("dout.reshape(x.shape)", "dout.reshape(x.shape[::-1]).T"),
    "dropout": ("dout * keep / 0.5", "dout * keep"),
}
PRELUDE = """\
import numpy as np
C = np.sqrt(2 / np.pi)


def forward(x):
    return {forward}


def backward(dout, x):
    s = 1 / (1 + np.exp(-x))
    t = np.tanh(x)
    th = np.tanh(C * (x + 0.044715 * x ** 3))
    gd = 0.5 * (1 + th) + 0.5 * x * (1 - th ** 2) * C * (1 + 3 * 0.044715 * x ** 2)
    y = np.exp(x - x.max(-1, keepdims=True))
    y = y / y.sum(-1, keepdims=True)
    keep = np.random.default_rng(0).random(x.shape) >= 0.5
    return {{"x": {backward}}}
"""
FORWARD = {
    "relu": "x * (x > 0)",
    "leaky_relu": "np.where(x > 0, x, 0.01 * x)",
    "sigmoid": "1 / (1 + np.exp(-x))",
    "tanh": "np.tanh(x)",
    "gelu": "0.5 * x * (1 + np.tanh(C * (x + 0.044715 * x ** 3)))",
    "softmax": "np.exp(x - x.max(-1, keepdims=True)) / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)",  # noqa: E501
    "flatten": "x.reshape(x.shape[0], -1)",
    "dropout": "x * (np.random.default_rng(0).random(x.shape) >= 0.5) / 0.5",
}
X = {"flatten": (3, 2, 3)}  # square leading block: the transposed bug keeps the shape


def impl(tmp_path, name, which):
    path = tmp_path / f"my_{name}.py"
    code = PRELUDE.format(forward=FORWARD[name], backward=IMPL[name][which])
    path.write_text(textwrap.dedent(code))
    return path


@pytest.mark.parametrize("name", NAMES)
def test_impl_twin_fails_exactly_on_x(cli, tmp_path, name):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"seed: 4\ntensors:\n  x: {{shape: {list(X.get(name, (3, 4)))}}}\n")
    good = cli("check", name, spec, "--impl", impl(tmp_path, name, 0), "--format", "json")
    assert good.exit_code == 0, good.stdout + good.stderr
    bad = cli("check", name, spec, "--impl", impl(tmp_path, name, 1), "--format", "json")
    assert bad.exit_code == 1, bad.stdout + bad.stderr
    doc = json.loads(bad.stdout)
    assert doc["results"]["x"]["passed"] is False


@pytest.mark.parametrize("name", NAMES)
def test_api_twin_fails_exactly_on_x(name):
    layer = REGISTRY[name]
    x = np.random.default_rng(2).standard_normal((3, 2, 3))
    opts = resolved(layer, {}, {"x": x.shape})

    def forward(x):
        return layer.forward({"x": x}, opts)[0]

    def backward(grad_output, x):
        g = layer.backward(grad_output, layer.forward({"x": x}, opts)[1])["x"]
        return {"x": g}

    def wrong(grad_output, x):
        g = backward(grad_output, x)["x"].copy()
        g.flat[np.argmax(np.abs(g))] *= 1.01  # one element, 1% off
        return {"x": g}

    assert gradcli.check(name, {"x": x}, forward=forward, backward=backward).passed
    report = gradcli.check(name, {"x": x}, forward=forward, backward=wrong)
    assert not report.passed and not report.results["x"].passed


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("method", ["complex", "central4", "backward"])
def test_every_method_and_float32_pass(name, method):
    assert gradcli.check(name, method=method).passed
    assert gradcli.check(name, method=method, dtype="float32").passed


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "dropout"])
def test_a_scalar_x_is_checked(cli, tmp_path, name):
    """A 0-d x: the forward's numpy scalar is an array to the engine and the contract check."""
    spec = tmp_path / "s.yaml"
    spec.write_text("tensors: {x: 2.5}\n")
    for method in ("central", "complex"):
        r = cli("check", name, spec, "--method", method, "-q")
        assert (r.exit_code, r.stderr) == (0, ""), r.stdout + r.stderr
