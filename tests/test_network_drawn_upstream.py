"""A custom layer in a network is checked locally under the upstream gradient the chain gives
it, and, where that passes, under one drawn at random too (outside test t26 F1): before a
softmax cross-entropy the upstream rows sum to 0, so a layernorm backward without its mean's
term passed ("all 3 layers' backwards match locally") while wrong for any other upstream.
Oracle: the textbook layernorm backward (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) / std;
the wrong one drops mean(dxhat), which is 0 exactly when the upstream's rows sum to 0."""

from __future__ import annotations

import numpy as np
import yaml

import gradcli

_LN = """
import numpy as np


def forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta


def backward(grad_output, x, gamma, beta, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    r = 1 / np.sqrt(var + eps)
    xhat = (x - mu) * r
    dxhat = grad_output * gamma
    dx = r * (dxhat - MEAN - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    return {"x": dx, "gamma": (grad_output * xhat).sum(0), "beta": grad_output.sum(0)}
"""
RIGHT, WRONG = "dxhat.mean(-1, keepdims=True)", "0"


def _model(tmp_path, mean):
    (tmp_path / "ln.py").write_text(_LN.replace("MEAN", mean))
    model = {
        "seed": 0,
        "inputs": {"X": {"shape": [8, 6]}, "y": {"shape": [8], "init": "labels", "classes": 5}},
        "network": [
            {"layer": "linear", "name": "fc1", "tensors": {"W": {"shape": [5, 6]},
                                                           "b": {"shape": [5]}}},
            {"layer": "custom", "name": "ln", "impl": "ln.py",
             "tensors": {"gamma": {"shape": [5], "init": "ones"},
                         "beta": {"shape": [5], "init": "zeros"}}},
        ],
        "loss": {"layer": "softmax_cross_entropy", "target": "y"},
    }  # fmt: skip
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(model))
    return path


def test_an_upstream_whose_rows_sum_to_0_hides_the_missing_term():
    """The premise, the layer alone: under such an upstream (a softmax cross-entropy's) the
    wrong backward passes, under any other it fails."""
    space = {}
    exec(_LN.replace("MEAN", WRONG), space)  # noqa: S102 - the test's own layer
    rng = np.random.default_rng(0)
    t = {"x": rng.normal(size=(8, 5)), "gamma": np.ones(5), "beta": np.zeros(5)}
    g = rng.normal(size=(8, 5))
    hidden = g - g.mean(-1, keepdims=True)
    for upstream, passed in ((hidden, True), (g, False)):
        r = gradcli.check(forward=space["forward"], backward=space["backward"], tensors=t,
                          grad_output=upstream)  # fmt: skip
        assert r.passed is passed


def test_a_layernorm_without_its_mean_term_fails_in_a_network(cli, tmp_path):
    r = cli("check", "net", _model(tmp_path, WRONG))
    assert r.exit_code == 1, r.stdout
    assert "'ln'" in r.stdout.splitlines()[-1]
    assert "drawn at random" in r.stderr


def test_the_right_layernorm_passes(cli, tmp_path):
    r = cli("check", "net", _model(tmp_path, RIGHT))
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "drawn at random" not in r.stderr
