"""Exit codes 2, 3, 130 and their one-line messages; exit-1 edge cases; real subprocesses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from ptyread import read_all

from gradcli.checking import check as core
from gradcli.checking import compute as compute_module

REPO = Path(__file__).resolve().parent.parent
W2 = "  W: [[1.0, 2.0]]\n"
SPEC_CASES = [
    pytest.param("linear", "layer: conv2d\ntensors: {}\n", ["layer", "'conv2d'"], id="layer"),
    pytest.param("linear", "tensors: [\n", ["invalid YAML", "line 2"], id="yaml-syntax"),
    pytest.param("linear", "tensor: {}\n", ["tensor:", "'tensors'"], id="unknown-key"),
    pytest.param(
        "linear", "tensors:\n  x: [1.0, 2.0]\n" + W2 + "  q: 1.0\n", ["tensors.q"], id="unknown-t"
    ),
    pytest.param("linear", "tensors:\n  x: [1.0]\n", ["tensors", "W"], id="missing-tensor"),
    pytest.param(
        "linear", "tensors:\n  x: [1.0, 2.0, 3.0]\n" + W2, ["tensors.W", "in=2"], id="shape"
    ),
    pytest.param(
        "conv2d",
        "tensors:\n  X: {shape: [4, 4, 2]}\n  W: {shape: [2, 2, 3, 1]}\n",
        ["tensors.W", "C_in"],
        id="conv2d-C_in",
    ),
    pytest.param("linear", "tensors:\n  x: [1.0, .nan]\n" + W2, ["tensors.x", "finite"], id="nan"),
    pytest.param(
        "linear", "tensors:\n  x: obj.npy\n" + W2, ["tensors.x", "obj.npy", "pickle"], id="pickle"
    ),
    pytest.param(
        "linear",
        "tensors:\n  x: arrays.npz:nope\n" + W2,
        ["tensors.x", "arrays.npz", "'nope'"],
        id="npz-key",
    ),
    pytest.param(
        "linear",
        "tensors:\n  x: {file: x.npy, key: x}\n" + W2,
        ["tensors.x", "x.npy"],
        id="npy-with-key",
    ),
    pytest.param(
        "linear",
        "tensors:\n  x: [1.0, 2.0]\n  W: [1.0, 2.0]\n",
        ["tensors.W"],
        id="1-D-W",
    ),
    pytest.param(
        "conv2d",
        "tensors:\n  X: {shape: [4, 4]}\n  W: {shape: [2, 2, 1, 1]}\n",
        ["tensors.X"],
        id="2-D-X",
    ),
]



@pytest.fixture
def data_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "x.npy", np.array([1.0, 2.0]))
    np.savez(tmp_path / "arrays.npz", x=np.array([1.0, 2.0]))
    return tmp_path


@pytest.mark.parametrize("command", ["compute", "check"])
@pytest.mark.parametrize(("layer", "text", "needles"), SPEC_CASES)
def test_bad_spec_exits_2(
    cli, write_spec, assert_usage_error, data_files, command, layer, text, needles
):
    spec = write_spec(text)
    assert_usage_error(cli(command, layer, spec), spec.name, *needles)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["check", "no_such_layer"], ["'no_such_layer'", "linear, conv1d, conv2d, attention"]),
        (["init", "no_such_layer"], ["'no_such_layer'"]),
        (["check"], ["Missing argument", "layer"]),
        (["init"], ["Missing argument", "layer"]),
        (["compute", "linear", "--format", "xml"], ["--format", "xml"]),
        (["layers", "--format", "xml"], ["--format", "xml"]),
        (["check", "linear", "--dtype", "float16"], ["--dtype", "float16"]),
        (["compute", "linear", "--seed", "-1"], ["--seed"]),
        (["check", "linear", "--seed", str(2**63)], ["--seed"]),
        (["check", "linear", "--eps", "0"], ["--eps"]),
        (["check", "linear", "--atol", "-1"], ["--atol"]),
        (["check", "linear", "--rtol", "nan"], ["--rtol"]),
        (["init", "linear", "-o", "template.npz"], ["--output"]),
        (["compute", "linear", "--no-such-option"], ["--no-such-option"]),
    ],
)
def test_bad_usage_exits_2(cli, assert_usage_error, tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    assert_usage_error(cli(*args), *needles)
    assert list(tmp_path.iterdir()) == []


def test_missing_spec_file_exits_2(cli, tmp_path, assert_usage_error):
    assert_usage_error(cli("check", "linear", tmp_path / "missing.yaml"), "missing.yaml")


@pytest.mark.parametrize("command", ["compute", "check"])
@pytest.mark.parametrize("target", ["spec.yaml", "./spec.yaml", "x.npy"])
def test_output_never_overwrites_an_input(
    cli, tmp_path, monkeypatch, assert_usage_error, command, target
):
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.array([1.0, 2.0]))
    Path("spec.yaml").write_text("tensors:\n  x: x.npy\n" + W2)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert_usage_error(cli(command, "linear", "spec.yaml", "-o", target), "--output")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("command", ["compute", "check"])
def test_an_output_in_a_missing_folder_is_refused_before_the_work(
    cli, tmp_path, monkeypatch, assert_usage_error, command
):
    """A typo in -o's folder ran the whole check, then exit 2 (outside test t58b F4)."""
    monkeypatch.chdir(tmp_path)
    Path("file.yaml").write_text("tensors: {}\n")
    monkeypatch.setattr(core, "check", _boom)
    monkeypatch.setattr(compute_module, "compute", _boom)
    for target, why in [("nodir/out.json", "no such directory"),
                        ("file.yaml/out.json", "not a directory")]:  # fmt: skip
        result = cli(command, "linear", "-o", target)
        assert_usage_error(result, "--output")
        assert why in result.stderr and "boom" not in result.stderr, result.stderr
    # before an --impl module is imported too (an `import torch` there costs seconds: t59a F6)
    Path("mine.py").write_text("raise RuntimeError('imported')\n")
    result = cli(command, "linear", "--impl", "mine.py", "-o", "nodir/out.json")
    assert_usage_error(result, "--output")
    assert "imported" not in result.stderr, result.stderr
    assert not Path("nodir").exists()


