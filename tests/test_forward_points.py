"""A user's forward of a built-in layer is compared with ours beyond the spec's point: at
points drawn from the seed, where a coincidence of the spec's values (a centered x, zeros)
no longer hides a forward and a backward wrong in the same way (the numerical gradient is
taken of the user's forward, so the two agree with each other and the check alone passes)."""

import json
import textwrap

import numpy as np
import pytest

import gradcli

RNG = np.random.default_rng(7)
X = RNG.normal(size=(6, 3))
CENTERED = X - X.mean(0)  # per feature: batchnorm's mean is 0 here
ROW_CENTERED = X - X.mean(1, keepdims=True)  # per row: layernorm's mean is 0 here
GAMMA, BETA = RNG.normal(size=3), RNG.normal(size=3)
G = RNG.normal(size=(6, 3))

# batchnorm without the batch mean, forward and backward alike (the tester's L2)
BN_NO_MEAN = """
def forward(x, gamma, beta):
    var = (x**2).mean(0)
    return gamma * x / np.sqrt(var + 1e-5) + beta

def backward(grad_output, x, gamma, beta):
    inv = 1 / np.sqrt((x**2).mean(0) + 1e-5); xh = x * inv; dxh = grad_output * gamma
    return {"x": inv * (dxh - xh * (dxh * xh).mean(0)), "gamma": (grad_output * xh).sum(0),
            "beta": grad_output.sum(0)}
"""
BN_OK = """
def forward(x, gamma, beta):
    xc = x - x.mean(0)
    return gamma * xc / np.sqrt((xc**2).mean(0) + 1e-5) + beta

def backward(grad_output, x, gamma, beta):
    xc = x - x.mean(0); inv = 1 / np.sqrt((xc**2).mean(0) + 1e-5); xh = xc * inv
    dxh = grad_output * gamma
    return {"x": inv * (dxh - dxh.mean(0) - xh * (dxh * xh).mean(0)),
            "gamma": (grad_output * xh).sum(0), "beta": grad_output.sum(0)}
"""
# layernorm as RMSNorm: no centering of the rows
LN_RMS = BN_NO_MEAN.replace("mean(0)", "mean(1, keepdims=True)").replace(
    '(grad_output * xh).sum(0), "beta"', '(grad_output * xh).sum(0), "beta"'
)
LN_OK = BN_OK.replace("mean(0)", "mean(1, keepdims=True)")
# dropout whose mask is not scaled by 1/(1-p), forward and backward alike
DROP_UNSCALED = """
def forward(x, p=0.5, seed=0):
    return x * (np.random.default_rng(seed).random(x.shape) >= p)

def backward(grad_output, x, p=0.5, seed=0):
    return {"x": grad_output * (np.random.default_rng(seed).random(x.shape) >= p)}
"""
DROP_OK = DROP_UNSCALED.replace(">= p)", ">= p) / (1 - p)")

CASES = {  # layer -> (tensors whose values hide the bug, the wrong module, the right one)
    "batchnorm": ({"x": CENTERED, "gamma": GAMMA, "beta": BETA}, BN_NO_MEAN, BN_OK),
    "layernorm": ({"x": ROW_CENTERED, "gamma": GAMMA, "beta": BETA}, LN_RMS, LN_OK),
    "dropout": ({"x": np.zeros((6, 3))}, DROP_UNSCALED, DROP_OK),
}


def _functions(body):
    namespace = {"np": np}
    exec(textwrap.dedent(body), namespace)
    return namespace["forward"], namespace["backward"]


def _api(layer, body, tensors, **kw):
    forward, backward = _functions(body)
    return gradcli.check(layer, tensors, grad_output=G, forward=forward, backward=backward, **kw)


@pytest.mark.parametrize("layer", sorted(CASES))
def test_a_forward_wrong_only_away_from_the_spec_fails_through_the_api(layer):
    tensors, wrong, right = CASES[layer]
    report = _api(layer, wrong, tensors)
    assert not report.passed
    assert [k for k, _ in report.check.failures] == ["forward"]  # the forward, not the gradients
    assert report.check.forward_drawn == tuple(n for n in tensors)
    assert set(report.forward_point) == set(tensors) and not report.forward.passed
    assert "drawn at random; the spec's tensors hide it" in report.verdict()
    assert _api(layer, right, tensors).passed  # the twin: the same data, a right layer


