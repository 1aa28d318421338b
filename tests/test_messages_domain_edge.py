"""A forward right on its domain whose finite-difference step crosses the domain's edge (sqrt at
x = 1e-7, a central step of 6e-6) is told so, with what to change: it read 'at the spec's
tensors or a finite-difference step from them', blaming the forward without a remedy
(outside test t60b F2). A NaN at the spec's own tensors is said to be there."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.errors import UserCodeError


def forward(x):
    return np.sqrt(x)


def backward(grad_output, x):
    return {"x": grad_output * 0.5 / np.sqrt(x)}


def test_a_step_across_the_edge_says_so_and_what_to_change(cli, tmp_path, write_spec):
    (tmp_path / "mysqrt.py").write_text(
        "import numpy as np\ndef forward(x): return np.sqrt(x)\n"
        "def backward(grad_output, x): return {'x': grad_output * 0.5 / np.sqrt(x)}\n")
    spec = write_spec("layer: custom\ntensors:\n  x: [[1.0e-7, 1.0, 4.0]]\n")
    r = cli("check", "custom", spec, "--impl", tmp_path / "mysqrt.py")
    assert r.exit_code == 2 and r.stdout == ""
    line = r.stderr.strip().splitlines()[0]
    assert "a finite-difference step from the spec's tensors, where its output is finite" in line
    assert "--method forward or --method backward" in line and "smaller --eps" in line
    # what it advises works
    r = cli("check", "custom", spec, "--impl", tmp_path / "mysqrt.py", "--method", "forward")
    assert r.exit_code == 0, r.stderr


def test_a_nan_at_the_spec_itself_is_said_to_be_there():
    with pytest.raises(UserCodeError, match="at the spec's tensors; gradcli needs a finite"):
        gradcli.check(forward=forward, backward=backward, tensors={"x": np.array([-1.0, 1.0])})


def test_the_complex_step_near_the_edge_is_not_called_unsafe():
    """Its cross-check against real central differences stepped out of sqrt's domain and
    called a complex-safe sqrt 'not complex-safe' (outside test t61b F2); the twin: an np.abs
    beside it, which drops the imaginary part, is still refused at the coordinates the real
    steps can read."""
    x = {"x": np.array([1e-7, 0.5, 2.0, 3.0])}
    assert gradcli.check(forward=forward, backward=backward, tensors=x, method="complex").passed

    def unsafe(x):
        return np.sqrt(x) + 0.5 * np.abs(x)

    def unsafe_grad(grad_output, x):
        return {"x": grad_output * (0.5 / np.sqrt(x) + 0.5 * np.sign(x))}

    with pytest.raises(gradcli.GradcliError, match="not complex-safe"):
        gradcli.check(forward=unsafe, backward=unsafe_grad, tensors=x, method="complex")


def test_a_wrong_answer_near_the_edge_under_the_complex_step_is_a_mismatch():
    """Its failing coordinate's kink reads (real one-sided steps) left the domain, and a wrong
    answer was refused as bad input, exit 2 (outside test t63b F5): it fails now, exit 1; the
    twin: the right answer passes."""
    x = {"x": np.array([1e-7, 0.5, 2.0])}
    g = np.ones(3)
    right = 0.5 / np.sqrt(x["x"])
    wrong = right.copy()
    wrong[0] = 1500.0
    r = gradcli.check(forward=forward, tensors=x, grad_output=g, grads={"x": wrong},
                      method="complex")  # fmt: skip
    assert not r.passed and not r.results["x"].unresolved, r.verdict()
    assert gradcli.check(forward=forward, tensors=x, grad_output=g, grads={"x": right},
                         method="complex").passed  # fmt: skip


def test_a_sweep_step_leaving_the_domain_reads_nothing(cli, tmp_path, write_spec):
    """--sweep's own step of 0.1 left sqrt's domain at x = 0.05 and ended the run, exit 2
    (outside test t63b F4): that row reads nothing, the curve is the others'."""
    (tmp_path / "mysqrt.py").write_text(
        "import numpy as np\ndef forward(x): return np.sqrt(x)\n"
        "def backward(grad_output, x): return {'x': grad_output * 0.5 / np.sqrt(x)}\n")
    spec = write_spec("layer: custom\ntensors:\n  x: [[0.05, 0.5, 2.0]]\n")
    r = cli("check", "custom", spec, "--impl", tmp_path / "mysqrt.py", "--sweep")
    assert r.exit_code == 0, r.stderr
    assert "no reading" in r.stdout and "at eps 0.1 the steps leave" in r.stderr, r.stderr


def test_a_forward_raising_at_a_step_is_told_the_step_left_its_domain():
    """math.sqrt raising 'math domain error' a step from x = 1e-7 said nothing of the step
    (outside test t63b F10); the twin: what it advises, forward differences, passes."""
    import math as m

    def raising(x):
        return np.array([m.sqrt(v) for v in x])

    x = {"x": np.array([1e-7, 0.5, 2.0])}
    with pytest.raises(UserCodeError, match="a finite-difference step from them left its"):
        gradcli.check(forward=raising, backward=backward, tensors=x)
    assert gradcli.check(forward=raising, backward=backward, tensors=x, method="forward").passed
