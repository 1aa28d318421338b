"""Issue 12 "Nothing is damaged" and the streams (issue 11's closed pipe): stdout closed, full,
ASCII-only or gone; stderr closed; Ctrl-C and SIGTERM; what -o may replace. Real subprocesses,
since file descriptors, signals and encodings are the process's own."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"}
ENV.pop("NO_COLOR", None)
CMD = [sys.executable, "-m", "gradcli"]
LINEAR = "tensors:\n  x: [1.0, 2.0]\n  W: [[1.0, 2.0]]\n"
# a check that runs for a few seconds: time for signals to arrive mid-run
SLOW = "tensors:\n  X: {shape: [24, 16]}\n" + "".join(
    f"  {w}: {{shape: [16, 16]}}\n" for w in ("W_Q", "W_K", "W_V")
)


def run(*args: str, cwd: Path | None = None, env: dict | None = None, **kw):
    return subprocess.run(
        [*CMD, *map(str, args)], cwd=cwd, env=env or ENV, capture_output=True, timeout=60, **kw
    )


def shell(script: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``script`` in sh with $G the gradcli command (for >&-, 2>&-, /dev/full)."""
    g = " ".join(f"'{a}'" for a in CMD)
    return subprocess.run(
        ["sh", "-c", script.replace("$G", g)],
        cwd=cwd, env=env or ENV, capture_output=True, timeout=60,
    )  # fmt: skip


def one_error_line(stderr: bytes, *needles: str) -> str:
    text = stderr.decode()
    lines = text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradcli: error:"), text[-500:]
    assert "Traceback" not in text and "Exception ignored" not in text
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --- stdout -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_a_reader_that_went_away_is_exit_141_and_quiet(fmt):
    """`gradcli check linear | head -1` was exit 1, the code of a mismatch."""
    r, w = os.pipe()
    os.close(r)  # the reader is gone before gradcli writes a byte
    proc = subprocess.run(
        [*CMD, "check", "linear", "--format", fmt], stdout=w, stderr=subprocess.PIPE,
        env=ENV, timeout=60,
    )  # fmt: skip
    os.close(w)
    assert (proc.returncode, proc.stderr) == (141, b"")


def test_a_reader_that_stays_gets_exit_0():
    proc = shell("$G check linear | head -1", Path.cwd())
    assert proc.returncode == 0 and proc.stdout.startswith(b"linear"), proc.stderr


def test_a_mismatch_to_a_gone_reader_is_still_141(tmp_path, cli):
    (tmp_path / "g.yaml").write_text("W: [[5.0, 5.0]]\n")
    (tmp_path / "s.yaml").write_text(LINEAR)
    r, w = os.pipe()
    os.close(r)
    proc = subprocess.run(
        [*CMD, "check", "linear", "s.yaml", "--grads", "g.yaml"], cwd=tmp_path, stdout=w,
        stderr=subprocess.PIPE, env=ENV, timeout=60,
    )  # fmt: skip
    os.close(w)
    assert (proc.returncode, proc.stderr) == (141, b"")
    # the twin (in-process: no pipe of its own): the same mismatch with a reader is exit 1
    twin = cli("check", "linear", tmp_path / "s.yaml", "--grads", tmp_path / "g.yaml")
    assert twin.exit_code == 1


@pytest.mark.parametrize("command", ["check linear", "compute conv2d --format json", "layers"])
def test_a_closed_stdout_is_one_line_exit_2(tmp_path, command):
    proc = shell(f"$G {command} >&-", tmp_path)
    assert proc.returncode == 2
    one_error_line(proc.stderr, "stdout", "closed")


def test_a_closed_stdout_does_not_matter_with_output(tmp_path):
    proc = shell("$G check linear --format json -o out.json >&-", tmp_path)
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert json.loads((tmp_path / "out.json").read_text())["passed"] is True


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
@pytest.mark.parametrize("command", ["check linear", "explain attention --format json"])
def test_a_full_stdout_is_one_line_exit_2(tmp_path, command):
    proc = shell(f"$G {command} > /dev/full", tmp_path)
    assert proc.returncode == 2
    one_error_line(proc.stderr, "No space left")


