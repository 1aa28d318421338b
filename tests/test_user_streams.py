"""User code that closes sys.stdout or sys.stderr closes nothing of gradcli's or the caller's
(outside test t21 F8: exit 3 with nothing on stderr, and the API caller's stderr closed)."""

from __future__ import annotations

import sys

import numpy as np
import pytest


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_closing_a_stream_in_user_code_closes_nothing(stream, capsys):
    import gradcli

    def forward(x):
        print("from the forward")
        getattr(sys, stream).close()
        return np.tanh(x)

    def backward(grad_output, x):
        return {"x": grad_output * (1 - np.tanh(x) ** 2)}

    before = sys.stdout, sys.stderr
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": np.array([0.5, -1.0])})
    assert r.passed
    assert (sys.stdout, sys.stderr) == before
    assert not sys.stdout.closed and not sys.stderr.closed
    print("after", file=sys.stderr)
    assert "after" in capsys.readouterr().err


def test_the_cli_says_its_verdict_when_a_forward_closes_stdout(cli, tmp_path):
    impl = tmp_path / "closer.py"
    impl.write_text("import sys\nimport numpy as np\n\n\ndef forward(x):\n"
                    "    sys.stdout.close()\n    return np.tanh(x)\n\n\n"
                    "def backward(grad_output, x):\n"
                    "    return {'x': grad_output * (1 - np.tanh(x) ** 2)}\n")  # fmt: skip
    spec = tmp_path / "s.yaml"
    spec.write_text("layer: custom\ntensors:\n  x: [0.5, -1.0]\n")
    r = cli("check", "custom", spec, "--impl", impl)
    assert r.exit_code == 0 and r.stdout.splitlines()[-1].startswith("PASS")


@pytest.mark.parametrize("how", ["detach", "dunder_out", "dunder_err"])
def test_detaching_or_closing_the_interpreters_streams_closes_nothing(how, capsys):
    """t22 N9: sys.stdout.detach() (the 'force UTF-8' rewrap) and sys.__stderr__.close() in
    user code took the caller's stderr: exit 3 with nothing said."""
    import io

    import gradcli

    def forward(x):
        if how == "detach":
            sys.stdout = io.TextIOWrapper(sys.stdout.detach(), encoding="utf-8")
            print("rewrapped")
        elif how == "dunder_out":
            sys.__stdout__.close()
        else:
            sys.__stderr__.close()
        return np.tanh(x)

    def backward(grad_output, x):
        return {"x": grad_output * (1 - np.tanh(x) ** 2)}

    before = sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": np.array([0.5, -1.0])})
    assert r.passed
    assert (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) == before
    assert not sys.__stderr__.closed and not sys.__stdout__.closed
    print("after", file=sys.stderr)
    assert "after" in capsys.readouterr().err
