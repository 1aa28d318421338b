"""The backward's contract: zero upstream -> zero gradients, determinism, linearity in
grad_output, the spec's dtype, and no writes into the arrays gradcli passes. Each contract has a
broken implementation that breaks it and is named; the twins (correct implementations, every
built-in layer, both dtypes) keep every contract."""

import dataclasses
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from gradcli.checking.check import check
from gradcli.checking.contract import CONTRACTS, check_contract
from gradcli.inputs.spec import build_spec, load_spec
from gradcli.layers import REGISTRY

SPECS = Path(__file__).resolve().parent.parent / "specs"

LINEAR_SPEC = "tensors:\n  x: {shape: [3]}\n  W: {shape: [2, 3]}\n  b: {shape: [2]}\n"
LINEAR_OK = """
def forward(x, W, b):
    return W @ x + b

def backward(grad_output, x, W, b):
    return {"x": W.T @ grad_output, "W": np.outer(grad_output, x), "b": grad_output}
"""


def _module(tmp_path, body, name="mine.py"):
    path = tmp_path / name
    path.write_text("import numpy as np\n\n" + textwrap.dedent(body))
    return path


def _broken(findings):
    return {(f.name, f.tensor) for f in findings if not f.passed}


# ---------------------------------------------------------------- twins: nothing is broken
LARGE = {
    "linear": {"tensors": {"x": {"shape": [64, 48]}, "W": {"shape": [32, 48]}}},
    "conv1d": {"tensors": {"x": {"shape": [4, 40, 3]}, "w": {"shape": [5, 3, 6]}},
               "options": {"stride": 2, "padding": "valid"}},
    "conv2d": {"tensors": {"X": {"shape": [2, 9, 9, 3]}, "W": {"shape": [3, 3, 3, 4]}},
               "options": {"padding": 1, "dilation": 2}},
    "attention": {"tensors": {"X": {"shape": [2, 24, 8]}, "W_Q": {"shape": [8, 8]},
                              "W_K": {"shape": [8, 8]}, "W_V": {"shape": [8, 8]},
                              "W_O": {"shape": [8, 5]}},
                  "options": {"causal": True, "heads": 2}},
    "rnn_step": {"tensors": {"x": {"shape": [6, 5]}, "prev_h": {"shape": [8]},
                             "Wx": {"shape": [5, 8]}, "Wh": {"shape": [8, 8]}}},
    "lstm_step": {"tensors": {"x": {"shape": [2, 3, 5]}, "prev_h": {"shape": [3, 4]},
                              "prev_c": {"shape": [2, 1, 4]}, "Wx": {"shape": [5, 16]},
                              "Wh": {"shape": [4, 16]}}},
    "layernorm": {"tensors": {"x": {"shape": [6, 5, 16]}, "gamma": {"shape": [16]}},
                  "options": {"eps": 1e-3}},
    "batchnorm": {"tensors": {"x": {"shape": [4, 5, 5, 6]}, "gamma": {"shape": [6]},
                              "beta": {"shape": [6]}},
                  "options": {"spatial": 2}},
    "groupnorm": {"tensors": {"X": {"shape": [2, 5, 6, 8]}, "gamma": {"shape": [8]},
                              "beta": {"shape": [8]}},
                  "options": {"groups": 4}},
    "maxpool2d": {"tensors": {"X": {"shape": [2, 9, 9, 3]}},
                  "options": {"size": 3, "stride": 2, "padding": 1}},
    "avgpool2d": {"tensors": {"X": {"shape": [2, 9, 8, 3]}},
                  "options": {"size": [3, 2], "stride": [2, 1], "padding": [1, 0],
                              "count_include_pad": False}},
    **{name: {"tensors": {"x": {"shape": [6, 7, 5]}}}
       for name in ("relu", "sigmoid", "tanh", "gelu", "softmax")},
    "leaky_relu": {"tensors": {"x": {"shape": [6, 7, 5]}}, "options": {"alpha": 0.2}},
    "flatten": {"tensors": {"x": {"shape": [3, 4, 5, 2]}}, "options": {"start": 2}},
    "dropout": {"tensors": {"x": {"shape": [6, 7, 5]}}, "options": {"p": 0.25, "seed": 3}},
    "embedding": {"tensors": {"idx": {"shape": [3, 7]}, "W": {"shape": [9, 6]}}},
    "mse": {"tensors": {"pred": {"shape": [2, 9, 5]}, "target": {"shape": [9, 5]}}},
    "softmax_cross_entropy": {"tensors": {"x": {"shape": [16, 7]}, "y": {"shape": [16]}}},
    "svm": {"tensors": {"x": {"shape": [2, 16, 7]}, "y": {"shape": [2, 16]}}},
}  # fmt: skip


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layer", list(REGISTRY))
def test_every_builtin_layer_keeps_every_contract(layer, dtype):
    specs = [
        load_spec(layer, None, dtype=dtype),
        build_spec(REGISTRY[layer], {**LARGE[layer], "dtype": dtype}, base=Path.cwd(),
                   source="<test>"),
    ]  # fmt: skip
    specs += [
        load_spec(layer, str(p), dtype=dtype)
        for p in SPECS.glob(f"{layer}*.yaml")
        if yaml.safe_load(p.read_text())["layer"] == layer  # softmax*.yaml: not only softmax's
    ]
    for spec in specs:
        for seed in range(3):  # other upstream directions g2: no false failure on any
            findings = check_contract(spec, seed=seed)
            assert _broken(findings) == set(), [f.detail for f in findings if not f.passed]
            assert {f.name for f in findings} == set(CONTRACTS)
    # attention's intermediates the backward returns are held to the same contracts
    covered = {f.tensor for f in findings if f.name == "linearity"}
    assert covered == {*spec.grad_shapes, *spec.layer.intermediates}


