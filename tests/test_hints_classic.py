"""Classic wrong backward passes written elsewhere (outside testers, as students write them)
that used to get no hint: each is named by its cause in the user's notation, verified by
recomputation, through --impl (CS231n's form) and through answer files; each hint's twin (the
right backward, or another bug of the same layer) does not get it.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.inputs.spec import load_spec


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


# ---------------------------------------------------------------- rnn_step, CS231n's form
def rnn_step_forward(x, prev_h, Wx, Wh, b):
    h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return h, (x, prev_h, Wx, Wh, h)


def _rnn_backward(bug):
    def rnn_step_backward(dnext_h, cache):
        x, prev_h, Wx, Wh, h = cache
        da = {
            "": dnext_h * (1 - h**2),
            "no-dtanh": dnext_h,
            "1-h": dnext_h * (1 - h),
            "at-prev_h": dnext_h * (1 - prev_h**2),
            "at-a": dnext_h * (1 - np.arctanh(h) ** 2),  # at the pre-activation a
        }[bug if bug in ("no-dtanh", "1-h", "at-prev_h", "at-a") else ""]
        dWh = prev_h.T @ da * (1.5 if bug == "dWh-scaled-3/2" else 1.0)
        return da @ Wx.T, da @ Wh.T, x.T @ da, dWh, da.sum(0)

    return rnn_step_backward


def _rnn_tensors():
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal((4, 5)), "prev_h": rng.standard_normal((4, 6)) * 0.5,
            "Wx": rng.standard_normal((5, 6)) * 0.3, "Wh": rng.standard_normal((6, 6)) * 0.3,
            "b": rng.standard_normal(6) * 0.1}  # fmt: skip


def _causes(report, name):
    return [h.cause for h in report.results[name].hints]


@pytest.mark.parametrize(("bug", "cause", "words"), [
    ("no-dtanh", "rnn_step:derivative-missing", "da = dnext_h where da = dnext_h * (1 - next_h^2)"),
    ("1-h", "rnn_step:not-squared", "da = dnext_h * (1 - next_h) where"),
    ("at-prev_h", "rnn_step:derivative-at:prev_h", "taken at prev_h"),
    ("at-a", "rnn_step:derivative-at:a", "da = dnext_h * (1 - a^2) where"),
])  # fmt: skip
def test_rnn_tanh_derivative_slips_are_named_in_every_gradient(bug, cause, words):
    if bug == "no-dtanh":  # through --impl; the others as answers (the same diagnosis, cheaper)
        report = gradcli.check("rnn_step", _rnn_tensors(), forward=rnn_step_forward,
                               backward=_rnn_backward(bug))  # fmt: skip
    else:
        t, g = _rnn_tensors(), np.random.default_rng(2).standard_normal((4, 6))
        dx, dh, dWx, dWh, db = _rnn_backward(bug)(g, rnn_step_forward(**t)[1])
        grads = {"x": dx, "prev_h": dh, "Wx": dWx, "Wh": dWh, "b": db}
        report = gradcli.check("rnn_step", t, grad_output=g, grads=grads)
    for name in ("x", "prev_h", "Wx", "Wh", "b"):
        assert _causes(report, name) == [cause], (name, report.results[name].hints)
        hint = report.results[name].hints[0]
        assert hint.verified and words in hint, hint


def test_rnn_twins_get_no_derivative_hint():
    right = gradcli.check("rnn_step", _rnn_tensors(), forward=rnn_step_forward,
                          backward=_rnn_backward(""))  # fmt: skip
    assert right.passed and not any(r.hints for r in right.results.values())
    # another bug of the same layer (dWh alone off by a factor): no tanh slip is claimed
    other = gradcli.check("rnn_step", _rnn_tensors(), forward=rnn_step_forward,
                          backward=_rnn_backward("dWh-scaled-3/2"))  # fmt: skip
    assert [n for n, r in other.results.items() if not r.passed] == ["Wh"]
    assert not any("derivative" in str(c) for c in _causes(other, "Wh")), other.results["Wh"].hints


def test_rnn_slip_in_an_answer_file_is_named():
    spec = load_spec(None, "specs/rnn_step.yaml")
    t = {n: np.asarray(a, dtype=np.float64) for n, a in spec.tensors.items()}
    g = np.asarray(spec.grad_output, dtype=np.float64)
    dx, dh, dWx, dWh, db = _rnn_backward("1-h")(g, rnn_step_forward(**t)[1])
    report = gradcli.check_spec("specs/rnn_step.yaml",
                                grads={"x": dx, "prev_h": dh, "Wx": dWx, "Wh": dWh, "b": db})
    assert _causes(report, "Wx") == ["rnn_step:not-squared"]


# ---------------------------------------------------------------- lstm_step, CS231n's form
def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f = _sigmoid(a[:, :H]), _sigmoid(a[:, H : 2 * H])
    o, g = _sigmoid(a[:, 2 * H : 3 * H]), np.tanh(a[:, 3 * H :])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def _lstm_backward(bug):
    def lstm_step_backward(dnext_h, dnext_c, cache):
        x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
        tc = np.tanh(next_c)
        dc = dnext_c + dnext_h * o * (1 if bug == "no-dtanh-c" else 1 - tc**2)
        do, di, df, dg = dnext_h * tc, dc * g, dc * prev_c, dc * i
        if bug == "do-no-tanh":  # next_c where tanh(next_c) belongs (outside test t52b F6)
            do = dnext_h * next_c
        if bug == "di<->df":
            di, df = df, di
        if bug == "do<->dg":
            do, dg = dg, do
        blocks = [di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g**2)]
        if bug == "blocks-o<->g":
            blocks[2], blocks[3] = blocks[3], blocks[2]
        if bug == "no-dsigmoid-f":
            blocks[1] = df
        if bug == "dsigmoid-at-a_o":
            a_o = np.log(o / (1 - o))
            blocks[2] = do * a_o * (1 - a_o)
        da = np.hstack(blocks)
        dprev_c = dc * (1 if bug == "dprev_c-no-f" else f)
        return da @ Wx.T, da @ Wh.T, dprev_c, x.T @ da, prev_h.T @ da, da.sum(0)

    return lstm_step_backward


def _lstm_tensors():
    rng = np.random.default_rng(3)
    return {"x": rng.standard_normal((3, 4)), "prev_h": rng.standard_normal((3, 5)) * 0.5,
            "prev_c": rng.standard_normal((3, 5)) * 0.5, "Wx": rng.standard_normal((4, 20)) * 0.3,
            "Wh": rng.standard_normal((5, 20)) * 0.3, "b": rng.standard_normal(20) * 0.1}


@pytest.mark.parametrize(("bug", "cause", "words"), [
    ("di<->df", "lstm_step:gates-swapped:i,f", "di and df exchanged (di = dc * prev_c"),
    ("do<->dg", "lstm_step:gates-swapped:o,g", "do and dg exchanged"),
    ("blocks-o<->g", "lstm_step:blocks-swapped:o,g", "blocks da_o and da_g exchanged"),
    ("no-dtanh-c", "lstm_step:derivative-missing:tanh(next_c)",
     "dc = dnext_c + dnext_h * o where"),
    ("no-dsigmoid-f", "lstm_step:derivative-missing:f", "da_f = df where"),
    ("dsigmoid-at-a_o", "lstm_step:derivative-at:a_o:o", "da_o = do * a_o (1 - a_o) where"),
    ("do-no-tanh", "lstm_step:do-without-tanh", "the o gate's columns"),
])  # fmt: skip
def test_lstm_gate_swaps_and_derivative_slips_are_named(bug, cause, words):
    # as answers (--grads): the same diagnosis as --impl, without the kink search a failing
    # user forward gets (the one --impl case below covers that path)
    t, g = _lstm_tensors(), np.random.default_rng(4).standard_normal((3, 2, 5))
    _, _, cache = lstm_step_forward(**t)
    dx, dh, dc, dWx, dWh, db = _lstm_backward(bug)(g[:, 0], g[:, 1], cache)
    grads = {"x": dx, "prev_h": dh, "prev_c": dc, "Wx": dWx, "Wh": dWh, "b": db}
    report = gradcli.check("lstm_step", t, grad_output=g, grads=grads)
    failing = [n for n, r in report.results.items() if not r.passed]
    assert {"x", "Wx", "b"} <= set(failing)
    for name in failing:
        assert _causes(report, name) == [cause], (name, report.results[name].hints)
        assert words in report.results[name].hints[0]


def test_lstm_swap_through_impl_is_named():
    report = gradcli.check("lstm_step", _lstm_tensors(), forward=lstm_step_forward,
                           backward=_lstm_backward("di<->df"))  # fmt: skip
    assert _causes(report, "Wh") == ["lstm_step:gates-swapped:i,f"]


def test_lstm_twins_get_no_swap_or_slip_hint():
    right = gradcli.check("lstm_step", _lstm_tensors(), forward=lstm_step_forward,
                          backward=_lstm_backward(""))  # fmt: skip
    assert right.passed and not any(r.hints for r in right.results.values())
    other = gradcli.check("lstm_step", _lstm_tensors(), forward=lstm_step_forward,
                          backward=_lstm_backward("dprev_c-no-f"))  # fmt: skip
    assert [n for n, r in other.results.items() if not r.passed] == ["prev_c"]
    # no swap or derivative slip claimed: its own slip alone (t23 F4 named it)
    assert _causes(other, "prev_c") == ["lstm_step:dprev_c-without-f"]


# ---------------------------------------------------------------- generic: masks, sums, pools
def _answers(layer, t, answer, options=None, seed=5):
    """Check ``answer(g, **t)`` (the student's gradients) as answer files; returns the report."""
    from gradcli.layers import REGISTRY

    L = REGISTRY[layer]
    opts = L.make_options(options)
    shapes = {n: a.shape for n, a in t.items()}
    g = np.random.default_rng(seed).standard_normal(L.output_shape(shapes, opts))
    return gradcli.check(layer, t, options=options, grad_output=g,
                         grads=answer(g, **t, **(options or {})))  # fmt: skip


X = np.random.default_rng(6).standard_normal((5, 5))
_DROPPED = np.random.default_rng(0).random((5, 5)) < 0.3  # dropout's mask at p 0.3, seed 0


@pytest.mark.parametrize(("layer", "answer", "tensor", "cause"), [
    ("linear", lambda g, x, W, b: {"x": g @ W, "W": g.T @ x, "b": g.sum(1)}, "b",
     "summed-over:o:not:b0"),
    ("layernorm", lambda g, x, gamma, beta: {"beta": g.sum(1)}, "beta", "summed-over:d:not:b0"),
    ("batchnorm", lambda g, x, gamma, beta: {"beta": g.sum(1)}, "beta", "summed-over:d:not:n"),
])  # fmt: skip
def test_a_sum_over_the_wrong_axis_is_named(layer, answer, tensor, cause):
    rng = np.random.default_rng(7)
    t = {"x": X, "W": rng.standard_normal((5, 5)), "b": rng.standard_normal(5)} if (
        layer == "linear") else {"x": X, "gamma": rng.standard_normal(5),
                                 "beta": rng.standard_normal(5)}  # fmt: skip
    report = _answers(layer, t, answer)
    assert [n for n, r in report.results.items() if not r.passed] == [tensor]
    assert _causes(report, tensor) == [cause]
    assert ".sum(axis=1) where .sum(axis=0) belongs" in report.results[tensor].hints[0]
    # the twin: the right sum, scaled (another bug): no axis is claimed
    twin = _answers(layer, t, lambda g, **kw: {tensor: 2 * g.sum(0)})
    assert not any("summed-over" in str(c) for c in _causes(twin, tensor))


@pytest.mark.parametrize(("layer", "options", "answer", "cause"), [
    ("dropout", {"p": 0.3}, lambda g, x, p, **_: {"x": g / (1 - p)}, "mask-left-out"),
    ("dropout", {"p": 0.3}, lambda g, x, p, **_: {"x": g}, "mask-left-out:unscaled"),
    ("leaky_relu", {}, lambda g, x: {"x": g}, "mask-left-out"),
    ("relu", {}, lambda g, x: {"x": g}, "relu:no-mask"),  # its own variant, said once
    ("dropout", {"p": 0.3}, lambda g, x, p, **_: {"x": g * (_DROPPED / (1 - p))}, "mask-inverted"),
    ("relu", {}, lambda g, x: {"x": g * (x <= 0)}, "relu:mask-inverted"),  # likewise
])  # fmt: skip
def test_a_mask_left_out_is_named(layer, options, answer, cause):
    report = _answers(layer, {"x": X}, answer, options)
    assert _causes(report, "x") == [cause]


def test_a_mask_is_not_claimed_for_another_bug():
    keep = np.random.default_rng(0).random(X.shape) >= 0.3
    # dropout without its 1/(1 - p): the scale is named, not a mask
    report = _answers("dropout", {"x": X}, lambda g, x, p, **_: {"x": g * keep}, {"p": 0.3})
    assert _causes(report, "x") == ["scale:1 - p"]
    # the mask kept but one element wrong: no mask is claimed
    slip = (np.arange(25) == 3).reshape(5, 5)
    report = _answers("dropout", {"x": X}, lambda g, x, p, **_: {"x": g * keep / 0.7 + slip},
                      {"p": 0.3})  # fmt: skip
    assert not any("mask" in str(c) for c in _causes(report, "x"))


POOL = np.random.default_rng(8).standard_normal((2, 4, 4, 2))


def _spread(g, k):
    return np.repeat(np.repeat(g, k, axis=1), k, axis=2)


@pytest.mark.parametrize(("answer", "cause"), [
    (lambda g, X, size: {"X": _spread(g, 2)}, "maxpool:no-argmax"),
    (lambda g, X, size: {"X": _spread(g, 2) / 4}, "maxpool:no-argmax-averaged"),
])  # fmt: skip
def test_a_max_pool_spreading_to_its_whole_window_is_named(answer, cause):
    report = _answers("maxpool2d", {"X": POOL}, answer, {"size": 2})
    assert _causes(report, "X") == [cause]


def test_a_max_pool_routing_to_the_wrong_element_is_not_a_spread():
    def first(g, X, size):  # every window's gradient to its first element: routed, not spread
        dX = np.zeros_like(X)
        dX[:, ::2, ::2] = g
        return {"X": dX}

    report = _answers("maxpool2d", {"X": POOL}, first, {"size": 2})
    assert not any("no-argmax" in str(c) for c in _causes(report, "X"))


def _repeat_trick(g, X, size, stride):
    """CS231n's fast max pool for stride == size, used at another stride: Z and dZ repeated
    by the window, each input routed to window p // size (outside test t54a F6)."""
    Z = np.zeros_like(g)
    for i in range(g.shape[1]):
        for j in range(g.shape[2]):
            rows, cols = slice(i * stride, i * stride + size), slice(j * stride, j * stride + size)
            Z[:, i, j] = X[:, rows, cols].max((1, 2))
    Zu, gu = _spread(Z, size), _spread(g, size)
    h, w = min(X.shape[1], Zu.shape[1]), min(X.shape[2], Zu.shape[2])
    dX = np.zeros_like(X)
    dX[:, :h, :w] = gu[:, :h, :w] * (X[:, :h, :w] == Zu[:, :h, :w])
    return {"X": dX}


@pytest.mark.parametrize(("size", "stride"), [(3, 2), (2, 1), (2, 3)])
def test_a_max_pool_repeating_its_gradient_at_another_stride_is_named(size, stride):
    X9 = np.random.default_rng(5).standard_normal((2, 9, 9, 3))
    report = _answers("maxpool2d", {"X": X9}, _repeat_trick, {"size": size, "stride": stride})
    assert _causes(report, "X") == ["maxpool:repeat"]
    assert f"window p // {size}" in str(report.results["X"].hints[0])


def test_twin_the_repeat_trick_is_right_where_the_windows_step_by_their_size():
    X8 = np.random.default_rng(5).standard_normal((2, 8, 8, 3))
    report = _answers("maxpool2d", {"X": X8}, _repeat_trick, {"size": 2, "stride": 2})
    assert report.passed, report.verdict()


def test_an_average_pool_divided_by_its_side_is_named():
    from gradcli.layers import REGISTRY

    L, opts = REGISTRY["avgpool2d"], {"size": 3, "stride": 1}
    X5 = np.random.default_rng(9).standard_normal((1, 5, 5, 2))

    def by_side(g, X, size, stride):
        o = L.resolve_options(L.make_options(opts), {"X": X.shape})
        return {"X": 3 * L.backward(g, L.forward({"X": X}, o)[1])["X"]}

    report = _answers("avgpool2d", {"X": X5}, by_side, opts)
    assert _causes(report, "X") == ["scale:window/3"]
    assert "divided by 3, one side of the window, where its 9 elements belong" in str(
        report.results["X"].hints[0])


# ---------------------------------------------------------------- one element off, as answers
def _linear_answers(n_in, n_out, rows, slip):
    rng = np.random.default_rng(10)
    t = {"x": rng.standard_normal((rows, n_in)), "W": rng.standard_normal((n_out, n_in)),
         "b": rng.standard_normal(n_out)}  # fmt: skip
    g = rng.standard_normal((rows, n_out))
    grads = {"x": g @ t["W"], "W": g.T @ t["x"], "b": g.sum(0)}
    slip(grads)
    return gradcli.check("linear", t, grad_output=g, grads=grads)


def test_one_element_off_in_an_answer_file_is_named_at_any_size():
    def one(grads):
        grads["W"][3, 7] *= 1.001

    for n_in, n_out, rows in ((8, 5, 4), (400, 300, 2)):  # 120,000 elements of dW
        report = _linear_answers(n_in, n_out, rows, one)
        assert [n for n, r in report.results.items() if not r.passed] == ["W"]
        (hint,) = report.results["W"].hints
        assert hint.verified and hint.cause is None
        assert "wrong at one element only, dW[o=3, i=7] (1.001 x the right value)" in hint, hint


def test_an_element_hint_is_not_claimed_for_a_row_or_a_right_answer():
    def row(grads):
        grads["W"][3] *= 1.001  # a whole row: a slice, not a few elements

    report = _linear_answers(8, 5, 4, row)
    assert not any("element" in h for h in report.results["W"].hints)
    right = _linear_answers(8, 5, 4, lambda grads: None)
    assert right.passed and not any(r.hints for r in right.results.values())


# ---------------------------------------------------------------- without the right backward
def _cs231n_dropout_forward(x, dropout_param):
    """CS231n's dropout: its own mask (p keeps), so gradcli has no backward of its own for it."""
    p = dropout_param["p"]
    np.random.seed(dropout_param.get("seed", 0))
    mask = (np.random.rand(*x.shape) < p) / p
    return x * mask, (dropout_param, mask)


@pytest.mark.parametrize(("backward", "cause"), [
    (lambda dout, cache: dout, "mask-left-out + scale:1 - p"),  # the mask, with its 1/p
    (lambda dout, cache: dout / cache[0]["p"], "mask-left-out"),
    (lambda dout, cache: dout * (cache[1] > 0), "scale:1 - p"),  # the twin: the 1/p alone
])  # fmt: skip
def test_a_mask_left_out_is_named_against_the_numerical_gradient(backward, cause):
    report = gradcli.check("dropout", {"x": X}, options={"p": 0.3},
                           forward=_cs231n_dropout_forward, backward=backward)  # fmt: skip
    assert not report.passed
    assert _causes(report, "x") == [cause], report.results["x"].hints


def test_a_max_pool_padded_with_zeros_is_told_so():
    """Outside test t17 F12: a max-pool padding with 0 instead of -inf was told 'your Z is zero
    at every failing element ...: a missing term'. The twin: padding with -inf agrees."""
    rng = np.random.default_rng(0)
    X = -np.abs(rng.standard_normal((2, 5, 5, 2))) - 0.01  # all negative: 0 beats them all
    options = {"size": 3, "stride": 2, "padding": 1}

    def forward_with(pad_value):
        def forward(X, size=2, stride=None, padding=0):
            s = stride or size
            Xp = np.pad(X, ((0, 0), (padding,) * 2, (padding,) * 2, (0, 0)),
                        constant_values=pad_value)  # fmt: skip
            Ho, Wo = (Xp.shape[1] - size) // s + 1, (Xp.shape[2] - size) // s + 1
            return np.stack([np.stack([Xp[:, i * s:i * s + size, j * s:j * s + size, :]
                                       .max(axis=(1, 2)) for j in range(Wo)], axis=1)
                             for i in range(Ho)], axis=1)  # fmt: skip
        return forward

    def backward(grad_output, X, size=2, stride=None, padding=0):  # the built-in's answer
        return {"X": gradcli.compute("maxpool2d", {"X": X}, options=options,
                                     grad_output=grad_output).gradients["X"]}  # fmt: skip

    zero = gradcli.check("maxpool2d", {"X": X}, options=options, forward=forward_with(0.0),
                         backward=backward)  # fmt: skip
    said = " ".join(str(h) for h in zero.check.forward.hints)
    assert not zero.passed and "padding takes part in the max as 0" in said, said
    right = gradcli.check("maxpool2d", {"X": X}, options=options,
                          forward=forward_with(-np.inf), backward=backward)  # fmt: skip
    assert right.passed


def _staged_batchnorm(slip: str):
    """CS231n's batchnorm_backward written stage by stage, with one classic slip (the oracle:
    the student's own code, not the package's named terms)."""

    def forward(x, gamma, beta):
        mu = x.mean(axis=0)
        return gamma * (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=0) + 1e-5) + beta

    def backward(grad_output, x, gamma, beta):
        N = x.shape[0]
        xc = x - x.mean(axis=0)
        std = np.sqrt((xc**2).mean(axis=0) + 1e-5)
        xhat = xc / std
        dxhat = grad_output * gamma
        dvar = 0.5 * -(dxhat * xc / std**2).sum(axis=0) / std
        dxc = dxhat / std + 2 * xc * dvar / (N - 1 if slip == "unbiased" else N)
        dmu = -dxc.sum(axis=0)
        dx = dxc + (dmu if slip == "sum" else dmu / N)
        if slip == "axis":  # the means of dx over the features: a layernorm's
            dx = (dxhat - dxhat.mean(axis=1, keepdims=True)
                  - xhat * (dxhat * xhat).mean(axis=1, keepdims=True)) / std  # fmt: skip
        return {"x": dx, "gamma": (grad_output * xhat).sum(axis=0),
                "beta": grad_output.sum(axis=0)}  # fmt: skip

    return forward, backward


@pytest.mark.parametrize(("slip", "said"), [
    ("sum", "the mean's path summed, not averaged"),
    ("unbiased", "2 xc / (m - 1) where 2 xc / m belongs"),
    ("axis", "the means of dx taken over the features"),
    ("", None),
])  # fmt: skip
def test_a_staged_batchnorm_backward_slip_is_named(slip, said):
    """Outside test t17 F12: these failed with no hint at all. The twin: no slip passes."""
    rng = np.random.default_rng(1)
    t = {"x": rng.standard_normal((6, 4)), "gamma": rng.standard_normal(4),
         "beta": rng.standard_normal(4)}  # fmt: skip
    forward, backward = _staged_batchnorm(slip)
    report = gradcli.check("batchnorm", t, forward=forward, backward=backward)
    assert report.passed is (said is None)
    if said:
        hints = " ".join(" ".join(str(h).split()) for h in report.check.results["x"].hints)
        assert said in hints, hints
