"""Outside test t8 (T11), issue 14: a custom layer's labels and indices. A tensor given as
integers (an integer numpy array, an integer .npy, ``init: labels``) keeps its integers and is a
constant, as a built-in layer's index tensors are: never perturbed, no gradient asked, not in
the results. YAML's inline integers stay numbers; a float tensor of whole numbers that the
user's code fails to index with gets a message saying how to give integers. Twins: a wrong
backward of the same loss fails."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gradcli
from gradcli.errors import GradcliError, UserCodeError

RNG = np.random.default_rng(0)
X = RNG.normal(size=(5, 4))
Y = np.array([0, 1, 2, 3, 0])


def softmax_loss(x, y):
    """CS231n's softmax_loss, as in the assignment (y indexes)."""
    shifted = x - x.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = x.shape[0]
    dx = np.exp(logp)
    dx[np.arange(n), y] -= 1
    return -logp[np.arange(n), y].mean(), dx / n


def softmax_loss_bad(x, y):
    loss, dx = softmax_loss(x, y)
    return loss, dx * x.shape[0]  # the classic slip: not divided by N


LOSS = """import numpy as np
def softmax_loss(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = x.shape[0]
    dx = np.exp(logp)
    dx[np.arange(n), y] -= 1
    return -logp[np.arange(n), y].mean(), dx / N
"""

GATHER = """import numpy as np
def forward(W, idx):
    return W[idx]
def backward(grad_output, W, idx):
    dW = np.zeros_like(W)
    ADD
    return RESULT
"""


def _gather(tmp_path, add="np.add.at(dW, idx, grad_output)", result='{"W": dW}'):
    path = tmp_path / f"gather_{abs(hash((add, result)))}.py"
    path.write_text(GATHER.replace("ADD", add).replace("RESULT", result))
    return path


def test_integer_labels_through_the_api_are_constants():
    for dtype in (np.int64, np.uint8):
        report = gradcli.check(forward=softmax_loss, tensors={"x": X, "y": Y.astype(dtype)})
        assert report.passed, str(report)
        assert list(report.results) == ["x"]  # no dy: never perturbed, never asked for
        assert list(json.loads(report.to_json())["results"]) == ["x"]
    bad = gradcli.check(forward=softmax_loss_bad, tensors={"x": X, "y": Y})
    assert not bad.passed and not bad.results["x"].passed


def test_integer_labels_from_a_npy_file_and_init_labels_through_the_cli(tmp_path, cli, cli_json):
    np.save(tmp_path / "y.npy", Y)
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "loss.py").write_text(LOSS.replace("/ N", "/ n"))
    (tmp_path / "loss_bad.py").write_text(LOSS.replace("/ N", "/ 1"))
    spec = tmp_path / "spec.yaml"
    for y in ("{shape: [5], init: labels, classes: 4}", "y.npy"):
        spec.write_text(f"layer: custom\ntensors:\n  x: x.npy\n  y: {y}\n")
        doc = cli_json("check", "custom", spec, "--impl", f"{tmp_path / 'loss.py'}:softmax_loss")
        assert doc["passed"] and list(doc["results"]) == ["x"]
    bad = cli("check", "custom", spec, "--impl", f"{tmp_path / 'loss_bad.py'}:softmax_loss")
    assert bad.exit_code == 1, bad.stderr


def test_an_index_tensor_of_a_custom_layer_in_gradclis_own_form(tmp_path):
    tensors = {"W": RNG.normal(size=(4, 3)), "idx": np.array([0, 2, 2, 1])}
    assert gradcli.check(str(_gather(tmp_path)), tensors).passed
    # twin: a buffered += drops the repeated index's second contribution
    assert not gradcli.check(str(_gather(tmp_path, "dW[idx] += grad_output")), tensors).passed


def test_a_gradient_returned_for_an_integer_tensor_is_refused_not_dropped(tmp_path):
    """An integer array is a constant: a backward that returns its gradient meant it as floats;
    ignoring the gradient would leave it unchecked, so it is refused, saying how to check it."""
    tensors = {"W": RNG.normal(size=(4, 3)), "idx": np.array([0, 2, 2, 1])}
    both = _gather(tmp_path, result='{"W": dW, "idx": np.zeros(idx.shape)}')
    with pytest.raises(UserCodeError, match=r"gradient for idx, which was given as integers.*"
                                             r"give idx as floats"):  # fmt: skip
        gradcli.check(str(both), tensors)
    with pytest.raises(GradcliError, match=r"every tensor was given as integers or booleans \(x\)"):
        gradcli.check(forward=lambda x: x**2, backward=lambda grad_output, x: {"x": 2 * x},
                      tensors={"x": np.array([1, 2, 3])})  # fmt: skip
    # twin: the same values as floats are checked
    assert gradcli.check(forward=lambda x: x**2,
                         backward=lambda grad_output, x: {"x": 2 * x * grad_output},
                         tensors={"x": np.array([1.0, 2.0, 3.0])}).passed  # fmt: skip