def test_check_json_lists_every_passing_contract(cli_json):
    doc = cli_json("check", "linear")
    assert doc["passed"]
    rows = doc["contract"]
    assert all(set(r) == {"name", "tensor", "passed", "detail", "error", "tolerance"} for r in rows)
    assert {(r["name"], r["tensor"]) for r in rows} >= {
        (c, t) for c in ("zero_upstream", "determinism", "linearity", "dtype") for t in "xWb"
    }
    assert ("dtype", "z") in {(r["name"], r["tensor"]) for r in rows}  # the forward's output
    assert all(r["passed"] for r in rows)


def test_answers_are_not_a_backward_no_contract(cli, tmp_path):
    spec = load_spec("linear", None)
    from gradcli.checking.check import compute

    np.savez(tmp_path / "a.npz", **compute(spec).gradients)
    doc = json.loads(cli("check", "linear", "--grads", tmp_path / "a.npz", "-f", "json").stdout)
    assert doc["passed"] and doc["contract"] == []


def test_correct_implementation_keeps_every_contract(cli, tmp_path, write_spec):
    path = _module(tmp_path, LINEAR_OK)
    for dtype in ("float64", "float32"):
        spec = write_spec(f"dtype: {dtype}\n" + LINEAR_SPEC)
        result = cli("check", "linear", spec, "--impl", path, "--format", "json")
        assert result.exit_code == 0, result.stdout
        assert all(r["passed"] for r in json.loads(result.stdout)["contract"])
    out = cli("check", "linear", write_spec(LINEAR_SPEC), "--impl", path).stdout
    assert "backward contract kept: zero_upstream, determinism, linearity, dtype, no_writes" in out


# ---------------------------------------------------------------- each contract broken
BACKWARD = "def backward(grad_output, x, W, b):\n    g = grad_output\n{}\n"
FORWARD = "def forward(x, W, b):\n    return W @ x + b\n\n"
BROKEN = {
    # forgot grad_output: right only where the upstream gradient is all ones (then every
    # gradient matches the numerical one, and only the contract catches it)
    "ignores grad_output": (
        '    g = np.ones(len(W))\n    return {"x": W.T @ g, "W": np.outer(g, x), "b": g}',
        {("zero_upstream", t) for t in "xWb"} | {("linearity", t) for t in "xWb"},
    ),
    "random noise": (
        '    return {"x": W.T @ g, "W": np.outer(g, x) + 1e-9 * np.random.randn(*W.shape), "b": g}',
        {("determinism", "W")},
    ),
    "a constant added": (
        '    return {"x": W.T @ g, "W": np.outer(g, x), "b": g + 1e-3}',
        {("zero_upstream", "b"), ("linearity", "b")},
    ),
    "nonlinear in grad_output": (
        '    return {"x": W.T @ (g * np.abs(g)), "W": np.outer(g, x), "b": g}',
        {("linearity", "x")},
    ),
    "returns float32": (
        '    return {"x": (W.T @ g).astype(np.float32), "W": np.outer(g, x), "b": g}',
        {("dtype", "x")},
    ),
    "returns float16": (
        '    return {"x": W.T @ g, "W": np.outer(g, x), "b": g.astype(np.float16)}',
        {("dtype", "b")},
    ),
    "returns rounded integers": (  # rounding is not linear either
        '    return {"x": W.T @ g, "W": np.outer(g, x), "b": np.rint(g).astype(int)}',
        {("dtype", "b"), ("linearity", "b")},
    ),
}


