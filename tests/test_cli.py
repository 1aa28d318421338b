"""The command line against issue 2: commands, JSON contract, exit codes 0/1, --output, stdin."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from gradcli.checking import check as core
from gradcli.inputs.spec import load_spec
from gradcli.layers import REGISTRY
from gradcli.layers.base import option_table

LAYERS = list(REGISTRY)
ANSI = "\x1b["
HEADER = {"layer", "dtype", "seed", "options", "versions"}  # versions: issue 6
COMPUTE_KEYS = HEADER | {"tensors", "output", "grad_output", "gradients", "intermediates"}
CHECK_KEYS = HEADER | {"passed", "method", "eps", "atol", "rtol", "results"}
# issue 3 (numerical engine: "the report says which mode ran") adds these to the check
# document; they may be present, nothing else may
CHECK_EXTENSIONS = {"mode", "notes", "not_checked", "builtin", "forward"}
CHECK_EXTENSIONS |= {"contract"}  # issue 11: the backward's contract
CHECK_EXTENSIONS |= {"cost"}  # the predicted time, as planned and as run
RESULT_KEYS = {"shape", "max_abs_error", "max_rel_error", "worst_index", "analytic", "numeric"}
RESULT_KEYS = RESULT_KEYS | {"passed"}
IMPOSSIBLE = ("--atol", "0", "--rtol", "1e-16")



def _spec_args(layer, source, example_spec):
    return [] if source == "default" else [str(example_spec(layer))]


def test_stdout_and_stderr_are_captured_separately(cli):
    ok = cli("layers")
    assert ok.exit_code == 0 and ok.stderr == "" and "linear" in ok.stdout
    bad = cli("check", "no_such_layer")
    assert bad.stdout == "" and "no_such_layer" in bad.stderr


@pytest.mark.parametrize("source", ["default", "example"])
@pytest.mark.parametrize("layer", LAYERS)
def test_compute_and_check_tables(cli, example_spec, layer, source):
    args = _spec_args(layer, source, example_spec)
    comp = cli("compute", layer, *args)
    assert (comp.exit_code, comp.stderr) == (0, "")
    assert comp.stdout.startswith(f"{layer}:") and ANSI not in comp.stdout
    for t in REGISTRY[layer].grad_names:
        assert "d" + t in comp.stdout
    for t in REGISTRY[layer].constants():  # labels, indices, targets: no gradient shown
        assert f" d{t} " not in comp.stdout
    chk = cli("check", layer, *args)
    assert (chk.exit_code, chk.stderr) == (0, "")
    assert ANSI not in chk.stdout
    assert chk.stdout.strip().splitlines()[-1].startswith(f"PASS  {layer}:")


@pytest.mark.parametrize("source", ["default", "example"])
@pytest.mark.parametrize("layer", LAYERS)
def test_compute_json_document(cli_json, example_spec, layer, source):
    doc = cli_json("compute", layer, *_spec_args(layer, source, example_spec))
    info = REGISTRY[layer]
    assert set(doc) == COMPUTE_KEYS
    # the options the spec sets away from their defaults (none in the seed layers' specs)
    given = {} if source == "default" else yaml.safe_load(example_spec(layer).read_text())
    defaults = {n: d for n, d, _ in option_table(info.options)}
    changed = {k: v for k, v in (given.get("options") or {}).items() if defaults[k] != v}
    assert (doc["layer"], doc["dtype"], doc["options"]) == (layer, "float64", changed)
    assert list(doc["tensors"]) == list(info.tensor_names)
    assert list(doc["gradients"]) == list(info.grad_names)  # labels have none
    for name, t in doc["tensors"].items():
        assert set(t) == {"shape", "values"}
        if name in info.grad_names:
            assert doc["gradients"][name]["shape"] == t["shape"]
        assert list(np.shape(t["values"])) == t["shape"]
    assert set(doc["output"]) == {"name", "shape", "values"}
    assert doc["output"]["name"] == info.output.name
    assert doc["grad_output"]["shape"] == doc["output"]["shape"]


@pytest.mark.parametrize("values", [False, True])
@pytest.mark.parametrize("layer", LAYERS)
def test_check_json_document(cli_json, layer, values):
    doc = cli_json("check", layer, *(["--values"] if values else []))
    required = CHECK_KEYS | ((COMPUTE_KEYS - HEADER) | {"numeric"} if values else set())
    assert required <= set(doc) <= required | CHECK_EXTENSIONS
    assert doc["passed"] is True and doc["method"] == "central"
    assert all(isinstance(doc[k], float) and doc[k] >= 0 for k in ("eps", "atol", "rtol"))
    assert doc["eps"] > 0
    assert list(doc["results"]) == list(REGISTRY[layer].grad_names)
    for name, r in doc["results"].items():
        assert RESULT_KEYS <= set(r) and r["passed"] is True  # issue 3 adds per-result keys
        assert r["shape"] == list(REGISTRY[layer].default_shapes[name])
        assert len(r["worst_index"]) == len(r["shape"])
        assert isinstance(r["analytic"], float) and isinstance(r["numeric"], float)
    if values:
        assert list(doc["numeric"]) == list(REGISTRY[layer].grad_names)
        for name, g in doc["numeric"].items():
            assert g["shape"] == doc["gradients"][name]["shape"]
            np.testing.assert_allclose(g["values"], doc["gradients"][name]["values"], rtol=1e-5)


def test_attention_intermediates(cli_json):
    doc = cli_json("compute", "attention")
    assert {"Q", "K", "V", "S", "A", "dA", "dS"} <= set(doc["intermediates"])
    T = doc["tensors"]["X"]["shape"][0]
    assert doc["intermediates"]["A"]["shape"] == [T, T]
    rows = np.array(doc["intermediates"]["A"]["values"]).sum(axis=1)
    np.testing.assert_allclose(rows, 1.0)
    checked = cli_json("check", "attention", "--values")
    assert set(checked["intermediates"]) == set(doc["intermediates"])


def test_scalar_tensor_values_are_numbers(cli_json, example_spec):
    example = cli_json("compute", "conv1d", example_spec("conv1d"))
    for doc in (cli_json("compute", "conv1d"), example):
        for part in ("tensors", "gradients"):
            assert doc[part]["b"]["shape"] == []
            assert isinstance(doc[part]["b"]["values"], float)
    assert example["tensors"]["b"]["values"] == 0.1


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layer", LAYERS)
def test_json_floats_round_trip_exactly(cli_json, layer, dtype):
    doc = cli_json("compute", layer, "--dtype", dtype)
    spec = load_spec(layer, None, dtype=dtype)
    comp = core.compute(spec)

    def same(entry, array):
        assert entry["shape"] == list(array.shape)
        got = np.array(entry["values"], dtype=np.float64)
        assert np.array_equal(got, np.asarray(array, dtype=np.float64))

    same(doc["output"], comp.output)
    same(doc["grad_output"], spec.grad_output)
    for name in spec.layer.tensor_names:
        same(doc["tensors"][name], spec.tensors[name])
    for name in spec.layer.grad_names:
        same(doc["gradients"][name], comp.gradients[name])
    for name, a in comp.intermediates.items():
        same(doc["intermediates"][name], a)


@pytest.mark.parametrize("layer", LAYERS)
def test_impossible_tolerance_exits_1(cli, layer):
    result = cli("check", layer, *IMPOSSIBLE, "--format", "json")
    if result.exit_code == 0:  # only a piecewise-linear layer (max-pooling, relu, flatten, a
        # dropout of p 1/2) may pass: its differences at power-of-two steps are exact, and so
        # must every error be
        errors = [r["max_abs_error"] for r in json.loads(result.stdout)["results"].values()]
        assert errors == [0.0] * len(errors), errors
        return
    assert (result.exit_code, result.stderr) == (1, "")
    doc = json.loads(result.stdout)
    assert doc["passed"] is False and (doc["atol"], doc["rtol"]) == (0.0, 1e-16)
    assert not all(r["passed"] for r in doc["results"].values())
    table = cli("check", layer, *IMPOSSIBLE)
    assert (table.exit_code, table.stderr) == (1, "")
    assert any(line.startswith(f"FAIL  {layer}:") for line in table.stdout.splitlines())
    assert "PASS" not in table.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("to_file", [False, True])
def test_summary_is_one_line_however_long(cli, monkeypatch, tmp_path, to_file):
    import gradcli.render.text

    real = gradcli.render.text.summary_line
    long_tail = " (worst dW_K" + "[e=4, k=1]" * 15 + ") END"  # as long as a real batched index
    monkeypatch.setattr(gradcli.render.text, "summary_line", lambda *a: real(*a) + long_tail)
    out = tmp_path / "check.txt"
    r = cli("check", "attention", *IMPOSSIBLE, *(["-o", out] if to_file else []))
    text = out.read_text() if to_file else r.stdout
    last = text.strip().splitlines()[-1]
    assert r.exit_code == 1
    assert last.startswith("FAIL  attention:") and last.endswith(") END"), last


@pytest.mark.parametrize(
    ("layer", "tensor"), [(n, t) for n, lay in REGISTRY.items() for t in lay.grad_names]
)
def test_one_element_off_by_1e4_fails_that_tensor_only(cli, tmp_path, layer, tensor):
    """A student's answers (ours, through the public API) with one element off by 1e-4."""
    import gradcli

    comp = gradcli.compute(layer)
    grads = {"d" + n: np.array(g, dtype=np.float64) for n, g in comp.gradients.items()}
    g = grads["d" + tensor]
    g[np.unravel_index(np.argmax(np.abs(g)), g.shape)] *= 1 + 1e-4
    np.savez(tmp_path / "answers.npz", **grads)
    result = cli("check", layer, "--grads", tmp_path / "answers.npz", "--format", "json")
    assert (result.exit_code, result.stderr) == (1, "")
    results = json.loads(result.stdout)["results"]
    assert {n for n, r in results.items() if not r["passed"]} == {tensor}


