"""Issue 14's normalizations (layernorm, batchnorm, groupnorm) and poolings (maxpool2d,
avgpool2d): option grids against the loop references of reference_norm.py, batch axes, ties,
refused options and shapes naming their key, and twins: a wrong backward fails on exactly the
wrong tensor."""

from __future__ import annotations

import itertools
import pathlib
import sys
from pathlib import Path

import numpy as np
import pytest

import gradcli
from gradcli.errors import OptionError, ShapeError, SpecError
from gradcli.inputs.spec import build_spec, load_spec
from gradcli.layers import REGISTRY, _conv, _pool
from gradcli.numeric.methods import get_method

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from reference_norm import NORM_REFERENCES  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"


def _norm_cases():
    ln = [
        ({"x": (5,), "gamma": (5,), "beta": (5,)}, {}),
        ({"x": (2, 3, 4), "gamma": (4,), "beta": (4,)}, {"eps": 0.5}),
        ({"x": (3, 1), "gamma": (1,), "beta": (1,)}, {}),  # D = 1: xhat = 0, dx = 0
        ({"x": (2, 6), "gamma": (6,)}, {"eps": 1}),  # no beta; an integer eps
    ]
    bn = [
        ({"x": (4, 3), "gamma": (3,), "beta": (3,)}, {}),
        ({"x": (2, 5, 2), "gamma": (2,), "beta": (2,)}, {"eps": 1e-3}),  # two batches
        ({"x": (1, 3), "gamma": (3,), "beta": (3,)}, {}),  # N = 1: y = beta
        ({"x": (3, 2, 3, 2), "gamma": (2,), "beta": (2,)}, {"spatial": 2}),
        ({"x": (2, 2, 2, 3, 2), "gamma": (2,)}, {"spatial": 2}),  # two batches of images
        ({"x": (2, 4, 3), "gamma": (3,), "beta": (3,)}, {"spatial": 1}),
    ]
    gn = [
        ({"X": (3, 3, 4), "gamma": (4,), "beta": (4,)}, {}),
        ({"X": (2, 2, 3, 6), "gamma": (6,), "beta": (6,)}, {"groups": 3}),
        ({"X": (2, 2, 3, 6), "gamma": (6,), "beta": (6,)}, {"groups": 6}),  # instance norm
        ({"X": (2, 2, 3, 6), "gamma": (6,)}, {"groups": 1, "eps": 0.1}),
        ({"X": (2, 5, 4), "gamma": (4,), "beta": (4,)}, {"spatial": 1}),
        ({"X": (3, 6), "gamma": (6,), "beta": (6,)}, {"spatial": 0, "groups": 3}),
        ({"X": (2, 2, 6), "gamma": (6,), "beta": (6,)}, {"spatial": 0, "groups": 2}),
    ]
    for name, cases in (("layernorm", ln), ("batchnorm", bn), ("groupnorm", gn)):
        for i, (shapes, raw) in enumerate(cases):
            yield pytest.param(name, shapes, raw, id=f"{name}-{i}")


POOL_GRID = [
    {},
    {"size": 3},
    {"size": 3, "stride": 1},
    {"size": 3, "stride": 2, "padding": 1},
    {"size": [2, 3], "stride": [1, 2], "padding": [1, 0]},
    {"size": 1},
    {"size": [3, 1], "stride": [3, 1], "padding": [1, 0]},
    {"size": 2, "stride": 3, "padding": 1},
]


def _pool_cases():
    for name in ("maxpool2d", "avgpool2d"):
        for raw, X in itertools.product(POOL_GRID, ((5, 6, 3), (2, 4, 4, 1))):
            extra = [{}, {"count_include_pad": False}] if name == "avgpool2d" else [{}]
            for more in extra:
                opts = {**raw, **more}
                rid = "-".join(f"{k}{v}" for k, v in opts.items()).replace(" ", "")
                yield pytest.param(name, {"X": X}, opts, id=f"{name}-{len(X)}d-{rid}")


