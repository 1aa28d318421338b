"""Student files in CS231n's forms (tests/fixtures/cs231n): `gradcli check LAYER --impl
layers.py` finds affine_forward/affine_backward, softmax_loss, rnn_step_forward ... by CS231n's
names, calls them in CS231n's layout, passes the correct file and fails each classic mistake
naming the wrong gradient; a file in no accepted form is one exit-2 line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import gradcli

FIXTURES = Path(__file__).parent / "fixtures" / "cs231n"
SPECS = Path(__file__).parent.parent / "specs"
LAYERS, BUGGY = FIXTURES / "layers.py", FIXTURES / "layers_buggy.py"
RNN, RNN_BUGGY = FIXTURES / "rnn_layers.py", FIXTURES / "rnn_layers_buggy.py"

# layer, spec (None: the default), the buggy file's wrong gradient
CASES = [
    ("linear", SPECS / "linear_batched.yaml", "b", LAYERS, BUGGY),  # db: a mean, not a sum
    ("relu", None, "x", LAYERS, BUGGY),
    ("softmax_cross_entropy", None, "x", LAYERS, BUGGY),
    ("svm", None, "x", LAYERS, BUGGY),
    ("batchnorm", None, "x", LAYERS, BUGGY),
    ("layernorm", None, "x", LAYERS, BUGGY),
    ("groupnorm", None, "gamma", LAYERS, BUGGY),  # gamma (C,) as their (1, C, 1, 1)
    ("dropout", None, "x", LAYERS, BUGGY),
    ("conv2d", FIXTURES / "conv2d_small.yaml", "W", LAYERS, BUGGY),
    ("maxpool2d", FIXTURES / "maxpool2d_small.yaml", "X", LAYERS, BUGGY),
    ("rnn_step", None, "Wh", RNN, RNN_BUGGY),
    ("lstm_step", None, "prev_c", RNN, RNN_BUGGY),
    ("embedding", FIXTURES / "embedding_repeats.yaml", "W", RNN, RNN_BUGGY),
]


def _check(cli, layer, spec, impl, *more):
    args = ["check", layer, *([spec] if spec else []), "--impl", impl, "--format", "json", *more]
    result = cli(*args)
    return result, json.loads(result.stdout) if result.exit_code in (0, 1) else None


# the naive loops of conv and pooling cost milliseconds a call: a sample of coordinates
SAMPLED = {"conv2d": ("--mode", "sample", "--samples", "12"),
           "maxpool2d": ("--mode", "sample", "--samples", "12")}  # fmt: skip


@pytest.mark.parametrize(("layer", "spec", "wrong", "good", "bad"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_student_file_passes_and_its_classic_mistake_fails(cli, layer, spec, wrong, good, bad):
    more = SAMPLED.get(layer, ())
    result, doc = _check(cli, layer, spec, good, *more)
    assert result.exit_code == 0, result.stderr
    assert doc["passed"] and doc["forward"]["passed"]  # their forward, in their layout, is ours
    result, doc = _check(cli, layer, spec, bad, *more)
    assert result.exit_code == 1, result.stderr
    assert [n for n, r in doc["results"].items() if not r["passed"]] == [wrong]
    assert doc["forward"]["passed"]  # the forwards are right: only the backward is blamed


def test_the_first_line_names_the_functions_and_their_layout(cli):
    table = cli("check", "maxpool2d", FIXTURES / "maxpool2d_small.yaml", "--impl", LAYERS,
                *SAMPLED["maxpool2d"]).stdout  # fmt: skip
    assert table.startswith("maxpool2d: your max_pool_forward_naive, max_pool_backward_naive in ")
    assert "CS231n's layout: X as (N, C, H, W), pool_param" in " ".join(table.split())
    table = cli("check", "softmax_cross_entropy", "--impl", LAYERS).stdout
    assert table.split("\n")[0].rstrip() == "softmax_cross_entropy: your softmax_loss in layers.py"


def test_worst_elements_say_where_they_are_in_the_students_arrays():
    """Every element of gradcli's gradients is named in the student's own array: conv2d's
    dW[m, n, d, c] is their dw[c, d, m, n] (w as (F, C, HH, WW)), dX[b, i, j, d] their
    dx[b, d, i, j], each under their forward's own parameter name."""
    from gradcli.layers import REGISTRY
    from gradcli.user.impl import load_impl, user_layer

    layer = user_layer(load_impl(str(LAYERS)), REGISTRY["conv2d"], ())
    shapes = {"X": (2, 4, 5, 3), "W": (3, 2, 3, 4), "b": (4,)}
    for idx in np.ndindex(shapes["W"]):
        m, n, d, c = idx
        assert layer.yours("W", shapes, idx) == f"dw[{c},{d},{m},{n}]"
    for idx in np.ndindex(shapes["X"]):
        b, i, j, d = idx
        assert layer.yours("X", shapes, idx) == f"dx[{b},{d},{i},{j}]"
    assert layer.yours("b", shapes, (2,)) == "db[2]"