@pytest.mark.parametrize("command", ["compute", "check"])
def test_output_json_txt_npz(cli, tmp_path, command):
    layer = "conv2d"
    out = {s: tmp_path / f"result.{s}" for s in ("json", "txt", "npz")}
    r = cli(command, layer, "--format", "json", "--output", out["json"])
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    doc = json.loads(out["json"].read_text())
    assert doc["layer"] == layer and ("results" in doc) == (command == "check")
    r = cli(command, layer, "-o", out["txt"])
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    text = out["txt"].read_text()
    assert text.startswith(f"{layer}:") and ANSI not in text
    r = cli(command, layer, "-o", out["npz"])
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    names = REGISTRY[layer].tensor_names
    with np.load(out["npz"], allow_pickle=False) as z:
        keys = set(z.files)
        spec = load_spec(layer, None)
        comp = core.compute(spec)
        assert np.array_equal(z["output"], comp.output)
        assert np.array_equal(z["grad_output"], spec.grad_output)
        for n in names:
            assert np.array_equal(z["d" + n], comp.gradients[n])
    assert {"output", "grad_output", *("d" + n for n in names)} <= keys
    numeric = {"numeric_d" + n for n in names}
    assert numeric <= keys if command == "check" else not numeric & keys
    assert not list(tmp_path.glob(".*.tmp"))


