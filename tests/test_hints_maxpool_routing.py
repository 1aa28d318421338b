"""Two max-pool routing slips a student writes, named by verified hints (outside test t60a
F1): the winner's row and column swapped inside its window (an unravel_index pair mixed up),
and `=` where `+=` belongs. The first read 'dX is wrong only where windows overlap: ... (+=
where = would overwrite)', an unverified guess at a backward that adds right, and the second
had no hint. The answers are loop-by-loop max pools written here (torch's tie rule: the first
maximum in row-major order); the twin: the right loop passes."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

SIZE, STRIDE, PAD = 3, 2, 1


def _pool_backward(X: np.ndarray, dZ: np.ndarray, how: str) -> np.ndarray:
    N, H, W, C = X.shape
    Xp = np.pad(X, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)), constant_values=-np.inf)
    dXp = np.zeros(Xp.shape)
    Ho, Wo = dZ.shape[1:3]
    for b in range(N):
        for i in range(Ho):
            for j in range(Wo):
                for c in range(C):
                    win = Xp[b, i * STRIDE:i * STRIDE + SIZE, j * STRIDE:j * STRIDE + SIZE, c]
                    m, n = np.unravel_index(np.argmax(win), win.shape)
                    if how == "transposed":
                        m, n = n, m
                    at = (b, i * STRIDE + m, j * STRIDE + n, c)
                    if how == "assign":
                        dXp[at] = dZ[b, i, j, c]
                    else:
                        dXp[at] += dZ[b, i, j, c]
    return dXp[:, PAD:PAD + H, PAD:PAD + W, :]


@pytest.mark.parametrize(("how", "cause"), [("right", None), ("transposed", "maxpool:transposed"),
                                            ("assign", "maxpool:overwrite")])
@pytest.mark.parametrize("seed", [1, 2])
def test_routing_slips_are_named(how, cause, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2, 5, 5, 2))
    dZ = rng.normal(size=(2, 3, 3, 2))
    options = {"size": SIZE, "stride": STRIDE, "padding": PAD}
    answer = _pool_backward(X, dZ, how)
    r = gradcli.check("maxpool2d", {"X": X}, options=options, grad_output=dZ,
                      grads={"X": answer})  # fmt: skip
    if cause is None:
        assert r.passed, r.verdict()
        return
    assert not r.passed
    hints = r.results["X"].hints
    assert hints and hints[0].cause == cause and hints[0].verified, hints
    assert not any("where windows overlap" in str(h) for h in hints), hints
