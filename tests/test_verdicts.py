"""Every verdict agrees (summary line, exit code, JSON, reading, rel err column, labels) and every
terminal can read it (widths, pipes, titles, heatmap without colour, --values, -q)."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from gradcli.checking.check import check, compute
from gradcli.checking.diagnose import BANDS, band
from gradcli.inputs.spec import load_spec
from gradcli.render import text as render
from gradcli.render.values import natural_index

REPO = Path(__file__).resolve().parent.parent
LINEAR_IMPL = """
import numpy as np

def forward(x, W, b):
    return {scale} * (W @ x + b)

def backward(grad_output, x, W, b):
    g = {scale} * grad_output
    dW = np.outer(g, x)
    dW[1, 2] *= {bug}
    return {{"x": W.T @ g, "W": dW, "b": g}}
"""


def _impl(tmp_path, scale=1.0, bug=1.0):
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent(LINEAR_IMPL.format(scale=scale, bug=bug)))
    return path


def _last(text):
    return text.strip().splitlines()[-1]


# ---------------------------------------------------------------- the summary line and the exit
@pytest.mark.parametrize(
    ("scale", "bug", "code", "says"),
    [
        (1.0, 1.0, 0, "PASS  linear: all 3 gradients match the numerical ones"),
        (2.0, 1.0, 1, "FAIL  linear: your forward does not match the built-in forward"),
        (1.0, 1.5, 1, "FAIL  linear: 1 of 3 gradients does not match (dW)"),
        (2.0, 1.5, 1, "FAIL  linear: 1 of 3 gradients does not match (dW)"),
    ],
    ids=["right", "forward-off", "one-gradient-off", "both"],
)
def test_summary_line_agrees_with_exit_code_and_json(cli, tmp_path, scale, bug, code, says):
    impl = _impl(tmp_path, scale, bug)
    table = cli("check", "linear", "--impl", impl)
    doc = json.loads(cli("check", "linear", "--impl", impl, "--format", "json").stdout)
    assert table.exit_code == code and doc["passed"] is (code == 0)
    assert _last(table.stdout).startswith(says), _last(table.stdout)
    assert _last(table.stdout).startswith("PASS") is (code == 0)
    if scale != 1.0:  # the forward is named whatever else fails
        assert "your forward does not match the built-in forward" in _last(table.stdout)
    if bug == 1.0 and scale != 1.0:  # and the gradients that did match say so
        assert _last(table.stdout).endswith("all 3 gradients match the numerical ones")


def test_summary_names_a_failure_kind_it_does_not_know(monkeypatch):
    """The hook for other findings (contract, unresolved): a kind the renderer has no words
    for still makes a FAIL line naming it."""
    spec = load_spec("linear", None)
    report = check(spec)
    monkeypatch.setattr(type(report), "failures", property(lambda r: (("newkind", ("W",)),)))
    line = render.summary_line(spec, report).plain
    assert not report.passed and line.startswith("FAIL  linear: newkind: W")
    assert "all 3 gradients match" in line


def test_grammar_of_one_gradient(cli, tmp_path):
    spec = load_spec("linear", None)
    dW = np.array(compute(spec).gradients["W"])
    np.save(tmp_path / "dW.npy", dW)
    right = cli("check", "linear", "--grads", tmp_path / "dW.npy", "--wrt", "W", "-q")
    assert right.stdout == ("PASS  linear: dW matches the numerical one; not checked (no "
                            "answer given): dx, db\n")
    dW[0, 0] += 0.1
    np.save(tmp_path / "dW.npy", dW)
    wrong = cli("check", "linear", "--grads", tmp_path / "dW.npy", "--wrt", "W", "-q")
    assert wrong.exit_code == 1
    assert wrong.stdout.startswith("FAIL  linear: the gradient does not match (dW); worst dW")
    assert "all 1" not in right.stdout + wrong.stdout


# ---------------------------------------------------------------- the reading (band)
def test_band_rule():
    assert band(1e-9, passed=True) == "good" and band(1e-5, passed=True) == "within noise"
    assert band(0.9, passed=True) == "within noise"  # a pass never reads worse
    assert band(1e-9, passed=False) == "slightly off"  # never "good"
    assert band(1e-3, passed=False) == "suspicious" and band(0.3, passed=False) == "wrong"
    assert band(float("nan"), passed=False) == "wrong"
    assert [b for _, b in BANDS][0] == "good"


@pytest.mark.parametrize("layer", ["linear", "conv1d", "conv2d", "attention"])
def test_float32_passes_read_good_or_within_noise(layer):
    report = check(load_spec(layer, None, dtype="float32"))
    assert report.passed
    assert {r.band for r in report.results.values()} <= {"good", "within noise"}
    # the twin: one element of the float32 gradient off by 1% reads as it should
    spec = load_spec(layer, None, dtype="float32")
    grads = {n: np.array(g, dtype=np.float64) for n, g in compute(spec).gradients.items()}
    name = next(iter(grads))
    k = int(np.argmax(np.abs(grads[name])))
    grads[name].flat[k] *= 1.01
    r = check(spec, grads=grads).results[name]
    assert not r.passed and r.band == "suspicious"


def test_attention_long_sequence_pass_reads_within_noise(write_spec):
    """T=256: central differences leave ~1e-6 relative error on dX, CS231n's "ok only if the
    function has kinks" band; the check's tolerance knows it is noise."""
    path = write_spec(
        "tensors:\n  X: {shape: [256, 8], init: normal}\n  W_Q: {shape: [8, 4], init: normal}\n"
        "  W_K: {shape: [8, 4], init: normal}\n  W_V: {shape: [8, 4], init: normal}\n"
    )
    spec = load_spec("attention", str(path))
    report = check(spec)
    assert report.passed and report.results["X"].max_rel_error > BANDS[0][0]
    assert {r.band for r in report.results.values()} <= {"good", "within noise"}
    assert report.results["X"].band == "within noise"


