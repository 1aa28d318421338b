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


# ---------------------------------------------------------------- F2: one element is no output's
def _rnn_forward(x, prev_h, Wx, Wh, b):
    h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return h, (x, prev_h, Wx, Wh, h)


def _rnn_backward(bug):
    def backward(dnext_h, cache):
        x, prev_h, Wx, Wh, h = cache
        da = dnext_h * (1 - h**2)
        dWh = prev_h.T @ da
        if bug in ("element", "two"):
            dWh[1, 2] *= 1.01  # one element of dWh: every batch row's contribution there is off
        if bug == "two":
            dWh[3, 0] *= 0.9
        if bug == "row":
            dWh += 0.5 * np.outer(prev_h[2], da[2])  # batch row 2's contribution 1.5 x
        return da @ Wx.T, da @ Wh.T, x.T @ da, dWh, da.sum(0)

    return backward


def _rnn_hints(bug: str) -> str:
    rng = np.random.default_rng(1)
    t = {"x": rng.standard_normal((4, 5)), "prev_h": rng.standard_normal((4, 6)) * 0.5,
         "Wx": rng.standard_normal((5, 6)) * 0.3, "Wh": rng.standard_normal((6, 6)) * 0.3,
         "b": rng.standard_normal(6) * 0.1}  # fmt: skip
    report = gradcli.check("rnn_step", t, forward=_rnn_forward, backward=_rnn_backward(bug))
    assert report.passed is (bug == "")
    return " ".join(map(str, report.results["Wh"].hints))


def test_one_wrong_element_is_named_not_the_outputs_that_reach_it():
    text = _rnn_hints("element")
    assert "wrong at one element only, dWh[k=1, j=2] (1.01 x" in text, text
    assert "contributions of output" not in text, text
    text = _rnn_hints("two")
    two = "wrong at 2 elements only, dWh[k=1, j=2] (1.01 x the right value), dWh[k=3, j=0] (0.9 x"
    assert two in text, text
    assert "those elements alone" in text, text


def test_one_outputs_wrong_contribution_is_still_named_as_such():
    # the twin: batch row 2's contribution wrong in every element it reaches, the others right
    text = _rnn_hints("row")
    assert "wrong only for the contributions of output b0=2" in text, text
    assert "element" not in text, text
    assert _rnn_hints("") == ""


