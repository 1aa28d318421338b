"""Issue 4's layer options (stride, padding, dilation, channels, causal, heads, W_O) against the
loop references in reference.py: an option grid per layer, batches, output shapes, invalid
options, and twins showing the comparison catches injected bugs. Tests named ``*seed*`` need
only the seed layers (no options)."""

import itertools
import math
import pathlib
import sys

import numpy as np
import pytest

from gradcli.errors import GradcliError, OptionError, ShapeError
from gradcli.layers import REGISTRY

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import reference as ref  # noqa: E402

RTOL = 1e-12
INPUTS = ("x", "X")


def assert_close(actual, expected, what=""):
    """Same shape, allclose at rtol 1e-12 with an absolute floor of 1e-12 * max|expected|."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def options(layer, raw, shapes):
    opts = layer.make_options(raw)
    if not raw and not hasattr(layer, "resolve_options"):  # the seed layers: nothing to resolve
        return opts
    return layer.resolve_options(opts, shapes)


def tensors(shapes, rng_seed=0, batch=()):
    rng = np.random.default_rng(rng_seed)
    return {k: rng.standard_normal((*batch, *s) if k in INPUTS else s) for k, s in shapes.items()}


def check_against_reference(name, shapes, raw, rng_seed=0):
    """The layer's forward and every tensor gradient equal the loop reference's."""
    layer, (ref_forward, ref_backward) = REGISTRY[name], ref.OPTION_REFERENCES[name]
    t = tensors(shapes, rng_seed)
    out, cache = layer.forward(t, options(layer, raw, shapes))
    expected = ref_forward(t, **raw)
    assert_close(out, expected, f"{name} {raw}: forward")
    dout = np.random.default_rng(rng_seed + 100).standard_normal(expected.shape)
    grads = layer.backward(dout, cache)
    for key, g in ref_backward(dout, t, **raw).items():
        assert_close(grads[key], g, f"{name} {raw}: d{key}")


def formula(n, k, s=1, p=0, d=1):
    if p == "same":
        return n
    return math.floor((n + 2 * (0 if p == "valid" else p) - d * (k - 1) - 1) / s) + 1


def pair(v, a):
    return v[a] if isinstance(v, list) else v


def expected_shape(name, shapes, raw):
    """The output shape from the issue's formula, per axis."""
    s, p, d = raw.get("stride", 1), raw.get("padding", 0), raw.get("dilation", 1)
    if name == "conv1d":
        x, w = shapes["x"], shapes["w"]
        return (formula(x[0], w[0], s, p, d), *w[2:])
    X, W = shapes["X"], shapes["W"]
    sizes = [formula(X[a], W[a], pair(s, a), pair(p, a), pair(d, a)) for a in (0, 1)]
    return (*sizes, W[3])


# ----------------------------------------------------------------------------- grids
CONV_GRID = [
    {"stride": s, "padding": p, "dilation": d}
    for s, p, d in itertools.product((1, 2, 3), (0, 1, 2, "valid", "same"), (1, 2))
    if p != "same" or s == 1
]
CONV_SHAPES = {
    "conv1d": {
        "n7k3": {"x": (7,), "w": (3,), "b": ()},
        "n5k2": {"x": (5,), "w": (2,), "b": ()},  # stride 3 > k; even k: "same" is lopsided
        "n4k4": {"x": (4,), "w": (4,), "b": ()},  # kernel = input size
        "ch-n7k3": {"x": (7, 2), "w": (3, 2, 3), "b": (3,)},
        "ch-n5k2": {"x": (5, 3), "w": (2, 3, 1), "b": (1,)},
        "ch-n4k4": {"x": (4, 1), "w": (4, 1, 2), "b": (2,)},
    },
    "conv2d": {
        "5x6k3x2": {"X": (5, 6, 2), "W": (3, 2, 2, 3), "b": (3,)},  # non-square kernel
        "4x5k2x1": {"X": (4, 5, 1), "W": (2, 1, 1, 2), "b": (2,)},  # stride 3 > kernel
        "4x4k4x4": {"X": (4, 4, 2), "W": (4, 4, 2, 1), "b": (1,)},  # kernel = input size
    },
}
PAIR_GRID = [
    {"stride": [1, 2], "padding": [2, 0], "dilation": [1, 2]},
    {"stride": [2, 1], "padding": [0, 1], "dilation": [2, 1]},
    {"stride": [1, 2]},
    {"padding": [2, 0]},
    {"dilation": [1, 2]},
    {"padding": "same", "dilation": [1, 2]},
    {"stride": [1, 3], "padding": 1, "dilation": 2},
    {"stride": 2, "padding": [1, 2]},
]


