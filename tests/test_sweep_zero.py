"""`check --sweep` on a gradient that is 0 in theory: a softmax or a layernorm under an upstream
gradient of ones (y.sum(), the classic first test) and a bias before a batchnorm. Its error
was taken relative to its own largest entry, 1e-17 of round-off, so every step read 'off' and
the verdict said "the gradient is off, not the step" of gradcli's own built-in backward, which
the plain check passes (outside test t27 N9). It is relative to the size of the gradient's
terms now, as the check judges it. Twin: a softmax backward without its cross term (the
Jacobian's diagonal alone), under the same ones, is off at every step."""

from __future__ import annotations

import json

import numpy as np
import pytest

DIAGONAL = """
import numpy as np


def forward(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def backward(grad_output, x):
    y = forward(x)
    return {"x": y * (1 - y) * grad_output}
"""


def _spec(tmp_path, layer):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(4, 16)))
    np.save(tmp_path / "g.npy", np.ones((4, 16)))
    extra = "  gamma: gamma.npy\n  beta: beta.npy\n" if layer == "layernorm" else ""
    np.save(tmp_path / "gamma.npy", np.ones(16))
    np.save(tmp_path / "beta.npy", np.zeros(16))
    path = tmp_path / "spec.yaml"
    path.write_text(f"layer: {layer}\ntensors:\n  x: x.npy\n{extra}grad_output: g.npy\n")
    return path


@pytest.mark.parametrize("layer", ["softmax", "layernorm"])
def test_the_sweep_of_a_built_in_under_ones_is_not_off(cli, tmp_path, layer):
    r = cli("check", layer, _spec(tmp_path, layer), "--sweep", "--format", "json")
    doc = json.loads(r.stdout)
    assert (r.exit_code, doc["passed"]) == (0, True), r.stdout
    assert not doc["wrong_at_every_step"], doc["sweep"]
    assert not any(row["regime"] == "off" for row in doc["sweep"]), doc["sweep"]


def test_the_diagonal_alone_is_off_at_every_step(cli, tmp_path):
    (tmp_path / "diag.py").write_text(DIAGONAL)
    r = cli("check", "softmax", _spec(tmp_path, "softmax"), "--impl", tmp_path / "diag.py",
            "--sweep", "--format", "json")  # fmt: skip
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and not doc["passed"], r.stdout
    assert doc["wrong_at_every_step"] == ["x"], doc
