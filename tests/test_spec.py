"""gradcli.inputs.spec.load_spec / build_spec: tensor sources, generation, defaults and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradcli.errors import GradcliError
from gradcli.inputs.spec import build_spec, load_spec
from gradcli.layers import REGISTRY

LINEAR_XW = "tensors:\n  x: [1.0, 2.0]\n  W: [[1.0, 2.0]]\n"


@pytest.fixture
def load(write_spec):
    """``load(text, layer="linear", **kw)``: write spec.yaml and load it."""

    def run(text: str, layer: str = "linear", **kw):
        return load_spec(layer, str(write_spec(text)), **kw)

    return run


def test_npy_path_is_relative_to_the_spec_folder(tmp_path, monkeypatch):
    (tmp_path / "specs" / "data").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    x, W = np.array([0.5, -1.5, 2.25]), np.arange(6.0).reshape(2, 3) / 7
    np.save(tmp_path / "specs" / "data" / "x.npy", x)
    np.save(tmp_path / "specs" / "W.npy", W)
    spec_path = tmp_path / "specs" / "s.yaml"
    spec_path.write_text("tensors:\n  x: data/x.npy\n  W: W.npy\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    spec = load_spec("linear", str(spec_path))
    assert np.array_equal(spec.tensors["x"], x) and np.array_equal(spec.tensors["W"], W)
    assert np.array_equal(spec.tensors["b"], np.zeros(2))
    assert spec.source == str(spec_path)
    assert {p.resolve() for p in spec.files} == {
        tmp_path / "specs" / "data" / "x.npy",
        tmp_path / "specs" / "W.npy",
    }


@pytest.mark.parametrize("form", ["arrays.npz:{k}", "{{file: arrays.npz, key: {k}}}"])
def test_npz_sources(load, tmp_path, form):
    X = np.random.default_rng(1).standard_normal((4, 6))
    Ws = {k: np.random.default_rng(i).standard_normal((6, 3)) for i, k in enumerate("QKV")}
    np.savez(tmp_path / "arrays.npz", X=X, **{f"W_{k}": w for k, w in Ws.items()})
    names = ("X", "W_Q", "W_K", "W_V")
    text = "tensors:\n" + "".join(f"  {n}: {form.format(k=n)}\n" for n in names)
    spec = load(text, "attention")
    assert np.array_equal(spec.tensors["X"], X)
    for k, w in Ws.items():
        assert np.array_equal(spec.tensors[f"W_{k}"], w)


def test_inline_number_and_nested_lists(load):
    spec = load("tensors:\n  x: [1.0, -2.0, 3.5]\n  w: [2, 0.5]\n  b: 0.25\n", "conv1d")
    assert spec.tensors["b"].shape == () and spec.tensors["b"] == 0.25
    assert spec.tensors["w"].tolist() == [2.0, 0.5] and spec.tensors["w"].dtype == np.float64
    spec = load("tensors:\n  x: [1.0, 2.0]\n  W: [[1.0, 2.0], [3.0, 4.0], [5.0, 6.5]]\n")
    assert spec.tensors["W"].tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.5]]


def _generated(load, init: str, scale: float | None = None, seed: int = 0) -> np.ndarray:
    extra = "" if scale is None else f", scale: {scale}"
    text = f"seed: {seed}\ntensors:\n  x: [1.0, 2.0, 3.0]\n"
    text += f"  W: {{shape: [2, 3], init: {init}{extra}}}\n"
    return load(text).tensors["W"]


def test_generated_inits(load):
    assert np.array_equal(_generated(load, "zeros", 3.0), np.zeros((2, 3)))
    assert np.array_equal(_generated(load, "ones", 2.5), np.full((2, 3), 2.5))
    assert np.array_equal(_generated(load, "arange"), np.arange(6.0).reshape(2, 3))
    assert np.array_equal(_generated(load, "arange", 0.5), np.arange(6.0).reshape(2, 3) / 2)
    u = _generated(load, "uniform", 0.1)
    assert u.shape == (2, 3) and np.all(np.abs(u) <= 0.1) and len(np.unique(u)) == 6
    n = _generated(load, "normal")
    assert n.shape == (2, 3) and len(np.unique(n)) == 6
    assert np.array_equal(_generated(load, "normal", 0.5), n * 0.5)
    no_init = load("tensors:\n  x: [1.0, 2.0, 3.0]\n  W: {shape: [2, 3]}\n").tensors["W"]
    assert np.array_equal(no_init, n)  # init defaults to normal


@pytest.mark.parametrize("layer", list(REGISTRY))
def test_omitted_bias_is_zeros(layer):
    info = REGISTRY[layer]
    doc = {"tensors": {n: {"shape": list(info.default_shapes[n])} for n in info.tensor_names}}
    full = build_spec(info, doc, base=Path.cwd(), source="<test>")
    optional = [t.name for t in info.tensors if t.optional]
    for name in optional:
        del doc["tensors"][name]
    spec = build_spec(info, doc, base=Path.cwd(), source="<test>")
    for name in optional:
        assert spec.tensors[name].shape == full.tensors[name].shape
        assert not spec.tensors[name].any()
    assert list(spec.tensors) == list(info.tensor_names)


def test_omitted_grad_output(load):
    spec = load("seed: 3\ntensors:\n  x: [1.0, 2.0]\n  W: {shape: [4, 2]}\n")
    assert spec.grad_output.shape == (4,)
    explicit = "seed: 3\ntensors:\n  x: [1.0, 2.0]\n  W: {shape: [4, 2]}\n"
    explicit += "grad_output: {shape: [4], init: normal}\n"
    assert np.array_equal(load(explicit).grad_output, spec.grad_output)
    assert np.array_equal(
        load(explicit.replace("[4]", "[4], scale: 2")).grad_output, 2 * spec.grad_output
    )
    other = load("seed: 4\ntensors:\n  x: [1.0, 2.0]\n  W: {shape: [4, 2]}\n")
    assert not np.array_equal(other.grad_output, spec.grad_output)


@pytest.mark.parametrize("layer", list(REGISTRY))
def test_seed_determines_generated_tensors(layer):
    a, b, c = (load_spec(layer, None, seed=s) for s in (7, 7, 8))
    for name in a.tensors:
        assert np.array_equal(a.tensors[name], b.tensors[name])
        assert not np.array_equal(a.tensors[name], c.tensors[name])
    assert np.array_equal(a.grad_output, b.grad_output)
    if a.grad_output.shape == ():  # a loss: dL/dL = 1 whatever the seed
        assert a.grad_output == c.grad_output == 1.0
    else:
        assert not np.array_equal(a.grad_output, c.grad_output)
    assert (a.seed, c.seed) == (7, 8) and load_spec(layer, None).seed == 0


def test_streams_are_independent_per_tensor_name(load):
    base = "seed: 11\ntensors:\n  x: {shape: [3]}\n  W: {shape: [2, 3]}\n"
    without = load(base)
    with_b = load(base + "  b: {shape: [2]}\n")
    for name in ("x", "W"):
        assert np.array_equal(without.tensors[name], with_b.tensors[name])
    assert np.array_equal(without.grad_output, with_b.grad_output)
    reordered = load("seed: 11\ntensors:\n  W: {shape: [2, 3]}\n  x: {shape: [3]}\n")
    assert np.array_equal(reordered.tensors["x"], without.tensors["x"])
    assert not np.array_equal(with_b.tensors["b"], with_b.grad_output)


@pytest.mark.parametrize("layer", list(REGISTRY))
def test_arrays_are_read_only(layer):
    spec = load_spec(layer, None)
    for a in (*spec.tensors.values(), spec.grad_output):
        with pytest.raises(ValueError):
            a[...] = 0.0
    with pytest.raises(TypeError):
        spec.tensors["x" if "x" in spec.tensors else "X"] = np.zeros(1)  # type: ignore[index]


def test_float32(load, tmp_path):
    np.save(tmp_path / "x.npy", np.array([0.1, 0.2]))
    spec = load("dtype: float32\ntensors:\n  x: x.npy\n  W: [[0.3, 0.7]]\n")
    assert spec.dtype == "float32"
    for a in (*spec.tensors.values(), spec.grad_output):
        assert a.dtype == np.float32
    assert spec.tensors["x"].tolist() == np.array([0.1, 0.2], dtype=np.float32).tolist()
    overridden = load("dtype: float32\n" + LINEAR_XW, dtype="float64")
    assert overridden.dtype == "float64" and overridden.tensors["W"].dtype == np.float64
    assert load(LINEAR_XW, dtype="float32").grad_output.dtype == np.float32


# ------------------------------------------------------------------------------ errors
def _save(name, array, **kw):
    return lambda d: np.save(d / name, array, **kw)


def _write(name, data: bytes):
    return lambda d: (d / name).write_bytes(data)


def _truncated(d):
    np.save(d / "t.npy", np.arange(20.0))
    (d / "t.npy").write_bytes((d / "t.npy").read_bytes()[:-9])


W_OK = "  W: [[1.0, 2.0]]\n"
ERROR_CASES = [  # (spec text, file setup, substrings of str(error) besides the spec's name)
    ("tensors:\n  x: [[1.0], [1.0, 2.0]]\n" + W_OK, None, ["tensors.x", "ragged"]),
    ("tensors:\n  x: [1.0, true]\n" + W_OK, None, ["tensors.x", "[1]"]),
    ("tensors:\n  x: [1.0, abc]\n" + W_OK, None, ["tensors.x", "[1]"]),
    ("tensors:\n  x: i.npy\n" + W_OK, _save("i.npy", np.arange(2)), ["tensors.x", "int"]),
    ("tensors:\n  x: [1.0, .nan]\n" + W_OK, None, ["tensors.x", "finite"]),
    ("tensors:\n  x: [1.0, -.inf]\n" + W_OK, None, ["tensors.x", "finite"]),
    ("tensors:\n  x: n.npy\n" + W_OK, _save("n.npy", np.array([1.0, np.inf])), ["tensors.x"]),
    ("", None, ["empty"]),
    ("- 1\n- 2\n", None, ["mapping"]),
    ("tensor:\n  x: [1.0]\n", None, ["tensor", "did you mean 'tensors'"]),
    ("tensors:\n  x: [1.0]\n  W: {shape: [0, 1]}\n", None, ["tensors.W.shape"]),
    ("tensors:\n  x: [1.0]\n  W: {shape: [1, -1]}\n", None, ["tensors.W.shape"]),
    ("tensors:\n  x: [1.0]\n  W: {shape: [1, 1], init: gauss}\n", None, ["tensors.W.init"]),
    ("dtype: float16\n" + LINEAR_XW, None, ["dtype", "float16"]),
    ("seed: -1\n" + LINEAR_XW, None, ["seed"]),
    ("seed: 1.5\n" + LINEAR_XW, None, ["seed"]),
    (LINEAR_XW + "grad_output: [1.0, 2.0]\n", None, ["grad_output", "[1]"]),
    (LINEAR_XW + "grad_output: {shape: [2]}\n", None, ["grad_output", "[1]"]),
    ("tensors:\n  x: d\n" + W_OK, lambda d: (d / "d").mkdir(), ["tensors.x", "directory"]),
    ("tensors:\n  x: none.npy\n" + W_OK, None, ["tensors.x", "none.npy"]),
    ("tensors:\n  x: t.npy\n  W: {shape: [1, 20]}\n", _truncated, ["tensors.x", "t.npy"]),
    ("tensors:\n  x: g.npy\n" + W_OK, _write("g.npy", b"\x00garbage" * 9), ["tensors.x", "g.npy"]),
    ("tensors:\n  x: e.npy\n" + W_OK, _write("e.npy", b""), ["tensors.x", "e.npy"]),
    (
        "tensors:\n  x: o.npy\n" + W_OK,
        _save("o.npy", np.array([{}]), allow_pickle=True),
        ["tensors.x", "pickle"],
    ),
    ("tensors:\n  x: [1.0, 2.0]\n  W: {shape: [1, 2], sclae: 2}\n", None, ["tensors.W", "scale"]),
    ("tensors:\n  x: [1.0, 2.0]\n  W: [[1.0, 2.0]]\n  bias: [0.0]\n", None, ["tensors.bias"]),
    ("tensors:\n  x: [1.0, 2.0, 3.0]\n" + W_OK, None, ["tensors.W", "in=2"]),
    ("options: {foo: 1}\n" + LINEAR_XW, None, ["options.foo"]),
    ("layer: conv1d\n" + LINEAR_XW, None, ["layer", "conv1d"]),
    ("tensors: [\n", None, ["line 2"]),
]
ERROR_IDS = [
    "ragged",
    "bool",
    "str",
    "int-npy",
    "nan-inline",
    "inf-inline",
    "inf-npy",
    "empty-file",
    "not-a-mapping",
    "did-you-mean",
    "zero-shape",
    "negative-shape",
    "bad-init",
    "bad-dtype",
    "negative-seed",
    "float-seed",
    "grad_output-shape",
    "grad_output-generated-shape",
    "directory",
    "missing-file",
    "truncated-npy",
    "garbage-npy",
    "empty-npy",
    "pickled-npy",
    "generator-key",
    "unknown-tensor",
    "shape-mismatch",
    "unknown-option",
    "layer-disagrees",
    "yaml-syntax",
]


@pytest.mark.parametrize(("text", "setup", "needles"), ERROR_CASES, ids=ERROR_IDS)
def test_errors_name_the_file_and_key(load, tmp_path, text, setup, needles):
    if setup:
        setup(tmp_path)
    with pytest.raises(GradcliError) as info:
        load(text)
    message = str(info.value)
    assert info.value.exit_code == 2
    assert message.startswith(str(tmp_path / "spec.yaml") + ": ")
    for needle in needles:
        assert needle in message, (needle, message)
    assert "\n" not in message


def test_python_yaml_tags_construct_nothing(load, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = "tensors:\n  x: !!python/object/apply:builtins.open ['pwned.txt', 'w']\n" + W_OK
    with pytest.raises(GradcliError) as info:
        load(evil)
    assert "spec.yaml" in str(info.value) and "python/object" in str(info.value)
    assert not (tmp_path / "pwned.txt").exists()
    with pytest.raises(GradcliError):
        load("tensors: !!python/object:collections.OrderedDict {}\n")


def test_key_for_a_npy_file_is_an_error(load, tmp_path):
    np.save(tmp_path / "x.npy", np.ones(2))
    with pytest.raises(GradcliError, match="tensors.x"):
        load("tensors:\n  x: {file: x.npy, key: x}\n" + W_OK)


@pytest.mark.parametrize(
    ("layer", "text"),
    [
        ("linear", "tensors:\n  x: [1.0, 2.0]\n  W: [1.0, 2.0]\n"),
        ("conv1d", "tensors:\n  x: 1.0\n  w: [1.0]\n"),
        ("conv2d", "tensors:\n  X: {shape: [4, 4]}\n  W: {shape: [2, 2, 1, 1]}\n"),
    ],
)
def test_wrong_rank_with_omitted_bias_is_a_shape_error(load, layer, text):
    with pytest.raises(GradcliError, match="tensors"):
        load(text, layer)


def test_garbage_npy_is_not_called_pickled(load, tmp_path):
    (tmp_path / "g.npy").write_text("1.0, 2.0\n")  # e.g. a CSV saved as .npy
    with pytest.raises(GradcliError) as info:
        load("tensors:\n  x: g.npy\n" + W_OK)
    assert "pickle" not in str(info.value)


def test_exponent_notation_is_a_number(load):
    # root cause: yaml.safe_load("[1e-3]") == ["1e-3"]
    spec = load("tensors:\n  x: [1e-3, 2.0]\n  W: {shape: [1, 2], scale: 1e-2}\n")
    assert spec.tensors["x"].tolist() == [0.001, 2.0]