def _conv_cases():
    for name, by_shape in CONV_SHAPES.items():
        grid = CONV_GRID + (PAIR_GRID if name == "conv2d" else [])
        for (sid, shapes), raw in itertools.product(by_shape.items(), grid):
            ok = min(expected_shape(name, shapes, raw)) >= 1
            rid = "-".join(f"{k[0]}{v}" for k, v in raw.items()).replace(" ", "")
            yield pytest.param(name, shapes, raw, ok, id=f"{name}-{sid}-{rid}")


CONV_CASES = list(_conv_cases())

ATT_SHAPES = {
    "T4": ({"X": (4, 3), "W_Q": (3, 4), "W_K": (3, 4), "W_V": (3, 2)}, (2, 3)),
    "T1": ({"X": (1, 3), "W_Q": (3, 2), "W_K": (3, 2), "W_V": (3, 4)}, (4, 2)),
    "T5": ({"X": (5, 2), "W_Q": (2, 6), "W_K": (2, 6), "W_V": (2, 4)}, (4, 5)),
}
ATT_CASES = [
    pytest.param(
        {**shapes, **({"W_O": wo} if with_wo else {})},
        {"causal": causal, "heads": heads},
        id=f"{sid}-causal{int(causal)}-heads{heads}-WO{int(with_wo)}",
    )
    for (sid, (shapes, wo)), causal, heads, with_wo in itertools.product(
        ATT_SHAPES.items(), (False, True), (1, 2), (False, True)
    )
]


@pytest.mark.parametrize("name, shapes, raw, ok", CONV_CASES)
def test_conv_option_grid(name, shapes, raw, ok):
    """output_shape follows the formula (a ShapeError where it is not positive); forward and
    backward equal the loop reference's."""
    layer = REGISTRY[name]
    opts = options(layer, raw, shapes)
    if not ok:
        with pytest.raises(ShapeError):
            layer.output_shape(shapes, opts)
        return
    assert tuple(layer.output_shape(shapes, opts)) == expected_shape(name, shapes, raw)
    check_against_reference(name, shapes, raw)  # the forward's shape is the reference's


@pytest.mark.parametrize("shapes, raw", ATT_CASES)
def test_attention_option_grid(shapes, raw):
    layer = REGISTRY["attention"]
    d_out = shapes["W_O"][1] if "W_O" in shapes else shapes["W_V"][1]
    opts = options(layer, raw, shapes)
    assert tuple(layer.output_shape(shapes, opts)) == (shapes["X"][0], d_out)
    check_against_reference("attention", shapes, raw)


@pytest.mark.parametrize("sid", list(ATT_SHAPES))
def test_attention_one_head_equals_default_exactly(sid):
    layer, shapes = REGISTRY["attention"], ATT_SHAPES[sid][0]
    t = tensors(shapes)
    plain, _ = layer.forward(t, options(layer, {}, shapes))
    one_head, _ = layer.forward(t, options(layer, {"heads": 1, "causal": False}, shapes))
    assert np.array_equal(plain, one_head)


