"""Hints an outside tester (t14) found misleading or missing, each fixed as a mechanism: a
gradient wrong only at kinks says so and where its slope lies outside the one-sided ones; a
forward held against ours speaks of outputs, not gradients; a missing term confined to one slice
says where, with no other layer's example. Each hint has a twin that must not get it.
"""

from __future__ import annotations

import numpy as np

import gradcli
from gradcli.layers import REGISTRY


def _causes(report, name):
    return [h.cause for h in report.results[name].hints]


# ---------------------------------------------------------------- H1: relu's slope at x == 0
X_TIES = np.array([[0.0, 1.5, -2.0, 0.0], [0.4, -0.7, 0.0, 0.7]])


def relu_forward(x):
    return np.maximum(0, x), x


def _relu_backward(at_zero, away=1.0):
    def relu_backward(dout, cache):
        x = cache
        return dout * ((x > 0) * away + at_zero * (x == 0))

    return relu_backward


def test_a_slope_outside_the_one_sided_ones_at_a_kink_is_named_there():
    report = gradcli.check("relu", {"x": X_TIES}, forward=relu_forward,
                           backward=_relu_backward(2.0))  # fmt: skip
    (hint,) = report.results["x"].hints
    assert hint.cause == "kink-slope" and hint.verified, hint
    assert "fails only at kinks (x == 0, where relu's slope may be any value in [0, 1])" in hint
    assert "at 3 of them it lies outside the two one-sided slopes" in hint
    assert "output" not in hint  # not "the contributions of output i=0, 2, 3"


def test_a_kink_slope_hint_is_not_claimed_for_another_bug_or_a_valid_slope():
    # a slope 1.5 away from the kink (and a valid 0 at it): the errors are not at kinks
    other = gradcli.check("relu", {"x": X_TIES}, forward=relu_forward,
                          backward=_relu_backward(0.0, away=1.5))  # fmt: skip
    assert not other.passed and "kink-slope" not in _causes(other, "x")
    assert not any("kink" in h for h in other.results["x"].hints)
    right = gradcli.check("relu", {"x": X_TIES}, forward=relu_forward,
                          backward=_relu_backward(0.5))  # fmt: skip
    assert right.passed and not right.results["x"].hints


def test_a_kink_slope_in_an_answer_file_is_named():
    g = np.random.default_rng(1).standard_normal(X_TIES.shape)
    report = gradcli.check("relu", {"x": X_TIES}, grad_output=g,
                           grads={"x": g * ((X_TIES > 0) - 1.0 * (X_TIES == 0))})  # fmt: skip
    assert _causes(report, "x") == ["kink-slope"]


# ---------------------------------------------------------------- H2: a forward's words
X40 = np.random.default_rng(2).standard_normal((4, 10))


def _dropout_forward(keep_as_drop):
    def dropout_forward(x, dropout_param):
        p = dropout_param["p"]
        np.random.seed(dropout_param["seed"])
        if keep_as_drop:  # p read as the drop rate
            mask = (np.random.rand(*x.shape) >= p) / (1 - p)
        else:  # the right mask without its 1/p
            mask = np.random.rand(*x.shape) < p
        return x * mask, mask

    return dropout_forward


def test_a_dropout_reading_p_as_the_drop_rate_is_named_from_its_scale():
    report = gradcli.check("dropout", {"x": X40}, options={"p": 0.3},
                           forward=_dropout_forward(True),
                           backward=lambda dout, cache: dout * cache)  # fmt: skip
    (hint,) = report.forward.hints
    assert "scales them by 1 / 0.3: it keeps with probability 0.3 where 1 - p = 0.7" in hint
    assert "dy" not in hint and "numeric" not in hint


