"""Messages an outside tester found misleading (t15, MSG1): each says what is the matter."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

X = {"x": np.linspace(-1.0, 1.0, 4)}


def test_a_complex_answer_is_called_complex(cli, tmp_path, assert_usage_error):
    answers = tmp_path / "gc.npz"
    np.savez(answers, dx=np.ones(3) + 0j)
    spec = tmp_path / "s.yaml"
    spec.write_text("tensors:\n  x: [1.0, -2.0, 3.0]\n")
    assert_usage_error(cli("check", "relu", spec, "--grads", answers), "dx: expected real numbers",
                       "complex")  # fmt: skip


def test_a_newline_in_the_users_message_is_shown_escaped():
    def forward(x):
        raise ValueError("first line\nsecond line")

    with pytest.raises(gradcli.GradcliError, match=r"first line\\nsecond line"):
        gradcli.check(forward=forward, backward=lambda g, x: {"x": g}, tensors=X)


def test_a_float16_forward_is_called_float16():
    report = gradcli.check(forward=lambda x: np.tanh(x.astype(np.float16)),
                           backward=lambda g, x: {"x": g * (1 - np.tanh(x) ** 2)}, tensors=X)
    assert any(n.startswith("your forward computes in float16") for n in report.notes)


def test_a_torch_tensor_that_requires_grad_is_read_detached():
    torch = pytest.importorskip("torch")

    def backward(g, x):
        t = torch.tensor(g * np.cos(x), requires_grad=True)
        return {"x": t * 1}  # still in autograd's graph: numpy() refuses it

    report = gradcli.check(forward=lambda x: np.sin(x), backward=backward, tensors=X)
    assert report.passed, report.verdict()