def _conv_forward(x, w, b, conv_param):
    s, p = conv_param["stride"], conv_param["pad"]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    F, _, HH, WW = w.shape
    Ho, Wo = 1 + (xp.shape[2] - HH) // s, 1 + (xp.shape[3] - WW) // s
    out = np.zeros((x.shape[0], F, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            win = xp[:, :, i * s : i * s + HH, j * s : j * s + WW]
            out[:, :, i, j] = np.tensordot(win, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, b, conv_param)


def _conv_backward(bug):
    def backward(dout, cache):
        x, w, b, conv_param = cache
        s, p = conv_param["stride"], conv_param["pad"]
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        dxp, dw = np.zeros_like(xp), np.zeros_like(w)
        _, _, HH, WW = w.shape
        Ho, Wo = dout.shape[2:]
        for i in range(Ho):
            for j in range(Wo):
                win = xp[:, :, i * s : i * s + HH, j * s : j * s + WW]
                dw += np.tensordot(dout[:, :, i, j], win, axes=([0], [0]))
                twice = 2 if bug == "last-row" and i == Ho - 1 else 1  # the last row counted twice
                dxp[:, :, i * s : i * s + HH, j * s : j * s + WW] += twice * np.tensordot(
                    dout[:, :, i, j], w, axes=([1], [0]))  # fmt: skip
        dx = dxp[:, :, p:-p, p:-p].copy()
        if bug == "element":
            dx[0, 0, 4, 0] *= 1.5  # input row 4: read by the last window row alone
        return dx, dw, dout.sum(axis=(0, 2, 3))

    return backward


def _conv_hints(bug: str) -> str:
    rng = np.random.default_rng(0)
    # gradcli's layout: X (N, H, W, C), W (kh, kw, C, F); the functions get CS231n's
    t = {"X": rng.standard_normal((1, 5, 5, 1)), "W": rng.standard_normal((3, 3, 1, 2)),
         "b": rng.standard_normal(2)}  # fmt: skip
    report = gradcli.check("conv2d", t, options={"stride": 2, "padding": 1},
                           forward=_conv_forward, backward=_conv_backward(bug))  # fmt: skip
    assert not report.passed
    return " ".join(map(str, report.results["X"].hints))


def test_an_input_element_one_window_reads_is_that_element():
    text = _conv_hints("element")
    assert "dX is wrong at one element only, dX[b0=0, i=4, j=0, d=0] (1.5 x" in text, text
    assert "contributions of output" not in text, text
    # the twin: the last window row's contributions twice, also where an earlier row's meet it
    text = _conv_hints("last-row")
    assert "wrong only for the contributions of output i=2 (the last)" in text, text
    assert "element" not in text, text


# ---------------------------------------------------------------- F12: a sample claims no "only"
def _pattern_hints(fail_at, seen_at, shape=(4, 3, 8)):
    """diagnose.hints on a gradient wrong (x 1.5) at ``fail_at``, compared at ``seen_at`` (the
    numeric side NaN elsewhere, as a sampled check leaves it)."""
    from gradcli.checking import diagnose

    rng = np.random.default_rng(0)
    n = rng.standard_normal(shape) + 3.0
    a = n.copy()
    for k in fail_at:
        a[k] *= 1.5
    seen = np.zeros(shape, dtype=bool)
    for k in seen_at:
        seen[k] = True
    tol = 1e-6 + 1e-4 * np.abs(n)
    fail = seen & (np.abs(a - n) > tol)
    return diagnose.hints("x", a, np.where(seen, n, np.nan), fail, tol, [], {"recomputed": True})


def test_two_sampled_failures_in_one_channel_claim_no_slice():
    # the bug: row 5 of every channel; the sample met it twice, both times in channel 1
    wrong = [(i, c, 5) for i in range(4) for c in range(3)]
    seen = [(0, 1, 5), (2, 1, 5), (1, 0, 2), (3, 2, 6), (0, 0, 0), (2, 2, 3)]
    assert _pattern_hints(wrong, seen) == []


def test_a_full_check_still_names_its_one_slice():
    everywhere = [(i, c, k) for i in range(4) for c in range(3) for k in range(8)]
    hints = _pattern_hints([(i, 1, 5) for i in range(4)], everywhere)
    # all at c=1 and at k=5: the one that chance could not give (8 rows, not 3 channels)
    assert hints == ["dx is wrong only at b2=5 (one slice along that axis)"], hints


def _zeros_at(cells, shape=(5, 10)):
    from gradcli.checking import diagnose

    n = np.random.default_rng(1).standard_normal(shape) + 3.0
    a = n.copy()
    for k in cells:
        a[k] = 0.0
    tol = 1e-6 + 1e-4 * np.abs(n)
    fail = np.abs(a - n) > tol
    return diagnose.hints("x", a, n, fail, tol, ["n", "c"], {"recomputed": True})


def test_two_zeros_in_the_last_row_name_no_loop_bound():
    """t24 F2: a loss zeroing its tiny entries failed 2 elements of its last example, read as
    'all at n=4, the last along n: look at the loop bounds'; 1 row in 5 twice is chance."""
    (hint,) = _zeros_at([(4, 2), (4, 7)])
    assert "is zero at every failing element" in hint
    assert "loop bounds" not in hint and "n=4" not in hint


def test_twin_a_whole_last_row_of_zeros_names_it():
    (hint,) = _zeros_at([(4, c) for c in range(10)])
    assert "all at n=4, the last along n" in hint and "loop bounds" in hint


def test_many_sampled_failures_in_one_slice_say_what_the_sample_shows():
    # every element sampled but channel 2's rows 0-3: far too many failures in c=1 for chance
    seen = [(i, c, k) for i in range(4) for c in range(2) for k in range(8)]
    hints = _pattern_hints([(i, 1, k) for i in range(4) for k in range(8)], seen)
    assert hints == [
        "dx: among the 64 compared elements, the failing ones are all at b1=1 (one slice "
        "along that axis)"
    ], hints


# ---------------------------------------------------------------- F4: a scatter drops repeats
def _embedding_hints(bug: str, idx=((3, 0, 3, 5), (1, 3, 2, 0))) -> list:
    idx = np.array(idx)
    W = np.random.default_rng(0).standard_normal((6, 4))
    repeats = len(np.unique(idx)) < idx.size

    def backward(dout, cache):
        idx = cache  # the indices of the point it runs at (gradcli draws others)
        dW = np.zeros_like(W)
        if bug == "assign":
            dW[idx] = dout  # a repeated row written once
        elif bug == "add":
            dW[idx] += dout  # the same: the fancy += reads, adds, writes back once
        else:
            np.add.at(dW, idx, dout)
            if bug == "double":
                dW *= 2
        return dW

    report = gradcli.check("embedding", {"idx": idx, "W": W},
                           forward=lambda x, W: (W[x], x), backward=backward)  # fmt: skip
    # a scatter dropping repeats fails even where the spec's indices do not repeat: the points
    # gradcli draws repeat one (outside test t26 F6)
    assert report.passed is (bug == ""), (repeats, bug)
    return list(report.results["W"].hints)


def test_a_scatter_that_drops_repeated_indices_is_named():
    for bug in ("assign", "add"):
        (hint,) = _embedding_hints(bug)
        assert hint.cause == "embedding:repeats-dropped" and "np.add.at" in hint, hint


def test_repeats_are_not_named_for_another_bug_or_none():
    (hint,) = _embedding_hints("double")
    assert "repeat" not in hint and hint.cause.startswith("scale:2"), hint
    assert _embedding_hints("") == []
    # no index repeats in the spec: dW[idx] += dout fails at the drawn points (one repeats),
    # and no hint names another bug
    assert _embedding_hints("add", idx=((3, 0, 2), (1, 4, 5))) == []
