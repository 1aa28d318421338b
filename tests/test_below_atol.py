"""Elements smaller than the atol are judged where the step reads them far more finely.

The atol is a floor for what the step cannot read. A layernorm's dx of 1e-8 beside one of 3e-4
passed zeroed under the atol of 1e-7 (outside test t31b F3), a layer scaled by 1e-10 passed a
1.5% slip on an element below 1/1000 of its largest gradient (t32b F3), and x**4's dx of 4e-9
passed sign-flipped beside one of 4000 (t29b F2). Twins: the right backwards pass, and so do
right answers where the loss rounds at a number far larger than the gradient (a confident
cross-entropy's log-sum-exp of 15: its differences read a class's 1e-8 7e-5 off, the same at
every step on the power-of-two grid).
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

METHODS = ["central", "central4", "forward"]
X = np.array([[0.3456, 0.8216, 0.3304], [-1.3032, 0.9054, 0.4464]])
W = np.array([-0.537, 0.5811, 0.3646])
G = np.array([[0.2941, 0.0284, 0.5467], [-0.7365, -0.1629, -0.4821]])


def _scaled_tanh(scale: float, slip: float = 1.0):
    def forward(x, w):
        return scale * np.tanh(x * w)

    def backward(grad_output, x, w):
        d = grad_output * scale * (1 - np.tanh(x * w) ** 2)
        dx, dw = d * w, (d * x).sum(axis=0)
        dx[0, 1] *= slip
        return {"x": dx, "w": dw}

    return forward, backward


@pytest.mark.parametrize("scale", [1.0, 1e-10])
@pytest.mark.parametrize("method", METHODS)
def test_a_slip_at_any_scale_fails(scale, method):
    forward, backward = _scaled_tanh(scale, 1.015)
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": X, "w": W},
                      grad_output=G, method=method)
    assert not r.passed
    assert r.results["x"].worst_index == (0, 1)
    forward, backward = _scaled_tanh(scale)
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": X, "w": W},
                      grad_output=G, method=method)
    assert r.passed, r.results


@pytest.mark.parametrize("method", METHODS + ["backward"])
@pytest.mark.parametrize("flip", [True, False])
def test_a_small_element_beside_a_large_one(method, flip):
    def forward(x):
        return x**4

    def backward(grad_output, x):
        dx = 4 * x**3 * grad_output
        if flip:
            dx[0] = -dx[0]  # 4e-9 beside 4000
        return {"x": dx}

    r = gradcli.check(forward=forward, backward=backward,
                      tensors={"x": np.array([1e-3, 1.0, 10.0])}, method=method)
    assert r.passed == (not flip)


def _layernorm_tensors(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 5))
    x[:, 2] = [1e4, -9e3, 1.1e4]  # its dx is about 1e-8, the others' 1e-4
    return {"x": x, "gamma": rng.standard_normal(5), "beta": rng.standard_normal(5)}, \
        rng.standard_normal((3, 5))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("method", ["central", "central4"])
def test_layernorm_answer_dropping_a_small_feature_fails(seed, method):
    tensors, g = _layernorm_tensors(seed)
    right = gradcli.check("layernorm", tensors, grad_output=g, method=method)
    assert right.passed
    dx = right.computation.gradients["x"].copy()
    assert np.abs(dx[:, 2]).max() < 1e-7 < np.abs(dx).max()
    grads = {k: v for k, v in right.computation.gradients.items()}
    assert gradcli.check("layernorm", tensors, grad_output=g, method=method,
                         grads=grads).passed
    dx[:, 2] = 0.0
    r = gradcli.check("layernorm", tensors, grad_output=g, method=method,
                      grads={**grads, "x": dx})
    assert not r.passed
    assert r.results["x"].worst_index[1] == 2


@pytest.mark.parametrize("seed", range(4))
def test_confident_cross_entropy_rounding_at_its_log_sum_exp_passes(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, 4))
    y = rng.integers(0, 4, 8)
    x[np.arange(8), y] += 15
    r = gradcli.check("softmax_cross_entropy", {"x": x, "y": y})
    assert r.passed, r.results["x"]
    # another float32 code's answers, in a float32 check
    x32 = x.astype(np.float32)
    m = x32.max(axis=1, keepdims=True)
    p = np.exp(x32 - (m + np.log(np.exp(x32 - m).sum(axis=1, keepdims=True))))
    p[np.arange(8), y] -= np.float32(1)
    answer = (p / np.float32(8)).astype(np.float32)
    r = gradcli.check("softmax_cross_entropy", {"x": x32, "y": y}, dtype="float32",
                      grads={"x": answer})
    assert r.passed, r.results["x"]


def test_a_forward_rounding_at_a_large_intermediate_passes():
    # log(e^15 + e^x) - 15: rounded at 15, its slope e^(x-15) is about 3e-7
    def forward(x):
        return np.log(np.exp(15.0) + np.exp(x)) - 15.0

    def backward(grad_output, x):
        return {"x": grad_output * np.exp(x) / (np.exp(15.0) + np.exp(x))}

    x = np.array([-1.0, 0.0, 0.5, 1.0])
    for method in METHODS:
        assert gradcli.check(forward=forward, backward=backward, tensors={"x": x},
                             method=method).passed


def test_under_a_given_atol_the_atol_decides():
    forward, backward = _scaled_tanh(1e-10, 1.015)
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": X, "w": W},
                      grad_output=G, atol=1e-13)
    assert r.passed


C = np.array([1e-2, 1e-2, 1e-8, 1e-10])


def test_an_element_held_below_the_atol_is_shown_beside_the_tensors_atol(tmp_path):
    """Outside test t35a N1: with one element held to its own round-off, the table's atol
    column, the rule's header and JSON's "atol" read 0 for the whole tensor. They show the
    tensor's atol, and "held_below_atol" counts the element (the heatmap marks it failing)."""
    import json

    from typer.testing import CliRunner

    from gradcli.cli.app import app

    (tmp_path / "spec.yaml").write_text(
        "layer: custom\ntensors:\n  x: [0.3, -1.2, 0.7, 2.5]\ngrad_output: [1.0, -0.5, 0.8, 1.3]\n")
    (tmp_path / "tanhc.py").write_text(
        "import numpy as np\nC = np.array([1e-2, 1e-2, 1e-8, 1e-10])\n"
        "def forward(x):\n    return C * np.tanh(x)\n"
        "def backward(grad_output, x):\n    d = grad_output * C * (1 - np.tanh(x) ** 2)\n"
        "    d[2] *= 1.001\n    return {'x': d}\n")  # fmt: skip
    args = ["check", "custom", str(tmp_path / "spec.yaml"), "--impl", str(tmp_path / "tanhc.py")]
    run = CliRunner().invoke(app, [*args, "--format", "json"])
    assert run.exit_code == 1, run.output
    doc = json.loads(run.stdout)["results"]["x"]
    assert doc["atol"] == 1e-7 and doc["held_below_atol"] == 1 and not doc["passed"]
    text = CliRunner().invoke(app, args, env={"NO_COLOR": "1", "COLUMNS": "80"}).stdout
    assert "pass if |a-n| <= 1e-07" in text and ". . # ." in text, text


def test_the_twin_the_right_backward_holds_nothing():
    def forward(x):
        return C * np.tanh(x)

    def backward(grad_output, x):
        return {"x": grad_output * C * (1 - np.tanh(x) ** 2)}

    r = gradcli.check(forward=forward, backward=backward, tensors={"x": [0.3, -1.2, 0.7, 2.5]},
                      grad_output=np.array([1.0, -0.5, 0.8, 1.3]))  # fmt: skip
    assert r.passed and r.results["x"].held_at == () and r.results["x"].atol == 1e-7