def _run(name, t, raw, g):
    layer = REGISTRY[name]
    if "gamma" in t and "beta" not in t:  # an omitted beta is zeros (as a spec makes it)
        t = {**t, "beta": np.zeros_like(t["gamma"])}
    options = layer.resolve_options(layer.make_options(raw), {k: v.shape for k, v in t.items()})
    out, cache = layer.forward(t, options)
    return out, layer.backward(g, cache)


def _close(actual, expected, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * scale, err_msg=what)


@pytest.mark.parametrize("name, shapes, raw", [*_norm_cases(), *_pool_cases()])
def test_matches_loop_reference_on_an_option_grid(name, shapes, raw):
    rng = np.random.default_rng(len(str(raw)))
    t = {k: rng.standard_normal(s) for k, s in shapes.items()}
    ref_forward, ref_backward = NORM_REFERENCES[name]
    expected = ref_forward(t, **raw)
    layer = REGISTRY[name]
    options = layer.make_options(raw)
    assert layer.output_shape(shapes, options) == expected.shape
    g = rng.standard_normal(expected.shape)
    out, grads = _run(name, t, raw, g)
    _close(out, expected, f"{name} {raw}: forward")
    ref = ref_backward(g, t, **raw)
    assert set(grads) >= set(ref)
    for key, want in ref.items():
        _close(grads[key], want, f"{name} {raw}: d{key}")


@pytest.mark.parametrize("name, shapes, raw", [*_norm_cases(), *_pool_cases()][::3])
def test_full_check_passes_on_the_grid(name, shapes, raw):
    """The whole check (footprints, coloring, stacking) on the grid's shapes and options."""
    rng = np.random.default_rng(1)
    t = {k: rng.standard_normal(s) for k, s in shapes.items()}
    if name == "maxpool2d":  # distinct values, no two within a step (the kinks: issue 14)
        t["X"] = rng.permutation(np.arange(np.prod(shapes["X"]))).reshape(shapes["X"]) * 0.1
    for method in ("central", "complex"):
        report = gradcli.check(name, t, options=raw, method=method)
        assert report.passed, str(report)


def test_maxpool_ties_go_to_the_first_maximum():
    """An exact tie routes the whole gradient to the window's first maximal element in
    row-major order, as torch and the loop reference do; a NaN wins its window."""
    X = np.zeros((4, 4, 1))
    X[1, 1, 0] = X[0, 1, 0] = 2.0  # window (0, 0): tie, the first in row-major is (0, 1)
    X[2, 3, 0] = X[3, 2, 0] = 1.0  # window (1, 1): (2, 3) comes first
    g = np.arange(1.0, 5.0).reshape(2, 2, 1)
    out, grads = _run("maxpool2d", {"X": X}, {}, g)
    want = np.zeros_like(X)
    want[0, 1, 0], want[0, 2, 0], want[2, 0, 0], want[2, 3, 0] = 1, 2, 3, 4  # zeros: the first
    np.testing.assert_array_equal(grads["X"], want)
    np.testing.assert_array_equal(NORM_REFERENCES["maxpool2d"][1](g, {"X": X})["X"], want)
    X[3, 0, 0] = np.nan
    out, grads = _run("maxpool2d", {"X": X}, {}, g)
    assert np.isnan(out[1, 0, 0]) and grads["X"][3, 0, 0] == 3 and grads["X"][2, 0, 0] == 0


def test_maxpool_padding_never_wins():
    """-inf padding: an all-negative border window picks a real element, never the padding."""
    X = -1.0 - np.arange(9.0).reshape(3, 3, 1)
    out, grads = _run("maxpool2d", {"X": X}, {"size": 2, "padding": 1}, np.ones((2, 2, 1)))
    np.testing.assert_array_equal(out[..., 0], [[-1, -2], [-4, -5]])
    assert grads["X"].sum() == 4.0


def test_avgpool_count_include_pad():
    X = np.ones((2, 2, 1))
    pad = _run("avgpool2d", {"X": X}, {"size": 2, "padding": 1}, np.ones((2, 2, 1)))[0]
    own = _run(
        "avgpool2d", {"X": X}, {"size": 2, "padding": 1, "count_include_pad": False},
        np.ones((2, 2, 1)),
    )[0]  # fmt: skip
    np.testing.assert_array_equal(pad[..., 0], [[0.25, 0.25], [0.25, 0.25]])
    np.testing.assert_array_equal(own[..., 0], np.ones((2, 2)))