def test_where_the_layout_is_gradclis_no_second_index_is_shown(cli, tmp_path):
    """The twin: the same wrong dW[o=1, i=3] written in gradcli's own form (W (out, in)) is
    named once; in CS231n's form (w = W^T) it is their dw[3,1]."""
    ours = tmp_path / "ours.py"
    ours.write_text(
        "import numpy as np\n"
        "def forward(x, W, b):\n    return W @ x + b\n"
        "def backward(grad_output, x, W, b):\n"
        "    dW = np.outer(grad_output, x)\n    dW[1, 3] += 1\n"
        "    return {'x': W.T @ grad_output, 'W': dW, 'b': grad_output}\n"
    )
    theirs = tmp_path / "theirs.py"
    theirs.write_text(
        "def affine_forward(x, w, b):\n    return x @ w + b, (x, w)\n"
        "def affine_backward(dout, cache):\n    x, w = cache\n    dw = x.T @ dout\n"
        "    dw[3, 1] += 1\n    return dout @ w.T, dw, dout.sum(axis=0)\n"
    )
    wide = {"COLUMNS": "200"}
    out = cli("check", "linear", "--impl", ours, env=wide).stdout
    assert "worst dW[o=1, i=3]: analytic" in out and "your" not in out.splitlines()[-1]
    out = cli("check", "linear", "--impl", theirs, env=wide).stdout
    assert "worst dW[o=1, i=3] (your dw[3,1]): analytic" in out


def test_spatial_batchnorm_is_chosen_by_the_options(cli):
    # layers.py holds batchnorm_forward and spatial_batchnorm_forward: spatial: 2 picks the second
    result, doc = _check(cli, "batchnorm", SPECS / "batchnorm_spatial.yaml", LAYERS)
    assert result.exit_code == 0, result.stderr
    assert doc["forward"]["passed"]
    table = cli("check", "batchnorm", SPECS / "batchnorm_spatial.yaml", "--impl", LAYERS).stdout
    assert table.startswith("batchnorm: your spatial_batchnorm_forward, spatial_batchnorm_backward")


