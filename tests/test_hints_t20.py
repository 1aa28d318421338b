"""Hints an outside tester (t20) found missing or wrong, each fixed as a mechanism: conv's = where
+= belongs in any loop order (F6), the normalizations' slips shared with groupnorm (F17), a
float32 round-off slip named as such and never localized as a per-output fault (F9), default
specs whose axes differ so a transposed term raises, and a few wrong elements of lstm_step's
gate columns named by their gate (F13). Each hint has a twin that must not get it.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import gradcli
from gradcli.errors import GradcliError
from gradcli.layers import REGISTRY, _conv, _conv_variants
from gradcli.render.values import apart


def _causes(report, name):
    return [h.cause for h in report.results[name].hints]


def _failed(report):
    return [n for n, r in report.results.items() if not r.passed]


# ---------------------------------------------------------------- F6: = where += belongs
GEO = [_conv.Axis(5, 3, 1, 1, 0, 0), _conv.Axis(4, 2, 1, 1, 1, 0)]  # overlapping windows


def _loop_backward(dZ, W, geo, order):
    """A conv backward that writes dXp with = in the loops ``order`` (a permutation of f, the
    windows i, j and the taps m, n), every other index vectorized in the write."""
    padded = dZ.shape[:1] + tuple(g.n + g.lo + g.hi for g in geo) + W.shape[2:3]
    dXp = np.zeros(padded)
    ranges = {"f": range(W.shape[3]), "i": range(geo[0].out), "j": range(geo[1].out),
              "m": range(geo[0].k), "n": range(geo[1].k)}  # fmt: skip
    for values in itertools.product(*(ranges[v] for v in order)):
        at = dict(zip(order, values, strict=True))
        f, i, j, m, n = (at[v] for v in "fijmn")
        p = i * geo[0].s + m * geo[0].d
        q = j * geo[1].s + n * geo[1].d
        dXp[:, p, q, :] = dZ[:, i, j, f][:, None] * W[m, n, :, f]
    return dXp[:, geo[0].lo : geo[0].lo + geo[0].n, geo[1].lo : geo[1].lo + geo[1].n, :]


@pytest.mark.parametrize("order", ["".join(p) for p in itertools.permutations("fijmn")])
def test_every_loop_order_of_an_overwriting_conv_backward_is_a_variant(order):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 5, 4, 2))
    W = rng.standard_normal((3, 2, 2, 3))
    dZ = rng.standard_normal((2, GEO[0].out, GEO[1].out, 3))
    wrong = _loop_backward(dZ, W, GEO, order)
    found = _conv_variants.variants_nd(X, W, dZ, GEO)
    same = [c for c, (_, v) in found.items() if np.allclose(v, wrong, rtol=1e-12, atol=1e-12)]
    assert same and all(c.startswith("overwrite:filters") for c in same), (order, same)


def _cs231n_conv(overwrite):
    """CS231n's conv_backward_naive loop order (for n: for f: for i: for j:), NCHW."""

    def forward(x, w, b, conv_param):
        s, p = conv_param["stride"], conv_param["pad"]
        N, C, H, W = x.shape
        F, _, HH, WW = w.shape
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        Ho, Wo = (H + 2 * p - HH) // s + 1, (W + 2 * p - WW) // s + 1
        out = np.zeros((N, F, Ho, Wo))
        for n in range(N):
            for f in range(F):
                for i in range(Ho):
                    for j in range(Wo):
                        win = xp[n, :, i * s : i * s + HH, j * s : j * s + WW]
                        out[n, f, i, j] = np.sum(win * w[f]) + b[f]
        return out, (x, w, b, conv_param)

    def backward(dout, cache):
        x, w, b, conv_param = cache
        s, p = conv_param["stride"], conv_param["pad"]
        F, _, HH, WW = w.shape
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        dxp, dw = np.zeros_like(xp), np.zeros_like(w)
        for n in range(x.shape[0]):
            for f in range(F):
                for i in range(dout.shape[2]):
                    for j in range(dout.shape[3]):
                        win = (n, slice(None), slice(i * s, i * s + HH), slice(j * s, j * s + WW))
                        dw[f] += xp[win] * dout[n, f, i, j]
                        if overwrite:
                            dxp[win] = w[f] * dout[n, f, i, j]
                        else:
                            dxp[win] += w[f] * dout[n, f, i, j]
        dx = dxp[:, :, p : p + x.shape[2], p : p + x.shape[3]]
        return dx, dw, dout.sum(axis=(0, 2, 3))

    return forward, backward


CONV_T = {"X": (2, 5, 5, 3), "W": (3, 3, 3, 4), "b": (4,)}