@pytest.mark.parametrize("bug", list(BROKEN))
def test_each_broken_contract_is_caught_and_named(cli, tmp_path, write_spec, bug):
    body, expected = BROKEN[bug]
    path = _module(tmp_path, FORWARD + BACKWARD.format(body))
    ones = "grad_output: {init: ones}\n" if bug == "ignores grad_output" else ""
    spec = write_spec(LINEAR_SPEC + ones)
    result = cli("check", "linear", spec, "--impl", path, "--format", "json")
    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    assert not doc["passed"]
    broken = {(r["name"], r["tensor"]) for r in doc["contract"] if not r["passed"]}
    assert broken == expected
    if bug in ("ignores grad_output", "returns float32", "random noise"):
        # the values are right (to float32 for a float32 answer): only the contract fails
        assert all(r["passed"] for r in doc["results"].values()), doc["results"]
    table = cli("check", "linear", spec, "--impl", path)
    assert table.exit_code == 1
    summary = table.stdout.strip().splitlines()[-1]
    assert summary.startswith("FAIL") and "contract" in summary
    for name, tensor in expected:
        assert name in summary and f"d{tensor}" in summary


def test_a_stateful_backward_is_not_deterministic(tmp_path, write_spec):
    path = _module(
        tmp_path,
        FORWARD
        + "calls = []\n\n"
        + BACKWARD.format(
            "    calls.append(1)\n"
            '    return {"x": W.T @ g * (1 + 1e-6 * len(calls)), "W": np.outer(g, x), "b": g}'
        ),
    )
    spec = load_spec("linear", str(write_spec(LINEAR_SPEC)), impl=_impl(path))
    findings = check_contract(spec)
    assert _broken(findings) >= {("determinism", "x")}
    # state outside the cache: no cache is blamed (the twin of the cache written into, below)
    (det,) = (f for f in findings if f.name == "determinism" and f.tensor == "x")
    assert "randomness or state in the backward" in det.detail and "cache" not in det.detail


INPLACE = """
def tanh_forward(x):
    out = np.tanh(x)
    return out, (x, out)

def tanh_backward(dout, cache):
    x, out = cache
    SQUARE
    return dout * (1 - sq)
"""


@pytest.mark.parametrize("square", ["sq = np.multiply(out, out, out=out)", "sq = out * out"])
def test_a_backward_writing_into_its_cache_is_named_as_the_cause(tmp_path, write_spec, square):
    """Outside test t12 (F10): CS231n code reusing a cached buffer (np.tanh(c, out=c)) is
    right on its first call; the later calls on that cache were read as 'not linear in
    grad_output'. The cause is named, and linearity is judged on fresh caches."""
    path = _module(tmp_path, INPLACE.replace("SQUARE", square))
    spec = load_spec("custom", str(write_spec("tensors:\n  x: {shape: [3, 4]}\n")),
                     impl=_impl(f"{path}:tanh"))  # fmt: skip
    findings = check_contract(spec)
    if "out=out" not in square:  # twin: the same backward computing into a new array
        assert _broken(findings) == set()
        return
    assert _broken(findings) == {("determinism", "x")}
    (det,) = (f for f in findings if not f.passed)
    assert "writes into its cache (cache[1])" in det.detail and "randomness" not in det.detail


def test_a_float32_forward_under_float64_is_a_dtype_finding(tmp_path, write_spec):
    path = _module(
        tmp_path,
        "def forward(x, W, b):\n    return (W @ x + b).astype(np.float32)\n\n"
        + BACKWARD.format('    return {"x": W.T @ g, "W": np.outer(g, x), "b": g}'),
    )
    spec = load_spec("linear", str(write_spec(LINEAR_SPEC)), impl=_impl(path))
    assert _broken(check_contract(spec)) == {("dtype", "z")}


def _impl(path):
    from gradcli.user.impl import load_impl

    return load_impl(str(path))


def test_attention_intermediates_from_an_impl_are_held_to_the_contract(tmp_path):
    """An --impl backward that returns dS with a constant added: named on S."""
    path = _module(
        tmp_path,
        """
        from gradcli.layers import REGISTRY

        LAYER = REGISTRY["attention"]

        def forward(X, W_Q, W_K, W_V):
            return LAYER.forward({"X": X, "W_Q": W_Q, "W_K": W_K, "W_V": W_V}, None)[0]

        def backward(grad_output, X, W_Q, W_K, W_V):
            t = {"X": X, "W_Q": W_Q, "W_K": W_K, "W_V": W_V}
            g = LAYER.backward(grad_output, LAYER.forward(t, LAYER.make_options({}))[1])
            return {**{n: g[n] for n in t}, "S": g["S"] + 0.01}
        """,
    )
    spec = load_spec("attention", None, impl=_impl(path))
    assert _broken(check_contract(spec)) == {("zero_upstream", "S"), ("linearity", "S")}
    report = check(spec)
    assert not report.passed and report.results["S"].passed is False  # and its values too


