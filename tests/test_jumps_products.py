"""A conv of a zero background is no float16 work (outside test t44a F3).

The precision reading (numeric/jumps.py) moves every float tensor along lines and takes
outputs that jump as a lower precision's rounding does, and that no straight pieces meeting at
a kink explain, for a path of that precision. A conv's output is a product of its two moved
tensors, a parabola along such a line; its relu at a zero background with b = 0 is crossed
among the moves, and no straight pieces fit: a right conv-relu of 28x28 digits was read as
float16 work, its steps became 0.099 and no gradient resolved. Now what the joint lines read is
read again along lines moving one tensor at a time, where each output is linear in the move.

Twins: a float16 path beside float64 work (``tanh(x16) @ W + x @ W``) is still found, along the
lines of either tensor."""

from __future__ import annotations

import numpy as np
import pytest

from gradcli.numeric import jumps


def _conv_relu(X, W, b):
    Xp = np.pad(X, [(0, 0), (1, 1), (1, 1), (0, 0)])
    n, H, Wd, _ = X.shape
    cols = np.stack([Xp[:, i:i + H, j:j + Wd, :] for i in range(3) for j in range(3)], axis=3)
    return np.maximum(cols.reshape(n, H, Wd, -1) @ W.reshape(-1, W.shape[-1]) + b, 0)


class _Layer:
    name = "custom"
    broadcasts = False

    def __init__(self, f):
        self.f = f

    def forward(self, t, options):
        return self.f(**t), None


def _digits(seed: int):
    rng = np.random.default_rng(seed)
    X = np.zeros((4, 28, 28, 1))
    for k in range(4):
        r, c = rng.integers(6, 16, 2)
        X[k, r:r + 12, c:c + 6, 0] = rng.uniform(0.01, 1, (12, 6))
    return X, rng.standard_normal((3, 3, 1, 4)) * 0.5


@pytest.mark.parametrize("seed", [0, 5])
def test_a_conv_relu_of_a_zero_background_is_no_lower_precision(seed):
    X, W = _digits(seed)
    layer = _Layer(_conv_relu)
    assert jumps.float16_jumps(layer, {"X": X, "W": W, "b": np.zeros(4)}, None) == 0.0


def test_the_twin_a_float16_path_beside_float64_work_is_found():
    rng = np.random.default_rng(0)
    x, w = rng.uniform(-2, 2, (16, 9)), rng.standard_normal((9, 4))

    def half(x, w):  # (both tensors moved: the product is a parabola along the joint lines)
        return np.tanh(x.astype(np.float16)).astype(np.float64) @ w + x @ w

    assert jumps.float16_jumps(_Layer(half), {"x": x, "w": w}, None) > 0