def _conv_tensors():
    rng = np.random.default_rng(2)
    return {n: rng.standard_normal(s) for n, s in CONV_T.items()}


def test_cs231n_loop_order_overwrite_is_named_with_the_filter_loop():
    fwd, bwd = _cs231n_conv(True)
    report = gradcli.check("conv2d", _conv_tensors(), options={"padding": 1}, forward=fwd,
                           backward=bwd)  # fmt: skip
    assert _failed(report) == ["X"]
    (hint,) = report.results["X"].hints
    assert hint.cause == "overwrite:filters:windows" and hint.verified, hint
    assert "the last filter's share alone, from the last window over it" in hint


def test_no_overwrite_hint_on_a_correct_conv_or_another_bug():
    fwd, bwd = _cs231n_conv(False)
    right = gradcli.check("conv2d", _conv_tensors(), options={"padding": 1}, forward=fwd,
                           backward=bwd)  # fmt: skip
    assert right.passed and not right.results["X"].hints

    def negated(dout, cache):
        dx, dw, db = bwd(dout, cache)
        return -dx, dw, db

    other = gradcli.check("conv2d", _conv_tensors(), options={"padding": 1}, forward=fwd,
                          backward=negated)  # fmt: skip
    assert _failed(other) == ["X"]
    assert not any("overwrite" in str(c) for c in _causes(other, "X"))


def test_windows_that_do_not_overlap_leave_only_the_filter_loop():
    # stride 3 over a 3-wide kernel: no element is written twice by windows, so the only
    # overwrite that changes anything is the filters' (dx keeps the last filter alone)
    geo = [_conv.Axis(6, 3, 3, 1, 0, 0)] * 2
    rng = np.random.default_rng(1)
    X, W = rng.standard_normal((1, 6, 6, 2)), rng.standard_normal((3, 3, 2, 3))
    dZ = rng.standard_normal((1, 2, 2, 3))
    found = _conv_variants.variants_nd(X, W, dZ, geo)
    assert [c for c in found if c.startswith("overwrite")] == ["overwrite:windows",
                                                               "overwrite:filters:windows"]
    assert np.allclose(found["overwrite:windows"][1], _conv.backward(
        dZ, _conv.forward(X, W, np.zeros(3), geo)[1])["X"])  # the right one: never matched


# ---------------------------------------------------------------- F17: groupnorm's slips
def _gn(mistake):
    from bugcorpus.library import make_groupnorm

    return make_groupnorm(mistake)


GN_T = {"X": (2, 3, 4, 6), "gamma": (6,), "beta": (6,)}


def _gn_tensors():
    rng = np.random.default_rng(4)
    return {n: rng.standard_normal(s) for n, s in GN_T.items()}


@pytest.mark.parametrize("dtype", ["float64", "float32"])  # float32: outside retest t22 N12
@pytest.mark.parametrize(("mistake", "cause", "words"), [
    ("no_mean_term", "norm:no-mean-term", "without the mean term of dX"),
    ("constants", "norm:statistics-constant", "mean and the variance treated as constants"),
])  # fmt: skip
def test_groupnorm_gets_the_normalizations_slips(mistake, cause, words, dtype):
    fwd, bwd = _gn(mistake)
    report = gradcli.check("groupnorm", _gn_tensors(), options={"groups": 3}, forward=fwd,
                           backward=bwd, dtype=dtype)  # fmt: skip
    assert _failed(report) == ["X"]
    (hint,) = report.results["X"].hints
    assert hint.cause == cause and words in hint and "per example and group" in hint, hint


def test_groupnorm_slips_are_not_named_on_a_right_backward_or_another_bug():
    fwd, bwd = _gn("")
    right = gradcli.check("groupnorm", _gn_tensors(), options={"groups": 3}, forward=fwd,
                           backward=bwd)  # fmt: skip
    assert right.passed

    def halved(grad_output, X, gamma, beta, groups=2, eps=1e-5, spatial=2):
        out = bwd(grad_output, X, gamma, beta, groups, eps, spatial)
        return {**out, "X": out["X"] * 0.5}

    other = gradcli.check("groupnorm", _gn_tensors(), options={"groups": 3}, forward=fwd,
                          backward=halved)  # fmt: skip
    assert _failed(other) == ["X"]
    assert not any(str(c).startswith("norm:") for c in _causes(other, "X"))


