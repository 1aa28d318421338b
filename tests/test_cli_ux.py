"""Issue 11's small things a user hit: --version, -h, init -o over a file, the format of an
--output FILE from its extension, case-insensitive choices, --grads with --impl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradcli

REPO = Path(__file__).resolve().parent.parent

COMMANDS = ("compute", "check", "layers", "explain", "init")


def test_version(cli):
    r = cli("--version")
    assert (r.exit_code, r.stdout, r.stderr) == (0, f"gradcli {gradcli.__version__}\n", "")


def test_version_subprocess():
    r = subprocess.run(
        [sys.executable, "-m", "gradcli", "--version"], capture_output=True, cwd=REPO, timeout=60
    )
    version = f"gradcli {gradcli.__version__}\n".encode()
    assert (r.returncode, r.stdout, r.stderr) == (0, version, b"")


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_h_is_help(cli, command):
    args = [command] if command else []
    short, long = cli(*args, "-h"), cli(*args, "--help")
    assert (short.exit_code, short.stderr) == (0, "")
    assert short.stdout == long.stdout and short.stdout.startswith("Usage: gradcli")
    assert "-h, --help" in short.stdout


@pytest.mark.parametrize("impl", [False, True])
def test_init_does_not_overwrite_without_force(cli, assert_usage_error, tmp_path, impl):
    target = tmp_path / ("mine.py" if impl else "mine.yaml")
    target.write_text("my edits\n")
    extra = ["--impl"] if impl else []
    assert_usage_error(cli("init", "linear", *extra, "-o", target), str(target), "--force")
    assert target.read_text() == "my edits\n"
    r = cli("init", "linear", *extra, "-o", target, "--force")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    printed = cli("init", "linear", *extra).stdout  # the same text, naming the file written
    assert target.read_text() == printed.replace("THIS_FILE.yaml", str(target)).replace(
        "my_linear.py", str(target))  # fmt: skip


def test_init_refuses_a_dangling_symlink(cli, assert_usage_error, tmp_path):
    link = tmp_path / "spec.yaml"
    link.symlink_to(tmp_path / "elsewhere.yaml")
    assert_usage_error(cli("init", "linear", "-o", link), "--force")
    assert not (tmp_path / "elsewhere.yaml").exists()


@pytest.mark.parametrize("command", ["compute", "check", "explain"])
@pytest.mark.parametrize("name", ["out.json", "OUT.JSON"])
def test_output_json_file_gets_json(cli, tmp_path, command, name):
    out = tmp_path / name
    r = cli(command, "linear", "-o", out)
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    assert json.loads(out.read_text())["layer"] == "linear"


@pytest.mark.parametrize("command", ["compute", "check", "explain"])
def test_output_json_file_with_format_table_is_refused(cli, assert_usage_error, tmp_path, command):
    out = tmp_path / "out.json"
    assert_usage_error(cli(command, "linear", "-f", "table", "-o", out), "--output", "out.json")
    assert list(tmp_path.iterdir()) == []


def test_output_other_files_follow_format(cli, tmp_path):
    r = cli("check", "linear", "-o", tmp_path / "out.log")
    assert r.exit_code == 0 and (tmp_path / "out.log").read_text().startswith("linear:")
    r = cli("check", "linear", "-f", "json", "-o", tmp_path / "out.log")
    assert r.exit_code == 0 and json.loads((tmp_path / "out.log").read_text())["passed"]


@pytest.mark.parametrize(
    ("option", "given", "value"),
    [("--method", "Central", "central"), ("--method", "COMPLEX", "complex"),
     ("--mode", "Sample", "sample"), ("--dtype", "Float32", "float32")],
)  # fmt: skip
def test_choices_are_case_insensitive(cli_json, option, given, value):
    doc = cli_json("check", "linear", option, given)
    key = option.lstrip("-")
    assert doc[key] == value
    assert doc == cli_json("check", "linear", option, value)


def test_format_is_case_insensitive(cli):
    r = cli("compute", "linear", "--format", "JSON")
    assert r.exit_code == 0 and json.loads(r.stdout)["layer"] == "linear"


@pytest.mark.parametrize(
    ("args", "choices"),
    [(["check", "linear", "--method", "cenral"], "'central', 'forward'"),
     (["check", "linear", "--mode", "all"], "'full', 'sample', 'probe'"),
     (["compute", "linear", "--format", "xml"], "'table', 'json'")],
)  # fmt: skip
def test_bad_choice_lists_the_choices_plainly(cli, assert_usage_error, args, choices):
    r = cli(*args)
    assert_usage_error(r, args[-2], repr(args[-1]), choices)
    assert "Value error" not in r.stderr


@pytest.mark.parametrize("sweep", [[], ["--sweep"]])
def test_grads_with_impl_is_refused(cli, assert_usage_error, tmp_path, sweep):
    impl = tmp_path / "mine.py"
    impl.write_text(cli("init", "linear", "--impl").stdout)
    answers = tmp_path / "answers.npz"
    assert cli("compute", "linear", "-o", answers).exit_code == 0
    r = cli("check", "linear", "--grads", answers, "--impl", impl, *sweep)
    assert_usage_error(r, "--grads", "--impl")
    # each alone is accepted (the skeleton's backward raises NotImplementedError: exit 2)
    assert cli("check", "linear", "--grads", answers).exit_code == 0
    assert "NotImplementedError" in cli("check", "linear", "--impl", impl).stderr


# ---------------------------------------------------------------- W and dW, everywhere

_LINEAR = """
import numpy as np
def forward(x, W, b):
    return W @ x + b
