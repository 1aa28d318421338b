"""Layer forward/backward against the loop reference, batching, stacking, purity, dtypes."""

import pathlib
import sys

import numpy as np
import pytest

from gradcli.layers import REGISTRY
from gradcli.layers import attention as attention_module

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from reference import REFERENCES, softmax_rows

SEEDS = (0, 1, 2)
P = 3  # number of stacked copies in the broadcasting tests
EXAMPLES = ("input", "target", "index")  # the roles that carry the batch axes

# extra shapes per layer, on top of each layer's default_shapes
EDGE_SHAPES = {
    "linear": [
        {"x": (1,), "W": (1, 1), "b": (1,)},
        {"x": (5,), "W": (2, 5), "b": (2,)},
    ],
    "conv1d": [
        {"x": (5,), "w": (5,), "b": ()},  # kernel = input size, m = 1
        {"x": (4,), "w": (1,), "b": ()},  # k = 1
        {"x": (1,), "w": (1,), "b": ()},
        {"x": (7,), "w": (4,), "b": ()},
    ],
    "conv2d": [
        {"X": (3, 3, 1), "W": (3, 3, 1, 1), "b": (1,)},  # kernel = input, single channel
        {"X": (3, 4, 2), "W": (1, 1, 2, 3), "b": (3,)},  # 1x1 conv
        {"X": (4, 3, 1), "W": (2, 1, 1, 2), "b": (2,)},  # non-square kernel, C_in = 1
        {"X": (4, 5, 2), "W": (2, 3, 2, 1), "b": (1,)},  # C_out = 1
    ],
    "attention": [
        {"X": (1, 3), "W_Q": (3, 2), "W_K": (3, 2), "W_V": (3, 2)},  # T = 1
        {"X": (3, 2), "W_Q": (2, 1), "W_K": (2, 1), "W_V": (2, 3)},  # d_k = 1
        {"X": (3, 1), "W_Q": (1, 2), "W_K": (1, 2), "W_V": (1, 1)},  # d = d_v = 1
    ],
}


def shape_cases():
    for name, layer in REGISTRY.items():
        for i, shapes in enumerate([dict(layer.default_shapes), *EDGE_SHAPES.get(name, [])]):
            for seed in SEEDS:
                yield pytest.param(name, shapes, seed, id=f"{name}-shape{i}-seed{seed}")


def make(layer, shapes, rng, batch=(), dtype=np.float64):
    """Random tensors; the inputs and their labels or targets get the batch axes in front;
    labels and indices (role index) are integers in their range."""
    t = {}
    for info in (i for i in layer.tensors if i.name in layer.default_shapes):
        shape = (*batch, *shapes[info.name]) if info.role in EXAMPLES else shapes[info.name]
        if info.role == "index":
            t[info.name] = rng.integers(0, bound(layer, shapes, info.classes), shape)
        else:
            t[info.name] = np.asarray(rng.standard_normal(shape), dtype=dtype)
    return t


def default_options(layer, t, shapes=None):
    """The default options settled from the spec's shapes (flatten's and dropout's axes count
    from the end once settled, so extra leading axes are copies, as the engine's probes are)."""
    shapes = shapes or {k: v.shape for k, v in t.items()}
    return layer.resolve_options(layer.make_options({}), shapes)


def upstream(layer, t, rng, dtype=np.float64, shapes=None):
    shape = layer.output_shape(
        {k: v.shape for k, v in t.items()}, default_options(layer, t, shapes)
    )
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


def bound(layer, shapes, axis):
    """The size of the axis named ``axis`` (an index tensor's range) in these shapes."""
    for info in layer.tensors:
        if axis in info.axes and info.name in shapes:
            shape = shapes[info.name]
            return shape[len(shape) - len(info.axes) + info.axes.index(axis)]
    raise KeyError(axis)


def run(layer, t, dout, forward=None, backward=None, shapes=None):
    out, cache = (forward or layer.forward)(t, default_options(layer, t, shapes))
    return out, (backward or layer.backward)(dout, cache)