def test_groupnorm_variants_follow_its_spatial_axes():
    rng = np.random.default_rng(5)
    t = {"X": rng.standard_normal((3, 7, 4)), "gamma": rng.standard_normal(4),
         "beta": rng.standard_normal(4)}  # fmt: skip
    layer = REGISTRY["groupnorm"]
    options = layer.options(groups=2, spatial=1)
    g = rng.standard_normal((3, 7, 4))
    found = layer.variants(t, options, g)
    right = layer.backward(g, layer.forward(t, options)[1])["X"]
    # with both terms put back, the constants variant is the right gradient again
    no_mean = found["norm:no-mean-term"][1]["X"]
    no_var = found["norm:no-variance-term"][1]["X"]
    const = found["norm:statistics-constant"][1]["X"]
    assert np.allclose(no_mean + no_var - const, right)
    assert "norm:other-axes" not in found


# ---------------------------------------------------------------- F9: float32 round-off
def _bn(cast):
    def forward(x, gamma, beta):
        mu, var = x.mean(axis=0), x.var(axis=0)
        return gamma * (x - mu) / np.sqrt(var + 1e-5) + beta

    def backward(grad_output, x, gamma, beta):
        mu, std = x.mean(axis=0), np.sqrt(x.var(axis=0) + 1e-5)
        xhat, N = (x - mu) / std, x.shape[0]
        dxhat = grad_output * gamma
        dx = (N * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0)) / (N * std)
        terms = grad_output * xhat
        if cast == "float32":  # one reduction computed in float32
            dgamma = terms.astype(np.float32).sum(axis=0).astype(np.float64)
        else:
            dgamma = terms.sum(axis=0) * cast
        return {"x": dx, "gamma": dgamma, "beta": grad_output.sum(axis=0)}

    return forward, backward


def _bn_tensors():
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((256, 8)) * 3, "gamma": rng.standard_normal(8),
            "beta": rng.standard_normal(8)}  # fmt: skip


def test_a_float32_reduction_is_named_as_precision_not_localized():
    fwd, bwd = _bn("float32")
    report = gradcli.check("batchnorm", _bn_tensors(), forward=fwd, backward=bwd)
    assert "gamma" in _failed(report)
    hints = report.results["gamma"].hints
    assert [h.cause for h in hints] == ["precision:float32"], hints
    assert "right to float32's precision only" in hints[0] and "contributions" not in hints[0]
    (lin,) = [f for f in report.check.contract if f.name == "linearity" and f.tensor == "gamma"]
    assert "float32" in lin.detail and "a nonlinear function" not in lin.detail


def test_a_float32_answer_file_is_named_by_its_float32_numbers():
    fwd, bwd = _bn("float32")
    t = _bn_tensors()
    g = np.random.default_rng(7).standard_normal((256, 8))
    report = gradcli.check("batchnorm", t, grad_output=g, grads=bwd(g, **t))
    if report.passed:
        pytest.skip("this draw's float32 sum stays within the tolerance")
    (hint,) = report.results["gamma"].hints
    assert hint.cause == "precision:float32" and "is a float32 number" in hint, hint


def test_no_precision_hint_on_a_right_backward_or_a_small_float64_slip():
    fwd, bwd = _bn(1.0)
    assert gradcli.check("batchnorm", _bn_tensors(), forward=fwd, backward=bwd).passed
    # 2e-6 too large everywhere: as small as float32's round-off, but linear and in float64
    fwd, bwd = _bn(1 + 2e-6)
    report = gradcli.check("batchnorm", _bn_tensors(), forward=fwd, backward=bwd)
    assert _failed(report) == ["gamma"]
    assert not any("float32" in h for h in report.results["gamma"].hints)
    assert not any("float32" in f.detail for f in report.check.contract)


def test_two_numbers_that_differ_read_apart():
    assert apart(1.1193821, 1.1193843) == ("1.119382", "1.119384")
    assert apart(0.5, 0.25) == ("0.5", "0.25")
    assert apart(2.0, 2.0) == ("2", "2")