BATCH_CASES = [
    ("conv1d", {"x": (7,), "w": (3,), "b": ()}, {"stride": 2, "padding": 1, "dilation": 2}),
    ("conv1d", {"x": (7, 2), "w": (3, 2, 3), "b": (3,)}, {"padding": "same", "dilation": 2}),
    ("conv1d", {"x": (8, 2), "w": (2, 2, 1), "b": (1,)}, {"stride": 3, "padding": 2}),
    ("conv2d", {"X": (5, 6, 2), "W": (3, 2, 2, 3), "b": (3,)}, PAIR_GRID[0]),
    ("conv2d", {"X": (5, 4, 1), "W": (2, 2, 1, 2), "b": (2,)}, {"stride": 2, "padding": 1}),
    ("attention", {**ATT_SHAPES["T4"][0], "W_O": (2, 3)}, {"causal": True, "heads": 2}),
    ("attention", ATT_SHAPES["T5"][0], {"causal": False, "heads": 2}),
]


@pytest.mark.parametrize("name, shapes, raw", BATCH_CASES)
def test_batched_equals_per_example(name, shapes, raw):
    layer, (ref_forward, ref_backward) = REGISTRY[name], ref.OPTION_REFERENCES[name]
    t = tensors(shapes, 3, batch=(2,))
    xname = next(k for k in t if k in INPUTS)
    out, cache = layer.forward(t, options(layer, raw, shapes))
    dout = np.random.default_rng(4).standard_normal(out.shape)
    grads = layer.backward(dout, cache)
    per = []
    for e in range(2):
        one = {**t, xname: t[xname][e]}
        assert_close(out[e], ref_forward(one, **raw), f"{name} {raw}: forward, example {e}")
        per.append(ref_backward(dout[e], one, **raw))
        assert_close(grads[xname][e], per[e][xname], f"{name} {raw}: d{xname}, example {e}")
    for key in per[0]:
        if key != xname:
            assert_close(grads[key], per[0][key] + per[1][key], f"{name} {raw}: d{key} summed")


# ----------------------------------------------------------------------------- errors
BAD = {"stride": (0, 1.5, "2", True), "padding": (-1, "bogus", 1.5), "dilation": (0, "2", True)}
INVALID = [  # (layer, options, what the message must name)
    *((n, {k: v}, k) for n in ("conv1d", "conv2d") for k, vs in BAD.items() for v in vs),
    *(("attention", {"heads": v}, "heads") for v in (0, -2, 1.5, "2", True)),
    ("conv2d", {"stride": [1, 0]}, "stride"),
    ("conv2d", {"stride": [1, 2, 3]}, "stride"),
    ("conv2d", {"padding": [0, -1]}, "padding"),
    ("conv2d", {"dilation": [0, 1]}, "dilation"),
    ("conv1d", {"padding": "same", "stride": 2}, "same"),
    ("conv2d", {"padding": "same", "stride": [1, 2]}, "same"),
    ("attention", {"causal": "yes"}, "causal"),
    ("conv2d", {"strides": 2}, "strides"),
    ("attention", {"mask": True}, "mask"),
    ("linear", {"stride": 1}, "stride"),
    ("linear", {"heads": 1}, "heads"),
]


@pytest.mark.parametrize("name, raw, needle", INVALID, ids=[f"{n}-{r}" for n, r, _ in INVALID])
def test_invalid_option_is_an_option_error_naming_it(name, raw, needle):
    layer = REGISTRY[name]
    shapes = dict(layer.default_shapes)
    with pytest.raises(OptionError) as err:
        layer.output_shape(shapes, options(layer, raw, shapes))
    assert needle in str(err.value), str(err.value)


HEADS_NOT_DIVIDING = [
    ({"X": (4, 3), "W_Q": (3, 4), "W_K": (3, 4), "W_V": (3, 6)}, 3),  # 3 does not divide d_k=4
    ({"X": (4, 3), "W_Q": (3, 4), "W_K": (3, 4), "W_V": (3, 3)}, 2),  # 2 does not divide d_v=3
]