def test_yaml_integers_stay_numbers_and_the_index_error_says_how_to_give_integers(tmp_path, cli):
    (tmp_path / "loss.py").write_text(LOSS.replace("/ N", "/ n"))
    spec = tmp_path / "spec.yaml"
    spec.write_text("layer: custom\ntensors:\n  x: {shape: [5, 4]}\n  y: [0, 1, 2, 3, 0]\n")
    result = cli("check", "custom", spec, "--impl", f"{tmp_path / 'loss.py'}:softmax_loss")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and "raised IndexError" in line
    assert "y holds whole numbers given as floats" in line and "an integer .npy" in line
    # twin: no such hint when the float tensor holds no whole numbers (not labels)
    spec.write_text("layer: custom\ntensors:\n  x: {shape: [5, 4]}\n  y: [0.5, 1, 2, 3, 0]\n")
    result = cli("check", "custom", spec, "--impl", f"{tmp_path / 'loss.py'}:softmax_loss")
    assert result.exit_code == 2 and "whole numbers" not in result.stderr


def test_labels_of_a_custom_layer_need_their_classes(tmp_path, cli):
    (tmp_path / "loss.py").write_text(LOSS.replace("/ N", "/ n"))
    spec = tmp_path / "spec.yaml"
    spec.write_text("tensors:\n  x: {shape: [5, 4]}\n  y: {shape: [5], init: labels}\n")
    result = cli("check", "custom", spec, "--impl", f"{tmp_path / 'loss.py'}:softmax_loss")
    assert result.exit_code == 2 and "tensors.y.classes" in result.stderr
    spec.write_text("tensors:\n  x: {shape: [5, 4]}\n  y: {shape: [5], init: labels, classes: 0}\n")
    result = cli("check", "custom", spec, "--impl", f"{tmp_path / 'loss.py'}:softmax_loss")
    assert "tensors.y.classes: expected an integer of at least 1, got 0" in result.stderr


def temporal_softmax_loss(x, y, mask):
    """CS231n's, as in the assignment; the notebook's mask is boolean (captions != NULL)."""
    N, T, V = x.shape
    xf, yf, mf = x.reshape(N * T, V), y.reshape(N * T), mask.reshape(N * T)
    p = np.exp(xf - xf.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.sum(mf * np.log(p[np.arange(N * T), yf])) / N
    dx = p.copy()
    dx[np.arange(N * T), yf] -= 1
    return loss, (dx / N * mf[:, None]).reshape(N, T, V)


def test_a_boolean_mask_is_a_constant_kept_boolean(tmp_path, cli):
    """Outside test t12 (F3): a bool array was refused as 'expected floating-point values',
    and following that made the mask a differentiated tensor."""
    x, y = RNG.normal(size=(2, 3, 4)), RNG.integers(0, 4, (2, 3))
    mask = np.array([[True, False, True], [True, True, False]])
    report = gradcli.check(forward=temporal_softmax_loss, tensors={"x": x, "y": y, "mask": mask})
    assert report.passed and list(report.results) == ["x"], str(report)

    def masked_out(x, y, mask):  # twin: the mask left out of dx
        loss, dx = temporal_softmax_loss(x, y, np.ones_like(mask))
        return temporal_softmax_loss(x, y, mask)[0], dx

    assert not gradcli.check(forward=masked_out, tensors={"x": x, "y": y, "mask": mask}).passed
    # a mask that selects (x[m]): the output's shape is learnt from the mask given, not zeros
    m = np.array([True, False, True, True, False])

    def select_backward(grad_output, x, m):
        dx = np.zeros_like(x)
        dx[m] = 2 * x[m] * grad_output
        return {"x": dx}

    assert gradcli.check(forward=lambda x, m: x[m] ** 2, backward=select_backward,
                         tensors={"x": X, "m": m}).passed  # fmt: skip
    # from a .npy file too; a built-in layer's float tensor still refuses booleans
    np.save(tmp_path / "m.npy", m)
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "sel.py").write_text(
        "def forward(x, m):\n    return x[m] * 3.0\n"
        "def backward(grad_output, x, m):\n    dx = 0 * x\n"
        "    dx[m] = 3 * grad_output\n    return {'x': dx}\n"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text("tensors:\n  x: x.npy\n  m: m.npy\n")
    assert cli("check", "custom", spec, "--impl", tmp_path / "sel.py").exit_code == 0
    spec.write_text("tensors:\n  x: m.npy\n  W: {shape: [3, 4]}\n")
    result = cli("check", "linear", spec)
    assert result.exit_code == 2 and "holds a bool array; expected floating-point" in result.stderr



def test_a_gradient_for_a_boolean_mask_calls_it_a_mask():
    """A bool mask was called 'given as integers ... labels or indices' (outside test t60b
    F3)."""

    def forward(x, m):
        return x * m

    def backward(grad_output, x, m):
        return {"x": grad_output * m, "m": np.zeros(m.shape)}

    t = {"x": np.ones((1, 3)), "m": np.array([[True, False, True]])}
    with pytest.raises(UserCodeError, match=r"gradient for m, which was given as booleans: a "
                                            r"custom layer's boolean tensors are masks"):
        gradcli.check(forward=forward, backward=backward, tensors=t)
