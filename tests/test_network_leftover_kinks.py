"""A network's end to end samples what --budget leaves unexamined for kinks, as a layer's
automatic check does (outside test t44a F2).

A right CNN of your own layers (relu and a max-pool routing to the first maximum, torch's) on
digits over a zero background, b = 0: every local check passed, nothing mismatched, and end to
end failed as 'not verified at 272 failing coordinates that --budget left unexamined for
kinks', at a budget of 20 and not at 10 or 40 (and, run by run, by the measured call times;
here the model's, at a budget of 4).
The end to end leaves its kinks to the layers' local checks, which read every one; now the
coordinates it leaves unexamined are left out as a sample's. Oracle: the layers' formulas are
torch's rules (relu'(0) = 0, the first maximum); twin: a relu mask at the wrong threshold fails.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


class _Relu:
    def __init__(self, at: float = 0.0):
        self.at = at

    def forward(self, x):
        return np.maximum(x, 0)

    def backward(self, grad_output, x):
        return {"x": grad_output * (x > self.at)}


class _Pool:  # 2x2, to the first maximum of each window
    def forward(self, X, size=2, stride=None, padding=0):
        n, H, W, C = X.shape
        return X.reshape(n, H // 2, 2, W // 2, 2, C).max(axis=(2, 4))

    def backward(self, grad_output, X, size=2, stride=None, padding=0):
        n, H, W, C = X.shape
        win = (X.reshape(n, H // 2, 2, W // 2, 2, C).transpose(0, 1, 3, 5, 2, 4)
               .reshape(n, H // 2, W // 2, C, 4))  # fmt: skip
        d = np.eye(4)[win.argmax(-1)] * grad_output[..., None]
        d = d.reshape(n, H // 2, W // 2, C, 2, 2).transpose(0, 1, 4, 2, 5, 3)
        return {"X": d.reshape(n, H, W, C)}


def _model(relu: _Relu) -> dict:
    rng = np.random.default_rng(0)
    X = np.zeros((4, 10, 10, 1))
    X[:, 3:7, 3:7, 0] = rng.uniform(0.2, 1, (4, 4, 4))
    return {
        "inputs": {"X": X, "y": np.array([1, 3, 0, 2])},
        "network": [
            {"layer": "conv2d", "name": "conv1", "options": {"padding": 1},
             "tensors": {"W": rng.standard_normal((3, 3, 1, 4)) * 0.5, "b": np.zeros(4)}},
            {"layer": "relu", "name": "relu1", "impl": relu},
            {"layer": "maxpool2d", "name": "pool1", "options": {"size": 2}, "impl": _Pool()},
            {"layer": "flatten"},
            {"layer": "linear", "name": "fc",
             "tensors": {"W": rng.standard_normal((5, 100)) * 0.1, "b": np.zeros(5)}},
        ],
        "loss": {"layer": "softmax_cross_entropy", "target": "y"},
    }  # fmt: skip


@pytest.fixture
def modelled(monkeypatch):
    """The cost model's call times, not measured ones: what --budget leaves is then the same on
    every machine."""
    from gradcli.numeric import cost

    monkeypatch.setattr(cost, "user_call_seconds", lambda engine: None)
    monkeypatch.setattr(cost, "user_backward_seconds", lambda engine: None)


def test_a_right_cnn_of_yours_passes_where_the_budget_cuts_the_end_to_end_kinks(modelled):
    r = gradcli.check_network(_model(_Relu()), budget=4.0)
    assert r.passed, r.verdict()
    assert r.check.end_to_end.mode == "sample"


def test_the_twin_a_wrong_relu_mask_fails(modelled):
    # named by relu1's local check, which reads its kinks at any budget: 1 (4 took 7 s to the
    # same verdict; the end to end is sampled at both)
    r = gradcli.check_network(_model(_Relu(0.05)), budget=1.0)
    assert not r.passed and r.first_wrong is not None and r.first_wrong.name == "relu1"