def test_the_spec_point_alone_would_pass_them():
    """The premise: at the spec's tensors the wrong forward is ours, so only the drawn points
    can tell (else these tests would pass for the old reason)."""
    from gradcli.layers import REGISTRY

    for layer, (tensors, wrong, _) in CASES.items():
        forward, _ = _functions(wrong)
        ours, _ = REGISTRY[layer].forward(tensors, REGISTRY[layer].make_options({}))
        assert np.allclose(forward(**tensors), ours, atol=1e-12), layer


@pytest.mark.parametrize("layer", ["batchnorm", "dropout"])
def test_through_impl_the_cli_says_where(cli, tmp_path, layer):
    tensors, wrong, right = CASES[layer]
    for name, a in tensors.items():
        np.save(tmp_path / f"{name}.npy", a)
    np.save(tmp_path / "g.npy", G)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "tensors: {" + ", ".join(f"{n}: {n}.npy" for n in tensors) + "}\ngrad_output: g.npy\n"
    )
    (tmp_path / "wrong.py").write_text("import numpy as np\n" + wrong)
    (tmp_path / "right.py").write_text("import numpy as np\n" + right)
    result = cli("check", layer, spec, "--impl", tmp_path / "wrong.py", "--format", "json")
    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    assert not doc["passed"] and not doc["forward"]["passed"]
    assert doc["forward"]["at"] == "drawn" and doc["forward"]["drawn"] == list(tensors)
    assert all(r["passed"] for r in doc["results"].values())  # consistent with its forward
    text = cli("check", layer, spec, "--impl", tmp_path / "wrong.py").stdout
    assert all(len(line) <= 80 for line in text.splitlines()[:-1])  # prose wraps at the width
    flat = " ".join(text.split())  # its lines joined again
    assert "of a point gradcli drew" in flat and "hide the difference" in flat
    ok = cli("check", layer, spec, "--impl", tmp_path / "right.py", "--format", "json")
    assert ok.exit_code == 0, ok.stdout
    assert json.loads(ok.stdout)["forward"]["at"] == "spec"


def test_other_coincidences_invented_bugs():
    """Bugs these tests were not written for: leaky_relu as relu on positive inputs, linear
    without its bias where b is zeros, a gamma that is never applied where it is ones."""
    pos = {"x": np.abs(X) + 0.1}
    assert not gradcli.check(
        "leaky_relu", pos, forward=lambda x: np.maximum(x, 0.0),
        backward=lambda grad_output, x: {"x": grad_output * (x > 0)},
    ).passed  # fmt: skip
    W, x = RNG.normal(size=(3, 4)), RNG.normal(size=4)
    no_b = gradcli.check(
        "linear", {"x": x, "W": W, "b": np.zeros(3)}, forward=lambda x, W, b: W @ x,
        backward=lambda grad_output, x, W, b: {"x": W.T @ grad_output,
                                               "W": np.outer(grad_output, x), "b": 0 * b},
    )  # fmt: skip
    assert not no_b.passed and no_b.check.forward_drawn == ("x", "W", "b")
    ones = {"x": CENTERED, "gamma": np.ones(3), "beta": BETA}
    no_gamma = BN_OK.replace("gamma * xc", "xc").replace("grad_output * gamma", "grad_output")
    assert not _api("batchnorm", no_gamma, ones).passed
    assert _api("batchnorm", BN_OK, ones).passed