def test_batchnorm_mixes_its_examples_and_keeps_its_batches_apart():
    """N is a core axis: moving one example moves every other example's output; a leading
    axis in front of N is an independent batch."""
    layer, rng = REGISTRY["batchnorm"], np.random.default_rng(0)
    t = {"x": rng.standard_normal((2, 4, 3)), "gamma": np.ones(3), "beta": np.zeros(3)}
    y = layer.forward(t, None)[0]
    moved = t["x"].copy()
    moved[0, 0, 1] += 1.0
    y2 = layer.forward({**t, "x": moved}, None)[0]
    assert np.all(y2[0, :, 1] != y[0, :, 1])  # the whole column of its batch
    np.testing.assert_array_equal(np.delete(y2[0], 1, axis=-1), np.delete(y[0], 1, axis=-1))
    np.testing.assert_array_equal(y2[1], y[1])  # the other batch
    assert layer.tensor("x").axes == ("N", "D")


def test_layouts_follow_the_spatial_option():
    bn = load_spec("batchnorm", str(SPECS / "batchnorm_spatial.yaml"))
    assert bn.info("x").axes == ("N", "H", "W", "C") and bn.output_info.axes == bn.info("x").axes
    X = np.arange(8.0).reshape(2, 4) ** 2
    gn = gradcli.check("groupnorm", {"X": X, "gamma": np.ones(4)}, options={"spatial": 0})
    assert gn.spec.info("X").axes == ("C",) and gn.passed


def test_max_pool_specs_have_no_near_ties():
    """The default and example specs of maxpool2d keep every window's maximum further from the
    runner-up than any method's widest stencil: they check every coordinate two-sidedly."""
    widest = max(get_method(m).auto_eps * max(map(abs, get_method(m).offsets))
                 for m in ("central", "forward", "backward", "central4"))  # fmt: skip
    paths = [None, *map(str, sorted(SPECS.glob("maxpool2d*.yaml")))]
    for path, dtype in itertools.product(paths, ("float64", "float32")):
        spec = load_spec("maxpool2d", path, dtype=dtype)
        X = np.asarray(spec.tensors["X"], np.float64)
        geo = _pool.geometry(X.shape, spec.options)
        Xp = _conv.pad(X, geo, -np.inf)
        top = np.sort(np.stack([Xp[w] for _, w in _pool.taps(geo)]), axis=0)[-2:]
        gap = top[1] - top[0]
        assert np.all(gap > 4 * widest * np.maximum(1, np.abs(top[1]))), (path, gap.min())