def test_the_backward_line_shows_the_difference(cli, tmp_path):
    fwd, bwd = _bn("float32")
    impl = tmp_path / "bn.py"
    impl.write_text(
        "import numpy as np\n"
        "def forward(x, gamma, beta):\n"
        "    mu, var = x.mean(axis=0), x.var(axis=0)\n"
        "    return gamma * (x - mu) / np.sqrt(var + 1e-5) + beta\n"
        "def backward(grad_output, x, gamma, beta):\n"
        "    mu, std = x.mean(axis=0), np.sqrt(x.var(axis=0) + 1e-5)\n"
        "    xhat, N = (x - mu) / std, x.shape[0]\n"
        "    dxhat = grad_output * gamma\n"
        "    dx = (N * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0)) / (N * std)\n"
        "    dgamma = (grad_output * xhat).astype(np.float32).sum(axis=0).astype(np.float64)\n"
        "    return {'x': dx, 'gamma': dgamma, 'beta': grad_output.sum(axis=0)}\n"
    )
    spec = tmp_path / "bn.yaml"
    spec.write_text("layer: batchnorm\ntensors:\n  x: {shape: [256, 8], scale: 3}\n"
                    "  gamma: {shape: [8]}\n  beta: {shape: [8]}\n")  # fmt: skip
    result = cli("check", "batchnorm", str(spec), "--impl", str(impl), env={"COLUMNS": "400"})
    assert result.exit_code == 1
    line = next(x for x in result.stdout.splitlines() if "yours" in x and "ours" in x)
    mine = line.split("yours ")[1].split(",")[0]
    ours = line.split(", ours ")[1].split(";")[0]
    assert mine != ours, line


# ---------------------------------------------------------------- F13: default specs
SAME = {("kh", "kw"), ("H", "H")}  # a square kernel, Wh (H, 4H)'s and rnn's Wh (H, H)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_default_specs_give_each_axis_of_a_tensor_its_own_size(name):
    layer = REGISTRY[name]
    shapes = dict(layer.default_shapes)
    options = layer.options()
    tensors, output = layer.layout(shapes, options) if layer.layout else (
        layer.tensors, layer.output)  # fmt: skip
    out = tuple(layer.output_shape(shapes, options))
    for info, shape in [*((t, shapes[t.name]) for t in tensors if t.name in shapes),
                        (output, out)]:  # fmt: skip
        axes = [f"batch{k}" for k in range(len(shape) - len(info.axes))] + list(info.axes)
        for (a, m), (b, n) in itertools.combinations(zip(axes, shape, strict=True), 2):
            if m == n and m > 1:
                assert (a, b) in SAME, f"{name}: {info.name} {shape}: {a} and {b} are both {m}"


def test_a_transposed_gate_term_raises_on_lstm_steps_default_spec():
    from test_hints_classic import lstm_step_forward

    def lstm_step_backward(dnext_h, dnext_c, cache):  # t20's di = dc * g.T
        x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
        tc = np.tanh(next_c)
        dc = dnext_c + dnext_h * o * (1 - tc**2)
        do, di, df, dg = dnext_h * tc, dc * g.T, dc * prev_c, dc * i
        da = np.hstack([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g**2)])
        return da @ Wx.T, da @ Wh.T, dc * f, x.T @ da, prev_h.T @ da, da.sum(0)

    with pytest.raises(GradcliError):
        gradcli.check("lstm_step", forward=lstm_step_forward, backward=lstm_step_backward)


def _lstm_answers(change):
    layer = REGISTRY["lstm_step"]
    rng = np.random.default_rng(3)
    t = {n: rng.standard_normal(s) * 0.5 for n, s in layer.default_shapes.items()}
    g = rng.standard_normal(layer.output_shape(layer.default_shapes, None))
    grads = {n: np.array(v) for n, v in layer.backward(g, layer.forward(t, None)[1]).items()}
    change(grads)
    return gradcli.check("lstm_step", t, grad_output=g, grads=grads)


def test_a_few_wrong_elements_in_one_gate_block_are_named_by_the_gate():
    def one(grads):
        grads["b"][6] *= 1.5  # H = 5: j = 6 is in the f gate's block (5 ... 9)

    report = _lstm_answers(one)
    assert _failed(report) == ["b"]
    (hint,) = report.results["b"].hints
    assert "db[j=6] (1.5 x the right value)" in hint
    assert "the f gate's block of db (j = 5 to 9, da_f's columns)" in hint, hint


def test_wrong_elements_in_two_gate_blocks_or_another_layer_name_no_gate():
    def two(grads):
        grads["b"][1] *= 1.5
        grads["b"][6] *= 1.5

    report = _lstm_answers(two)
    (hint,) = report.results["b"].hints
    assert "2 elements only" in hint and "gate" not in hint, hint
    rng = np.random.default_rng(0)
    t = {"x": rng.standard_normal((3, 4)), "W": rng.standard_normal((5, 4)),
         "b": rng.standard_normal(5)}  # fmt: skip
    g = rng.standard_normal((3, 5))
    db = g.sum(axis=0)
    db[1] *= 1.5
    report = gradcli.check("linear", t, grad_output=g,
                           grads={"x": g @ t["W"], "W": g.T @ t["x"], "b": db})  # fmt: skip
    (hint,) = report.results["b"].hints
    assert "db[o=1]" in hint and "block" not in hint, hint