KINKS = "slightly off"


@pytest.mark.parametrize(
    ("factor", "reading"), [(1 + 3e-5, KINKS), (1.003, "suspicious"), (1.5, "wrong")]
)
def test_failing_readings_follow_the_failing_elements(factor, reading):
    spec = load_spec("conv2d", None)
    grads = {n: np.array(g) for n, g in compute(spec).gradients.items()}
    grads["W"][1, 1, 0, 2] *= factor
    r = check(spec, grads=grads).results["W"]
    assert not r.passed and r.band == reading


# ---------------------------------------------------------------- the check table
def _render(spec, report, comp, numeric, width, answers=None, **kw):
    buf = io.StringIO()
    con = Console(file=buf, width=width, color_system=None, highlight=False, markup=False)
    render.render_check(con, spec, comp, numeric, report, answers, **kw)
    return buf.getvalue()


def _row(out, gradient):
    """The check table's row of ``gradient`` (the shapes table comes before it)."""
    table = out.split("gradient check: ")[1]
    return next(line for line in table.splitlines() if line.startswith(f"│ {gradient} "))


def test_rel_err_column_is_the_worst_elements_own(tmp_path):
    """The row's rel err is the element's beside it, not the tensor's maximum: here the
    largest relative error sits on a tiny element, the worst (beyond tolerance) elsewhere."""
    spec = load_spec("linear", None)
    grads = {n: np.array(g) for n, g in compute(spec).gradients.items()}
    grads["W"][0, 2] += 5e-8  # |dW[0, 2]| ~ 0.01: relative 5e-6, within atol 1e-7
    grads["W"][2, 0] *= 1 + 5e-7  # relative 5e-7 but 7e-7 absolute: the worst by tolerance
    report = check(spec, grads=grads)
    comp, numeric = report.computation, report.numeric
    r = report.results["W"]
    assert r.worst_index == (2, 0) and r.max_rel_error > 2 * r.worst[0]["rel_error"]
    row = _row(_render(spec, report, comp, numeric, 200, grads), "dW")
    assert "dW[o=2, i=0]" in row and f"{r.worst[0]['rel_error']:.3g}" in row
    assert f"{r.max_rel_error:.3g}" not in row