@pytest.mark.parametrize("shapes, heads", HEADS_NOT_DIVIDING)
def test_heads_not_dividing_is_an_error_naming_heads(shapes, heads):
    layer = REGISTRY["attention"]
    with pytest.raises(GradcliError) as err:
        layer.output_shape(shapes, options(layer, {"heads": heads}, shapes))
    assert isinstance(err.value, (OptionError, ShapeError))
    assert "heads" in str(err.value), str(err.value)


NON_POSITIVE = [  # (layer, shapes, options, numbers the message must show)
    ("conv1d", {"x": (6,), "w": (4,), "b": ()}, {"padding": 1, "dilation": 3}, ("6", "4", "-1")),
    ("conv1d", {"x": (6, 2), "w": (7, 2, 1), "b": (1,)}, {}, ("6", "7", "0")),
    ("conv2d", {"X": (4, 9, 1), "W": (2, 5, 1, 1), "b": (1,)}, {"dilation": [1, 3]}, ("9", "-3")),
]


@pytest.mark.parametrize("name, shapes, raw, numbers", NON_POSITIVE)
def test_non_positive_output_is_a_shape_error_with_the_numbers(name, shapes, raw, numbers):
    layer = REGISTRY[name]
    with pytest.raises(ShapeError) as err:
        layer.output_shape(shapes, options(layer, raw, shapes))
    for number in numbers:
        assert number in str(err.value), (number, str(err.value))


# ----------------------------------------------------------------------------- causal mask
@pytest.mark.parametrize("heads", [1, 2])
def test_causal_mask_shows_in_the_cache(heads):
    layer, shapes = REGISTRY["attention"], ATT_SHAPES["T5"][0]
    t = tensors(shapes, 5)
    _, cache = layer.forward(t, options(layer, {"causal": True, "heads": heads}, shapes))
    A, S, T = np.asarray(cache["A"]), np.asarray(cache["S"]), shapes["X"][0]
    above = np.triu(np.ones((T, T), dtype=bool), 1)
    assert A.shape[-2:] == S.shape[-2:] == (T, T)
    assert np.all(A[..., above] == 0.0), "A is not exactly 0 above the diagonal"
    assert np.all(np.isneginf(S[..., above])), "S is not -inf above the diagonal"
    assert np.all(np.isfinite(S[..., ~above]))
    assert_close(A.sum(axis=-1), np.ones(A.shape[:-1]), "rows of A sum to 1")
    it = ref.attention_intermediates_opts(*(t[k] for k in shapes), causal=True, heads=heads)
    if heads == 1:
        assert_close(A.reshape(T, T), it["A"][0], "A")


# ----------------------------------------------------------------------------- twins
def test_twin_padding_border_off_by_one_is_caught():
    rng = np.random.default_rng(8)
    x, w, b = rng.standard_normal(7), rng.standard_normal(3), np.asarray(0.3)
    good = ref.conv1d_forward_opts(x, w, b, padding=2)
    shifted = np.concatenate([np.zeros(3), x, np.zeros(1)])  # padded input shifted by one
    assert_close(ref.conv1d_forward_opts(np.pad(x, 2), w, b), good, "explicit padding")
    with pytest.raises(AssertionError):
        assert_close(ref.conv1d_forward_opts(shifted, w, b), good, "border off by one")
    dz = rng.standard_normal(good.shape)
    dxp = ref.conv1d_backward_opts(dz, np.pad(x, 2), w, b)["x"]
    good_dx = ref.conv1d_backward_opts(dz, x, w, b, padding=2)["x"]
    assert_close(dxp[2:9], good_dx, "dx = dxp cropped")
    with pytest.raises(AssertionError):
        assert_close(dxp[1:8], good_dx, "crop off by one")
    X, W2, b2 = rng.standard_normal((4, 5, 2)), rng.standard_normal((3, 2, 2, 2)), np.ones(2)
    good2 = ref.conv2d_forward_opts(X, W2, b2, padding=[1, 2])
    Xs = np.pad(X, ((2, 0), (2, 2), (0, 0)))  # top border one row too thick, bottom one thin
    with pytest.raises(AssertionError):
        assert_close(ref.conv2d_forward_opts(Xs, W2, b2), good2, "top border off by one")