def test_a_forward_held_against_ours_speaks_of_outputs():
    # dropout's twin: the kept elements without their scale keep with 1 - p, no probability
    report = gradcli.check("dropout", {"x": X40}, options={"p": 0.3},
                           forward=_dropout_forward(False),
                           backward=lambda dout, cache: dout * cache)  # fmt: skip
    (hint,) = report.forward.hints
    assert hint.startswith("your y = 0.7 x the built-in y everywhere"), hint
    assert "probability" not in hint
    rng = np.random.default_rng(3)
    t = {"x": rng.standard_normal((3, 4)), "W": rng.standard_normal((2, 4)),
         "b": rng.standard_normal(2)}  # fmt: skip
    report = gradcli.check("linear", t, forward=lambda x, W, b: x[..., ::-1] @ W.T + b,
                           backward=lambda g, x, W, b: {"x": g @ W, "W": g.T @ x,
                                                        "b": g.sum(0)})  # fmt: skip
    assert not report.forward.passed
    assert not any("dz" in h or "numeric" in h for h in report.forward.hints)


# ---------------------------------------------------------------- H4: where a term is missing
def _conv_answers(lose):
    L = REGISTRY["conv2d"]
    rng = np.random.default_rng(4)
    t = {"X": rng.standard_normal((2, 5, 5, 2)), "W": rng.standard_normal((3, 3, 2, 2)),
         "b": rng.standard_normal(2)}  # fmt: skip
    opts = {"stride": 2, "padding": 1}
    o = L.resolve_options(L.make_options(opts), {n: a.shape for n, a in t.items()})
    out, cache = L.forward(t, o)
    g = rng.standard_normal(out.shape)
    grads = {n: np.array(v) for n, v in L.backward(g, cache).items()}
    lose(grads["X"])
    return gradcli.check("conv2d", t, options=opts, grad_output=g, grads=grads)


def test_a_zero_confined_to_one_slice_says_where_and_cites_no_other_layer():
    def last_row(dX):
        dX[:, -1] = 0

    (hint,) = _conv_answers(last_row).results["X"].hints
    assert "dX is zero at every failing element where the numerical gradient is not" in hint
    assert "those are all at i=4, the last along i" in hint and "attention" not in hint


def test_a_scattered_zero_gets_no_place():
    def scattered(dX):
        dX.reshape(-1)[[3, 40, 77, 95]] = 0

    report = _conv_answers(scattered)
    assert not report.passed
    assert not any("those are all" in h or "attention" in h for h in report.results["X"].hints)


# ---------------------------------------------------------------- H3: lstm_step's two results
def _lstm(bug):
    from test_hints_classic import _lstm_tensors, lstm_step_forward

    t, g = _lstm_tensors(), np.random.default_rng(4).standard_normal((3, 2, 5))
    x, prev_h, prev_c, Wx, Wh, i, f, o, gg, next_c = lstm_step_forward(**t)[2]
    dnext_h, dnext_c = g[:, 0], g[:, 1]
    tc = np.tanh(next_c)
    dc = dnext_h * o * (1 - tc**2) + (0 if bug == "no-dnext_c" else dnext_c)
    di, df = dc * gg, dc * prev_c
    if bug == "di<->df":
        di, df = df, di
    blocks = [di * i * (1 - i), df * f * (1 - f), dnext_h * tc * o * (1 - o), dc * i * (1 - gg**2)]
    if bug == "blocks-cycle":  # three blocks written in another order: [da_f, da_o, da_i, da_g]
        blocks = [blocks[1], blocks[2], blocks[0], blocks[3]]
    da = np.hstack(blocks)
    dprev_c = (dnext_c if bug == "dprev_c-from-dnext_c" else dc) * f
    grads = {"x": da @ Wx.T, "prev_h": da @ Wh.T, "prev_c": dprev_c, "Wx": x.T @ da,
             "Wh": prev_h.T @ da, "b": da.sum(0)}  # fmt: skip
    return gradcli.check("lstm_step", t, grad_output=g, grads=grads)


def test_an_lstm_ignoring_dnext_c_is_named_by_it_not_as_a_loop_over_s():
    report = _lstm("no-dnext_c")
    failing = [n for n, r in report.results.items() if not r.passed]
    assert failing == ["x", "prev_h", "prev_c", "Wx", "Wh", "b"]
    for name in failing:
        (hint,) = report.results[name].hints
        assert hint.cause == "upstream-ignored:next_c", hint
        assert "dnext_c, the upstream gradient of next_c (s=1), ignored" in hint
        assert "loop" not in hint and "sum over s" not in hint


