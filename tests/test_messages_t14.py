"""Gaps an outside tester found (t14, M1-M3, N1, N2): data a layer takes is accepted as data,
and a message says what gradcli did when the user's code and gradcli's choice disagree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

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
