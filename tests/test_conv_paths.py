"""The two layouts of gradcli/layers/_conv.py against the loop references: the flat channel-first
grid that one large real image at stride 1 takes (forced on small shapes here by FLAT_MIN = 0)
and the rows of im2col with the phase-grid transpose (every stride); batch and probe axes,
complex and float32 inputs on both."""

import itertools
import pathlib
import sys

import numpy as np
import pytest

from gradcli.layers import REGISTRY, _conv

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import reference as ref  # noqa: E402

RTOL = 1e-12
OPTIONS = [
    {"stride": s, "padding": p, "dilation": d}
    for s, p, d in itertools.product((1, 2, 3), (0, 1, "same"), (1, 2))
    if p != "same" or s == 1
] + [{"stride": [1, 2], "padding": [2, 0], "dilation": [2, 1]}, {"padding": [0, 3]}]


def close(actual, expected, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def forward(name, t, raw):
    layer = REGISTRY[name]
    shapes = {k: v.shape for k, v in t.items()}
    return layer.forward(t, layer.resolve_options(layer.make_options(raw), shapes))


def run(name, t, raw, dout=None):
    out, cache = forward(name, t, raw)
    dout = np.ones(out.shape, out.dtype) if dout is None else dout
    return out, cache, REGISTRY[name].backward(dout, cache)


@pytest.fixture(params=["flat", "rows"])
def layout(request, monkeypatch):
    """FLAT_MIN 0 sends every eligible call to the flat layout; a huge one sends none."""
    monkeypatch.setattr(_conv, "FLAT_MIN", 0 if request.param == "flat" else 2**62)
    return request.param


@pytest.mark.parametrize("raw", OPTIONS, ids=str)
@pytest.mark.parametrize("kernel", [(3, 3), (2, 4)])
def test_conv2d_layouts_match_reference(layout, raw, kernel):
    rng = np.random.default_rng(0)
    t = {
        "X": rng.standard_normal((16, 17, 2)),  # big enough: every stride-1 case goes flat
        "W": rng.standard_normal((*kernel, 2, 3)),
        "b": rng.standard_normal(3),
    }
    saved = {k: v.copy() for k, v in t.items()}
    out, cache, _ = run("conv2d", t, raw)
    expected = ref.conv2d_forward_opts(t["X"], t["W"], t["b"], **raw)
    close(out, expected, f"{layout} {raw}: forward")
    stride1 = raw.get("stride", 1) == 1
    assert cache["flat"] == (layout == "flat" and stride1)  # the layout under test ran
    dout = rng.standard_normal(out.shape)
    grads = REGISTRY["conv2d"].backward(dout, cache)
    for k, g in ref.conv2d_backward_opts(dout, t["X"], t["W"], t["b"], **raw).items():
        close(grads[k], g, f"{layout} {raw}: d{k}")
    for k in t:
        assert np.array_equal(t[k], saved[k]), f"{layout}: mutated {k}"


@pytest.mark.parametrize("raw", [{}, {"stride": 2}, {"padding": "same", "dilation": 3}], ids=str)
@pytest.mark.parametrize("channels", [True, False])
def test_conv1d_layouts_match_reference(layout, raw, channels):
    rng = np.random.default_rng(1)
    if channels:
        t = {"x": rng.standard_normal((40, 3)), "w": rng.standard_normal((4, 3, 2))}
        t["b"] = rng.standard_normal(2)
    else:  # the seed form: _conv takes it but at stride 1, dilation 1 (numpy's correlate)
        t = {"x": rng.standard_normal((40,)), "w": rng.standard_normal(4), "b": np.asarray(0.5)}
    out, cache, _ = run("conv1d", t, raw)
    close(out, ref.conv1d_forward_opts(t["x"], t["w"], t["b"], **raw), f"{raw}: forward")
    dout = rng.standard_normal(out.shape)
    grads = REGISTRY["conv1d"].backward(dout, cache)
    for k, g in ref.conv1d_backward_opts(dout, t["x"], t["w"], t["b"], **raw).items():
        close(grads[k], g, f"{layout} {raw}: d{k}")


@pytest.mark.parametrize("raw", [{}, {"stride": 2, "padding": 1}, {"dilation": 2}], ids=str)
@pytest.mark.parametrize("stacked", ["X", "W", "b", "XW", "Wb"])
@pytest.mark.parametrize("batch", [(), (2,)], ids=["image", "batch2"])
def test_probe_axes_equal_separate_calls(layout, raw, stacked, batch):
    """The numerical engine's stacks: P copies on a new leading axis, every other tensor a 1
    there (W and b also meet X's batch axes with 1s); complex copies of X and b as the
    complex-step method makes. "XW": X and W both vary along the probe axis."""
    rng, P = np.random.default_rng(2), 3
    base = {
        "X": rng.standard_normal((*batch, 8, 9, 2)),
        "W": rng.standard_normal((3, 3, 2, 4)),
        "b": rng.standard_normal(4),
    }
    copies = {
        "X": base["X"] + 1j * rng.standard_normal((P, *base["X"].shape)),
        "W": rng.standard_normal((P, 3, 3, 2, 4)),
        "b": rng.standard_normal((P, 4)) + 0.5j,
    }
    ones = (1,) * len(batch)
    t = {
        k: (copies[k] if k == "X" else copies[k].reshape(P, *ones, *base[k].shape)) if k in stacked
           else (base[k][None] if k == "X" else base[k].reshape(1, *ones, *base[k].shape))
        for k in base
    }  # fmt: skip
    out = forward("conv2d", t, raw)[0]  # the engine calls no backward on stacks
    for p in range(P):
        one = {k: copies[k][p] if k in stacked else base[k] for k in base}
        close(out[p], forward("conv2d", one, raw)[0], f"{layout} stacked {stacked}, copy {p}")


def complex_reference(X, W, b, raw):
    """The reference is real: the complex convolution from four real ones (it is bilinear)."""
    zero = np.zeros(W.shape[-1])

    def conv(x, w):
        return ref.conv2d_forward_opts(x, w, zero, **raw)

    re = conv(X.real, W.real) - conv(X.imag, W.imag)
    return re + 1j * (conv(X.real, W.imag) + conv(X.imag, W.real)) + b


@pytest.mark.parametrize("raw", [{}, {"padding": 1}, {"stride": 2}], ids=str)
def test_float32_and_complex_stay_in_their_dtype(layout, raw):
    rng = np.random.default_rng(4)
    shapes = {"X": (16, 15, 3), "W": (3, 3, 3, 2), "b": (2,)}
    t32 = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    out, cache, grads = run("conv2d", t32, raw)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    assert cache["flat"] == (layout == "flat" and not raw.get("stride"))
    expected = ref.conv2d_forward_opts(*(t32[k].astype(np.float64) for k in "XWb"), **raw)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    tc = {k: rng.standard_normal(s) + 1j * rng.standard_normal(s) for k, s in shapes.items()}
    out, cache, grads = run("conv2d", tc, raw)
    assert out.dtype == np.complex128 and all(g.dtype == np.complex128 for g in grads.values())
    assert not cache["flat"]  # complex inputs take the rows
    close(out, complex_reference(tc["X"], tc["W"], tc["b"], raw), f"{layout} complex")


def test_large_image_takes_the_flat_layout_and_agrees_with_rows(monkeypatch):
    rng = np.random.default_rng(5)
    t = {"X": rng.standard_normal((96, 96, 4)), "W": rng.standard_normal((3, 3, 4, 5))}
    t["b"] = rng.standard_normal(5)
    dout = rng.standard_normal((96, 96, 5))
    flat = run("conv2d", t, {"padding": "same"}, dout)
    assert flat[1]["flat"]
    monkeypatch.setattr(_conv, "FLAT_MIN", 2**62)
    rows = run("conv2d", t, {"padding": "same"}, dout)
    assert not rows[1]["flat"]
    close(flat[0], rows[0], "forward")
    for k in rows[2]:
        close(flat[2][k], rows[2][k], f"d{k}")