@pytest.mark.parametrize("command", ["check conv2d", "explain conv2d", "compute attention"])
def test_an_ascii_stdout_gets_an_ascii_table(command):
    env = {**ENV, "PYTHONIOENCODING": "ascii"}
    proc = run(*command.split(), env=env)
    assert (proc.returncode, proc.stderr) == (0, b"")
    proc.stdout.decode("ascii")  # every byte ASCII: boxes, ellipses, formulas
    assert b"+---" in proc.stdout or b"dL/d" in proc.stdout


@pytest.mark.parametrize("command", ["explain attention", "explain conv2d"])
def test_an_ascii_stdout_gets_the_same_json(command):
    """Characters ASCII cannot show become \\u escapes: the same JSON document."""
    utf8 = run(*command.split(), "--format", "json")
    ascii_ = run(*command.split(), "--format", "json", env={**ENV, "PYTHONIOENCODING": "ascii"})
    assert ascii_.returncode == 0 and ascii_.stderr == b""
    assert json.loads(ascii_.stdout.decode("ascii")) == json.loads(utf8.stdout)
    assert utf8.stdout != ascii_.stdout  # the twin: there was something to escape


def test_an_ascii_square_root_encloses_its_operand():
    """sqrt(d_k), not sqrtd_k (the outside tester's T9)."""
    text = run("explain", "attention", env={**ENV, "PYTHONIOENCODING": "ascii"}).stdout.decode()
    assert "Q * K^T / sqrt(d_k)" in text and "sqrt(d_k) = sqrt(4) = 2" in text
    assert "(1/sqrt(d_k))" in text and "sqrtd" not in text


@pytest.mark.parametrize("command", ["explain attention", "check attention --values"])
def test_ascii_stand_ins_do_not_widen_lines_past_the_width(command):
    """W^T for Wᵀ, sqrt(d_k) for √d_k: laid out at 80 columns in Unicode, a formula line of
    explain attention came out 86 wide (T9a); it is drawn narrower by the excess instead."""
    env = {**ENV, "PYTHONIOENCODING": "ascii", "COLUMNS": "80"}
    lines = run(*command.split(), env=env).stdout.decode("ascii").splitlines()
    assert max(map(len, lines)) <= 80
    assert any("sqrt" in line for line in lines)


def test_a_latin1_stdout_gets_a_readable_table():
    proc = run("explain", "linear", env={**ENV, "PYTHONIOENCODING": "latin-1"})
    assert proc.returncode == 0 and proc.stderr == b""
    assert b"?" not in proc.stdout.replace(b"?)", b"")  # stand-ins, not question marks


# --- stderr -----------------------------------------------------------------------------------


def test_a_closed_stderr_never_moves_the_error_onto_stdout(tmp_path):
    proc = shell("$G check linear nope.yaml 2>&-", tmp_path)
    assert (proc.returncode, proc.stdout) == (2, b"")


def test_a_closed_stderr_leaves_the_result_alone(tmp_path):
    (tmp_path / "s.yaml").write_text(LINEAR)
    proc = shell("$G check linear s.yaml --format json -o out.json 2>&-", tmp_path)
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert json.loads((tmp_path / "out.json").read_text())["passed"] is True


def test_an_ascii_strict_stderr_still_says_it(tmp_path):
    env = {**ENV, "PYTHONIOENCODING": "ascii:strict"}
    proc = run("compute", "linear", "spé\u2202.yaml", cwd=tmp_path, env=env)
    assert proc.returncode == 2 and proc.stdout == b""
    one_error_line(proc.stderr, "sp")


# --- messages ---------------------------------------------------------------------------------