# ------------------------------------------------------------- refusals name their key
BAD = [
    ("groupnorm", {"X": [2, 2, 6]}, {"groups": 4}, OptionError, "options.groups"),
    ("groupnorm", {"X": [2, 2, 6]}, {"groups": 0}, OptionError, "options.groups"),
    ("groupnorm", {"X": [2, 2, 6]}, {"groups": True}, OptionError, "options.groups"),
    ("groupnorm", {"X": [2, 2, 6]}, {"groups": 1.5}, OptionError, "options.groups"),
    ("groupnorm", {"X": [6]}, {}, ShapeError, "tensors.X"),
    ("groupnorm", {"X": [2, 0, 4]}, {}, SpecError, "tensors.X"),  # the loader's
    ("groupnorm", {"X": [2, 2, 4], "gamma": [3]}, {}, ShapeError, "tensors.gamma"),
    ("groupnorm", {"X": [2, 2, 4]}, {"spatial": 3}, OptionError, "options.spatial"),
    ("layernorm", {"x": [3, 4]}, {"eps": 0}, OptionError, "options.eps"),
    ("layernorm", {"x": [3, 4]}, {"eps": -1e-5}, OptionError, "options.eps"),
    ("layernorm", {"x": [3, 4]}, {"eps": "small"}, OptionError, "options.eps"),
    ("layernorm", {"x": [3, 4]}, {"eps": float("inf")}, OptionError, "options.eps"),
    ("layernorm", {"x": [3, 4]}, {"eps": True}, OptionError, "options.eps"),
    ("layernorm", {"x": [3, 0]}, {}, SpecError, "tensors.x"),
    ("layernorm", {"x": [3, 4], "beta": [3]}, {}, ShapeError, "tensors.beta"),
    ("batchnorm", {"x": [5]}, {}, ShapeError, "tensors.x"),
    ("batchnorm", {"x": [0, 3]}, {}, SpecError, "tensors.x"),
    ("batchnorm", {"x": [4, 3]}, {"spatial": 2}, ShapeError, "tensors.x"),
    ("batchnorm", {"x": [4, 3]}, {"spatial": True}, OptionError, "options.spatial"),
    ("batchnorm", {"x": [4, 3], "gamma": [4]}, {}, ShapeError, "tensors.gamma"),
    ("maxpool2d", {"X": [4, 4, 1]}, {"size": 0}, OptionError, "options.size"),
    ("maxpool2d", {"X": [4, 4, 1]}, {"size": [2, 2, 2]}, OptionError, "options.size"),
    ("maxpool2d", {"X": [4, 4, 1]}, {"stride": 0}, OptionError, "options.stride"),
    ("maxpool2d", {"X": [4, 4, 1]}, {"size": 3, "padding": 2}, OptionError, "options.padding"),
    ("maxpool2d", {"X": [4, 4, 1]}, {"padding": -1}, OptionError, "options.padding"),
    ("maxpool2d", {"X": [4, 4, 1]}, {"dilation": 2}, OptionError, "options.dilation"),
    ("maxpool2d", {"X": [1, 4, 1]}, {}, ShapeError, "tensors.X"),
    ("maxpool2d", {"X": [4, 4]}, {}, ShapeError, "tensors.X"),
    ("avgpool2d", {"X": [4, 4, 1]}, {"count_include_pad": "no"}, OptionError,
     "options.count_include_pad"),
    ("avgpool2d", {"X": [4, 4, 1]}, {"size": [5, 1]}, ShapeError, "tensors.X"),
]  # fmt: skip


@pytest.mark.parametrize("name, shapes, raw, error, key", BAD)
def test_bad_options_and_shapes_name_their_key(name, shapes, raw, error, key):
    layer = REGISTRY[name]
    defaults = {n: list(s) for n, s in layer.default_shapes.items()}
    if "X" in shapes or "x" in shapes:  # parameters follow the input's channels
        c = (shapes.get("X") or shapes.get("x"))[-1]
        defaults = {n: ([c] if n in ("gamma", "beta") else s) for n, s in defaults.items()}
    rng = np.random.default_rng(0)  # arrays, not generated shapes: zero-size axes too
    tensors = {n: rng.standard_normal(s) for n, s in {**defaults, **shapes}.items()}
    with pytest.raises(error) as info:
        build_spec(layer, {"tensors": tensors, "options": raw}, base=Path.cwd(), source="<t>")
    assert info.value.key == key, info.value


def test_cli_refusal_is_one_line(cli, write_spec, assert_usage_error):
    spec = write_spec("tensors:\n  X: {shape: [2, 2, 6]}\n  gamma: {shape: [6]}\n"
                      "options:\n  groups: 4\n")  # fmt: skip
    assert_usage_error(cli("check", "groupnorm", spec), "options.groups", "divide C=6")


# ---------------------------------------------- twins: a wrong backward fails where it is wrong
def _ours(name):
    layer = REGISTRY[name]

    def forward(**kw):
        t = {k: v for k, v in kw.items() if k in layer.all_tensor_names}
        opts = layer.make_options({k: v for k, v in kw.items() if k not in t})
        return layer.forward(t, opts)[0]

    def backward(grad_output, **kw):
        t = {k: v for k, v in kw.items() if k in layer.all_tensor_names}
        opts = layer.make_options({k: v for k, v in kw.items() if k not in t})
        return layer.backward(grad_output, layer.forward(t, opts)[1])

    return forward, backward