def _cases():
    """Specs whose tables are wide: long names, batch axes, heads, a failure."""
    multi = load_spec("attention", str(REPO / "specs/attention_causal_multihead.yaml"))
    conv = load_spec("conv2d", str(REPO / "specs/conv2d_padded_dilated.yaml"))
    grads = {n: np.array(g) for n, g in compute(conv).gradients.items()}
    grads["W"][0, 1, 0, 2] += 0.05
    return [(multi, None), (conv, None), (conv, grads), (load_spec("linear", None), None)]


CASES = _cases()


@pytest.mark.parametrize("width", [60, 80, 100, 200])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_check_table_fits_and_keeps_name_count_and_verdict(width, case):
    spec, grads = CASES[case]
    report = check(spec, grads=grads)
    comp, numeric = report.computation, report.numeric
    out = _render(spec, report, comp, numeric, width, grads)
    for line in out.splitlines():
        if line[:1] in "┏┃┡│└":  # every table line fits; prose lines are one line by design
            assert len(line) <= width, (width, line)
    header = next(line for line in out.splitlines() if "gradient" in line and "┃" in line)
    for name, r in report.results.items():
        row = _row(out, "d" + name)
        size = int(np.prod(r.shape))
        assert f"{r.checked}/{size}" in row and ("PASS" if r.passed else "FAIL") in row, row
        if "worst" in header:  # folded at its spaces only: dgamma[d=5] is never "dgamma[d=5" / "]"
            label = "d" + name + natural_index(spec.info(name), r.worst_index)
            assert all(word in out for word in label.split()), (label, out)
    if width >= 200:  # wide enough: nothing dropped
        for col in ("worst element", "numeric", "abs err", "rel err", "atol", "reading"):
            assert col in header


def test_narrow_table_drops_low_priority_columns_first():
    spec = load_spec("conv2d", None)
    report = check(spec)
    comp, numeric = report.computation, report.numeric
    header = [
        line for line in _render(spec, report, comp, numeric, 80).splitlines()
        if line.startswith("┃ gradient")
    ][0]  # fmt: skip
    assert "atol" not in header and "abs err" not in header  # the first to go
    assert "worst element" in header and "reading" in header and "rel err" in header
    title = render._check_table(spec, report, 200).title.plain
    assert "pass if |a-n| <= 1e-07 + 1e-06|n|" in title  # one atol for all: in the title


def _subprocess_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def _table_rows_whole(out, width, layer="conv2d"):
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in out.splitlines()]
    assert all(len(line) <= width for line in lines if line[:1] in "┏┃┡│└"), out
    rows = [line for line in lines if line.startswith("│ d") and ("PASS" in line)]
    assert len(rows) == 3, out
    assert _last("\n".join(lines)).startswith(f"PASS  {layer}: all 3 gradients match")


@pytest.mark.parametrize("width", [60])  # not 80 too: the width a pipe falls back to
def test_real_terminal_width(width):
    if shutil.which("script") is None:
        pytest.skip("no script(1) for a pseudo-terminal")
    cmd = f"stty cols {width}; {sys.executable} -m gradcli check conv2d"
    out = subprocess.run(["script", "-qc", cmd, "/dev/null"], capture_output=True, text=True,
                         env=_subprocess_env(), timeout=120).stdout  # fmt: skip
    _table_rows_whole(out.replace("\r", ""), width)


def test_piped_output_follows_columns_else_80():
    # COLUMNS=80 would show nothing more: 60 shows COLUMNS followed, {} the 80 without it
    for env, width in (({"COLUMNS": "60"}, 60), ({}, 80)):
        out = subprocess.run(
            [sys.executable, "-m", "gradcli", "check", "conv2d"], capture_output=True,
            text=True, env=_subprocess_env(**env), timeout=120,
        ).stdout  # fmt: skip
        assert "\x1b[" not in out
        _table_rows_whole(out, width)


