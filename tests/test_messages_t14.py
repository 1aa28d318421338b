"""Gaps an outside tester found (t14, M1-M3, N1, N2): data a layer takes is accepted as data,
and a message says what gradcli did when the user's code and gradcli's choice disagree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import gradcli

MODEL = """inputs:
  X: X.npy
  y: {y}
network:
  - {{layer: linear, name: fc, tensors: {{W: {{shape: [3, 4]}}}}}}
loss: {{layer: {loss}, target: y}}
"""


def _model(tmp_path: Path, y: np.ndarray, loss: str = "softmax_cross_entropy") -> Path:
    np.save(tmp_path / "X.npy", np.random.default_rng(0).standard_normal((6, 4)))
    np.save(tmp_path / "y.npy", y)
    path = tmp_path / "model.yaml"
    path.write_text(MODEL.format(y="y.npy", loss=loss))
    return path


def test_a_model_takes_integer_labels_from_a_file(tmp_path: Path) -> None:
    """N1: "inputs.y: y.npy holds a int64 array; expected floating-point values" for the
    labels file a spec takes; the loss's labels are data, never differentiated."""
    from gradcli.checking.check import CheckOptions
    from gradcli.checking.network import check_network
    from gradcli.inputs.network import build_network

    path = _model(tmp_path, np.array([0, 2, 1, 1, 0, 2]))
    net = build_network(yaml.safe_load(path.read_text()), base=tmp_path, source="model.yaml")
    assert net.net.fixed["y"].tolist() == [0, 2, 1, 1, 0, 2]
    assert check_network(net, CheckOptions(budget=5.0)).passed


@pytest.mark.parametrize(
    ("y", "loss", "said"),
    [  # labels out of range are the loss's to refuse; a bool array is no labels; mse's target
        # is floats, as in a spec
        (np.array([0, 2, 1, 9, 0, 2]), "softmax_cross_entropy", "y[3] = 9 is not a class"),
        (np.ones(6, bool), "softmax_cross_entropy",
         "y.npy holds a bool array; expected integer or floating-point values"),
        (np.ones((6, 3), np.int64), "mse",
         "y.npy holds an int64 array; expected floating-point values"),
    ],
)  # fmt: skip
def test_integers_are_still_refused_where_they_are_not_labels(
    cli: Any, tmp_path: Path, assert_usage_error: Any, y: np.ndarray, loss: str, said: str
) -> None:
    assert_usage_error(cli("compute", "net", _model(tmp_path, y, loss)), "inputs.y", said)


def _l1(pred, target):
    return np.abs(pred - target).mean()


def _l1_backward(grad_output, pred, target):
    return {"pred": grad_output * np.sign(pred - target) / pred.size}


L1 = {"pred": np.linspace(-1.0, 1.0, 6).reshape(2, 3), "target": np.full((2, 3), 0.05)}


def test_a_custom_loss_takes_a_float_target_as_data() -> None:
    """N2: a float target was differentiated, so a loss whose backward rightly returns no
    gradient for it was refused, and the message gave no way to say it is data."""
    with pytest.raises(gradcli.GradcliError, match=r"no gradient for target .*list it in the "
                       r"spec as data: \[target\] \(the API's data=\['target'\]\)"):  # fmt: skip
        gradcli.check(forward=_l1, backward=_l1_backward, tensors=L1)
    report = gradcli.check(forward=_l1, backward=_l1_backward, tensors=L1, data=["target"])
    assert report.passed and list(report.results) == ["pred"], report.verdict()
    # its twin: the data role does not bless a wrong gradient of the other tensors
    wrong = gradcli.check(forward=_l1, backward=lambda g, pred, target: {"pred": g * np.sign(
        pred - target)}, tensors=L1, data=["target"])  # fmt: skip
    assert not wrong.passed
    with pytest.raises(gradcli.GradcliError, match="gradient for target, which the spec lists "
                       "under data:"):  # fmt: skip
        gradcli.check(forward=_l1, backward=lambda g, pred, target: {
            "pred": g * np.sign(pred - target) / pred.size, "target": 0 * target},
            tensors=L1, data=["target"])  # fmt: skip


def test_a_custom_layer_s_data_in_a_spec(cli: Any, tmp_path: Path, assert_usage_error: Any) -> None:
    (tmp_path / "l1.py").write_text(
        "import numpy as np\n"
        "def forward(pred, target):\n    return np.abs(pred - target).mean()\n"
        "def backward(grad_output, pred, target):\n"
        "    return {'pred': grad_output * np.sign(pred - target) / pred.size}\n"
    )
    spec = tmp_path / "s.yaml"
    body = "tensors:\n  pred: {shape: [3, 2]}\n  target: {shape: [3, 2]}\n"
    impl = ("--impl", tmp_path / "l1.py")
    spec.write_text(body + "data: [target]\n")
    result = cli("check", "custom", spec, *impl, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert "dtarget" not in result.stdout
    for data, said in [("[tagret]", "data: 'tagret' is not one of the tensors (pred, target) "
                        "(did you mean 'target'?)"),
                       ("[pred, target]", "every tensor is data"),
                       ("3", "data: expected a list of tensor names")]:  # fmt: skip
        spec.write_text(body + f"data: {data}\n")
        assert_usage_error(cli("check", "custom", spec, *impl), said)
    spec.write_text("tensors:\n  x: [1.0, 2.0]\ndata: [x]\n")
    assert_usage_error(cli("check", "relu", spec), "data: lists a custom layer's tensors")