def assert_close(actual, expected, what="", rtol=1e-12):
    """Same shape, and allclose with an absolute floor relative to the reference's scale."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def check_against_reference(name, t, dout, forward=None, backward=None):
    layer = REGISTRY[name]
    ref_forward, ref_backward = REFERENCES[name]  # a layer without a reference fails here
    out, grads = run(layer, t, dout, forward, backward)
    assert_close(out, ref_forward(t), f"{name} forward")
    ref = ref_backward(dout, t)
    assert set(ref) == {*layer.grad_names, *layer.intermediates}, "reference is incomplete"
    assert set(grads) == set(ref), f"{name}: gradient keys {sorted(grads)} != {sorted(ref)}"
    for key in ref:
        assert_close(grads[key], ref[key], f"{name} d{key}")


def test_every_layer_has_a_reference():
    assert set(REGISTRY) <= set(REFERENCES)


@pytest.mark.parametrize("name, shapes, seed", list(shape_cases()))
def test_matches_loop_reference(name, shapes, seed):
    layer, rng = REGISTRY[name], np.random.default_rng(seed)
    t = make(layer, shapes, rng)
    check_against_reference(name, t, upstream(layer, t, rng))


TWIN_KEYS = [
    (name, key)
    for name, layer in REGISTRY.items()
    for key in ("out", *layer.grad_names, *layer.intermediates)
]


@pytest.mark.parametrize("name, key", TWIN_KEYS, ids=[f"{n}-d{k}" for n, k in TWIN_KEYS])
def test_twin_perturbed_result_is_caught(name, key):
    """The comparison must notice a 1e-9 relative error in any single element."""
    layer, rng = REGISTRY[name], np.random.default_rng(0)
    t = make(layer, layer.default_shapes, rng)

    def nudge(a):
        a = np.array(a, dtype=np.float64, copy=True)
        a.flat[a.size // 2] += 1e-9 * max(1.0, float(np.max(np.abs(a))))
        return a

    def forward(tensors, options):
        out, cache = layer.forward(tensors, options)
        return (nudge(out) if key == "out" else out), cache

    def backward(dout, cache):
        grads = dict(layer.backward(dout, cache))
        if key != "out":
            grads[key] = nudge(grads[key])
        return grads

    dout = upstream(layer, t, rng)
    check_against_reference(name, t, dout)  # the unperturbed layer passes ...
    with pytest.raises(AssertionError):  # ... its twin does not
        check_against_reference(name, t, dout, forward, backward)


@pytest.mark.parametrize("batch", [(2,), (2, 3)])
@pytest.mark.parametrize("name", list(REGISTRY))
def test_batch_axes(name, batch):
    layer, rng = REGISTRY[name], np.random.default_rng(7)
    t = make(layer, layer.default_shapes, rng, batch)
    dout = upstream(layer, t, rng, shapes=layer.default_shapes)
    out, grads = run(layer, t, dout, shapes=layer.default_shapes)
    inputs = [i.name for i in layer.tensors if i.role in EXAMPLES and i.name in t]
    per_example = {}
    for idx in np.ndindex(*batch):
        one = {**t, **{n: t[n][idx] for n in inputs}}  # every input carries the batch axes
        o, g = run(layer, one, dout[idx], shapes=layer.default_shapes)
        assert_close(out[idx], o, f"{name} forward at {idx}")
        per_example[idx] = g
    for key, g in grads.items():
        if key in layer.tensor_names and layer.tensor(key).role not in EXAMPLES:
            total = sum(per_example[idx][key] for idx in np.ndindex(*batch))
            assert_close(g, total, f"{name} d{key} summed over the batch")
        else:  # the input and the intermediates keep their batch axes
            for idx in np.ndindex(*batch):
                assert_close(g[idx], per_example[idx][key], f"{name} d{key} at {idx}")


STACK_CASES = [
    (name, tname, batch)
    for name, layer in REGISTRY.items()
    for tname in layer.grad_names  # labels and indices are never perturbed
    for batch in ((), (2,))
]


@pytest.mark.parametrize(
    "name, tname, batch", STACK_CASES, ids=[f"{n}-{t}-batch{len(b)}" for n, t, b in STACK_CASES]
)
def test_stacked_copies_broadcast(name, tname, batch):
    """P copies of one tensor on a new leading axis == P separate forward calls."""
    layer, rng = REGISTRY[name], np.random.default_rng(11)
    options = layer.resolve_options(layer.make_options({}), layer.default_shapes)
    base = make(layer, layer.default_shapes, rng, batch)
    copies = [np.asarray(rng.standard_normal(base[tname].shape)) for _ in range(P)]
    # probe axis + the inputs' batch axes (a default shape may hold some: rnn_step's (N, D))
    n_batch = max(base[i.name].ndim - len(i.axes) for i in layer.tensors if i.role in EXAMPLES)
    lead = (1,) * (1 + n_batch)
    stacked = {}
    for info in (i for i in layer.tensors if i.name in layer.default_shapes):
        if info.role in EXAMPLES:
            a = np.stack(copies) if info.name == tname else base[info.name][None]
        elif info.name == tname:
            a = np.stack(copies).reshape(P, *lead[1:], *base[tname].shape)
        else:
            a = base[info.name].reshape(*lead, *base[info.name].shape)
        stacked[info.name] = a
    out, _ = layer.forward(stacked, options)
    core = layer.output_shape(dict(layer.default_shapes), options)
    assert out.shape == (P, *batch, *core)  # core: the default's output, batch axes and all
    for p in range(P):
        expected, _ = layer.forward({**base, tname: copies[p]}, options)
        assert_close(out[p], expected, f"{name}: stacked {tname}, copy {p}")


@pytest.mark.parametrize("name", list(REGISTRY))
def test_pure_and_deterministic(name):
    layer, rng = REGISTRY[name], np.random.default_rng(3)
    options = layer.make_options({})
    t = make(layer, layer.default_shapes, rng, batch=(2,))
    dout = upstream(layer, t, rng)
    saved, saved_dout = {k: v.copy() for k, v in t.items()}, dout.copy()
    out1, cache1 = layer.forward(t, options)
    grads1 = layer.backward(dout, cache1)
    out2, cache2 = layer.forward(t, options)
    grads2 = layer.backward(dout, cache2)
    for k in t:
        assert np.array_equal(t[k], saved[k]), f"{name}: forward/backward mutated {k}"
    assert np.array_equal(dout, saved_dout), f"{name}: backward mutated the upstream gradient"
    assert np.array_equal(out1, out2), f"{name}: forward is not deterministic"
    assert set(grads1) == set(grads2)
    for k in grads1:
        assert np.array_equal(grads1[k], grads2[k]), f"{name}: backward d{k} not deterministic"


def test_linear_identity_weights():
    rng = np.random.default_rng(0)
    x, dz = rng.standard_normal(4), rng.standard_normal(4)
    layer = REGISTRY["linear"]
    z, g = run(layer, {"x": x, "W": np.eye(4), "b": np.zeros(4)}, dz)
    assert_close(z, x, "z = x")
    assert_close(g["x"], dz, "dx = dz")
    assert_close(g["W"], np.outer(dz, x), "dW = dz x^T")
    assert_close(g["b"], dz, "db = dz")


def test_conv1d_unit_kernel_is_identity_plus_bias():
    rng = np.random.default_rng(0)
    x, dz, b = rng.standard_normal(6), rng.standard_normal(6), np.asarray(0.75)
    z, g = run(REGISTRY["conv1d"], {"x": x, "w": np.ones(1), "b": b}, dz)
    assert_close(z, x + 0.75, "z = x + b")
    assert_close(g["x"], dz, "dx = dz")
    assert_close(g["w"], [dz @ x], "dw = <dz, x>")
    assert_close(g["b"], dz.sum(), "db = sum dz")


def test_conv2d_1x1_kernel_is_per_pixel_matmul():
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((3, 4, 2)), rng.standard_normal((1, 1, 2, 3))
    b, dZ = rng.standard_normal(3), rng.standard_normal((3, 4, 3))
    Z, g = run(REGISTRY["conv2d"], {"X": X, "W": W, "b": b}, dZ)
    assert_close(Z, np.einsum("ijd,dc->ijc", X, W[0, 0]) + b, "Z = X W + b per pixel")
    assert_close(g["X"], np.einsum("ijc,dc->ijd", dZ, W[0, 0]), "dX = dZ W^T per pixel")
    assert_close(g["W"][0, 0], np.einsum("ijd,ijc->dc", X, dZ), "dW = sum X^T dZ")


def test_attention_zero_query_key_weights_give_uniform_attention():
    rng = np.random.default_rng(0)
    T, d = 5, 3
    X, W_V = rng.standard_normal((T, d)), rng.standard_normal((d, 2))
    t = {"X": X, "W_Q": np.zeros((d, 2)), "W_K": np.zeros((d, 2)), "W_V": W_V}
    dout = rng.standard_normal((T, 2))
    out, cache = REGISTRY["attention"].forward(t, None)
    assert_close(cache["A"], np.full((T, T), 1.0 / T), "A = 1/T")
    assert_close(out, np.tile((X @ W_V).mean(axis=0), (T, 1)), "out = mean_t V")
    g = REGISTRY["attention"].backward(dout, cache)
    assert_close(g["V"], np.tile(dout.mean(axis=0), (T, 1)), "dV = A^T dout")


def test_reference_softmax_matches_layer_softmax():
    S = np.random.default_rng(0).standard_normal((4, 5)) * 300.0  # large: needs the max shift
    A = softmax_rows(S)
    assert_close(A.sum(axis=-1), np.ones(4), "rows sum to 1")
    assert_close(attention_module.softmax(S), A, "softmax")


@pytest.mark.parametrize("name", list(REGISTRY))
def test_float32_in_float32_out(name):
    layer, rng = REGISTRY[name], np.random.default_rng(5)
    t = make(layer, layer.default_shapes, rng, dtype=np.float32)
    dout = upstream(layer, t, rng, dtype=np.float32)
    out, grads = run(layer, t, dout)
    assert out.dtype == np.float32, f"{name} forward gave {out.dtype}"
    for k, g in grads.items():
        assert np.asarray(g).dtype == np.float32, f"{name} d{k} gave {np.asarray(g).dtype}"
    ref_forward, ref_backward = REFERENCES[name]
    t64 = {k: v.astype(np.float64) for k, v in t.items()}
    assert_close(out, ref_forward(t64), f"{name} forward", rtol=1e-4)
    ref = ref_backward(dout.astype(np.float64), t64)
    for k in ref:
        assert_close(grads[k], ref[k], f"{name} d{k}", rtol=1e-4)