def _boom(*args, **kwargs):
    raise RuntimeError("boom")


@pytest.mark.parametrize("command", ["compute", "check"])
def test_internal_error_exits_3(cli, monkeypatch, command):
    monkeypatch.setattr(core, "compute", _boom)
    monkeypatch.setattr(compute_module, "compute", _boom)
    result = cli(command, "conv1d")
    assert (result.exit_code, result.stdout) == (3, "")
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradcli: internal error:")
    assert "--traceback" in lines[0] and "RuntimeError: boom" in lines[0]
    assert "Traceback" not in result.stderr
    shown = cli(command, "conv1d", "--traceback")
    assert (shown.exit_code, shown.stdout) == (3, "")
    assert "Traceback (most recent call last)" in shown.stderr
    assert "RuntimeError: boom" in shown.stderr and "_boom" in shown.stderr


def test_internal_error_in_rendering_exits_3(cli, monkeypatch):
    import json as json_module

    monkeypatch.setattr(json_module, "dumps", _boom)
    result = cli("check", "linear", "--format", "json")
    assert (result.exit_code, result.stdout) == (3, "")
    assert len(result.stderr.splitlines()) == 1 and "--traceback" in result.stderr


def _interrupted(*args, **kwargs):
    raise KeyboardInterrupt


def test_interrupt_exits_130(cli, monkeypatch):
    monkeypatch.setattr(core, "compute", _interrupted)
    monkeypatch.setattr(compute_module, "compute", _interrupted)
    result = cli("check", "linear")
    assert (result.exit_code, result.stdout) == (130, "")
    assert "Traceback" not in result.stderr


def test_interrupt_says_so(cli, monkeypatch):
    monkeypatch.setattr(core, "compute", _interrupted)
    monkeypatch.setattr(compute_module, "compute", _interrupted)
    assert cli("check", "linear").stderr.strip() == "gradcli: interrupted"


ZERO_TOL_SPEC = (  # x[0] = 0: dW[0, 0] is exactly 0 both ways, the other elements are not
    "tensors:\n  x: [0.0, 0.3141592653, 0.7182818284]\n"
    "  W: [[0.123456789, -1.987654321, 0.55555555]]\n  b: [0.1]\ngrad_output: [0.987654321]\n"
)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_zero_tolerances_report_a_failing_worst_element(cli, write_spec):
    spec = write_spec(ZERO_TOL_SPEC)
    result = cli("check", "linear", spec, "--atol", "0", "--rtol", "0", "--format", "json")
    r = json.loads(result.stdout)["results"]["W"]
    if r["max_abs_error"] == 0:
        pytest.skip("the numerical gradient happens to be exact here")
    assert result.exit_code == 1 and r["passed"] is False
    assert r["analytic"] != r["numeric"], r  # the reported worst element must itself fail