# ---------------------------------------------------------------- values, titles, -q
def test_check_shows_values_only_with_values_and_quiet_prints_the_summary(cli):
    plain = cli("check", "conv2d").stdout
    assert "(numeric)" not in plain and "dW  [3, 3, 2, 4]" not in plain
    assert "gradient check" in plain and _last(plain).startswith("PASS  conv2d")
    full = cli("check", "conv2d", "--values").stdout
    assert "dW (numeric)[:, :, d=0, c=0]" in full and "dW[:, :, d=0, c=0]" in full
    quiet = cli("check", "conv2d", "-q")
    assert quiet.exit_code == 0 and quiet.stdout == plain.splitlines()[-1] + "\n"
    assert cli("check", "conv2d", "--quiet").stdout == quiet.stdout
    failing = cli("check", "conv2d", "--rtol", "0", "--atol", "0", "-q")
    assert failing.exit_code == 1 and len(failing.stdout.splitlines()) == 1
    assert failing.stdout.startswith("FAIL  conv2d:")
    assert "dW[:, :, d=0, c=0]" in cli("compute", "conv2d").stdout  # compute keeps its values


def test_piped_32_value_vector_shows_numbers_and_titles_stay_whole(cli, write_spec):
    path = write_spec(
        "tensors:\n  x: {shape: [32], init: normal}\n  W: {shape: [2, 32], init: normal}\n"
    )
    out = cli("check", "linear", path, "--values", env={"COLUMNS": "80"}).stdout
    assert "…" not in out
    x = load_spec("linear", str(path)).tensors["x"]
    shown = re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", out.split("x  [32]")[1].split("W  [2, 32]")[0])
    assert len(shown) == 32 and np.allclose([float(v) for v in shown], x, rtol=1e-3)
    prose = ("PASS", "FAIL")  # the summary line is one line however long
    assert all(len(line) <= 80 for line in out.splitlines() if not line.startswith(prose))
    narrow = cli("check", "conv2d", "--values", env={"COLUMNS": "24"}).stdout
    assert "dW (numeric)[:, :, d=0, c=0]" in narrow.splitlines()  # one line, however narrow


# ---------------------------------------------------------------- heatmap without colour
def test_heatmap_grades_by_characters_with_a_legend(cli, tmp_path):
    spec = load_spec("linear", None)
    grads = {n: np.array(g) for n, g in compute(spec).gradients.items()}
    tol = 1e-7 + 1e-6 * np.abs(grads["W"])
    for (i, j), times in {(0, 0): 5, (1, 1): 50, (2, 2): 5000}.items():
        grads["W"][i, j] += times * tol[i, j]
    np.savez(tmp_path / "g.npz", **grads)
    out = cli("check", "linear", "--grads", tmp_path / "g.npz", env={"NO_COLOR": "1"}).stdout
    heat = out.split("dW: error / tolerance\n")[1].splitlines()
    assert heat[:3] == ["0 + . . .", "1 . * . .", "2 . . # ."], heat  # each row's index first
    assert ". within tolerance, + up to 10x beyond, * up to 100x, # more" in heat[4]


def test_heatmap_of_one_character_everywhere_is_one_line(cli, tmp_path):
    """A dW off by 1.001 everywhere drew 90 '#' over 40 lines (t62b F5): one line says it; one
    element within tolerance brings the map back."""
    spec = load_spec("conv2d", None)
    grads = {n: np.array(g) for n, g in compute(spec).gradients.items()}
    grads["W"] = grads["W"] * 1.001
    np.savez(tmp_path / "g.npz", **grads)
    out = cli("check", "conv2d", "--grads", tmp_path / "g.npz", env={"NO_COLOR": "1"}).stdout
    assert "dW: error / tolerance is over 100x at all 90 elements: no pattern to draw" in out
    assert "dW: error / tolerance\n" not in out and "# # #" not in out
    grads["W"].flat[0] = compute(spec).gradients["W"].flat[0]  # the twin: a pattern again
    np.savez(tmp_path / "g.npz", **grads)
    out = cli("check", "conv2d", "--grads", tmp_path / "g.npz", env={"NO_COLOR": "1"}).stdout
    assert "dW: error / tolerance\n" in out and "no pattern" not in out