def backward(grad_output, x, W, b):
    return {KEYS}
"""


@pytest.mark.parametrize(
    ("keys", "code"),
    [('{"dx": W.T @ grad_output, "dW": np.outer(grad_output, x), "db": grad_output}', 0),
     ('{"x": W.T @ grad_output, "dW": np.outer(grad_output, x), "b": grad_output}', 0),
     ('{"x": W.T @ grad_output, "dW": 2 * np.outer(grad_output, x), "b": grad_output}', 1)],
)  # fmt: skip
def test_impl_backward_may_key_dw(cli_json, tmp_path, keys, code):
    impl = tmp_path / "mine.py"
    impl.write_text(_LINEAR.replace("{KEYS}", keys))
    doc = cli_json("check", "linear", "--impl", impl, code=code)
    assert set(doc["results"]) == {"x", "W", "b"}
    assert doc["results"]["W"]["passed"] is (code == 0) and doc["results"]["x"]["passed"]


def test_impl_backward_with_w_and_dw_is_refused(cli, assert_usage_error, tmp_path):
    impl = tmp_path / "mine.py"
    both = '{"x": W.T @ grad_output, "W": np.outer(grad_output, x), "dW": 0, "b": grad_output}'
    impl.write_text(_LINEAR.replace("{KEYS}", both))
    assert_usage_error(cli("check", "linear", "--impl", impl), "'W'", "'dW'", "mine.py")


@pytest.mark.parametrize("wrt", ["W", "dW"])
def test_wrt_takes_w_or_dw(cli_json, tmp_path, wrt):
    from gradcli.checking.check import compute
    from gradcli.inputs.spec import load_spec

    good = compute(load_spec("linear", None)).gradients["W"]
    np.save(tmp_path / "w.npy", good)
    doc = cli_json("check", "linear", "--grads", tmp_path / "w.npy", "--wrt", wrt)
    assert doc["results"]["W"]["passed"] and set(doc["results"]) == {"W"}
    np.save(tmp_path / "w.npy", 2 * good)  # the twin: a wrong answer fails
    doc = cli_json("check", "linear", "--grads", tmp_path / "w.npy", "--wrt", wrt, code=1)
    assert not doc["results"]["W"]["passed"]


@pytest.mark.parametrize("kind", ["npz", "yaml"])
def test_answers_with_w_and_dw_are_refused(cli, assert_usage_error, tmp_path, kind):
    if kind == "npz":
        answers = tmp_path / "answers.npz"
        np.savez(answers, W=np.zeros((3, 4)), dW=np.zeros((3, 4)))
    else:
        answers = tmp_path / "answers.yaml"
        answers.write_text("dx: [0, 0, 0, 0]\nx: [0, 0, 0, 0]\n")
    r = cli("check", "linear", "--grads", answers)
    assert_usage_error(r, answers.name, "both")
    assert ("'W' and 'dW'" if kind == "npz" else "'x' and 'dx'") in r.stderr


# ---------------------------------------------------------------- options the spec set

_CONV1D = """
import numpy as np
def forward(x, w, b):
    k = w.shape[0]; m = x.shape[0] - k + 1
    win = np.stack([x[i:i + k] for i in range(m)])
    return np.einsum("mkc,kcd->md", win, w) + b