def test_failed_check_still_writes_its_output(cli, tmp_path):
    out = tmp_path / "fail.txt"
    r = cli("check", "linear", *IMPOSSIBLE, "-o", out)
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", "")
    assert out.read_text().strip().splitlines()[-1].startswith("FAIL  linear:")


def _fail(*args, **kwargs):
    raise RuntimeError("broke")


@pytest.mark.parametrize("boom", ["spec", "render", "rename"])
def test_output_is_atomic(cli, tmp_path, write_spec, monkeypatch, boom):
    out = tmp_path / "result.json"
    out.write_text("previous result\n")
    if boom == "spec":
        r = cli("check", "linear", write_spec("tensors: [\n"), "-f", "json", "-o", out)
        assert r.exit_code == 2
    elif boom == "render":
        import rich.console

        monkeypatch.setattr(rich.console.Console, "print", _fail)
        r = cli("check", "linear", "-o", tmp_path / "result.txt")
        assert r.exit_code == 3 and not (tmp_path / "result.txt").exists()
    else:  # the final rename fails: the old file stays whole, the temporary file goes
        import os

        def no_rename(src, dst):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(os, "replace", no_rename)
        r = cli("compute", "linear", "-f", "json", "-o", out)
        assert r.exit_code == 2 and "--output" in r.stderr and r.stdout == ""
    assert out.read_text() == "previous result\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_output_file_gets_normal_permissions(cli, tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        r = cli("init", "linear", "-o", tmp_path / "spec.yaml")
        assert r.exit_code == 0
        assert (tmp_path / "spec.yaml").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(umask)


def test_no_ansi_with_no_color(cli):
    r = cli("check", "attention", env={"NO_COLOR": "1"})
    assert r.exit_code == 0 and r.stdout and ANSI not in r.stdout


def test_spec_from_stdin(cli, cli_json):
    text = "tensors:\n  x: [1.0, 2.0]\n  W: [[3.0, 4.0]]\n  b: [0.5]\ngrad_output: [2.0]\n"
    doc = cli_json("compute", "linear", "-", input=text)
    assert doc["output"]["values"] == [11.5]
    assert doc["gradients"]["x"]["values"] == [6.0, 8.0]
    assert doc["gradients"]["W"]["values"] == [[2.0, 4.0]]
    assert doc["gradients"]["b"]["values"] == [2.0]
    assert cli_json("check", "linear", "-", input=text)["passed"] is True
    r = cli("compute", "linear", "-", input="tensors: [\n")
    assert r.exit_code == 2 and "<stdin>" in r.stderr