def _bn_independent(grad_output, x, gamma, beta, **_):
    """Each example on its own: the mean and variance treated as constants."""
    r = 1 / np.sqrt(x.var(axis=0) + 1e-5)
    xhat = (x - x.mean(axis=0)) * r
    return {"x": grad_output * gamma * r, "gamma": (grad_output * xhat).sum(0),
            "beta": grad_output.sum(0)}  # fmt: skip


def _ln_dgamma_without_xhat(grad_output, x, gamma, beta, **kw):
    grads = dict(_ours("layernorm")[1](grad_output, x=x, gamma=gamma, beta=beta, **kw))
    grads["gamma"] = grad_output.reshape(-1, x.shape[-1]).sum(0)
    return grads


def _gn_strided_groups(grad_output, X, gamma, beta, groups=2, **_):
    """Channel c in group c % groups (a misreading of torch's layout) in the backward."""
    C = X.shape[-1]
    perm = np.argsort(np.arange(C) % groups, kind="stable")
    inv = np.argsort(perm)
    _, bwd = _ours("groupnorm")
    grads = bwd(grad_output[..., perm], X=X[..., perm], gamma=gamma[perm], beta=beta[perm],
                groups=groups)  # fmt: skip
    return {"X": grads["X"][..., inv], "gamma": grads["gamma"][inv], "beta": grads["beta"][inv]}


def _max_to_last(grad_output, X, **_):
    """The gradient routed to the window's last element instead of its maximum."""
    dX = np.zeros_like(X)
    dX[..., 1::2, 1::2, :] = grad_output
    return {"X": dX}


def _avg_wrong_count(grad_output, X, **kw):
    """count_include_pad ignored in the backward: always the whole window."""
    return _ours("avgpool2d")[1](grad_output, X=X, **{**kw, "count_include_pad": True})


TWINS = [
    ("batchnorm", None, {}, _bn_independent, {"x"}),
    ("layernorm", str(SPECS / "layernorm.yaml"), {}, _ln_dgamma_without_xhat, {"gamma"}),
    ("groupnorm", str(SPECS / "groupnorm.yaml"), {}, _gn_strided_groups, {"X", "gamma"}),
    ("maxpool2d", str(SPECS / "maxpool2d.yaml"), {}, _max_to_last, {"X"}),
    ("avgpool2d", str(SPECS / "avgpool2d.yaml"), {}, _avg_wrong_count, {"X"}),
]


@pytest.mark.parametrize("name, path, raw, wrong, failing", TWINS, ids=[t[0] for t in TWINS])
def test_wrong_backward_fails_on_exactly_the_wrong_tensor(name, path, raw, wrong, failing):
    spec = load_spec(name, path)
    tensors = {k: np.asarray(v) for k, v in spec.tensors.items()}
    options = {**raw, **gradcli_options(spec)}
    forward, backward = _ours(name)
    good = gradcli.check(name, tensors, options=options, forward=forward, backward=backward)
    assert good.passed, str(good)
    bad = gradcli.check(name, tensors, options=options, forward=forward, backward=wrong)
    assert not bad.passed
    assert {n for n, r in bad.results.items() if not r.passed} == failing, str(bad)


def gradcli_options(spec):
    from gradcli.layers.base import options_dict

    return options_dict(spec.options)


@pytest.mark.parametrize("name", list(NORM_REFERENCES))
def test_init_impl_skeleton_takes_the_tensors_and_every_option_at_its_default(cli, name):
    """gradcli passes the tensors by name and only the options a spec sets: the skeleton's
    defaults must be the layer's, or an unset option would silently differ."""
    import inspect

    from gradcli.layers.base import option_table

    text = cli("init", name, "--impl").stdout
    ns: dict = {}
    exec(compile(text, f"{name}.py", "exec"), ns)  # noqa: S102 - our own template
    layer = REGISTRY[name]
    tensors = list(layer.tensor_names)
    defaults = {n: d for n, d, _ in option_table(layer.options)}
    for fn, lead in (("forward", []), ("backward", ["grad_output"])):
        params = inspect.signature(ns[fn]).parameters
        assert list(params)[: len(lead) + len(tensors)] == lead + tensors, fn
        opts = {k: p.default for k, p in list(params.items())[len(lead) + len(tensors) :]}
        assert opts == defaults, fn


