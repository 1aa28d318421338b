"""Outside test t23 F12/F13: a loss --impl returning per-row losses crashed its own backward
('operands could not be broadcast'); a NaN answer was refined through 20 halvings and its
differences blamed; a custom layer's tensors were called 'weight'; the float32 dtype advice
missed .astype(float) and np.where(x > 0, 1.0, alpha). Twins: the scalar loss, a finite
wrong answer still refined."""

from __future__ import annotations

SVM_ROWS = '''
import numpy as np
def forward(x, y):
    m = np.maximum(0, x - x[np.arange(len(y)), y][:, None] + 1)
    m[np.arange(len(y)), y] = 0
    return m.sum(1) RETURN
def backward(grad_output, x, y):
    m = (x - x[np.arange(len(y)), y][:, None] + 1 > 0).astype(x.dtype)
    m[np.arange(len(y)), y] = 0
    m[np.arange(len(y)), y] = -m.sum(1)
    return {"x": grad_output * m / len(y)}
'''


def test_a_per_row_loss_is_named(cli, tmp_path):
    impl = tmp_path / "svm.py"
    impl.write_text(SVM_ROWS.replace("RETURN", ""))
    result = cli("check", "svm", "--impl", str(impl))
    assert result.exit_code == 2
    assert "your forward returns shape [5], the built-in svm returns []" in result.stderr
    assert "a loss is one number" in result.stderr and "broadcast" not in result.stderr


def test_twin_the_mean_loss_passes(cli, tmp_path):
    impl = tmp_path / "svm.py"
    impl.write_text(SVM_ROWS.replace("RETURN", ".mean()"))
    assert cli("check", "svm", "--impl", str(impl)).exit_code == 0


def _relu(tmp_path, value):
    impl = tmp_path / "relu.py"
    impl.write_text("import numpy as np\ndef forward(x):\n    return np.maximum(x, 0)\n"
                    "def backward(grad_output, x):\n"
                    f"    return {{'x': grad_output * (x > 0) + {value}}}\n")  # fmt: skip
    return impl


def test_a_nan_answer_is_not_refined(cli, tmp_path):
    result = cli("check", "relu", "--impl", str(_relu(tmp_path, "np.nan")))
    assert result.exit_code == 1
    assert "halvings" not in result.stderr + result.stdout


def test_custom_tensors_are_inputs(cli, tmp_path):
    spec = tmp_path / "c.yaml"
    spec.write_text("layer: custom\ntensors:\n  x: {shape: [3, 4]}\n")
    impl = tmp_path / "c.py"
    impl.write_text("import numpy as np\ndef forward(x):\n    return np.tanh(x)\n"
                    "def backward(grad_output, x):\n"
                    "    return {'x': grad_output * (1 - np.tanh(x) ** 2)}\n")  # fmt: skip
    result = cli("compute", "custom", str(spec), "--impl", str(impl), env={"COLUMNS": "200"})
    row = next(line for line in result.stdout.splitlines() if line.startswith("│ x "))
    assert "input" in row and "weight" not in row


def test_float32_dtype_advice_names_the_usual_casts(cli, tmp_path):
    impl = tmp_path / "lrelu.py"
    impl.write_text("import numpy as np\ndef forward(x, alpha=0.01):\n"
                    "    return np.where(x > 0, x, alpha * x)\n"
                    "def backward(grad_output, x, alpha=0.01):\n"
                    "    return {'x': grad_output * np.where(x > 0, 1.0, alpha)}\n")  # fmt: skip
    result = cli("check", "leaky_relu", "--impl", str(impl), "--dtype", "float32",
                 env={"COLUMNS": "400"})  # fmt: skip
    assert result.exit_code == 1
    assert ".astype(float)" in result.stdout and "np.where(x > 0, 1.0, alpha)" in result.stdout


def test_explain_shows_the_options_it_writes_as_letters(cli, tmp_path):
    """t23 F13: alpha 0 was read nowhere in leaky_relu's explain, dropout's p kept its letter."""
    spec = tmp_path / "lr.yaml"
    spec.write_text("layer: leaky_relu\noptions: {alpha: 0}\ntensors:\n  x: {shape: [3]}\n")
    assert "α = 0" in cli("explain", "leaky_relu", str(spec)).stdout
    spec.write_text("layer: dropout\noptions: {p: 0.3, seed: 1}\ntensors:\n  x: {shape: [4]}\n")
    assert "p = 0.3" in cli("explain", "dropout", str(spec)).stdout