def backward(grad_output, x, w, b):
    k = w.shape[0]; m = x.shape[0] - k + 1
    win = np.stack([x[i:i + k] for i in range(m)])
    dx = np.zeros_like(x)
    for i in range(m):
        dx[i:i + k] += np.einsum("d,kcd->kc", grad_output[i], w)
    return {"x": dx, "w": np.einsum("mkc,md->kcd", win, grad_output), "b": grad_output.sum(0)}
"""


def test_impl_gets_only_the_options_the_spec_set(cli, cli_json, write_spec, tmp_path):
    impl = tmp_path / "conv.py"
    impl.write_text(_CONV1D)
    tensors = "tensors:\n  x: {shape: [8, 2]}\n  w: {shape: [3, 2, 4]}\n  b: {shape: [4]}\n"
    doc = cli_json("check", "conv1d", write_spec(tensors), "--impl", impl)
    assert doc["passed"] and doc["forward"]["passed"]
    # set by the spec: passed, and this forward takes no `channels`
    r = cli("check", "conv1d", write_spec("options: {channels: true}\n" + tensors), "--impl", impl)
    assert r.exit_code == 2 and "channels" in r.stderr


def test_init_custom_spec_runs_with_the_custom_skeleton(cli, cli_json, tmp_path):
    spec, impl = tmp_path / "custom.yaml", tmp_path / "my_custom.py"
    assert cli("init", "custom", "-o", spec).exit_code == 0
    assert cli("init", "custom", "--impl", "-o", impl).exit_code == 0
    doc = cli_json("check", "custom", spec, "--impl", impl)
    assert doc["passed"] and doc["options"] == {"scale": 2.0} and set(doc["results"]) == {"x"}
    # the twin: a wrong backward in the same setup fails
    impl.write_text(impl.read_text().replace("grad_output * scale", "grad_output"))
    assert not cli_json("check", "custom", spec, "--impl", impl, code=1)["passed"]


_GELU_ERF = """
import math
import numpy as np

_erf = np.vectorize(math.erf)