@pytest.mark.parametrize("name, shapes, raw", list(_norm_cases()))
def test_incremental_loss_equals_the_forward_at_every_coordinate(name, shapes, raw):
    """Layer.perturbed's closed forms against the plain forward, at every input coordinate,
    for a large move, a small one and a complex step; its twin (a wrong set size) is off."""
    layer, rng = REGISTRY[name], np.random.default_rng(3)
    t = {k: rng.standard_normal(s) for k, s in shapes.items()}
    t.setdefault("beta", np.zeros_like(t["gamma"]))
    options = layer.make_options(raw)
    out, cache = layer.forward(t, options)
    g = rng.standard_normal(out.shape)
    xname = "X" if "X" in t else "x"
    x = t[xname].ravel()
    idx = np.arange(x.size)
    scale = np.sum(np.abs(g * out))
    plain = {}
    for move in (0.3, 1e-6, 1e-20j):
        values = x + move * (1 + np.abs(x))
        fast = layer.perturbed(xname, cache, g, idx, values)
        losses = []
        for k in idx:
            moved = x.astype(np.result_type(x, values))
            moved[k] = values[k]
            y = layer.forward({**t, xname: moved.reshape(t[xname].shape)}, options)[0]
            losses.append(np.sum(g * y))
        plain[move] = np.array(losses)
        np.testing.assert_allclose(fast.real, plain[move].real, rtol=0, atol=1e-13 * scale)
        if isinstance(move, complex):  # the complex step's imaginary part: the derivative
            np.testing.assert_allclose(fast.imag, plain[move].imag, rtol=1e-9, atol=1e-30)
    assert layer.perturbed("gamma", cache, g, idx[:1], x[:1]) is None
    if np.ptp(plain[0.3]) > 1e-9 * scale:  # (a set of one element moves nothing: D = 1)
        wrong = dict(cache, r=cache["r"] * (1 + 1e-6))
        off = layer.perturbed(xname, wrong, g, idx, x + 0.3 * (1 + np.abs(x)))
        assert np.max(np.abs(off - plain[0.3])) > 1e-9 * scale


def test_incremental_paths_are_trusted_and_used():
    from gradcli.numeric.engine import Engine

    for name, path in (("layernorm", "layernorm.yaml"), ("batchnorm", "batchnorm_spatial.yaml"),
                       ("groupnorm", "groupnorm.yaml")):  # fmt: skip
        spec = load_spec(name, str(SPECS / path))
        engine = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output)
        xname = "X" if "X" in spec.tensors else "x"
        assert engine.incremental(xname) == "", name
        assert engine.incremental("gamma") is None


def test_maxpool_ties_are_kinks_and_a_wrong_routing_still_fails():
    """Exact ties (every window tied, or one tie among clean windows) pass, their coordinates
    counted as kinks and checked one-sidedly; the gradient routed to the wrong element still
    fails on the windows without a tie (within a tied window any of the tied elements is a
    valid choice); the predicate flags exactly the tied elements."""
    import json

    layer = REGISTRY["maxpool2d"]
    ties = gradcli.check("maxpool2d", {"X": np.ones((4, 4, 2))})
    assert ties.passed and json.loads(ties.to_json())["results"]["X"]["kinks"] == 32
    X = np.asarray(load_spec("maxpool2d", str(SPECS / "maxpool2d.yaml")).tensors["X"]).copy()
    X[0, 0, 1, 0] = X[0, 0, 0, 0] = X[0, :2, :2, 0].max()  # one window of channel 0 tied
    at = layer.kinks("X", {"X": X}, layer.make_options({}), np.zeros(X.shape))
    tied = {(0, i, j, 0) for i in range(2) for j in range(2) if X[0, i, j, 0] == X[0, 0, 0, 0]}
    assert {tuple(map(int, k)) for k in np.argwhere(at)} == tied and len(tied) >= 2
    assert gradcli.check("maxpool2d", {"X": X}).passed
    forward, _ = _ours("maxpool2d")
    bad = gradcli.check("maxpool2d", {"X": X}, forward=forward, backward=_max_to_last)
    assert not bad.passed and not bad.results["X"].passed  # wrong away from the tie
