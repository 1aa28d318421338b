"""An attention whose softmax rows are saturated to exactly 1, under the complex step.

At X = 10 N(0, 1) a row's top weight is 1 - 1e-35 in theory and exactly 1 in float64, in any
code: dS's row sum loses that share in its last bit, and dW_Q (6e-33) came out -8.5e-34 in
the complex step's reading, which sees it. The built-in backward failed its own check (outside
test t37a F4). Its floor now moves such a weight by one float64 unit.
Twins: a backward without the softmax's row-sum term, and a dX 1% off, still fail there; at a
softmax saturated short of 1 (X = N(0, 1)) a negated dW_Q still fails.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.inputs.spec import load_spec

SPEC = """layer: attention
seed: {seed}
tensors:
  X: {{shape: [5, 8], init: normal, scale: {scale}}}
  W_Q: {{shape: [8, 4], init: normal}}
  W_K: {{shape: [8, 4], init: normal}}
  W_V: {{shape: [8, 3], init: normal}}
"""


def _grads(t: dict, g: np.ndarray, rowsum: bool = True) -> dict:
    """float64 gradients written the textbook way (dS = A * (dA - rowsum(dA * A)))."""
    X, Wq, Wk, Wv = (np.asarray(t[k], dtype=np.float64) for k in ("X", "W_Q", "W_K", "W_V"))
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    S = Q @ K.T / 2.0
    e = np.exp(S - S.max(axis=1, keepdims=True))
    A = e / e.sum(axis=1, keepdims=True)
    dA, dV = g @ V.T, A.T @ g
    dS = A * (dA - (dA * A).sum(axis=1, keepdims=True)) if rowsum else A * dA
    dQ, dK = dS @ K / 2.0, dS.T @ Q / 2.0
    return {"X": dQ @ Wq.T + dK @ Wk.T + dV @ Wv.T, "W_Q": X.T @ dQ, "W_K": X.T @ dK,
            "W_V": X.T @ dV, "A_is_1": bool(((A == 1) & ((A > 0).sum(1) > 1)[:, None]).any())}


def _spec(tmp_path, seed: int, scale: float):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(seed=seed, scale=scale))
    loaded = load_spec("attention", str(path))
    return path, _grads(loaded.tensors, np.asarray(loaded.grad_output)), loaded


@pytest.mark.parametrize("seed", [0, 2, 3, 5])
def test_saturated_rows_pass_under_the_complex_step(tmp_path, seed):
    path, right, loaded = _spec(tmp_path, seed, 10)
    assert right.pop("A_is_1")  # the case: a weight of exactly 1 beside others
    r = gradcli.check_spec(path, method="complex")
    assert r.passed, {n: x.worst[:1] for n, x in r.results.items()}
    r = gradcli.check_spec(path, method="complex", grads=right)
    assert r.passed, {n: x.worst[:1] for n, x in r.results.items()}


@pytest.mark.parametrize("seed", [0, 2, 3, 5])
def test_saturated_rows_still_catch_slips(tmp_path, seed):
    path, right, loaded = _spec(tmp_path, seed, 10)
    bad = _grads(loaded.tensors, np.asarray(loaded.grad_output), rowsum=False)
    bad.pop("A_is_1")
    right.pop("A_is_1")
    r = gradcli.check_spec(path, method="complex", grads=bad)
    assert not r.passed
    dX = right["X"].copy()
    dX[1, 2] *= 1.01
    r = gradcli.check_spec(path, method="complex", grads={**right, "X": dX})
    assert not r.passed and not r.results["X"].passed


@pytest.mark.parametrize("seed", [0, 1])
def test_short_of_one_a_negated_dW_Q_still_fails(tmp_path, seed):
    path, right, _ = _spec(tmp_path, seed, 1)
    assert not right.pop("A_is_1")
    r = gradcli.check_spec(path, method="complex", grads=right)
    assert r.passed, {n: x.worst[:1] for n, x in r.results.items()}
    r = gradcli.check_spec(path, method="complex", grads={**right, "W_Q": -right["W_Q"]})
    assert not r.passed and not r.results["W_Q"].passed