@pytest.mark.parametrize("layer", LAYERS)
def test_dtype_float32(cli_json, layer):
    doc = cli_json("check", layer, "--dtype", "float32", "--values")
    assert doc["dtype"] == "float32" and doc["passed"] is True
    x = np.array(doc["tensors"][REGISTRY[layer].tensor_names[0]]["values"])
    assert np.array_equal(x, x.astype(np.float32).astype(np.float64))
    # the numerical side keeps float64's defaults; each float32 gradient adds its round-off
    f64 = cli_json("check", layer)
    assert doc["atol"] == f64["atol"] and doc["rtol"] == f64["rtol"]
    for r in doc["results"].values():
        assert r["atol"] >= f64["atol"] and r["float32_roundoff_source"] == "measured"


def test_seed_option(cli_json):
    d0, d5 = cli_json("compute", "linear"), cli_json("compute", "linear", "--seed", "5")
    assert (d0["seed"], d5["seed"]) == (0, 5)
    assert d5["tensors"]["x"]["values"] != d0["tensors"]["x"]["values"]
    assert d5["grad_output"]["values"] != d0["grad_output"]["values"]
    assert cli_json("compute", "linear", "--seed", "5") == d5
    assert cli_json("check", "linear", "--seed", "5")["seed"] == 5


@pytest.mark.parametrize("layer", LAYERS)
def test_init_round_trips(cli, cli_json, tmp_path, layer):
    printed = cli("init", layer)
    assert (printed.exit_code, printed.stderr) == (0, "")
    doc = yaml.safe_load(printed.stdout)
    assert doc["layer"] == layer and set(doc["tensors"]) == set(REGISTRY[layer].tensor_names)
    target = tmp_path / f"{layer}.yaml"
    written = cli("init", layer, "-o", target)
    assert (written.exit_code, written.stdout, written.stderr) == (0, "", "")
    # the same template, its run line naming the file written
    assert target.read_text() == printed.stdout.replace("THIS_FILE.yaml", str(target))
    from_file = cli_json("check", layer, target, "--values")
    assert from_file == cli_json("check", layer, "--values")


def test_layers_command(cli, cli_json):
    r = cli("layers")
    assert (r.exit_code, r.stderr) == (0, "") and ANSI not in r.stdout
    for name, layer in REGISTRY.items():
        assert f"{name}: " in r.stdout
        assert all(t in r.stdout for t in layer.tensor_names)
    doc = cli_json("layers")
    assert list(doc) == LAYERS
    for name, entry in doc.items():
        assert [t["name"] for t in entry["tensors"]] == list(REGISTRY[name].all_tensor_names)
        assert entry["output"]["name"] == REGISTRY[name].output.name
    assert doc["attention"]["intermediates"][:5] == ["Q", "K", "V", "S", "A"]


@pytest.mark.parametrize("columns", [80, 60])
def test_layers_fits_the_width_and_keeps_shapes_whole_at_80(cli, columns):
    out = cli("layers", env={"COLUMNS": str(columns)}).stdout
    assert max(len(line) for line in out.splitlines()) <= columns
    cells = [line.split("│") for line in out.splitlines() if line.startswith("│")]
    shown = {cell[2].strip() for cell in cells if len(cell) > 2}
    for layer in REGISTRY.values():
        for t in (*layer.tensors, layer.output):
            # (kh, kw, C_in, C_out) broken after C_in, at 80 columns, read as two shapes
            assert columns < 80 or t.shape_str in shown, (layer.name, t.shape_str)


def test_layers_says_its_shapes_are_one_examples(cli):
    """rnn_step's x (D,) beside a default spec and skeleton of (N, D) sent a student writing
    1-D code astray (outside test t52b F7): the table says its shapes are one example's."""
    out = cli("layers", env={"COLUMNS": "80"}).stdout
    assert out.startswith("Shapes are one example's. Any leading batch axes"), out[:200]


@pytest.mark.parametrize("columns", ["1", "5"])
def test_a_width_below_any_table_is_read_as_20_columns(cli, columns):
    """COLUMNS=1 printed the title one letter per line, 263 lines (outside test t65c): a
    width narrower than any table reads as 20 columns. Twin: 20 itself is kept."""
    out = cli("check", "linear", env={"COLUMNS": columns, "NO_COLOR": "1"}).stdout
    same = cli("check", "linear", env={"COLUMNS": "20", "NO_COLOR": "1"}).stdout
    assert out == same
    assert len(out.splitlines()) < 60, len(out.splitlines())
    wider = cli("check", "linear", env={"COLUMNS": "21", "NO_COLOR": "1"}).stdout
    assert wider != same


@pytest.mark.parametrize("command", ["check", "compute", "explain", "init"])
def test_the_output_option_is_shown_as_file_in_help(cli, command):
    """`-o, --output <_output_path>`: a parser's name, not the README's FILE (t68c F5)."""
    out = cli(command, "--help", env={"COLUMNS": "120"}).stdout
    assert "_output_path" not in out
    assert any("--output" in line and "FILE" in line.split("--output", 1)[1][:12]
               for line in out.splitlines()), out
