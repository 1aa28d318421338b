"""float32 answers are allowed each element's own round-off, not the tensor's largest.

A confident classifier's p - 1 at its labels rounds to 1% in float32 while its other entries
(exp()s) round to 1e-7 of themselves: the tensor-wide allowance (16x the largest round-off)
passed those 12.5% off (t19 F4). Twins: answers from another float32 code (rounding the
forward's saved arrays in another order) pass; the same answers with a bug fail.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def _confident_logits(seed: int, n: int = 8, c: int = 4, margin: float = 15.0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c))
    y = rng.integers(0, c, n)
    x[np.arange(n), y] += margin
    return x.astype(np.float32), y


def _sce_float32_answer(x32: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Another code's float32 dx of the mean cross-entropy: p from log-softmax, then p - 1."""
    m = x32.max(axis=1, keepdims=True)
    logp = x32 - (m + np.log(np.exp(x32 - m).sum(axis=1, keepdims=True)))
    p = np.exp(logp)
    p[np.arange(len(y)), y] -= np.float32(1)
    return (p / np.float32(len(y))).astype(np.float32)


def _truth_sce(x32: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x32.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return p / len(y)


@pytest.mark.parametrize("seed", range(4))
def test_another_float32_code_passes(seed):
    x32, y = _confident_logits(seed)
    answer = _sce_float32_answer(x32, y)
    r = gradcli.check("softmax_cross_entropy", {"x": x32, "y": y}, dtype="float32",
                      grads={"x": answer})
    assert r.passed, r.results["x"]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("factor", [8 / 7, 1.02, 1.002])
def test_small_entries_off_by_a_factor_fail(seed, factor):
    # the classic divide by N - 1 (8/7) and smaller slips on the entries away from the labels,
    # each far above their own float32 round-off (1e-7 of themselves)
    x32, y = _confident_logits(seed)
    answer = _sce_float32_answer(x32, y).astype(np.float64)
    off = np.ones(answer.shape, bool)
    off[np.arange(len(y)), y] = False
    answer[off] *= factor
    r = gradcli.check("softmax_cross_entropy", {"x": x32, "y": y}, dtype="float32",
                      grads={"x": answer.astype(np.float32)})
    assert not r.passed


def test_the_whole_answer_divided_by_n_minus_1_fails():
    # t19 F4 as reported: the float64 truth times 8/7, cast to float32
    x32, y = _confident_logits(0)
    answer = (_truth_sce(x32, y) * 8 / 7).astype(np.float32)
    r = gradcli.check("softmax_cross_entropy", {"x": x32, "y": y}, dtype="float32",
                      grads={"x": answer})
    assert not r.passed
    assert r.results["x"].roundoff_source == "built-in"


def _softmax_float32_answer(x32: np.ndarray, dy32: np.ndarray) -> np.ndarray:
    """Another float32 softmax: y = exp(x - logsumexp(x)) (ours divides by the sum), then the
    same y (dy - sum dy y), whose cancellation at y = 1 - 1e-6 the saved y's rounding decides."""
    m = x32.max(axis=-1, keepdims=True)
    y = np.exp(x32 - (m + np.log(np.exp(x32 - m).sum(axis=-1, keepdims=True))))
    return (y * (dy32 - (dy32 * y).sum(axis=-1, keepdims=True))).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_confident_softmax_from_another_forward(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((16, 10))
    x[:, 0] += 15
    x32 = x.astype(np.float32)
    dy32 = rng.standard_normal((16, 10)).astype(np.float32)
    answer = _softmax_float32_answer(x32, dy32)
    ok = gradcli.check("softmax", {"x": x32}, dtype="float32", grad_output=dy32,
                       grads={"x": answer})
    assert ok.passed, ok.results["x"]
    # twin: 2% off on the unconfident columns, whose entries round to 1e-7 of themselves
    bad = answer.astype(np.float64)
    bad[:, 1:] *= 1.02
    r = gradcli.check("softmax", {"x": x32}, dtype="float32", grad_output=dy32,
                      grads={"x": bad.astype(np.float32)})
    assert not r.passed
