"""Messages a student met (outside test t38a N5, N7): what they name is what to change.

- np.savez(FILE, dx, dW, db) names its arrays arr_0, arr_1, ...: the refusal says so and how
  to save them by name; a misspelt name keeps its "did you mean".
- a forward dropping the imaginary part of one tensor only (CS231n's conv allocating its
  output with np.result_type(x, w), b left out) names that tensor.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.errors import GradcliError

SPEC = """layer: linear
tensors:
  x: {shape: [3, 4], init: normal}
  W: {shape: [2, 4], init: normal}
  b: {shape: [2], init: normal}
"""


def test_positional_npz_names_say_how_to_name_them(tmp_path, cli):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    np.savez(tmp_path / "g.npz", np.zeros((3, 4)), np.zeros((2, 4)), np.zeros(2))
    r = cli("check", "linear", str(spec), "--grads", str(tmp_path / "g.npz"))
    assert r.exit_code == 2
    assert "np.savez(FILE, x=dx, W=dW, b=db)" in r.stderr, r.stderr
    np.savez(tmp_path / "h.npz", dx=np.zeros((3, 4)), dw=np.zeros((2, 4)), db=np.zeros(2))
    r = cli("check", "linear", str(spec), "--grads", str(tmp_path / "h.npz"))
    assert r.exit_code == 2 and "did you mean 'dW'" in r.stderr and "arr_0" not in r.stderr


def test_a_forward_dropping_one_tensors_imaginary_part_names_it():
    def forward(x, b):
        out = np.zeros(x.shape, dtype=x.dtype)  # b's imaginary part has nowhere to go
        out[...] = x + b
        return out

    def backward(grad_output, x, b):
        return {"x": grad_output, "b": grad_output.sum(0)}

    t = {"x": np.random.default_rng(0).normal(size=(3, 2)), "b": np.ones(2)}
    with pytest.raises(GradcliError, match="when b was complex"):
        gradcli.check(forward=forward, backward=backward, tensors=t, method="complex")