def test_a_layout_misread_cannot_pass(cli, tmp_path):
    """affine written in gradcli's layout (W (out, in)) under CS231n's names: with a square W
    the shapes fit, and the forward compared with ours fails (never a silent pass)."""
    mine = tmp_path / "layers.py"
    mine.write_text(
        "def affine_forward(x, w, b):\n    return x @ w.T + b, (x, w)\n"
        "def affine_backward(dout, cache):\n    x, w = cache\n"
        "    return dout @ w, dout.T @ x, dout.sum(0)\n"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text("tensors:\n  x: {shape: [3, 4]}\n  W: {shape: [4, 4]}\n  b: {shape: [4]}\n")
    result, doc = _check(cli, "linear", spec, mine)
    assert result.exit_code == 1
    assert not doc["forward"]["passed"]
    table = cli("check", "linear", spec, "--impl", mine).stdout
    assert "CS231n's layout: x as (N, D) rows, w = Wᵀ (D, M)" in " ".join(table.split())


def test_a_file_in_no_form_is_one_line_listing_the_forms(cli, tmp_path):
    mine = tmp_path / "mine.py"
    mine.write_text("def helper(x):\n    return x\n")
    result = cli("check", "lstm_step", "--impl", mine)
    assert result.exit_code == 2 and result.stdout == ""
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(f"gradcli: error: {mine}: defines no forward")
    assert "lstm_step_forward and lstm_step_backward" in line
    assert "backward(dout, cache)" in line and "NAME(x, y) -> (loss, dx)" in line


def test_named_functions_a_prefix_an_explicit_pair_and_a_loss(cli):
    assert _check(cli, "linear", SPECS / "linear_batched.yaml", f"{BUGGY}:affine")[0].exit_code == 1
    ok = f"{LAYERS}:batchnorm_forward,batchnorm_backward"
    assert _check(cli, "batchnorm", None, ok)[0].exit_code == 0
    result, doc = _check(cli, "svm", None, f"{BUGGY}:softmax_loss")  # the wrong loss: forward
    assert result.exit_code == 1 and not doc["forward"]["passed"]


def test_a_loss_function_that_returns_something_else_is_refused(cli, tmp_path):
    mine = tmp_path / "loss.py"
    mine.write_text("import numpy as np\ndef my_loss(x, y):\n    return float(np.sum(x))\n")
    result = cli("check", "softmax_cross_entropy", "--impl", f"{mine}:my_loss")
    assert result.exit_code == 2
    assert "my_loss is one function, read as a loss: it must return (loss, dx)" in result.stderr


def test_options_their_code_cannot_take_are_refused_by_name(cli):
    result = cli("check", "conv2d", SPECS / "conv2d_padded_dilated.yaml", "--impl", LAYERS)
    assert result.exit_code == 2
    assert "options.dilation: CS231n's conv_forward_naive has no dilation" in result.stderr
    result = cli("check", "softmax_cross_entropy", "--impl", LAYERS, "--dtype", "float32")
    assert result.exit_code == 0, result.stderr


def test_the_python_api_takes_the_same_forms():
    sys.path.insert(0, str(FIXTURES))
    try:
        import layers  # noqa: PLC0415 - the fixture, as a student imports it
    finally:
        sys.path.remove(str(FIXTURES))
    loss = gradcli.check("softmax_cross_entropy", forward=layers.softmax_loss)
    assert loss.passed
    x, w, b = np.ones((2, 3)), np.arange(12.0).reshape(4, 3), np.zeros(4)
    report = gradcli.check("linear", {"x": x, "W": w, "b": b}, forward=layers.affine_forward,
                           backward=layers.affine_backward)  # fmt: skip
    assert report.passed and report.check.forward.passed
    comp = gradcli.compute(
        "linear", {"x": x, "W": w, "b": b}, forward=layers.affine_forward,
        backward=layers.affine_backward, grad_output=np.ones((2, 4)),
    )  # fmt: skip
    np.testing.assert_allclose(comp.gradients["W"], np.full((4, 3), 2.0))  # sum_n x[n] per row
    np.testing.assert_allclose(comp.gradients["x"], np.tile(w.sum(axis=0), (2, 1)))


VANILLA = '''
import numpy as np
def dropout_forward(x, dropout_param):
    np.random.seed(dropout_param["seed"])
    mask = np.random.rand(*x.shape) < dropout_param["p"]
    return x * mask{scale}, (mask, dropout_param)
def dropout_backward(dout, cache):
    mask, dropout_param = cache
    return dout * mask{scale}
'''


@pytest.mark.parametrize(("scale", "spec", "passed"), [
    (" / dropout_param['p']", None, True),  # inverted dropout, p keeps: right
    ("", None, False),  # vanilla dropout: backward consistent with it, the forward is wrong
    (" / (1 - dropout_param['p'])", SPECS / "dropout_p03.yaml", False),  # p read as dropping
])  # fmt: skip
def test_dropout_is_compared_where_their_own_mask_keeps(cli, tmp_path, scale, spec, passed):
    """Their mask is their generator's, never ours: their forward must be x / (1 - p) where it
    keeps an element. A wrong scale passes the gradient check (the backward agrees with the
    forward) and is caught there."""
    mine = tmp_path / "layers.py"
    mine.write_text(VANILLA.replace("{scale}", scale.replace("'", '"')))
    result, doc = _check(cli, "dropout", spec, mine)
    assert result.exit_code == (0 if passed else 1), result.stderr
    assert doc["results"]["x"]["passed"] and doc["forward"]["passed"] == passed


def test_options_no_cs231n_form_takes_are_one_line(cli, tmp_path):
    spec = tmp_path / "bn.yaml"
    spec.write_text("options: {spatial: 1}\ntensors:\n  x: {shape: [3, 4, 2]}\n"
                    "  gamma: {shape: [2]}\n")  # fmt: skip
    for impl in (LAYERS, f"{LAYERS}:batchnorm_forward"):  # found by its names, or named
        result = cli("check", "batchnorm", spec, "--impl", impl)
        assert result.exit_code == 2 and result.stdout == ""
        assert "spatial_batchnorm_forward (x (N, D) with spatial: 0, or images" in result.stderr
        assert result.stderr.strip().endswith("take none of this spec's options (spatial: 1)")


def test_a_form_the_file_lacks_is_named(cli, tmp_path):
    """The outside tester's M1: a layers.py with batchnorm_forward/backward only, checked under
    spatial: 2, was told the options are unsupported; it lacks spatial_batchnorm_*."""
    mine = tmp_path / "bn_only.py"
    mine.write_text("def batchnorm_forward(x, gamma, beta, bn_param): pass\n"
                    "def batchnorm_backward(dout, cache): pass\n")  # fmt: skip
    spec = tmp_path / "bn.yaml"
    spec.write_text("options: {spatial: 2}\ntensors:\n  x: {shape: [2, 2, 2, 3]}\n"
                    "  gamma: {shape: [3]}\n")  # fmt: skip
    result = cli("check", "batchnorm", spec, "--impl", mine)
    assert result.exit_code == 2 and result.stdout == "", result.stderr
    assert "defines batchnorm_forward and batchnorm_backward but no spatial_batchnorm_forward(" \
        in result.stderr and "take none" not in result.stderr
    whole = cli("check", "batchnorm", spec, "--impl", LAYERS, "-q")  # the twin: it has them
    assert whole.exit_code == 0, whole.stderr


def test_a_gradient_in_gradcli_layout_is_refused_naming_cs231n_layout(cli, tmp_path):
    """dw returned as gradcli's (kh, kw, C_in, C_out) instead of CS231n's (F, C, HH, WW): the
    sizes agree, the shapes do not, and the message says which layout was expected."""
    (tmp_path / "layers.py").write_text(LAYERS.read_text())
    mine = tmp_path / "mine.py"
    mine.write_text(
        "from layers import conv_backward_naive as right, conv_forward_naive  # noqa: F401\n"
        "def conv_backward_naive(dout, cache):\n"
        "    dx, dw, db = right(dout, cache)\n"
        "    return dx, dw.transpose(2, 3, 1, 0), db\n"
    )
    result = cli("check", "conv2d", FIXTURES / "conv2d_small.yaml", "--impl", mine)
    assert result.exit_code == 2, result.stderr
    assert ("conv_backward_naive's gradient 2 of 3 (dW) has shape [3, 3, 2, 2], expected "
            "[2, 2, 3, 3] (X as (N, C, H, W), W as (F, C, HH, WW)") in result.stderr  # fmt: skip


def test_half_a_pair_is_named_not_read_as_a_loss(cli, tmp_path):
    mine = tmp_path / "half.py"
    mine.write_text("import numpy as np\ndef relu_forward(x):\n    return np.maximum(x, 0), x\n")
    for impl, said in ((mine, f"{mine}: defines relu_forward but no relu_backward(...)"),
                       (f"{mine}:relu_forward", "defines relu_forward but no relu_backward(...)")):
        result = cli("check", "relu", "--impl", impl)
        assert result.exit_code == 2 and said in result.stderr


def test_a_name_that_could_be_a_loss_or_a_pair_is_refused(cli, tmp_path):
    mine = tmp_path / "amb.py"
    mine.write_text("def affine(x, w, b):\n    return 0.0, x\n"
                    "def affine_forward(x, w, b):\n    return x, None\n"
                    "def affine_backward(dout, cache):\n    return dout, dout, dout\n")  # fmt: skip
    result = cli("check", "linear", "--impl", f"{mine}:affine")
    assert result.exit_code == 2 and "defines affine and also affine_forward with" in result.stderr


def test_one_initial_state_for_a_batch_is_refused_for_cs231n_code(cli, tmp_path):
    """gradcli broadcasts prev_h (H,) over x (N, D); CS231n's rnn_step takes one N for both."""
    spec = tmp_path / "rnn.yaml"
    spec.write_text(
        "tensors:\n  x: {shape: [2, 4]}\n  prev_h: {shape: [3]}\n"
        "  Wx: {shape: [4, 3]}\n  Wh: {shape: [3, 3]}\n  b: {shape: [3]}\n"
    )
    result = cli("check", "rnn_step", spec, "--impl", RNN)
    assert result.exit_code == 2
    assert "takes x and prev_h with the same batch axes" in result.stderr
    assert "this spec has x [2, 4], prev_h [3]" in result.stderr


# batchnorm in gradcli's own form, every option as a keyword (the outside tester's T7): spatial 1
# has no CS231n form, which must not refuse code that is not CS231n's
OWN_BATCHNORM = """
def forward(x, gamma, beta, spatial=0, eps=1e-5):
    axes = tuple(range(x.ndim - spatial - 2, x.ndim - 1))
    mu, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta

def backward(grad_output, x, gamma, beta, spatial=0, eps=1e-5):
    axes = tuple(range(x.ndim - spatial - 2, x.ndim - 1))
    m = np.prod([x.shape[a] for a in axes])
    mu, std = x.mean(axis=axes, keepdims=True), np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    xhat, lead, d = (x - mu) / std, tuple(range(x.ndim - 1)), grad_output * gamma
    dx = (m * d - d.sum(axis=axes, keepdims=True)
          - xhat * (d * xhat).sum(axis=axes, keepdims=True)) / (m * std)
    return {"x": dx * SCALE, "gamma": (grad_output * xhat).sum(axis=lead),
            "beta": grad_output.sum(axis=lead)}
"""


def test_gradclis_own_form_takes_options_no_cs231n_form_has(cli, tmp_path):
    spec = tmp_path / "bn.yaml"
    spec.write_text("layer: batchnorm\noptions: {spatial: 1}\ntensors:\n  x: {shape: [4, 3, 5]}\n"
                    "  gamma: {shape: [5]}\n  beta: {shape: [5]}\n")  # fmt: skip
    for scale, code in (("1", 0), ("1.01", 1)):  # the twin: a wrong dx still fails
        mine = tmp_path / f"bn{code}.py"
        mine.write_text("import numpy as np\n" + OWN_BATCHNORM.replace("SCALE", scale))
        result = cli("check", "batchnorm", spec, "--impl", mine, "-q")
        assert result.exit_code == code, result.stderr
    # CS231n's pair under the same options is still refused by name, one function "takes"
    result = cli("check", "batchnorm", spec, "--impl", LAYERS)
    assert result.exit_code == 2
    assert "take none of this spec's options (spatial: 1)" in result.stderr


def test_dropout_keeping_with_the_drop_rate_fails_by_its_count(cli, tmp_path):
    """p read as the drop rate where CS231n's is the keep probability: mask = rand >= p kept
    30% at p = 0.7 with the right values x / 0.7, so the comparison where it keeps passed
    (the outside tester's T8); how many it keeps is a draw of its own and must be plausible."""
    spec = tmp_path / "drop.yaml"
    spec.write_text("layer: dropout\noptions: {p: 0.3}\ntensors:\n  x: {shape: [20, 20]}\n")
    keeps = VANILLA.replace("{scale}", ' / dropout_param["p"]')
    mine = tmp_path / "layers.py"
    for mask, passed in (("< ", True), (">= ", False)):  # the twin first: it keeps with p
        rand = "np.random.rand(*x.shape) "
        mine.write_text(keeps.replace(rand + "< ", rand + mask))
        result, doc = _check(cli, "dropout", spec, mine)
        assert result.exit_code == (0 if passed else 1), result.stderr
        assert doc["forward"]["passed"] == passed and doc["results"]["x"]["passed"]
    last = cli("check", "dropout", spec, "--impl", mine).stdout.splitlines()[-1]
    assert "your forward does not match the built-in forward (it keeps" in last
    assert "probability 1 - p = 0.7 keeps 280 +- 9" in last


def test_a_custom_layers_tensors_named_after_its_parameters_go_by_name():
    """affine_forward(x, w, b) given {"w": w, "x": x, "b": b}: by position x got w (the
    outside tester's T12f); named after its parameters, each goes to its own. The twin:
    other names still go by position."""
    sys.path.insert(0, str(FIXTURES))
    try:
        import layers  # noqa: PLC0415 - the fixture, as a student imports it
    finally:
        sys.path.remove(str(FIXTURES))
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(2, 3)), rng.normal(size=(3, 4)), rng.normal(size=4)
    pair = {"forward": layers.affine_forward, "backward": layers.affine_backward}
    assert gradcli.check(tensors={"w": w, "x": x, "b": b}, **pair).passed
    report = gradcli.check(tensors={"p": x, "q": w, "r": b}, **pair)  # by position: x, w, b
    assert report.passed and list(report.results) == ["p", "q", "r"]