def test_an_npz_with_20000_members_is_not_listed_in_full(tmp_path, cli):
    # the archive np.savez writes, one stored .npy a member, written directly (3x faster)
    buf = io.BytesIO()
    np.save(buf, np.zeros(1))
    with zipfile.ZipFile(tmp_path / "many.npz", "w") as archive:
        for i in range(20_000):
            archive.writestr(f"a{i}.npy", buf.getvalue())
    (tmp_path / "s.yaml").write_text("tensors:\n  x: many.npz:x\n  W: [[1.0]]\n")
    result = cli("compute", "linear", tmp_path / "s.yaml")  # in-process: a message's test
    assert result.exit_code == 2
    line = one_error_line(result.stderr.encode(), "many.npz", "'x'", "a0, a1", "19,995 more")
    assert len(line) < 300, line


def test_every_message_is_capped(cli, assert_usage_error):
    """Whatever a message quotes (here a 5000-character --eps), the line stays short."""
    result = cli("check", "linear", "--eps", "x" * 5000)
    assert_usage_error(result, "--eps", "more characters")
    assert len(result.stderr.splitlines()[0]) <= 520
    short = cli("check", "linear", "--eps", "x" * 50)  # the twin: a short one is whole
    assert_usage_error(short, "x" * 50)
    assert "more characters" not in short.stderr