def test_a_layer_specific_cause_leads_where_a_generic_one_reproduces_the_same_values():
    # dprev_c = dnext_c * f is dnext_h ignored there as much as dc without its next_h path
    (hint,) = _lstm("dprev_c-from-dnext_c").results["prev_c"].hints
    assert hint.cause == "lstm_step:dc-without-next_h", hint
    # the twin: another slip of the same layer gets no stacked result's name
    other = _lstm("di<->df")
    causes = {str(h.cause) for r in other.results.values() for h in r.hints}
    assert causes == {"lstm_step:gates-swapped:i,f"}, causes


def test_three_lstm_blocks_in_another_order_are_named():
    report = _lstm("blocks-cycle")
    for name in ("x", "Wx", "b"):
        (hint,) = report.results[name].hints
        assert hint.cause == "lstm_step:blocks-permuted:f,o,i,g", hint
        assert "in the order [da_f, da_o, da_i, da_g]" in hint


# ---------------------------------------------------------------- earlier testers' slips
def _rnn(bug):
    rng = np.random.default_rng(5)
    t = {"x": rng.standard_normal((3, 4)), "prev_h": rng.standard_normal((3, 4)) * 0.5,
         "Wx": rng.standard_normal((4, 4)) * 0.4, "Wh": rng.standard_normal((4, 4)) * 0.4,
         "b": rng.standard_normal(4) * 0.1}  # fmt: skip
    g = rng.standard_normal((3, 4))
    h = np.tanh(t["x"] @ t["Wx"] + t["prev_h"] @ t["Wh"] + t["b"])
    da = g * (1 - h**2)
    grads = {"x": da @ (t["Wh"] if bug == "Wh-for-Wx" else t["Wx"]).T, "prev_h": da @ t["Wh"].T,
             "Wx": t["x"].T @ da, "Wh": t["prev_h"].T @ da * (1.5 if bug == "dWh" else 1.0),
             "b": da.sum(0)}  # fmt: skip
    return gradcli.check("rnn_step", t, grad_output=g, grads=grads)


def test_a_tensor_read_where_another_of_its_shape_belongs_is_named():
    report = _rnn("Wh-for-Wx")
    assert [n for n, r in report.results.items() if not r.passed] == ["x"]
    (hint,) = report.results["x"].hints
    # dx = da Wh^T is dprev_h's value too: both said, the code's slip first
    assert hint.cause == "read-for:Wx:Wh or other-tensor:prev_h", hint
    assert hint.startswith("dx is exactly what the backward gives with Wh read where Wx belongs")
    other = _rnn("dWh")  # the twin: another slip of the layer
    assert not any("read-for" in str(h.cause) for h in other.results["Wh"].hints)
    assert _rnn("").passed


def _avgpool(scale):
    L = REGISTRY["avgpool2d"]
    opts = {"size": 3, "stride": 2}
    X = np.random.default_rng(6).standard_normal((1, 7, 7, 2))
    o = L.resolve_options(L.make_options(opts), {"X": X.shape})
    out, cache = L.forward({"X": X}, o)
    g = np.random.default_rng(7).standard_normal(out.shape)
    dX = scale * L.backward(g, cache)["X"]
    return gradcli.check("avgpool2d", {"X": X}, options=opts, grad_output=g, grads={"X": dX})


def test_an_average_pool_divided_by_its_strides_area_is_named():
    (hint,) = _avgpool(9 / 4).results["X"].hints
    assert hint.cause == "scale:window/stride", hint
    assert "divided by 4, the stride's area 2 x 2, where the window's 9 elements belong" in hint
    assert "window/stride" not in str(_avgpool(2.0).results["X"].hints[0].cause)


