"""The end-to-end check of a network of locally checked layers compares autodiff's chained
value at the composite's ties, no piece's sum (outside test t27 N12: a network with your own
relu, the same numbers as the built-in's, failed end to end once the ties of coordinates that
passed at kinks, and groups that move nothing alone, were held to the pieces: relu(x) -
relu(-x) at 0 has slope 1 each way, the chain rule gives 0). Twin: your relu scaling its
gradient by 1.5 fails there."""

from __future__ import annotations

import numpy as np
import yaml

import gradcli

RELU = """
import numpy as np


def forward(x):
    return np.maximum(x, 0)


def backward(grad_output, x):
    return {"x": grad_output * (x > 0)}
"""


def _model(tmp_path, mine, scale=""):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "X.npy", rng.integers(-1, 2, (1, 5, 5, 2)).astype(float))
    np.save(tmp_path / "W.npy", rng.integers(-1, 2, (2, 2, 2, 3)).astype(float))
    (tmp_path / "myrelu.py").write_text(RELU.replace("(x > 0)", f"(x > 0){scale}"))
    relu = {"layer": "relu", "impl": "myrelu.py"} if mine else {"layer": "relu"}
    model = {
        "seed": 0,
        "inputs": {"X": "X.npy", "y": {"shape": [1], "init": "labels", "classes": 4}},
        "network": [
            {"layer": "conv2d", "name": "c1", "tensors": {"W": "W.npy"}},
            relu,
            {"layer": "maxpool2d", "options": {"size": 2, "stride": 1}},
            {"layer": "flatten"},
            {"layer": "linear", "name": "fc", "tensors": {"W": {"shape": [4, 27]}}},
        ],
        "loss": {"layer": "svm", "target": "y"},
    }  # fmt: skip
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(model))
    return path


def test_a_network_with_your_relu_passes_as_ours_does(tmp_path):
    for mine in (False, True):
        r = gradcli.check_network(_model(tmp_path, mine))
        assert r.passed, (mine, r.table(width=100))


def test_a_wrong_relu_of_yours_fails_there(tmp_path):
    r = gradcli.check_network(_model(tmp_path, True, scale=" * 1.5"))
    assert not r.passed