# ---------------------------------------------------------------- injected bugs, built-in
@pytest.mark.parametrize(
    ("bug", "expected"),
    [
        (lambda g, grads: {n: v + 1e-6 for n, v in grads.items()}, "zero_upstream"),
        (lambda g, grads: {n: v * (1 + np.abs(g).max()) for n, v in grads.items()}, "linearity"),
        (lambda g, grads: {n: v.astype(np.float32) for n, v in grads.items()}, "dtype"),
        (
            lambda g, grads: {n: v + 1e-8 * np.random.standard_normal(np.shape(v))
                              for n, v in grads.items()},
            "determinism",
        ),
    ],
)  # fmt: skip
@pytest.mark.parametrize("layer", list(REGISTRY))
def test_the_contract_catches_a_bug_injected_into_a_builtin_backward(layer, bug, expected):
    base = REGISTRY[layer]
    broken = dataclasses.replace(base, backward=lambda g, c: bug(g, base.backward(g, c)))
    spec = dataclasses.replace(load_spec(layer, None), layer=broken)
    names = {f.name for f in check_contract(spec) if not f.passed}
    assert expected in names


# ---------------------------------------------------------------- writes into the inputs
@pytest.mark.parametrize(
    ("layer", "forward", "tensor"),
    [
        ("linear", "def forward(x, W, b):\n    x *= 2\n    return W @ x + b\n", "x"),
        (
            "conv2d",
            "def forward(X, W, b):\n    X[0] = 0\n    return np.zeros((4, 3, 4))\n",
            "X",
        ),
        (
            "linear",
            "def forward(x, W, b):\n    np.multiply(W, 2, out=W)\n    return W @ x + b\n",
            "W",
        ),
    ],
)
def test_a_forward_writing_into_its_input_is_one_line(
    cli, tmp_path, assert_usage_error, layer, forward, tensor
):
    path = _module(tmp_path, forward + "\ndef backward(grad_output, **t):\n    return {}\n")
    for command in ("check", "compute"):
        result = cli(command, layer, "--impl", path)
        assert_usage_error(result, "mine.py", "forward writes in place into " + tensor,
                           f"{tensor} = {tensor}.copy()")  # fmt: skip


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('    dz *= 1\n    return {"x": W.T @ dz, "W": np.outer(dz, x), "b": dz}',
         "grad_output (dz)"),
        ('    W[:] = 0\n    return {"x": W.T @ dz, "W": np.outer(dz, x), "b": dz}', "W"),
        ('    b.fill(0); x += 1\n    return {"x": W.T @ dz, "W": np.outer(dz, x), "b": dz}',
         "x and b"),
    ],
)  # fmt: skip
def test_a_backward_writing_into_grad_output_or_a_tensor_is_one_line(
    cli, tmp_path, assert_usage_error, body, named
):
    path = _module(tmp_path, FORWARD + "def backward(dz, x, W, b):\n" + body + "\n")
    result = cli("check", "linear", "--impl", path)
    assert_usage_error(result, "backward writes in place into " + named, "mine.py:")


def test_a_read_only_array_of_the_users_own_is_not_blamed_on_an_input(cli, tmp_path):
    path = _module(
        tmp_path,
        "def forward(x, W, b):\n    z = np.broadcast_to(b, b.shape)\n    z += W @ x\n"
        "    return z\n\n" + BACKWARD.format('    return {"x": W.T @ g, "W": W, "b": g}'),
    )
    result = cli("check", "linear", "--impl", path)
    assert result.exit_code == 2 and "writes in place" not in result.stderr
    assert "read-only" in result.stderr


# writable numpy arrays on the memory of the read-only ones, as torch.from_numpy(x).relu_() or
# numba write: numpy's flag never sees it (the outside tester's T4)
RAW = ("import ctypes\n\ndef raw(a):\n    p = a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))\n"
       "    return np.ctypeslib.as_array(p, a.shape)\n\n")  # fmt: skip


