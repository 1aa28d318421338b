"""Outside tests t23 and t24, what users read: --sweep at 80 columns (t23 F1, t24 F8), notes on
stderr wrapped on a terminal and said once into one pipe (t23 F7, t24 F6), a gradient for a
label refused (t23 F9, t24 F3), help that describes each command's own options (t23 F2),
skeleton comments wrapped between terms (t23 F8), a failing number printed beyond its
tolerance (t24 F1), no negative zero in prose (t23 F13, t24 F9)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ptyread import read_all

REPO = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------ --sweep at 80 columns


def _lines(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


def test_sweep_of_six_gradients_fits_80_columns(cli):
    """t23 F1: lstm_step's sweep table was 88 columns wide in an 80-column pipe."""
    r = cli("check", "lstm_step", "--sweep", env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.stderr
    body = _lines(r.stdout)[:-1]  # the summary line is one line by design
    assert max(len(line) for line in body) <= 80, max(body, key=len)
    for g in ("dx", "dprev_h", "dprev_c", "dWx", "dWh", "db", "regime"):
        assert f" {g} " in r.stdout, g  # every column still shown, in its block
    assert r.stdout.count("1e-05 │") == 2  # each block beside the steps


def test_sweep_of_six_gradients_is_one_table_where_it_fits(cli):
    # the twin: at 200 columns the table is not split
    r = cli("check", "lstm_step", "--sweep", env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.stderr
    assert r.stdout.count("1e-05 │") == 1
    assert any(" dx " in line and " regime " in line for line in _lines(r.stdout))


OFF_SIGMOID = """
import numpy as np
def forward(x):
    return 1 / (1 + np.exp(-x))
def backward(grad_output, x):
    s = forward(x)
    return {"x": grad_output * s * (1 - s) * (1 + 1e-5)}
"""


def test_sweep_prose_wraps_at_80_columns(cli, tmp_path):
    """t24 F8: 'dx: no step brings the error within ...' was one line of 155 characters."""
    impl = tmp_path / "off.py"
    impl.write_text(OFF_SIGMOID)
    r = cli("check", "sigmoid", "--impl", impl, "--sweep", env={"COLUMNS": "80"})
    assert r.exit_code == 1, r.stderr
    body = _lines(r.stdout)[:-1]
    assert max(len(line) for line in body) <= 80, max(body, key=len)
    at = next(k for k, line in enumerate(body) if line.startswith("dx: no step brings"))
    assert body[at + 1].startswith("  ") and "without --sweep" in " ".join(body[at:at + 3])


# ------------------------------------------------------------------ notes on stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return 2


LONG_NOTE = ("dX: at ties, your gradient is no routing of each window's upstream gradient to "
             "the window's own tied maxima (26 windows tied): every routing gives X[0, 2, 0, 1], "
             "X[0, 2, 1, 1] exactly -2.383 in all, yours give -7.15")  # fmt: skip


def test_a_note_on_a_terminal_wraps_at_its_width(monkeypatch):
    from gradcli.cli import exits

    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setenv("COLUMNS", "60")
    exits.note(LONG_NOTE)
    lines = _lines(err.getvalue())
    assert len(lines) > 2 and max(len(line) for line in lines) <= 60, lines
    assert lines[0].startswith("gradcli: dX:") and all(x.startswith("  ") for x in lines[1:])
    assert " ".join(x.strip() for x in lines) == f"gradcli: {LONG_NOTE}"


def test_a_note_into_a_pipe_stays_one_line(monkeypatch):
    # the twin: scripts grep the notes, one line each
    from gradcli.cli import exits

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setenv("COLUMNS", "60")
    exits.note(LONG_NOTE)
    assert err.getvalue() == f"gradcli: {LONG_NOTE}\n"


PROBE = ("layer: relu\ntensors:\n  x: [0.0, 0.0, 1.0, -1.0, 0.0, 2.0e-7, -3.0e-7]\n"
         "grad_output: [1.0, -1.0, 0.5, 0.7, 2.0, 1.0, 1.0]\n")  # fmt: skip
PROBE_NOTE = "probe of dx would cross kinks"


def _env(**extra: str) -> dict[str, str]:
    drop = {"NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, **extra}


def _probe(tmp_path: Path, stderr: int) -> subprocess.CompletedProcess:
    spec = tmp_path / "relu0.yaml"
    spec.write_text(PROBE)
    return subprocess.run(
        [sys.executable, "-m", "gradcli", "check", "relu", str(spec), "--mode", "probe"],
        stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=_env(),
        timeout=120, text=True,
    )  # fmt: skip


def test_a_note_is_said_once_when_stderr_joins_stdout(tmp_path):
    """t24 F6: `2>&1 | less` showed every note twice, on stderr and in the report."""
    proc = _probe(tmp_path, subprocess.STDOUT)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.count(PROBE_NOTE) == 1, proc.stdout


def test_a_note_is_in_the_report_and_on_stderr_apart(tmp_path):
    # the twin: stdout and stderr apart, each carries it (the report keeps its notes)
    proc = _probe(tmp_path, subprocess.PIPE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(PROBE_NOTE) == 1 and proc.stderr.count(PROBE_NOTE) == 1


def test_a_note_on_an_80_column_terminal_is_wrapped_and_said_once(tmp_path):
    """t23 F7: on a terminal a note was one stderr line of 100-330 columns."""
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    spec = tmp_path / "relu0.yaml"
    spec.write_text(PROBE)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradcli", "check", "relu", str(spec), "--mode", "probe"],
        stdout=slave, stderr=slave, stdin=subprocess.DEVNULL,
        env=_env(TERM="xterm-256color", NO_COLOR="1"),
    )  # fmt: skip
    os.close(slave)
    out = read_all(master)
    assert proc.wait(timeout=120) == 0, out
    text = out.decode().replace("\r\n", "\n")
    assert text.count(PROBE_NOTE) == 1, text
    first = _lines(text)
    at = next(k for k, line in enumerate(first) if PROBE_NOTE in line)
    assert len(first[at]) <= 80 and first[at + 1].startswith("  "), first[at:at + 2]
    assert max(len(line) for line in first[:-1]) <= 80


# ------------------------------------------------------------------ a gradient for a label

LABEL_GRADS = {
    "softmax_cross_entropy": ("""
import numpy as np
def forward(x, y):
    p = np.exp(x - x.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
    return -np.log(p[np.arange(len(y)), y]).mean()
def backward(grad_output, x, y):
    p = np.exp(x - x.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return {"x": grad_output * p / len(y)%s}
""", ', "y": np.zeros(y.shape)', "y, softmax_cross_entropy's labels", "x"),
    "mse": ("""
import numpy as np
def forward(pred, target):
    return ((pred - target) ** 2).mean()
def backward(grad_output, pred, target):
    g = grad_output * 2 * (pred - target) / pred.size
    return {"pred": g%s}
""", ', "target": -g', "target, mse's target", "pred"),
    "embedding": ("""
import numpy as np
def forward(idx, W):
    return W[idx]
def backward(grad_output, idx, W):
    dW = np.zeros_like(W)
    np.add.at(dW, idx, grad_output)
    return {"W": dW%s}
""", ', "idx": np.zeros(idx.shape)', "idx, embedding's indices", "W"),
}  # fmt: skip


@pytest.mark.parametrize("layer", sorted(set(LABEL_GRADS) - {"mse"}))
def test_a_gradient_for_a_label_is_refused(cli, tmp_path, layer):
    """t23 F9, t24 F3: a built-in loss's --impl returning dy passed, the dy dropped unread."""
    source, extra, named, wanted = LABEL_GRADS[layer]
    impl = tmp_path / "mine.py"
    impl.write_text(source % extra)
    r = cli("check", layer, "--impl", impl)
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert r.stdout == "" and len(_lines(r.stderr)) == 1, r.stderr
    assert f"backward returned a gradient for {named}" in r.stderr
    assert f"return gradients for {wanted} only" in r.stderr


@pytest.mark.parametrize("layer", sorted(LABEL_GRADS))
def test_the_same_backward_without_it_passes(cli, tmp_path, layer):
    # the twin: the refusal is of the label's gradient, not of the backward
    source, _, _, _ = LABEL_GRADS[layer]
    impl = tmp_path / "mine.py"
    impl.write_text(source % "")
    r = cli("check", layer, "--impl", impl)
    assert r.exit_code == 0, (r.stdout, r.stderr)


# ------------------------------------------------------------------ help


@pytest.mark.parametrize("command", ["init", "explain"])
def test_help_promises_no_arrays_where_npz_is_refused(cli, tmp_path, command):
    """t23 F2: init and explain said '.npz writes arrays', then refused any .npz."""
    r = cli(command, "--help")
    assert ".npz writes arrays" not in " ".join(r.stdout.split())
    refused = cli(command, "relu", "-o", tmp_path / "t.npz")
    assert refused.exit_code == 2 and "no arrays to write as .npz" in refused.stderr


def test_help_of_compute_still_offers_arrays(cli):
    # the twin: a command that writes .npz archives says so
    assert ".npz writes arrays" in " ".join(cli("compute", "--help").stdout.split())


def test_layers_help_names_no_output_option(cli):
    r = cli("layers", "--help")
    assert "--output" not in r.stdout and "--format" in r.stdout
    assert cli("layers", "-o", "x.json").exit_code == 2  # it has none


# ------------------------------------------------------------------ skeleton comments


def _skeleton(cli, layer: str) -> str:
    r = cli("init", layer, "--impl")
    assert r.exit_code == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("layer", ["maxpool2d", "avgpool2d", "svm", "softmax", "conv2d",
                                   "lstm_step", "batchnorm", "custom"])  # fmt: skip
def test_skeleton_comments_break_between_terms(cli, layer):
    """t23 F8: `Ho = (H + 2*padding - size) // stride` / `# + 1`, `(c !=` / `# y[n])`."""
    from gradcli.render.comments import OPERATORS

    lines = _skeleton(cli, layer).split("\n")
    for k, line in enumerate(lines):
        body = line.strip()
        if not body.startswith("# ") or k + 1 == len(lines):
            continue
        after = lines[k + 1].strip()
        continued = after.startswith("#   ")  # a formula's own continuation, indented
        opened = sum(body.count(c) for c in "([{") - sum(body.count(c) for c in ")]}")
        assert opened <= 0 or continued, (line, lines[k + 1])
        assert body.split()[-1] not in OPERATORS, line
        if after.startswith("# ") and not continued:  # lstm_step's own source starts a
            # line with its arrow ('-> np.stack(...)'), no wrap of ours
            assert after[2:].split()[0] not in OPERATORS - {"->"}, (line, lines[k + 1])


def test_pool_skeleton_keeps_its_output_size_whole(cli):
    assert "# Ho = (H + 2*padding - size) // stride + 1\n" in _skeleton(cli, "maxpool2d")


def test_comment_wrap_still_wraps_prose():
    # the twin: prose without formulas is wrapped at the width, between words
    from gradcli.render.comments import fit_comments

    text = "    # " + " ".join(["word"] * 40)
    out = fit_comments(text).split("\n")
    assert len(out) > 1 and max(len(line) for line in out) <= 80
    assert all(line.startswith("    # word") for line in out)


# ------------------------------------------------------------------ numbers


def test_a_failing_linearity_reads_beyond_its_tolerance():
    """t24 F1: '1.19e-07 (tolerance 1.2e-07)', and broken: the tolerance was 1.15e-07."""
    from gradcli.checking.contract import _linearity

    f = _linearity("x", 1.1920928955078125e-07, 1.1527987480163574e-07, False, False, True)
    assert not f.passed and "by up to 1.19e-07 (tolerance 1.15e-07)" in f.detail


def test_printed_numbers_compare_as_the_values_do():
    # the twin and the edges: more digits only where three would read the wrong way
    from gradcli.checking.contract import versus

    assert versus(2.5e-07, 1.2e-07) == ("2.5e-07", "1.2e-07")
    assert versus(1.2300001e-07, 1.23e-07) == ("1.2300001e-07", "1.23e-07")
    for x, tol in ((1.19e-7, 1.15e-7), (1.1500001e-7, 1.15e-7), (3e-9, 1e-8)):
        shown, limit = versus(x, tol)
        assert (float(shown) > float(limit)) == (x > tol), (shown, limit)


def test_negative_zero_reads_zero():
    """t24 F9 '-0 x the right value', t23 F13 'numeric -0'."""
    from gradcli.render.values import apart, num

    assert apart(-0.0, 0.0) == ("0", "0") and num(-0.0) == "0"
    assert apart(-0.0, -1.5) == ("0", "-1.5") and num(-2.0) == "-2"  # the twin: signs kept


RELU_BUG = """
import numpy as np
def forward(x): return np.maximum(x, 0)
def backward(grad_output, x): return {"x": grad_output * (x < 0)}
"""

PADDING_IDX = """
import numpy as np
def forward(idx, W):
    return W[idx]
def backward(grad_output, idx, W):
    dW = np.zeros_like(W)
    g = grad_output.reshape(-1, W.shape[1])
    for k, i in enumerate(idx.reshape(-1)):
        if i:
            dW[i] += g[k]
    return {"W": dW}
"""


def test_no_negative_zero_in_a_report(cli, tmp_path):
    spec = tmp_path / "relu0.yaml"
    spec.write_text(PROBE)
    impl = tmp_path / "bug.py"
    impl.write_text(RELU_BUG)
    r = cli("check", "relu", spec, "--impl", impl)
    assert r.exit_code == 1 and "numeric 0" in _lines(r.stdout)[-1], r.stdout
    assert "-0 " not in r.stdout.replace("\n", " ") + " "
    emb = tmp_path / "emb.yaml"
    emb.write_text("layer: embedding\ntensors:\n  idx: [[0, 2, 2, 4], [1, 0, 0, 3]]\n"
                   "  W: {shape: [5, 3], init: normal}\n")  # fmt: skip
    impl.write_text(PADDING_IDX)
    r = cli("check", "embedding", emb, "--impl", impl)
    text = " ".join(r.stdout.split())
    assert r.exit_code == 1 and "(0 x the right value)" in text, text
    assert "-0 x" not in text


def test_a_float_target_s_gradient_is_left_unchecked(cli, tmp_path):
    """t25 F7: torch's autograd over every float input returns mse's target's gradient, which
    is differentiable, only not under test: refusing it stopped a generic wrapper (exit 2)."""
    source, extra, _, _ = LABEL_GRADS["mse"]
    impl = tmp_path / "mine.py"
    impl.write_text(source % extra)
    assert cli("check", "mse", "--impl", impl).exit_code == 0