def test_an_impl_file_name_in_a_table_cannot_reach_the_terminal(tmp_path):
    impl = tmp_path / "a\x1b[2Jb\x9bc.py"
    impl.write_text(
        "def forward(x, W, b):\n    return W @ x + b\n\n"
        "def backward(grad_output, x, W, b):\n"
        "    return {'x': W.T @ grad_output, 'W': __import__('numpy').outer(grad_output, x),"
        " 'b': grad_output}\n"
    )
    proc = run("check", "linear", "--impl", impl, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert b"\x1b" not in proc.stdout and "\x9b".encode() not in proc.stdout
    assert b"a\\x1b[2Jb\\x9bc.py" in proc.stdout


# --- Ctrl-C and SIGTERM -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def python_start() -> float:
    """Seconds until the interpreter reaches gradcli's first line (the median of 3)."""
    times = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import gradcli.cli.interrupt"], env=ENV, check=True)
        times.append(time.perf_counter() - t)
    return sorted(times)[1]


def _signalled(tmp_path: Path, signum: int, after: float, *args: str):
    proc = subprocess.Popen(
        [*CMD, "check", "attention", "s.yaml", "--mode", "full", *args], cwd=tmp_path, env=ENV,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(after)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err.decode()


def _before_gradcli(code: int, signum: int, err: str) -> bool:
    """Python's own start-up took the signal, before gradcli's first line: no program can
    handle that (on a loaded machine the interpreter alone can take longer than planned). It
    dies of the signal, or exits 1 when the signal hit its site or runpy import."""
    in_gradcli = re.search(r'File "[^"]*[/\\]gradcli[/\\]', err)  # a frame of gradcli's own
    return code in (-signum, 1) and not in_gradcli  # (runpy's message names 'gradcli' before)


def test_ctrl_c_during_start_up_is_130_without_a_traceback(tmp_path, python_start):
    (tmp_path / "s.yaml").write_text(SLOW)
    handled = 0
    for after in (1.2, 1.5, 2.0, 3.0):  # from gradcli's first line through its imports
        code, out, err = _signalled(tmp_path, signal.SIGINT, after * python_start)
        if _before_gradcli(code, signal.SIGINT, err):
            continue
        assert code == 130, err[-800:]
        assert out == b"" and err.splitlines() == ["gradcli: interrupted"]
        handled += 1
    if handled == 0:  # every signal met the interpreter's own start-up
        pytest.skip("the machine is too busy to reach gradcli's imports in time")


def test_sigterm_leaves_the_target_untouched_and_no_temporary(tmp_path, python_start):
    (tmp_path / "s.yaml").write_text(SLOW)
    target = tmp_path / "out.npz"
    codes = []
    for after in (1.5, 3.0, 6.0, 10.0, 15.0, 25.0):
        target.write_bytes(b"precious")
        code, out, err = _signalled(tmp_path, signal.SIGTERM, after * python_start, "-o", "out.npz")
        codes.append(code)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz", "s.yaml"]
        assert "Traceback" not in err and out == b""
        if code in (143, -signal.SIGTERM):  # -15: before gradcli's first line
            assert target.read_bytes() == b"precious"
            assert code == -signal.SIGTERM or err.splitlines() == ["gradcli: terminated"]
        else:  # the signal came after the result was in place
            assert code == 0, err
            assert set(np.load(target)) >= {"output", "dX"}
    if 143 not in codes:  # the machine too busy: every signal came too early or too late
        pytest.skip(f"no signal reached a running check: {codes}")


def test_a_signal_while_writing_keeps_the_target(cli, tmp_path, monkeypatch):
    """SIGTERM between the temporary's write and its rename (in-process, exactly there)."""
    from gradcli.cli import emit

    target = tmp_path / "out.json"
    target.write_text("precious")
    real_sync = emit._sync

    def sync_then_signal(fd: int) -> None:
        real_sync(fd)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs at the next bytecode; it must only take note

    monkeypatch.setattr(emit, "_sync", sync_then_signal)
    result = cli("check", "linear", "--format", "json", "-o", target)
    assert result.exit_code == 143 and result.stdout == ""
    assert target.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    monkeypatch.setattr(emit, "_sync", real_sync)  # the twin: the same run writes it
    assert cli("check", "linear", "--format", "json", "-o", target).exit_code == 0
    assert json.loads(target.read_text())["passed"] is True


# --- what -o may replace ------------------------------------------------------------------------


def _special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    elif kind == "dir":
        path.mkdir()
    elif kind == "link-to-null":
        path.symlink_to("/dev/null")
    elif kind == "link-to-fifo":
        os.mkfifo(tmp_path / "fifo2")
        path.symlink_to(tmp_path / "fifo2")
    return path


@pytest.mark.parametrize("kind", ["fifo", "socket", "dir", "link-to-null", "link-to-fifo"])
def test_output_refuses_anything_but_a_regular_file(cli, assert_usage_error, tmp_path, kind):
    path = _special(tmp_path, kind)
    if kind == "link-to-null" and not stat.S_ISCHR(os.stat(path).st_mode):
        pytest.skip("/dev/null is not a device on this machine (something replaced it)")
    before = os.lstat(path)
    assert_usage_error(cli("check", "linear", "-o", path), "--output", str(path))
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert not list(tmp_path.glob(".gradcli-*"))


@pytest.mark.parametrize("path", ["/dev/null", "/proc/self/fd/1", "/dev/stdout"])
def test_output_refuses_the_process_own_devices(tmp_path, path):
    """As root, `-o /dev/null` replaced the system's /dev/null; /proc/self/fd/1 is the pipe
    of this subprocess's stdout."""
    if not os.path.exists(path) or (
        path == "/dev/null" and not stat.S_ISCHR(os.stat(path).st_mode)
    ):
        pytest.skip(f"no device {path} here")
    proc = run("check", "linear", "-o", path, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == b""
    one_error_line(proc.stderr, "--output", path)
    assert path != "/dev/null" or stat.S_ISCHR(os.stat(path).st_mode)


def _answer_files(tmp_path: Path) -> None:
    np.save(tmp_path / "gW.npy", np.array([[1.0, 2.0]]))
    np.savez(tmp_path / "arch.npz", x=np.array([1.0, 2.0]), W=np.array([[1.0, 2.0]]))
    (tmp_path / "g.yaml").write_text("W: gW.npy\nx: arch.npz:x\n")
    (tmp_path / "s.yaml").write_text("tensors:\n  x: arch.npz:x\n  W: arch.npz:W\n")
    (tmp_path / "link.npy").symlink_to("gW.npy")
    os.link(tmp_path / "arch.npz", tmp_path / "hard.npz")


@pytest.mark.parametrize(
    "target", ["gW.npy", "./gW.npy", "link.npy", "arch.npz", "hard.npz", "g.yaml", "s.yaml"]
)
def test_output_never_replaces_a_file_the_run_read(
    cli, assert_usage_error, tmp_path, monkeypatch, target
):
    """gW.npy is named only inside the --grads YAML; arch.npz is the archive of members;
    link.npy a symlink and hard.npz a hard link to them."""
    monkeypatch.chdir(tmp_path)
    _answer_files(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = cli("check", "linear", "s.yaml", "--grads", "g.yaml", "-o", target)
    assert_usage_error(result, "--output", "inputs")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_output_may_replace_a_file_the_run_did_not_read(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _answer_files(tmp_path)
    (tmp_path / "other.npy").write_bytes(b"old")
    result = cli("check", "linear", "s.yaml", "--grads", "g.yaml", "-o", "other.npy")
    assert result.exit_code == 1, result.stderr  # g.yaml's answers are wrong: still written
    assert (tmp_path / "other.npy").read_bytes() != b"old"


def test_output_through_a_symlink_writes_its_target(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "link.json").symlink_to("real.json")
    assert cli("check", "linear", "--format", "json", "-o", "link.json").exit_code == 0
    assert (tmp_path / "link.json").is_symlink()
    assert json.loads((tmp_path / "real.json").read_text())["passed"] is True


def test_output_with_a_255_byte_name(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # in-process: a file name's test, not the process's
    name = "a" * 250 + ".json"
    result = cli("check", "linear", "--format", "json", "-o", name)
    assert (result.exit_code, result.stderr) == (0, "")
    assert [p.name for p in tmp_path.iterdir()] == [name]
    too_long = cli("check", "linear", "-o", "a" * 256)
    assert too_long.exit_code == 2
    one_error_line(too_long.stderr.encode(), "--output")
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_refused_output_is_refused_before_the_work(cli, assert_usage_error, tmp_path):
    """No minutes of numerics for a result that cannot be written."""
    from gradcli.checking import check as core
    from gradcli.checking import compute as compute_module

    def never(*args, **kwargs):
        raise AssertionError("the check ran")

    os.mkfifo(tmp_path / "fifo")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(core, "check", never)
        m.setattr(core, "compute", never)
        m.setattr(compute_module, "compute", never)
        for command in ("check", "compute"):
            assert_usage_error(cli(command, "linear", "-o", tmp_path / "fifo"), "FIFO")
    assert cli("check", "linear", "-o", tmp_path / "new.txt").exit_code == 0  # the twin


def test_a_table_written_to_a_file_escapes_control_characters(cli, tmp_path):
    impl = tmp_path / "a\x1b[2Jb.py"
    impl.write_text(
        "def forward(x, W, b):\n    return W @ x + b\n\n"
        "def backward(grad_output, x, W, b):\n"
        "    return {'x': W.T @ grad_output, 'W': __import__('numpy').outer(grad_output, x),"
        " 'b': grad_output}\n"
    )
    out = tmp_path / "out.txt"
    result = cli("check", "linear", "--impl", impl, "-o", out)
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    assert "\x1b" not in text and "a\\x1b[2Jb.py" in text


def test_labels_and_indices_are_integers_in_json(cli, tmp_path):
    """Outside test t17 F10: svm's labels and embedding's indices were written as 0.0, 2.0 ...
    in JSON, though the table says int64 and a spec refuses floats there: a script feeding the
    document back got 'expected integers'. They round-trip now; float tensors stay floats."""
    r = cli("compute", "svm", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)["tensors"]
    y, x = doc["y"]["values"], doc["x"]["values"]
    assert all(type(v) is int for v in y) and all(type(v) is float for row in x for v in row)
    spec = tmp_path / "again.yaml"
    spec.write_text(yaml.safe_dump({"layer": "svm", "tensors": {"x": x, "y": y}}))
    assert cli("check", "svm", str(spec), "-q").exit_code == 0
    idx = json.loads(cli("compute", "embedding", "--format", "json").stdout)["tensors"]["idx"]
    assert all(type(v) is int for v in np.ravel(idx["values"]).tolist())
