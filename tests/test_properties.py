"""Issue 6, property-based: random YAML and random tensor files through the loader raise nothing
but GradcliError; random valid specs of every layer pass `check` and round-trip through JSON and
.npz; the same spec and seed give byte-identical JSON."""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradcli.checking.check import check
from gradcli.errors import GradcliError
from gradcli.inputs.spec import build_spec, load_spec
from gradcli.layers import get_layer
from gradcli.render import jsondoc

LAYERS = ("linear", "conv1d", "conv2d", "attention")
def examples(n: int) -> int:
    """``n`` examples, scaled by GRADCLI_EXAMPLES (e.g. 5 for a deeper run than CI's)."""
    return max(1, round(n * float(os.environ.get("GRADCLI_EXAMPLES", "1"))))


SETTINGS = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is never a fluke
    suppress_health_check=[HealthCheck.too_slow],
)
TENSORS = ("x", "W", "b", "X", "w", "W_Q", "W_K", "W_V", "W_O")
OPTIONS = ("stride", "padding", "dilation", "heads", "causal", "channels")
KEYS = ("layer", "dtype", "seed", "options", "tensors", "grad_output", "shape", "init", "scale",
        "file", "key", *TENSORS, *OPTIONS)  # fmt: skip
INITS = ("normal", "uniform", "zeros", "ones", "arange")
FILES = ("x.npy", "arrays.npz:x", "arrays.npz", "adir", "missing.npy")
WORDS = (*LAYERS, "float64", "float32", "valid", "same", *INITS, *FILES)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)


def _load(*args: Any, **kw: Any) -> None:
    """load_spec: a GradcliError is a fine answer, anything else fails the test."""
    try:
        load_spec(*args, **kw)
    except GradcliError:
        pass


# ------------------------------------------------------------ random YAML through the loader
def _scalars() -> st.SearchStrategy:
    numbers = st.integers(-3, 12) | st.floats(allow_nan=True, allow_infinity=True, width=64)
    return st.none() | st.booleans() | numbers | st.sampled_from(WORDS) | TEXT


def _documents() -> st.SearchStrategy:
    keys = st.sampled_from(KEYS) | TEXT
    return st.recursive(
        _scalars(),
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=5),
        max_leaves=24,
    )


def _shaped(layer: str) -> st.SearchStrategy:
    """Well-typed values that fit together or not: shapes, options, files (junk comes from
    _documents and _broken_spec)."""
    tensor = (
        st.fixed_dictionaries(
            {"shape": st.lists(st.integers(1, 4), max_size=4)},
            optional={"init": st.sampled_from(INITS), "scale": st.floats(-2, 2)},
        )
        | st.lists(st.floats(-5, 5), max_size=4)
        | st.lists(st.lists(st.floats(-5, 5), min_size=1, max_size=3), max_size=3)
        | st.sampled_from(FILES)
        | st.fixed_dictionaries({"file": st.sampled_from(FILES)}, optional={"key": TEXT})
    )
    values = st.integers(-1, 4) | st.lists(st.integers(-1, 3), max_size=3)
    options = st.just({}) | st.dictionaries(
        st.sampled_from(OPTIONS), values | st.sampled_from(("same", True))
    )
    top = {
        "dtype": st.sampled_from(("float64", "float32")),
        "seed": st.integers(0, 2**63 - 1),
        "options": options,
        "tensors": st.dictionaries(st.sampled_from(get_layer(layer).all_tensor_names), tensor)
        | st.dictionaries(st.sampled_from(TENSORS), tensor, max_size=5),
        "grad_output": tensor,
    }
    return st.fixed_dictionaries({}, optional=top)  # "layer": _documents and _broken_spec


def _data_folder(d: Path) -> None:
    np.save(d / "x.npy", np.array([1.0, 2.0]))
    np.savez(d / "arrays.npz", x=np.ones((2, 2)))
    (d / "adir").mkdir()


@st.composite
def _broken_spec(draw: Any, layer: str) -> dict[str, Any]:
    """A valid spec of ``layer`` with one value, at any depth, replaced by a random one."""
    doc = draw(valid_specs(layer))
    node, key = doc, draw(st.sampled_from(list(doc)))
    while isinstance(node[key], dict) and node[key] and draw(st.booleans()):
        node, key = node[key], draw(st.sampled_from(list(node[key])))
    node[key] = draw(_scalars() | _documents() | st.lists(st.integers(-1, 4), max_size=4))
    return doc