# ---------------------------------------------------------------- --grads: the arrays are yours
def test_grads_mode_labels_the_users_arrays_as_yours(cli, tmp_path):
    spec = load_spec("linear", None)
    grads = {n: np.array(g) for n, g in compute(spec).gradients.items()}
    grads["W"][0, 0] += 0.1
    np.savez(tmp_path / "g.npz", **grads)
    out = cli("check", "linear", "--grads", tmp_path / "g.npz", "--values",
              env={"COLUMNS": "200"}).stdout  # fmt: skip
    assert "gradient check: yours vs numeric" in out
    header = next(line for line in out.splitlines() if line.startswith("┃ gradient"))
    assert "yours" in header and "analytic" not in header
    assert re.search(r"│ dW \(yours\) +│ yours ", out)
    worst = next(line for line in out.splitlines() if line.startswith("┃ element"))
    assert "yours" in worst and "analytic" not in worst
    assert "worst dW[o=0, i=0]: yours" in _last(out)
    assert f"{grads['W'][0, 0]:.4g}" in out.split("dW (yours)  [3, 4]")[1]  # their values
    ours = cli("check", "linear", "--values", env={"COLUMNS": "200"}).stdout  # the twin
    assert "yours" not in ours and "analytic vs numeric" in ours


def test_one_slice_hint_names_the_axis_of_a_batched_tensor():
    """The hint agrees with the heatmap: a batched X (b0, t, e) wrong at t=1 is named t=1."""
    spec = load_spec("attention", str(REPO / "specs/attention_causal_multihead.yaml"))
    grads = {n: np.array(g) for n, g in compute(spec).gradients.items()}
    grads["X"][:, 1, :] *= 2
    hints = check(spec, grads=grads).results["X"].hints
    assert any("wrong only at t=1" in h for h in hints), hints
    unbatched = load_spec("conv2d", None)  # the twin: no batch axis, X (i, j, d)
    grads = {n: np.array(g) for n, g in compute(unbatched).gradients.items()}
    grads["X"][:, :, 1] += 1.0
    hints = check(unbatched, grads=grads).results["X"].hints
    assert any("wrong only at d=1" in h for h in hints), hints


def test_narrower_than_the_essential_columns_keeps_them_whole():
    spec, grads = CASES[0]
    report = check(spec, grads=grads)
    comp, numeric = report.computation, report.numeric
    out = _render(spec, report, comp, numeric, 24, grads)
    for name, r in report.results.items():
        row = _row(out, "d" + name)
        assert f"{r.checked}/{int(np.prod(r.shape))}" in row and "PASS" in row, out


def test_summary_says_why_a_gradient_fails_when_it_is_not_its_error(cli):
    """A tensor the step cannot resolve is named as such, not as a mismatch of its values."""
    out = cli("check", "linear", "--eps", "1e-320", "-q")
    assert out.exit_code == 1 and out.stdout.startswith("FAIL  linear: cannot resolve dx")
    assert "do not match" not in out.stdout and len(out.stdout.splitlines()) == 1


def test_a_folded_worst_element_breaks_at_its_spaces_only(cli, write_spec, tmp_path):
    # a failing dx with a long reading took the room: dgamma[d=4] came out "dgamma[d=4" / "]"
    spec = write_spec("tensors: {x: {shape: [3, 8]}, gamma: {shape: [8]}, beta: {shape: [8]}}\n")
    assert cli("compute", "layernorm", spec, "-o", tmp_path / "c.npz").exit_code == 0
    c = np.load(tmp_path / "c.npz")
    dx = c["dx"].copy()
    dx.flat[3] *= 1 + 3e-5
    np.savez(tmp_path / "g.npz", x=dx, gamma=c["dgamma"], beta=c["dbeta"])
    out = cli("check", "layernorm", spec, "--grads", tmp_path / "g.npz",
              env={"COLUMNS": "80"}).stdout  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert any("dgamma[d=" in line and "] " in line for line in rows), out
    assert not any(line.split("│")[3].strip() == "]" for line in rows), out


