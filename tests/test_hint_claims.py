"""Outside test t12 (hints): a hint says only what its evidence shows.

Each case plants one bug whose truth is known (the oracle: the planted line), and a twin where
the hint must not fire (a correct backward, or another bug). The claims under test: every hint
is a Hint (README: ``.cause`` and ``.verified``); a 1/N too many on a layer that already means
over N is named as applied twice, not as a mean where the layer sums.
"""

from __future__ import annotations

import numpy as np

import gradcli
from gradcli.checking.compare import TensorResult
from gradcli.checking.hint import Hint
from gradcli.inputs.spec import load_spec


def _right(spec_name: str) -> dict[str, np.ndarray]:
    spec = load_spec(None, f"specs/{spec_name}.yaml")
    cache = spec.layer.forward(dict(spec.tensors), spec.options)[1]
    right = spec.layer.backward(np.asarray(spec.grad_output, dtype=np.float64), cache)
    return {n: np.asarray(g, dtype=np.float64) for n, g in right.items() if n in spec.tensors}


def _hints(spec_name: str, grads: dict[str, np.ndarray], tensor: str) -> str:
    report = gradcli.check_spec(f"specs/{spec_name}.yaml", grads=grads)
    assert not report.passed
    return " ".join(map(str, report.results[tensor].hints))


# ---------------------------------------------------------------- F11: every hint is a Hint
class _Linear:
    def __init__(self, bug: str = "") -> None:
        self.bug = bug

    def forward(self, x, W):
        return x @ W.T

    def backward(self, grad_output, x, W):
        dx, dW = grad_output @ W, grad_output.T @ x
        if self.bug == "column":
            dx[:, 2] *= 1.01  # a pattern hint (one slice): an observation, no cause
        return {"x": dx, "W": dW}


def test_every_hint_has_cause_and_verified():
    rng = np.random.default_rng(0)
    t = {"x": rng.standard_normal((6, 5)), "W": rng.standard_normal((4, 5))}
    hints = gradcli.check(_Linear("column"), t).results["x"].hints
    assert hints and all(isinstance(h, Hint) for h in hints)
    assert hints[0].cause is None and hints[0].verified is False
    # the twin: a correct backward has no hints at all
    assert not gradcli.check(_Linear(), t).results["x"].hints


def test_a_plain_sentence_written_by_any_stage_becomes_a_hint():
    r = TensorResult("x", (2,), 1.0, 1.0, (0,), 0.0, 1.0, False, hints=("said plainly",))
    assert isinstance(r.hints[0], Hint) and r.hints[0].cause is None
    assert r.hints[0] == "said plainly"


# ---------------------------------------------------------------- F7: a 1/N applied twice
def test_dividing_by_n_twice_on_a_mean_loss_is_named_twice():
    grads = _right("softmax_cross_entropy")
    n = grads["x"].shape[0]
    grads["x"] = grads["x"] / n
    text = _hints("softmax_cross_entropy", grads, "x")
    assert "applied twice" in text and "where the layer sums" not in text, text


def test_mse_divided_by_its_whole_mean_again_is_named_twice():
    grads = _right("mse")
    grads["pred"] = grads["pred"] / grads["pred"].size
    text = _hints("mse", grads, "pred")
    assert "applied twice" in text and "where the layer sums" not in text, text


def test_a_mean_left_out_is_still_a_sum_not_twice():
    grads = _right("softmax_cross_entropy")
    grads["x"] = grads["x"] * grads["x"].shape[0]
    text = _hints("softmax_cross_entropy", grads, "x")
    assert "taken as a sum" in text and "twice" not in text, text


def test_a_mean_where_the_layer_sums_keeps_its_words():
    # svm with x (N, C): dividing by C is a mean over c, which the loss sums
    grads = _right("svm")
    grads["x"] = grads["x"] / grads["x"].shape[1]
    text = _hints("svm", grads, "x")
    assert "where the layer sums" in text and "twice" not in text, text