@pytest.mark.parametrize(
    ("where", "body", "named"),
    [
        ("forward", RAW + "def forward(x, W, b):\n    raw(x)[x < 0] = 0\n    return W @ x + b\n"
         + "\ndef backward(dz, x, W, b):\n    return {'x': W.T @ dz, 'W': np.outer(dz, x), "
         + "'b': dz}\n", "x"),
        ("backward", RAW + FORWARD + "def backward(dz, x, W, b):\n    raw(dz)[:] = 1\n"
         + "    return {'x': W.T @ dz, 'W': np.outer(dz, x), 'b': dz}\n", "grad_output (dz)"),
    ],
)  # fmt: skip
def test_a_write_past_the_read_only_flag_is_one_line(
    cli, tmp_path, assert_usage_error, where, body, named
):
    path = _module(tmp_path, body)
    result = cli("check", "linear", "--impl", path)
    assert_usage_error(result, f"{where} changed {named} in place", "x = x.copy()"
                       if named == "x" else "dz = dz.copy()")  # fmt: skip
    # the twin: reading the same base array is no write
    ok = _module(tmp_path, body.replace("raw(x)[x < 0] = 0", "assert raw(x).sum() == x.sum()")
                 .replace("raw(dz)[:] = 1", "assert raw(dz).sum() == dz.sum()"))  # fmt: skip
    assert cli("check", "linear", "--impl", ok, "-q").exit_code == 0


# training code's dropout: a fresh mask at every call (the outside tester's T6), and its twin
# drawing the mask from a fixed seed
DROPOUT = """
state = {}

def forward(x):
    state["mask"] = (GEN.random(x.shape) >= 0.5) / 0.5
    return x * state["mask"]

def backward(grad_output, x):
    return {"x": grad_output * state["mask"]}
"""


@pytest.mark.parametrize("gen", ["GEN = np.random", "GEN = np.random.default_rng(0)"])
def test_a_forward_drawing_anew_at_each_call_is_named_as_the_cause(cli, tmp_path, gen):
    spec = tmp_path / "spec.yaml"
    spec.write_text("layer: custom\ntensors:\n  x: {shape: [4, 3]}\n")
    path = _module(tmp_path, gen + "\n" + DROPOUT)
    result = cli("check", "custom", spec, "--impl", path, "--format", "json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 1 and not doc["passed"]
    found = [c for c in doc["contract"] if c["name"] == "determinism" and not c["passed"]]
    assert [c["tensor"] for c in found] == ["out"]  # the forward's, not the backward's
    last = cli("check", "custom", spec, "--impl", path).stdout.splitlines()[-1]
    assert last.startswith("FAIL  custom: your forward is not deterministic: two calls at")
    assert "halvings" not in result.stderr  # no step is refined for it
    # the twin: the same mask drawn from a fixed seed at each call is a deterministic forward
    seeded = DROPOUT.replace("GEN.random", "np.random.default_rng(0).random")
    assert cli("check", "custom", spec, "--impl", _module(tmp_path, seeded, "seeded.py"),
               "-q").exit_code == 0  # fmt: skip


def test_a_write_past_the_flag_is_caught_on_arrays_of_any_size(cli, tmp_path, assert_usage_error):
    """Past 16 MB the arrays are compared by CRC-32 instead of byte for byte (the outside
    tester's T16: 18 MB went unchecked and a maskless relu passed)."""
    spec = tmp_path / "big.yaml"
    spec.write_text("layer: custom\ntensors:\n  x: {shape: [1500, 1500]}\n")  # 18 MB
    body = RAW + ("def forward(x):\n    raw(x)[x < 0] = 0\n    return x * 1.0\n\n"
                  "def backward(grad_output, x):\n    return {'x': grad_output}\n")  # fmt: skip
    result = cli("check", "custom", spec, "--impl", _module(tmp_path, body), "--mode", "probe")
    assert_usage_error(result, "forward changed x in place")


def test_a_float64_gradient_under_float32_says_how_to_allocate(cli, tmp_path):
    """Outside test t17 F12: a textbook backward allocating with np.zeros(shape) fails every
    float32 check on the dtype contract; the finding says what to write instead. The twin: a
    backward allocating like its input keeps the contract."""
    for zeros, code in (("np.zeros(W.shape)", 1), ("np.zeros_like(W)", 0)):
        mine = tmp_path / f"emb_{code}.py"
        mine.write_text(
            "import numpy as np\n"
            "def forward(idx, W):\n    return W[idx]\n"
            f"def backward(grad_output, idx, W):\n    dW = {zeros}\n"
            "    np.add.at(dW, idx, grad_output)\n    return {'W': dW}\n")  # fmt: skip
        r = cli("check", "embedding", "--impl", mine, "--dtype", "float32", "--format", "json")
        assert r.exit_code == code, r.output
        if code:
            said = " ".join(r.stdout.split())
            assert "np.zeros_like" in said
            assert "np.zeros(shape) and np.empty(shape) are float64" in said
