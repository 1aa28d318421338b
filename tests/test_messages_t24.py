"""Outside test t24's messages: a round-off 1e18 times the gradient read 'not far below' it
(F7); a drawn point's failure in sample mode blamed on the spec's tensors alone, though the
sample had missed the element (F5). Twins: the usual wording where it is true."""

from __future__ import annotations

import numpy as np

from gradcli.checking.soundness import beside


def test_beside_says_how_far_above():
    assert beside(4.4e-11, 1.8e-29) == "2.4e+18 times"
    assert beside(1e-9, 0.0) == "above"
    assert beside(1e-12, 1e-9) == "not far below"  # the usual case: below, but not by enough


def test_a_saturated_softmax_reads_its_round_off_above(cli, tmp_path):
    x = 200 * np.random.default_rng(0).standard_normal((3, 5))
    np.save(tmp_path / "x.npy", x)
    spec = tmp_path / "s.yaml"
    spec.write_text("layer: softmax\ntensors:\n  x: x.npy\n")
    result = cli("check", "softmax", str(spec), "--eps", "6.06e-6", env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert "times the largest numerical gradient" in result.stdout
    assert "not far below" not in result.stdout


def _linear_slip(tmp_path, factor):
    impl = tmp_path / "lin.py"
    impl.write_text(
        "def forward(x, W, b):\n    return x @ W.T + b\n"
        "def backward(grad_output, x, W, b):\n"
        "    dW = grad_output.T @ x\n"
        f"    dW[3, 5] *= {factor}\n"
        "    return {'x': grad_output @ W, 'W': dW, 'b': grad_output.sum(0)}\n")
    spec = tmp_path / "l.yaml"
    spec.write_text("layer: linear\ntensors:\n  x: {shape: [6, 8]}\n  W: {shape: [7, 8]}\n"
                    "  b: {shape: [7]}\n")  # fmt: skip
    return impl, spec


def test_a_sample_takes_the_element_the_drawn_points_named(cli, tmp_path):
    """A sample of 4 missed dW[3, 5] 1e-4 off, and the drawn point's failure said so ("or the
    compared coordinates missed it"); the element where the built-in comparison found it worst
    now joins the sample (outside test t54a F1): it is compared, and named."""
    impl, spec = _linear_slip(tmp_path, 1.0001)
    result = cli("check", "linear", str(spec), "--impl", str(impl), "--mode", "sample",
                 "--samples", "4", env={"COLUMNS": "400"})  # fmt: skip
    assert result.exit_code == 1
    assert "worst dW[o=3, i=5]" in result.stdout, result.stdout
    assert "compared coordinates missed it" not in result.stdout


def test_twin_a_full_check_blames_no_sample(cli, tmp_path):
    impl, spec = _linear_slip(tmp_path, 1.0001)
    result = cli("check", "linear", str(spec), "--impl", str(impl), env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert "compared coordinates missed it" not in result.stdout
