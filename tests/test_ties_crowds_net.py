"""A network's end to end reads its large ties as a single layer does (numeric/crowds.py).

fc1 - relu - fc2 - softmax cross-entropy on a batch with a zero (padding) row and fc1's zero
bias, its hidden units in mirrored pairs (``W1[1] = -W1[0]``, ``W2[:, 1] = -W2[:, 0]``, a CReLU
read back by differences): every unit of the zero row sits at relu's 0, and moving one of its
inputs alone raises one unit of each pair, whose contributions are equal on both sides. So the
row's coordinates read equal one-sided slopes (no kink to accept any value at), and the chained
backward's 0 (relu's 0 at 0, torch's) fails against them: `check net` failed a correct network
"as computed", every layer passing locally.

Oracle: with fc1's bias lowered below the tie (the region where every unit of the row is
inactive, touching the point) the row's gradient is 0 exactly, the chained backward's value: a
piece's gradient. The twin: a relu whose mask is wrong away from the tie (``x > 0.3``) fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradcli.api.network import compute_network

RELU_03 = """import numpy as np
def forward(x):
    return np.maximum(x, 0)
def backward(grad_output, x):
    return {"x": grad_output * (x > THRESHOLD)}
"""


def _model(tmp_path: Path, relu: str = "") -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 3))
    X[1] = 0.0  # a padding row
    W1 = rng.normal(size=(4, 3)) * 0.5
    W1[1::2] = -W1[0::2]
    W2 = rng.normal(size=(3, 4)) * 0.5
    W2[:, 1::2] = -W2[:, 0::2]
    for name, a in {"X": X, "W1": W1, "W2": W2, "b2": rng.normal(size=3) * 0.1}.items():
        np.save(tmp_path / f"{name}.npy", a)
    (tmp_path / "relu03.py").write_text(RELU_03.replace("THRESHOLD", "0.3"))
    (tmp_path / "relu0.py").write_text(RELU_03.replace("THRESHOLD", "0"))
    model = tmp_path / "model.yaml"
    model.write_text(
        "inputs:\n  X: X.npy\n  y: [0, 1, 2, 0]\nnetwork:\n"
        "  - {layer: linear, name: fc1, tensors: {W: W1.npy}}\n"  # b omitted: zeros
        f"  - {{layer: relu, name: act{relu}}}\n"
        "  - {layer: linear, name: fc2, tensors: {W: W2.npy, b: b2.npy}}\n"
        "loss: {layer: softmax_cross_entropy, target: y}\n"
    )
    return model


def _loss(tmp_path: Path, X: np.ndarray, b1: np.ndarray) -> float:
    """The network's loss written by hand."""
    W1, W2, b2 = (np.load(tmp_path / f"{n}.npy") for n in ("W1", "W2", "b2"))
    s = np.maximum(X @ W1.T + b1, 0) @ W2.T + b2
    s = s - s.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(4), [0, 1, 2, 0]].mean())


def test_the_padding_row_is_a_piece_s_gradient_and_no_kink(tmp_path: Path) -> None:
    """The premise, by hand: the row's one-sided slopes agree (no kink) and are not 0; below
    the tie (fc1's bias lowered) the row's gradient is 0, the chained backward's value."""
    comp = compute_network(str(_model(tmp_path)))
    assert np.all(comp.gradients["X"][1] == 0)
    X, h, b1 = np.load(tmp_path / "X.npy"), 1e-6, np.zeros(4)
    for i in range(3):
        up, down = X.copy(), X.copy()
        up[1, i], down[1, i] = h, -h
        right = (_loss(tmp_path, up, b1) - _loss(tmp_path, X, b1)) / h
        left = (_loss(tmp_path, X, b1) - _loss(tmp_path, down, b1)) / h
        assert abs(right - left) < 1e-6 < abs(right), (i, right, left)
        # below the tie: every unit of the row inactive, the row moves nothing
        assert _loss(tmp_path, up, b1 - 1e-3) == _loss(tmp_path, X, b1 - 1e-3)


@pytest.mark.parametrize("relu", ["", ", impl: relu0.py", ", impl: relu03.py"],
                         ids=["torch", "yours-torch", "mask-0.3"])  # fmt: skip
def test_a_network_s_large_tie_is_read_end_to_end(tmp_path: Path, relu: str, cli: Any) -> None:
    """A network of built-in layers: its chained backward at a tie is the layers' own choices
    (CheckOptions.chained_kinks), accepted unread; with your relu (the same numbers) it is
    your code's, and the tie is read: a mix of the pieces."""
    result = cli("check", "net", _model(tmp_path, relu), "--format", "json")
    doc = json.loads(result.stdout)
    e2e = doc["end_to_end"]
    notes = " ".join(e2e["notes"])
    if "relu03" not in relu:
        assert (result.exit_code, doc["passed"]) == (0, True), result.stdout
        mixed = "the gradient is a mix of the gradients of pieces touching the point" in notes
        assert mixed == bool(relu), notes
        assert "as computed" not in notes and e2e["results"]["X"]["passed"]
    else:
        assert (result.exit_code, doc["passed"]) == (1, False), result.stdout
        assert (doc["first_wrong"]["name"], doc["first_wrong"]["tensor"]) == ("act", "x")
        assert not e2e["results"]["X"]["passed"]