# ---------------------------------------------------------------- H5: a forward drawn anew
def test_a_forward_that_is_not_deterministic_gets_no_precision_or_footprint_note():
    def dropout_forward(x, dropout_param):  # ignores dropout_param['seed']
        mask = (np.random.rand(*x.shape) < dropout_param["p"]) / dropout_param["p"]
        return x * mask, mask

    report = gradcli.check("dropout", {"x": X40}, options={"p": 0.3}, forward=dropout_forward,
                           backward=lambda dout, cache: dout * cache)  # fmt: skip
    assert not report.passed
    assert any(f.name == "determinism" and not f.passed for f in report.check.contract)
    assert not any("float32" in n or "footprint" in n for n in report.notes), report.notes


def _naive_softmax_loss(guard):
    def softmax_loss(x, y):  # CS231n's common write-up: probabilities first, then -log
        shifted = x - x.max(axis=1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        N = x.shape[0]
        loss = -np.sum(np.log(probs[np.arange(N), y] + guard)) / N
        dx = probs.copy()
        dx[np.arange(N), y] -= 1
        return loss, dx / N

    return softmax_loss


def test_a_float64_forward_within_the_builtins_own_roundoff_agrees():
    # a confident classifier: the loss is 1e-8, both formulas carry eps of probabilities near 1
    rng = np.random.default_rng(8)
    y = rng.integers(0, 5, 6)
    x = rng.normal(size=(6, 5))
    x[np.arange(6), y] += 22.0
    report = gradcli.check("softmax_cross_entropy", {"x": x, "y": y},
                           forward=_naive_softmax_loss(0.0))  # fmt: skip
    assert report.passed, report.notes
    said = [n for n in report.notes if "within the built-in's own round-off" in n]
    assert said and not any("float32" in n for n in report.notes), report.notes
    # the twin: a guarded log is another function, 1e-12 off: beyond any round-off
    guarded = gradcli.check("softmax_cross_entropy", {"x": x, "y": y},
                            forward=_naive_softmax_loss(1e-12))  # fmt: skip
    assert not guarded.check.forward.passed
    assert not any("round-off" in n for n in guarded.notes)


def test_an_lstm_contribution_localized_along_s_is_named_by_its_result():
    from test_hints_classic import _lstm_tensors, lstm_step_forward

    def lstm_step_backward(dnext_h, dnext_c, cache):  # half of dnext_c: no hypothesis has it
        x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
        tc = np.tanh(next_c)
        dc = 0.5 * dnext_c + dnext_h * o * (1 - tc**2)
        do, di, df, dg = dnext_h * tc, dc * g, dc * prev_c, dc * i
        da = np.hstack([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g**2)])
        return da @ Wx.T, da @ Wh.T, dc * f, x.T @ da, prev_h.T @ da, da.sum(0)

    report = gradcli.check("lstm_step", _lstm_tensors(), forward=lstm_step_forward,
                           backward=lstm_step_backward)  # fmt: skip
    (hint,) = report.results["b"].hints
    assert "wrong only for the contributions of output s=1 (next_c), the others are right" in hint


def test_a_dropout_reading_p_as_the_drop_rate_is_named_on_a_large_spec_too():
    """Outside test t20 F4: on 600 elements the count alone decided, and the sentence that
    dropout_param's p is the probability of keeping was missing where the evidence is
    strongest. The twin: the right dropout says nothing of it."""
    x = np.random.default_rng(3).standard_normal((20, 30))
    report = gradcli.check("dropout", {"x": x}, options={"p": 0.3},
                           forward=_dropout_forward(True),
                           backward=lambda dout, cache: dout * cache)  # fmt: skip
    (hint,) = report.forward.hints
    assert "reads dropout_param's p (0.7) as the probability of dropping" in hint, hint

    def right(x, dropout_param):
        p = dropout_param["p"]
        np.random.seed(dropout_param["seed"])
        mask = (np.random.rand(*x.shape) < p) / p
        return x * mask, mask

    ok = gradcli.check("dropout", {"x": x}, options={"p": 0.3}, forward=right,
                       backward=lambda dout, cache: dout * cache)  # fmt: skip
    assert ok.forward.passed and not ok.forward.hints