def test_kinks_and_ties_at_the_spec_give_no_false_forward_mismatch():
    """The drawn points are generic (no zeros, no ties); the spec's own kinks and ties stay
    the check's business, and a right layer passes on them."""
    x = np.array([[-1.0, 0.0, 2.0], [0.0, 0.0, -3.0]])
    relu = gradcli.check(
        "relu", {"x": x}, forward=lambda x: np.maximum(x, 0.0),
        backward=lambda grad_output, x: {"x": grad_output * (x > 0)},
    )  # fmt: skip
    assert relu.passed and relu.check.forward.passed and not relu.check.forward_drawn
    X4 = np.zeros((4, 4, 2))
    X4[0, 0, 0] = X4[2, 3, 1] = 1.0  # every other window: four tied zeros

    def pool_forward(X):
        return X.reshape(2, 2, 2, 2, 2).max(axis=(1, 3))

    def pool_backward(grad_output, X):
        w = X.reshape(2, 2, 2, 2, 2).transpose(0, 2, 4, 1, 3).reshape(2, 2, 2, 4)
        first = w.argmax(-1)  # the first maximum of each window, as the built-in's
        d = np.zeros_like(w)
        np.put_along_axis(d, first[..., None], grad_output[..., None], -1)
        return {"X": d.reshape(2, 2, 2, 2, 2).transpose(0, 3, 1, 4, 2).reshape(4, 4, 2)}

    pool = gradcli.check("maxpool2d", {"X": X4}, forward=pool_forward, backward=pool_backward)
    assert pool.passed, pool.verdict()
    assert pool.check.forward.passed and not pool.check.forward_drawn


def test_float32_right_layers_pass_at_the_drawn_points():
    for layer, (tensors, _, right) in CASES.items():
        report = _api(layer, right, tensors, dtype="float32")
        assert report.passed, (layer, report.verdict())


def test_labels_keep_their_values():
    """Only differentiated tensors are drawn: a loss's labels stay integers in range (the
    spec's at the first point, drawn from its values at the second, one repeated)."""
    from gradcli.checking.userwork import drawn_points
    from gradcli.inputs.spec import load_spec

    spec = load_spec("softmax_cross_entropy", None)
    for k, (point, drawn) in enumerate(drawn_points(spec)):
        assert "y" not in drawn and point["y"].dtype == spec.tensors["y"].dtype
        assert set(point["y"].tolist()) <= set(spec.tensors["y"].tolist())
        assert (point["y"] is spec.tensors["y"]) == (k % 2 == 0)
        assert not np.allclose(point["x"], spec.tensors["x"])
        assert abs(point["x"].mean()) > 0.1 * np.sqrt(np.mean(point["x"] ** 2))


# the forward right, the backward wrong only where the spec's values are not: gamma = 1 hides
# batchnorm's dx without gamma, an x >= 0 hides a relu backward without its mask
BN_NO_GAMMA_IN_DX = BN_OK.replace("dxh = grad_output * gamma", "dxh = grad_output")


def test_a_backward_wrong_only_away_from_the_spec_fails():
    ones = {"x": CENTERED, "gamma": np.ones(3), "beta": BETA}
    report = _api("batchnorm", BN_NO_GAMMA_IN_DX, ones)
    assert not report.passed and all(r.passed for r in report.results.values())
    assert report.forward.passed and [k for k, _ in report.check.failures] == ["backward"]
    b = report.backward
    assert b.failed == ("x",) and b.point is not None and b.grad_output is not None
    assert "your backward does not match the built-in backward" in report.verdict()
    assert "the spec's tensors hide it" in report.verdict()
    ok = _api("batchnorm", BN_OK, ones)  # the twin
    assert ok.passed and ok.backward.passed and set(ok.backward.results) == {"x", "gamma", "beta"}
    x = np.arange(6.0)
    relu = gradcli.check("relu", {"x": x}, forward=lambda x: np.maximum(x, 0.0),
                         backward=lambda grad_output, x: {"x": grad_output})  # fmt: skip
    assert not relu.passed and relu.backward.failed == ("x",)


