"""A float32 attention at a saturated softmax: its answers are allowed their real round-off.

The float32 round-off another code may make was modelled by moving every saved array by a
last bit, A's saturated top weight included, which any code computes as exactly 1 (its row's
sum, 1 + 1e-10, rounds to 1). That made dS's row sums a last bit of dA, and dW_Q (2.8e-4 at
most) was allowed 2e-4: answers with dW_Q zeroed or negated passed (outside test t31b F1).
Twins: float32 answers from another code (numpy's float32, torch's formula) pass.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.inputs.spec import load_spec

SPEC = """layer: attention
dtype: float32
seed: {seed}
tensors:
  X: {{shape: [5, 6], init: normal, scale: 3}}
  W_Q: {{shape: [6, 4], init: normal}}
  W_K: {{shape: [6, 4], init: normal}}
  W_V: {{shape: [6, 4], init: normal}}
"""


def _another_code(t: dict, g: np.ndarray) -> dict:
    """float32 gradients as torch computes them (softmax backward y * (dy - sum(dy * y)))."""
    X, Wq, Wk, Wv = (np.asarray(t[k], dtype=np.float32) for k in ("X", "W_Q", "W_K", "W_V"))
    g = g.astype(np.float32)
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    S = Q @ K.T / np.float32(2.0)
    e = np.exp(S - S.max(axis=1, keepdims=True))
    A = e / e.sum(axis=1, keepdims=True)
    dA, dV = g @ V.T, A.T @ g
    dS = A * (dA - (dA * A).sum(axis=1, keepdims=True))
    dQ, dK = dS @ K / np.float32(2.0), dS.T @ Q / np.float32(2.0)
    return {"X": dQ @ Wq.T + dK @ Wk.T + dV @ Wv.T, "W_Q": X.T @ dQ, "W_K": X.T @ dK,
            "W_V": X.T @ dV}


@pytest.mark.parametrize("seed", [6, 1, 2])
def test_saturated_attention_float32_answers(tmp_path, seed):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(seed=seed))
    loaded = load_spec("attention", str(spec))
    right = _another_code(loaded.tensors, np.asarray(loaded.grad_output))
    r = gradcli.check_spec(spec, grads=right)
    assert r.passed, {n: x.worst[:1] for n, x in r.results.items()}
    for name in ("W_Q", "W_K"):
        for wrong in (np.zeros_like(right[name]), -right[name]):
            r = gradcli.check_spec(spec, grads={**right, name: wrong})
            assert not r.passed
            assert not r.results[name].passed