def test_table_titles_wrap_at_the_console_not_the_narrow_table(tmp_path):
    """rich wrapped a title inside its table's width: lstm_step's formula broke at 73 columns
    of an 80-column terminal, and the check's pass rule was cut in two (its default spec then:
    N = H = 2, a shapes table narrower than the formula)."""
    path = tmp_path / "lstm.yaml"
    path.write_text("layer: lstm_step\ntensors:\n  x: {shape: [2, 3]}\n  prev_h: {shape: [2, 2]}\n"
                    "  prev_c: {shape: [2, 2]}\n  Wx: {shape: [3, 8]}\n  Wh: {shape: [2, 8]}\n"
                    "  b: {shape: [8]}\n")  # fmt: skip
    spec = load_spec("lstm_step", str(path))
    report = check(spec)
    lines = _render(spec, report, report.computation, report.numeric, 84).splitlines()
    table_width = len(lines[1])  # the shapes table's top border, under a one-line title
    assert lines[0].rstrip() == f"lstm_step: {spec.layer.summary}"
    assert table_width < len(lines[0].rstrip()) <= 84
    assert any(line.rstrip() == "pass if |a-n| <= 1e-07 + 1e-06|n|" for line in lines)



@pytest.mark.parametrize("columns", [60, 80])
def test_failing_prose_and_worst_tables_fit_the_width(cli, columns):
    """Hints, notes and the verdicts on the user's code wrap between words at the width, their
    continuations indented; the worst elements' indices fold only when nothing else gives way
    (the outside tester's T2: a 68-column table and lines of 123 to 211 characters at 60)."""
    cs = Path(__file__).parent / "fixtures" / "cs231n"
    env = {"COLUMNS": str(columns)}
    out = cli("check", "conv2d", cs / "conv2d_small.yaml", "--impl", cs / "layers_buggy.py",
              env=env).stdout  # fmt: skip
    out += cli("check", "batchnorm", "--impl", cs / "layers_buggy.py", env=env).stdout
    lines = out.splitlines()
    assert "worst elements" in out and "in your dw" in out and "hint:" in out
    summaries = [line for line in lines if line.startswith("FAIL  ")]
    assert len(summaries) == 2  # each stays one line, for grep and tail
    assert max(len(line) for line in lines if line not in summaries) <= columns
    flat = " ".join(out.split())
    assert "your forward vs the built-in forward: PASS" in flat
    assert "both terms through them left out" in flat
    for k, line in enumerate(lines[:-1]):
        if line.startswith(("hint:", "your backward vs")) and len(line) > columns - 25:
            assert lines[k + 1].startswith("  ")  # its continuation, indented


def test_the_worst_elements_show_what_they_are_ranked_by():
    """The worst elements are sorted by error / tolerance, which no column showed: a student
    read the first row, with the smallest errors of the five, as misranked (outside test
    t38a N1). Twin: the ranking follows that column, and JSON has it for every element."""
    import gradcli

    x = np.array([1e-5, 8.0, 2.0])

    def forward(x):
        return x**2

    def backward(grad_output, x):
        g = 2 * x * grad_output
        return {"x": g * np.array([2.0, 1.0 + 2.5e-6, 1.0 + 2e-6])}

    r = gradcli.check("custom", {"x": x}, forward=forward, backward=backward,
                      grad_output=np.ones(3))  # fmt: skip
    worst = r.results["x"].worst
    over = [w["error_over_tolerance"] for w in worst]
    assert over == sorted(over, reverse=True) and over[0] > 1
    # the first row has the smallest absolute error, and still ranks first
    assert worst[0]["index"] == [0] and worst[0]["abs_error"] < worst[1]["abs_error"]
    table = r.table(width=80)
    assert "err/tol" in table and "(by error / tolerance)" in table
    doc = json.loads(r.to_json())
    assert all("error_over_tolerance" in w for w in doc["results"]["x"]["worst"])