def test_zero_tolerances_emit_no_warnings(cli, write_spec):
    spec = write_spec(ZERO_TOL_SPEC)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cli("check", "linear", spec, "--atol", "0", "--rtol", "0")
    assert result.exit_code == 1
    assert [str(w.message) for w in caught] == []


# ------------------------------------------------------------- real processes (5 runs)
ANSI = re.compile(rb"\x1b\[([0-9;]*)m")


def _env(**extra):
    drop = {"NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, **extra}


def _run(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "gradcli", *args],
        capture_output=True,
        env=_env(**env),
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        timeout=60,
    )


def _run_on_tty(*args, **env):
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradcli", *args],
        stdout=slave,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=_env(TERM="xterm-256color", **env),
        cwd=REPO,
    )
    os.close(slave)
    out = read_all(master)
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0, err
    return out


def _is_color(params: bytes) -> bool:
    codes = [int(c) for c in params.split(b";") if c]
    return any(30 <= c <= 49 or 90 <= c <= 107 for c in codes)


def test_subprocess_help():
    proc = _run("--help")
    assert proc.returncode == 0 and proc.stderr == b""
    for command in (b"compute", b"check", b"layers", b"init"):
        assert command in proc.stdout


def test_subprocess_not_a_tty_has_no_ansi():
    proc = _run("check", "attention")
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert b"PASS" in proc.stdout and b"\x1b[" not in proc.stdout


def test_subprocess_error_is_one_line():
    proc = _run("check", "linear", "no/such/spec.yaml")
    assert (proc.returncode, proc.stdout) == (2, b"")
    assert proc.stderr.startswith(b"gradcli: error:") and proc.stderr.count(b"\n") == 1
    assert b"spec.yaml" in proc.stderr and b"Traceback" not in proc.stderr


def test_subprocess_tty_is_colored():
    out = _run_on_tty("check", "linear")
    assert any(_is_color(p) for p in ANSI.findall(out)), out[:200]


@pytest.fixture(scope="module")
def tty_no_color():
    return _run_on_tty("check", "linear", NO_COLOR="1")


def test_no_color_on_a_tty_has_no_colors(tty_no_color):
    assert b"PASS" in tty_no_color
    assert not any(_is_color(p) for p in ANSI.findall(tty_no_color))


def test_no_color_on_a_tty_has_no_ansi_at_all(tty_no_color):
    assert b"\x1b[" not in tty_no_color


def test_a_non_finite_value_is_placed(cli, tmp_path, assert_usage_error):
    """A scalar NaN read 'at index []', and a NaN in an answer file was not placed at all,
    where a tensor's is (outside test t55a F8)."""
    spec = tmp_path / "s.yaml"
    spec.write_text("layer: tanh\ntensors: {x: {shape: [2, 2]}}\ngrad_output: .nan\n")
    assert_usage_error(cli("check", spec), "grad_output: non-finite value (nan); expected finite")
    lin = tmp_path / "l.yaml"
    lin.write_text("tensors: {x: {shape: [2, 3]}, W: {shape: [4, 3]}}\n")
    comp = tmp_path / "g.npz"
    assert cli("compute", "linear", lin, "-o", comp).exit_code == 0
    answers = dict(np.load(comp))
    answers["dW"][1, 2] = np.inf
    np.savez(tmp_path / "bad.npz", **answers)
    assert_usage_error(cli("check", "linear", lin, "--grads", tmp_path / "bad.npz"),
                       "dW: inf at index [1, 2]; expected finite numbers")  # fmt: skip


def test_a_scalar_flattened_blames_the_tensor(cli, tmp_path, assert_usage_error):
    """`options.start: start: x is a scalar` where no option was given (outside test t55a F8)."""
    spec = tmp_path / "f.yaml"
    spec.write_text("layer: flatten\ntensors: {x: 1.5}\n")
    assert_usage_error(cli("check", spec), "tensors.x: x is a scalar; flatten needs at least 1")