def forward(x):
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def backward(grad_output, x):
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return {"x": grad_output * (0.5 * (1 + _erf(x / math.sqrt(2))) + x * pdf)}
"""


def test_json_forward_names_the_two_outputs(cli_json, tmp_path):
    # the exact (erf) GELU against the built-in tanh approximation: the forwards differ
    impl = tmp_path / "gelu_erf.py"
    impl.write_text(_GELU_ERF)
    doc = cli_json("check", "gelu", "--impl", impl, code=1)
    fwd = doc["forward"]
    assert not fwd["passed"]
    assert fwd["yours"] == fwd["analytic"] and fwd["builtin"] == fwd["numeric"]
    assert fwd["yours"] != fwd["builtin"]


def test_answers_show_the_dtype_they_were_given_in(cli, tmp_path):
    """Outside test t31b F5: float32 answers read 'float64' in the shapes table (they are
    compared as float64, which holds them exactly). A float64 file still reads float64."""
    full = tmp_path / "answers.npz"
    assert cli("compute", "linear", "--dtype", "float32", "-o", full).exit_code == 0
    with np.load(full) as z:
        kept = {k: z[k] for k in z.files if k.startswith("d")}
    for dtype in ("float32", "float64"):
        answers = tmp_path / f"a_{dtype}.npz"
        np.savez(answers, **{k: v.astype(dtype) for k, v in kept.items()})
        r = cli("check", "linear", "--dtype", "float32", "--grads", answers)
        rows = [line for line in r.stdout.splitlines() if "(yours)" in line]
        assert rows and all(dtype in line for line in rows), (dtype, r.stdout)


def test_a_custom_layers_elements_read_as_plain_indices(cli, tmp_path):
    """Outside test t31a L1: a custom layer names no axes, and its elements read dW[b0=1,
    b1=2], as if both were batch axes. Twin: a built-in layer keeps its letters."""
    (tmp_path / "mine.py").write_text(
        "import numpy as np\n"
        "def forward(x, W):\n    return np.tanh(x @ W)\n"
        "def backward(grad_output, x, W):\n"
        "    d = grad_output * (1 - np.tanh(x @ W) ** 2)\n"
        "    dW = x.T @ d\n    dW[1, :] *= 2\n"
        "    return {'x': d @ W.T, 'W': dW}\n"
    )
    (tmp_path / "spec.yaml").write_text(
        "layer: custom\ntensors:\n  x: {shape: [4, 3], init: normal}\n"
        "  W: {shape: [3, 5], init: normal}\n"
    )
    r = cli("check", "custom", tmp_path / "spec.yaml", "--impl", tmp_path / "mine.py")
    assert r.exit_code == 1
    assert "b0=" not in r.stdout and "worst dW[1, " in r.stdout, r.stdout
    assert "dW[o=" in cli("check", "linear").stdout


def test_a_long_note_is_said_whole_on_stderr(capsys):
    """A precision note of 690 characters was cut inside a word at 500, its last clause (the
    other tensor's steps) the one the table needed (outside test t45a N4). An error's line is
    still bounded (tests/test_output.py)."""
    from gradcli.cli import exits

    text = "the forward computes in float32 " + "and so on " * 60 + "the end"
    exits.note(text)
    err = capsys.readouterr().err
    assert "the end" in err and "more characters" not in err


def test_layers_spells_defaults_as_a_spec_does(cli):
    """`causal False` beside `stride null` (outside test t56b F8): a spec takes true/false."""
    out = cli("layers").stdout
    assert "False" not in out and "True" not in out
    assert any(line.split()[:2] == ["causal", "false"] for line in out.splitlines())


def test_top_help_lists_one_short_line_a_command(cli):
    """The commands' descriptions were cut with '...' (outside test t56b F9)."""
    out = cli("--help").stdout
    commands = out.split("Commands:")[1].splitlines()
    assert not any(line.rstrip().endswith("...") for line in commands), commands


def test_a_partial_answers_summary_line_names_what_was_not_checked(cli, tmp_path):
    """-q keeps the summary line alone: a --grads file without dX and db passed as "the
    gradient matches", naming none (outside test t58b F5)."""
    import gradcli

    dW = gradcli.compute("linear").gradients["W"]
    np.save(tmp_path / "dW.npy", dW)
    result = cli("check", "linear", "--grads", tmp_path / "dW.npy", "--wrt", "W", "-q")
    assert result.exit_code == 0, result.output
    assert "dW matches the numerical one; not checked (no answer given): dx, db" in result.stdout
    np.save(tmp_path / "dW.npy", dW + 1e-3)
    result = cli("check", "linear", "--grads", tmp_path / "dW.npy", "--wrt", "W", "-q")
    assert result.exit_code == 1 and "not checked (no answer given): dx, db" in result.stdout