def test_a_pair_by_cs231n_names_in_gradclis_own_form(tmp_path):
    """abs_forward(x) and abs_backward(grad_output, x) named as FILE.py:abs were read as
    CS231n's (out, cache) pair and refused (outside test t65b F7): a backward taking the
    layer's tensors by name is gradcli's form. The twins: a wrong one fails, and a pair in
    CS231n's form (dout, cache) is still read as CS231n's."""
    own = ("import numpy as np\n"
           "def abs_forward(x):\n    return np.abs(x)\n"
           "def abs_backward(grad_output, x):\n    return {'x': grad_output * np.sign(x) * K}\n")
    x = np.linspace(-1, 1, 8).reshape(2, 4) + 0.05
    for k, passes in ((1, True), (2, False)):
        (tmp_path / f"own{k}.py").write_text(own.replace("K}", f"{k}}}"))
        r = gradcli.check(f"{tmp_path}/own{k}.py:abs", {"x": x})
        assert r.passed == passes, r.verdict()
    (tmp_path / "theirs.py").write_text(
        "import numpy as np\n"
        "def relu_forward(x):\n    return np.maximum(x, 0), x\n"
        "def relu_backward(dout, cache):\n    return dout * (cache > 0)\n")
    assert gradcli.check(f"{tmp_path}/theirs.py:relu", {"x": x}).passed


def test_a_custom_pair_with_two_outputs_is_refused_for_what_it_is(tmp_path, cli):
    """twoout_forward -> (h, c, cache) with twoout_backward(dnext_h, dnext_c, cache) read
    'its backward takes 2 arguments' beside one taking 3 (outside test t67b F2)."""
    (tmp_path / "two.py").write_text(
        "import numpy as np\n"
        "def twoout_forward(x):\n    return np.tanh(x), x * 2, x\n"
        "def twoout_backward(dnext_h, dnext_c, cache):\n    return dnext_h, dnext_c\n")
    (tmp_path / "s.yaml").write_text("layer: custom\ntensors:\n  x: {shape: [2, 3]}\n")
    r = cli("check", "custom", tmp_path / "s.yaml", "--impl", f"{tmp_path}/two.py:twoout")
    assert r.exit_code == 2 and "twoout_backward takes 3 arguments: a custom layer in " \
        "CS231n's form has one output" in r.stderr, r.stderr