def test_a_cs231n_loss_returning_a_list_is_read_as_its_tuple(cli, tmp_path):
    """`return [loss, dx]` was refused as 'got list' (outside test t55a F8)."""
    (tmp_path / "sm.py").write_text(
        "import numpy as np\n"
        "def softmax_loss(x, y):\n"
        "    s = x - x.max(1, keepdims=True); p = np.exp(s); p /= p.sum(1, keepdims=True)\n"
        "    N = x.shape[0]; loss = -np.log(p[np.arange(N), y]).mean()\n"
        "    dx = p.copy(); dx[np.arange(N), y] -= 1; dx /= N\n"
        "    return [loss, dx]\n"
    )  # fmt: skip
    r = cli("check", "softmax_cross_entropy", "--impl", tmp_path / "sm.py", "-q")
    assert r.exit_code == 0, r.stderr


@pytest.mark.parametrize("command", [["check", "linear"], ["compute", "linear"],
                                     ["init", "linear"], ["explain", "linear"]])
def test_an_output_naming_a_folder_is_refused(cli, tmp_path, assert_usage_error, command):
    """-o newdir/ wrote a file named newdir (outside test t65c F7): a trailing slash names a
    folder, refused before anything runs. The twin: -o newdir/out.json writes it."""
    folder = f"{tmp_path}/newdir/"
    r = cli(*command, "-o", folder)
    assert_usage_error(r, "ends in '/', a folder's name; name the file to write")
    assert not (tmp_path / "newdir").exists()
    (tmp_path / "newdir").mkdir()
    name = "out.yaml" if command[0] == "init" else "out.json"
    r = cli(*command, "-o", folder + name)
    assert r.exit_code in (0, 1) and (tmp_path / "newdir" / name).is_file(), r.stderr


def test_grads_from_stdin_is_said_unsupported(cli, assert_usage_error):
    """--grads - read '-: file not found: -' (outside test t65c F9)."""
    assert_usage_error(cli("check", "linear", "--grads", "-"),
                       "--grads: answers are not read from stdin")


def test_a_read_only_mount_is_said_so(tmp_path, monkeypatch):
    """-o into a read-only file system read 'permission denied' (outside test t65c F9)."""
    import os
    from pathlib import Path

    from gradcli.cli import emit
    from gradcli.errors import GradcliError

    class Ro:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    monkeypatch.setattr(os, "statvfs", lambda *a, **k: Ro())
    with pytest.raises(GradcliError, match="read-only file system"):
        emit.ready(Path(tmp_path / "x.json"), ())
    monkeypatch.setattr(os, "statvfs", lambda *a, **k: type("Rw", (), {"f_flag": 0})())
    with pytest.raises(GradcliError, match="permission denied"):  # the twin
        emit.ready(Path(tmp_path / "x.json"), ())


def test_an_atol_above_every_value_is_said_even_with_q(cli, tmp_path):
    """--atol 10 on gradients of about 2 passed a sign-flipped dW, and -q said nothing of it
    (outside test t65c F9): each gradient it swallows is named on stderr. The twin: a small
    --atol says nothing."""
    archive = tmp_path / "a.npz"
    assert cli("compute", "linear", "-o", archive).exit_code == 0
    grads = dict(np.load(archive))
    grads["dW"] = -grads["dW"]
    np.savez(tmp_path / "neg.npz", **grads)
    r = cli("check", "linear", "--grads", tmp_path / "neg.npz", "--atol", "10", "-q")
    assert "dW: every numerical value" in r.stderr and "its PASS compares nothing" in r.stderr
    r = cli("check", "linear", "--atol", "1e-7", "-q")
    assert r.exit_code == 0 and "compares nothing" not in r.stderr, r.stderr


def test_another_layers_archive_is_said_to_be_one(cli, tmp_path, assert_usage_error):
    """conv2d's `compute -o` archive given to a linear check read "'X' is not a tensor of this
    spec (did you mean 'x'?)" (outside test t65c F9). The twin: conv2d's own reads back."""
    archive = tmp_path / "c.npz"
    assert cli("compute", "conv2d", "-o", archive).exit_code == 0
    assert_usage_error(cli("check", "linear", "--grads", archive),
                       "an archive `compute -o` wrote for another layer (its tensors X, W, b)")
    assert cli("check", "conv2d", "--grads", archive, "-q").exit_code == 0
