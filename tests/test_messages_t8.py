"""Messages an outside tester found misleading (t8, T12): each names the right culprit."""

from pathlib import Path

import numpy as np
import pytest

import gradcli

FIXTURES = Path(__file__).parent / "fixtures" / "cs231n"


def test_the_forwards_own_dtype_is_the_forwards_contract_not_the_backwards(cli, tmp_path):
    # CS231n's conv_forward_naive allocates its output in float64 whatever x is: so does this
    mine = tmp_path / "mine.py"
    mine.write_text(
        "import numpy as np\n\ndef forward(x, W, b):\n    return (W @ x + b).astype(np.float64)\n"
        "\ndef backward(grad_output, x, W, b):\n"
        "    return {'x': W.T @ grad_output, 'W': np.outer(grad_output, x), 'b': grad_output}\n"
    )
    last = cli("check", "linear", "--impl", mine, "--dtype", "float32").stdout.splitlines()[-1]
    assert "the forward breaks its contract: dtype (z)" in last
    assert "the backward breaks" not in last


def test_a_mean_over_an_axis_the_gradient_keeps_is_not_offered():
    """db[c] divided by 32: a mean over b0, i, j (its outputs per channel); b0, i, c has the
    same size but db keeps c, so that reading is numerology."""
    x = np.random.default_rng(1).normal(size=(2, 5, 5, 3))
    tensors = {"X": x, "W": np.random.default_rng(2).normal(size=(2, 2, 3, 4))}
    right = gradcli.compute("conv2d", tensors).gradients
    grads = {**right, "b": right["b"] / 32.0}  # Z is (2, 4, 4, 4): 32 outputs per channel
    report = gradcli.check("conv2d", tensors, grads=grads)
    hints = " ".join(report.results["b"].hints)
    assert "the number of outputs over b0, i, j" in hints and "c (a mean over" not in hints
    # the twin: dX / 32 keeps b0, i, j: the batch-and-rows reading is not excluded for it
    wrong = gradcli.check("conv2d", tensors, grads={**right, "X": right["X"] / 2.0})
    assert "batch size 2" in " ".join(wrong.results["X"].hints)


def test_init_into_a_device_says_what_it_is_not_to_force_it(cli):
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null")
    for more in ((), ("--force",)):
        result = cli("init", "conv2d", "-o", "/dev/null", *more)
        assert result.exit_code == 2 and "character device" in result.stderr
        assert "--force overwrites" not in result.stderr


def test_a_user_forward_that_is_not_complex_safe_is_yours_not_the_layers():
    x = np.random.default_rng(0).normal(size=(4, 4, 1))

    def forward(X):  # real parts only: the complex step cannot go through it
        return np.maximum(np.real(X[::2, ::2]), np.real(X[1::2, 1::2]))

    def backward(grad_output, X):
        return {"X": np.zeros_like(X)}

    with pytest.raises(gradcli.GradcliError, match="your forward is not complex-safe"):
        gradcli.check("maxpool2d", {"X": x}, forward=forward, backward=backward,
                      method="complex")  # fmt: skip


def test_a_zero_upstream_gradient_names_its_parameter():
    with pytest.raises(gradcli.GradcliError) as e:
        gradcli.check("conv2d", grad_output=np.zeros((3, 3, 3)))
    assert e.value.param == "grad_output"