def _attention_twin(t, heads, bug):
    """Causal attention with the mask applied wrongly: "after" zeroes A after an unmasked
    softmax (rows no longer sum to 1); "zero" masks S with 0 instead of -inf."""
    it = ref.attention_intermediates_opts(*(t[k] for k in ("X", "W_Q", "W_K", "W_V")), heads=heads)
    T, dv = t["X"].shape[0], t["W_V"].shape[1] // heads
    lower = np.tril(np.ones((T, T)))
    if bug == "after":
        A = it["A"] * lower
    else:
        A = np.array([ref.softmax_rows(S * lower) for S in it["S"]])
    H = np.concatenate([A[a] @ it["V"][:, a * dv : (a + 1) * dv] for a in range(heads)], axis=1)
    return H @ t["W_O"] if "W_O" in t else H


@pytest.mark.parametrize("bug", ["after", "zero"])
@pytest.mark.parametrize("heads", [1, 2])
def test_twin_causal_mask_misapplied_is_caught(heads, bug):
    t = tensors({**ATT_SHAPES["T4"][0], "W_O": (2, 3)}, 9)
    good = ref.OPTION_REFERENCES["attention"][0](t, causal=True, heads=heads)
    with pytest.raises(AssertionError):
        assert_close(_attention_twin(t, heads, bug), good, f"mask {bug}")


def test_twin_head_scale_is_caught():
    """Scaling each head by 1/sqrt(d_k) instead of 1/sqrt(d_k / heads) is caught."""
    t = tensors(ATT_SHAPES["T5"][0], 10)
    forward = ref.OPTION_REFERENCES["attention"][0]
    good = forward(t, heads=2)
    wrong = forward({**t, "W_Q": t["W_Q"] / math.sqrt(2)}, heads=2)  # S scaled by 1/sqrt(d_k)
    with pytest.raises(AssertionError):
        assert_close(wrong, good, "head scale")


# ----------------------------------------------------------------------------- seed case
SEED_CASES = [
    ("conv1d", {"x": (7,), "w": (3,), "b": ()}),
    ("conv1d", {"x": (4,), "w": (4,), "b": ()}),
    ("conv2d", {"X": (5, 6, 2), "W": (3, 2, 2, 3), "b": (3,)}),
    ("conv2d", {"X": (3, 3, 1), "W": (3, 3, 1, 2), "b": (2,)}),
    ("attention", ATT_SHAPES["T4"][0]),
    ("attention", ATT_SHAPES["T1"][0]),
]
SEED_OPTIONS = {
    "conv1d": {"stride": 1, "padding": 0, "dilation": 1},
    "conv2d": {"stride": 1, "padding": 0, "dilation": 1},
    "attention": {"causal": False, "heads": 1},
}


@pytest.mark.parametrize("name, shapes", SEED_CASES)
def test_seed_case_option_reference_matches_seed_reference_and_layer(name, shapes):
    """The option references at the seed's options equal the seed references and the layer
    without options."""
    seed_forward, seed_backward = ref.REFERENCES[name]
    opt_forward, opt_backward = ref.OPTION_REFERENCES[name]
    t = tensors(shapes, 12)
    expected = seed_forward(t)
    assert_close(opt_forward(t, **SEED_OPTIONS[name]), expected, f"{name}: forward")
    dout = np.random.default_rng(13).standard_normal(expected.shape)
    seed_grads = seed_backward(dout, t)
    opt_grads = opt_backward(dout, t, **SEED_OPTIONS[name])
    assert set(opt_grads) == set(t)
    for key, g in opt_grads.items():
        assert_close(g, seed_grads[key], f"{name}: d{key}")
    check_against_reference(name, shapes, {}, 12)