@settings(SETTINGS, max_examples=examples(120))
@given(data=st.data())
def test_random_yaml_raises_only_gradcli_errors(data):
    layer = data.draw(st.sampled_from(LAYERS))
    doc = data.draw(_documents() | _shaped(layer) | _broken_spec(layer))
    with tempfile.TemporaryDirectory() as tmp:
        _data_folder(Path(tmp))
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        _load(layer, str(path), max_elements=100_000)


# ------------------------------------------------------- random bytes as .npy / .npz tensors
def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@st.composite
def _mutated(draw: Any, data: bytes) -> bytes:
    """``data`` cut short and with a few bytes replaced (in the header most of the time)."""
    out = bytearray(data[: draw(st.integers(1, len(data)))])
    for _ in range(draw(st.integers(0, 4))):
        end = min(len(out), draw(st.sampled_from((16, 128, len(out)))))
        out[draw(st.integers(0, end - 1))] = draw(st.integers(0, 255))
    return bytes(out)


def _zipped(member: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x.npy", member)
    return buf.getvalue()


VALID_NPY = _npy(np.arange(6.0).reshape(2, 3))
RAW_BYTES = (
    st.binary(max_size=300)
    | st.binary(max_size=200).map(lambda b: b"\x93NUMPY" + b)
    | _mutated(VALID_NPY)
    | _mutated(VALID_NPY).map(_zipped)
    | _mutated(_zipped(VALID_NPY))
)


@settings(SETTINGS, max_examples=examples(150))
@given(data=RAW_BYTES, suffix=st.sampled_from(("x.npy", "x.npz:x", "x.npz:y", "x.npz")))
def test_random_tensor_files_raise_only_gradcli_errors(data, suffix):
    name = suffix.split(":")[0]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_bytes(data)
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(f"tensors:\n  x: {suffix}\n  W: {{shape: [2, 3]}}\n")
        _load("linear", str(spec), max_elements=100_000)


# ------------------------------------------------- random valid specs: check, JSON and .npz
def _gen(shape: list[int], draw: Any) -> dict[str, Any]:
    return {"shape": shape, "init": draw(st.sampled_from(("normal", "uniform")))}


def _conv_axis(draw: Any, lo: int, d: int, p: int) -> tuple[int, int]:
    """(n, k) with an output of at least 1: n + 2p - d(k-1) - 1 >= 0."""
    k = draw(st.integers(1, 3))
    return draw(st.integers(max(lo, d * (k - 1) + 1 - 2 * p, 1), 6)), k


@st.composite
def valid_specs(draw: Any, layer: str) -> dict[str, Any]:
    batch = draw(st.lists(st.integers(1, 3), max_size=2 if layer == "linear" else 1))
    t: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if layer == "linear":
        n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        t = {"x": _gen([*batch, n_in], draw), "W": _gen([n_out, n_in], draw)}
        t.update({"b": _gen([n_out], draw)} if draw(st.booleans()) else {})
    elif layer in ("conv1d", "conv2d"):
        dims = 2 if layer == "conv2d" else 1
        same, pairs = draw(st.booleans()), dims == 2 and draw(st.booleans())

        def per_axis(values: st.SearchStrategy) -> list[int]:  # [h, w] pairs or one for both
            return [draw(values) for _ in range(dims)] if pairs else [draw(values)] * dims

        dilation = per_axis(st.integers(1, 2))
        stride = [1] * dims if same else per_axis(st.integers(1, 3))  # 'same' needs stride 1
        padding = [0] * dims if same else per_axis(st.integers(0, 2))
        lo = 3 if dims == 2 else 1
        axes = [_conv_axis(draw, lo, d, p) for d, p in zip(dilation, padding, strict=True)]
        spatial, kernel = [a[0] for a in axes], [a[1] for a in axes]
        form = (lambda v: v) if pairs else (lambda v: v[0])
        options = {"stride": form(stride), "dilation": form(dilation)}
        options["padding"] = "same" if same else form(padding)
        c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        if layer == "conv2d":
            t = {"X": _gen([*batch, *spatial, c_in], draw), "W": _gen([*kernel, c_in, c_out], draw)}
            t.update({"b": _gen([c_out], draw)} if draw(st.booleans()) else {})
        elif draw(st.booleans()):  # conv1d with channels
            t = {"x": _gen([*batch, *spatial, c_in], draw), "w": _gen([*kernel, c_in, c_out], draw)}
            t.update({"b": _gen([c_out], draw)} if draw(st.booleans()) else {})
        else:  # the seed's conv1d: 1-D w, a scalar b
            t = {"x": _gen([*batch, *spatial], draw), "w": _gen(kernel, draw)}
            t.update({"b": draw(st.floats(-2, 2))} if draw(st.booleans()) else {})
    else:
        h, T, d = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
        d_k, d_v = h * draw(st.integers(1, 2)), h * draw(st.integers(1, 2))
        t = {"X": _gen([*batch, T, d], draw), "W_Q": _gen([d, d_k], draw),
             "W_K": _gen([d, d_k], draw), "W_V": _gen([d, d_v], draw)}  # fmt: skip
        t.update({"W_O": _gen([d_v, draw(st.integers(1, 3))], draw)} if draw(st.booleans()) else {})
        options = {"heads": h, "causal": draw(st.booleans())}
    doc = {"layer": layer, "seed": draw(st.integers(0, 2**63 - 1)), "options": options}
    doc["dtype"] = draw(st.sampled_from(("float64", "float32")))
    return {**doc, "tensors": t, "grad_output": {"init": draw(st.sampled_from(("normal", "ones")))}}


def _plain(value: Any) -> Any:
    """What JSON makes of a document: tuples become lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@settings(SETTINGS, max_examples=examples(40))
@pytest.mark.parametrize("layer", LAYERS)
@given(data=st.data())
def test_random_valid_specs_pass_and_round_trip(layer, data):
    doc = data.draw(valid_specs(layer))
    spec = build_spec(get_layer(layer), doc, base=Path.cwd(), source="<hypothesis>")
    report = check(spec)
    comp, numeric = report.computation, report.numeric
    failed = {n: (r.max_abs_error, r.atol) for n, r in report.results.items() if not r.passed}
    assert report.passed, (doc, failed)
    out = jsondoc.check_doc(spec, report, comp, numeric)
    back = json.loads(jsondoc.to_json(out))
    assert back == _plain(out)
    for n, g in comp.gradients.items():
        assert np.array_equal(np.array(back["gradients"][n]["values"]), g)
        assert np.array_equal(np.array(back["numeric"][n]["values"]), numeric[n])
    arrays = {"output": comp.output, "grad_output": spec.grad_output, **spec.tensors}
    arrays.update({f"d{n}": g for n, g in comp.gradients.items()})
    arrays.update(comp.intermediates)  # attention's Q ... A and dQ ... dA
    arrays.update({f"numeric_d{n}": g for n, g in numeric.items()})
    with np.load(io.BytesIO(jsondoc.npz_bytes(spec, comp, numeric)), allow_pickle=False) as z:
        assert sorted(z.files) == sorted(arrays)
        for name, a in arrays.items():
            assert z[name].dtype == a.dtype and np.array_equal(z[name], a), name


@pytest.mark.parametrize("x_shape", [[1, 1], [2, 1]])
def test_conv1d_length_1_with_a_batch_axis_checks(cli, write_spec, x_shape):
    """Exit 3 at e99e04b (a ValueError in sliding_window_view from the seed form's forward)."""
    spec = write_spec(f"tensors:\n  x: {{shape: {x_shape}}}\n  w: {{shape: [1]}}\n")
    result = cli("check", "conv1d", spec)
    assert (result.exit_code, result.stderr) == (0, "")


# ------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("command", ["check", "compute"])
def test_same_spec_and_seed_give_byte_identical_json(cli, command, layer):
    runs = [cli(command, layer, "--format", "json", "--seed", "7") for _ in range(2)]
    assert [r.exit_code for r in runs] == [0, 0], runs[0].stderr
    assert runs[0].stdout_bytes == runs[1].stdout_bytes
    doc = json.loads(runs[0].stdout)
    assert doc["seed"] == 7 and doc["versions"]["numpy"] == np.__version__


def test_seed_from_the_spec_is_recorded_and_decides_the_values(cli, write_spec):
    spec = write_spec("seed: 11\ntensors:\n  x: {shape: [3]}\n  W: {shape: [2, 3]}\n")
    a, b = (cli("compute", "linear", spec, "--format", "json") for _ in range(2))
    c = cli("compute", "linear", spec, "--format", "json", "--seed", "12")
    assert a.stdout_bytes == b.stdout_bytes and a.stdout_bytes != c.stdout_bytes
    assert json.loads(a.stdout)["seed"] == 11 and json.loads(c.stdout)["seed"] == 12
