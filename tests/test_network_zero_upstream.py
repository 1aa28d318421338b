"""A network layer whose upstream gradient in the chain is 0 everywhere (a dead relu or a
dropout keeping nothing above it) is checked locally under one drawn at random, and a layer
whose check compared only zeros is named in the PASS (outside test t21 F6: a custom layer's
wrong backward below a dead relu passed, 'all layers' backwards match locally')."""

from __future__ import annotations

import yaml

_MINE = """
import numpy as np


def forward(x, s):
    return x * s


def backward(grad_output, x, s):
    return {"x": grad_output * s, "s": %s}
"""


def _model(tmp_path, bias, ds):
    (tmp_path / "mine.py").write_text(_MINE % ds)
    model = {
        "seed": 0,
        "inputs": {"X": {"shape": [4, 3]}},
        "network": [
            {"layer": "custom", "name": "mine", "impl": "mine.py",
             "tensors": {"s": {"shape": [3], "init": "normal"}}},
            {"layer": "linear", "name": "fc1", "tensors": {"W": {"shape": [5, 3]},
                                                           "b": [bias] * 5}},
            {"layer": "relu"},
            {"layer": "linear", "name": "fc2", "tensors": {"W": {"shape": [2, 5]}}},
        ],
    }  # fmt: skip
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(model))
    return path


RIGHT = "(grad_output * x).sum(axis=0)"
WRONG = "(grad_output * x)[0] * len(x)"  # example 0 times N


def test_a_wrong_backward_below_a_dead_relu_fails(cli, tmp_path):
    r = cli("check", "net", _model(tmp_path, -100.0, WRONG))
    assert r.exit_code == 1, r.stdout
    assert "'mine'" in r.stdout.splitlines()[-1]
    assert "drawn at random" in r.stderr


def test_the_right_backward_below_a_dead_relu_passes_and_says_so(cli, tmp_path):
    r = cli("check", "net", _model(tmp_path, -100.0, RIGHT))
    assert r.exit_code == 0, r.stdout
    assert "compared only zeros" in r.stdout.splitlines()[-1]


def test_a_live_network_says_nothing_of_zeros(cli, tmp_path):
    r = cli("check", "net", _model(tmp_path, 0.0, RIGHT))
    assert r.exit_code == 0, r.stdout
    assert "zeros" not in r.stdout.splitlines()[-1] and "drawn at random" not in r.stderr