def test_a_backward_failing_at_the_spec_is_not_reported_twice(cli, tmp_path):
    (tmp_path / "bad.py").write_text(
        "import numpy as np\n" + BN_OK.replace("dxh.mean(0) - ", "")
    )  # fmt: skip
    result = cli("check", "batchnorm", "--impl", tmp_path / "bad.py", "--format", "json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert not doc["results"]["x"]["passed"] and not doc["backward"]["passed"]
    assert doc["backward"]["drawn"] == ["x", "gamma", "beta", "grad_output"]
    text = cli("check", "batchnorm", "--impl", tmp_path / "bad.py").stdout.splitlines()
    assert "built-in backward" not in text[-1]  # the gradient's failure says it
    assert any("your backward vs the built-in backward" in line for line in text)


# a class-based layer keeping its forward's input for its backward (the outside tester's T1):
# the drawn points' backward once ran with another point's state and failed a right layer
STATEFUL = """
state = {}

def forward(x):
    state["x"] = x.copy()
    return np.maximum(x, 0.0)

def backward(grad_output, x):
    return {"x": grad_output * (state["x"] > MASK)}
"""


def test_a_layer_keeping_its_forwards_state_is_checked_at_each_points_own_forward(cli, tmp_path):
    x = X  # no entry at 0 or 0.5: no tie
    report = _api("relu", STATEFUL.replace("MASK", "0"), {"x": x})
    assert report.passed and report.backward.passed, report.verdict()
    (tmp_path / "relu.py").write_text("import numpy as np\n" + STATEFUL.replace("MASK", "0"))
    assert cli("check", "relu", "--impl", tmp_path / "relu.py", "-q").exit_code == 0
    # the twins: a mask on the wrong side of a tie-free threshold still fails, at the spec's
    # point and at the drawn ones
    wrong = _api("relu", STATEFUL.replace("MASK", "0.5"), {"x": x})
    assert not wrong.passed and not report.backward.failed and wrong.backward.failed == ("x",)


@pytest.mark.parametrize(("scale", "agrees"), [(1.0, True), (1.0001, False)])
def test_a_forward_computing_in_float32_is_held_to_float32s_round_off(scale, agrees):
    """Under a float64 spec a right forward computing in float32 differs from ours by float32
    round-off: its own precision (a dtype finding), not another function (the outside
    tester's T13); the twin: a forward off by 1e-4 still disagrees."""
    f32 = np.float32

    def forward(x, W, b):
        return (W.astype(f32) @ x.astype(f32) + b.astype(f32)) * f32(scale)

    def backward(grad_output, x, W, b):
        g = grad_output.astype(f32) * f32(scale)
        return {"x": W.astype(f32).T @ g, "W": np.outer(g, x.astype(f32)), "b": g}

    rng = np.random.default_rng(3)
    tensors = {"x": rng.normal(size=40), "W": rng.normal(size=(30, 40)), "b": rng.normal(size=30)}
    report = gradcli.check("linear", tensors, forward=forward, backward=backward)
    assert report.forward.passed == agrees
    kinds = [k for k, _ in report.check.failures]
    assert ("forward" in kinds) != agrees and "contract" in kinds  # float32 under float64


def test_the_built_in_backward_comparison_names_its_element_as_the_tables_do(cli, tmp_path):
    """`worst dW[137, 301]` beside tables saying `dW[o=137, i=301]` (outside test t54a F6)."""
    (tmp_path / "lin.py").write_text(
        "def forward(x, W, b):\n    return x @ W.T + b\n"
        "def backward(grad_output, x, W, b):\n"
        "    dW = grad_output.T @ x\n    dW[1, 2] += 0.5 * b[0]  # 0 at the spec's b\n"
        "    return {'x': grad_output @ W, 'W': dW, 'b': grad_output.sum(0)}\n"
    )  # fmt: skip
    (tmp_path / "s.yaml").write_text(
        "tensors:\n  x: {shape: [4, 3]}\n  W: {shape: [5, 3]}\n  b: {shape: [5], init: zeros}\n"
    )  # fmt: skip
    text = cli("check", "linear", tmp_path / "s.yaml", "--impl", tmp_path / "lin.py").stdout
    line = " ".join(text.split("your backward vs the built-in backward")[1].split()[:20])
    assert "worst dW[o=1, i=2]" in line, line
