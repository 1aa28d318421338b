"""CS231n's layouts named where a student's arrays or shapes arrive in them outside --impl (the
outside tester's t20 F1, F1b): a --grads answer shaped as their backward returns it (dx as
(N, C, H, W), dw as (F, C, HH, WW), affine's dw as (D, M)) is refused saying so with the numpy
call that fixes it; where the shapes agree (a square conv) the failing check's hint says the
answer is the right gradient in their layout (verified, as every hint); a spec in their shapes
gets the transposes appended to its one-line error. gradcli converts nothing itself.

The layouts come from the layers' declared forms (gradcli/layers/cs231n.py), so every layer
with a form is covered: the parametrized tests run over the registry's forms. The CS231n
student's file in tests/fixtures/cs231n is the oracle of their layout's gradients."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import gradcli
from gradcli.errors import GradcliError
from gradcli.layers import REGISTRY, get_layer

FIXTURES = Path(__file__).parent / "fixtures" / "cs231n"


def _student():
    spec = importlib.util.spec_from_file_location("student_layers", FIXTURES / "layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STUDENT = _student()

# per layer with a form that transposes a tensor: options, gradcli's shapes whose CS231n layout
# differs, and square shapes whose CS231n layout has the same shape (C == H == W)
SHAPES = {
    "linear": ({}, {"x": (4, 5), "W": (3, 5), "b": (3,)}, {"x": (4, 3), "W": (3, 3), "b": (3,)}),
    "conv2d": (
        {"padding": 1},
        {"X": (2, 5, 6, 3), "W": (3, 3, 3, 4), "b": (4,)},
        {"X": (2, 3, 3, 3), "W": (3, 3, 3, 3), "b": (3,)},
    ),
    "maxpool2d": ({}, {"X": (2, 4, 6, 3)}, {"X": (2, 4, 4, 4)}),
    "avgpool2d": ({}, {"X": (2, 4, 6, 3)}, {"X": (2, 4, 4, 4)}),
    "batchnorm": (
        {"spatial": 2},
        {"x": (2, 4, 6, 3), "gamma": (3,), "beta": (3,)},
        {"x": (2, 3, 3, 3), "gamma": (3,), "beta": (3,)},
    ),
    "groupnorm": (
        {},
        {"X": (2, 3, 5, 4), "gamma": (4,), "beta": (4,)},
        {"X": (2, 4, 4, 4), "gamma": (4,), "beta": (4,)},
    ),
}


def _forms(transposed: bool):
    """(layer, form, tensor, arg) for every tensor a registry form lays out otherwise."""
    out = []
    for name in REGISTRY:
        for form in get_layer(name).cs231n:
            for n, arg in form.args.items():
                if arg.label and (arg.axes is not None or not transposed):
                    out.append((name, form, n, arg))
    return out


TRANSPOSED = _forms(True)
ALL = _forms(False)


def _ids(cases):
    return [f"{c[0]}-{c[1].forward}-{c[2]}" for c in cases]


def _tensors(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.normal(size=s) for n, s in shapes.items()}


def _right(layer, tensors, options, g):
    lay = get_layer(layer)
    opts = lay.resolve_options(lay.make_options(options), {n: a.shape for n, a in tensors.items()})
    out, cache = lay.forward(tensors, opts)
    return {n: np.asarray(v) for n, v in lay.backward(g(out.shape), cache).items()}


def _upstream(seed=1):
    rng = np.random.default_rng(seed)
    return lambda shape: rng.normal(size=shape)


def _layout_hints(report):
    return [h for r in report.results.values() for h in r.hints
            if "cs231n-layout" in str(getattr(h, "cause", "")) or "CS231n" in str(h)]  # fmt: skip


def test_every_transposing_form_has_shapes_here():
    """A layer whose form transposes a tensor is in SHAPES, so the tests below cover it."""
    assert {c[0] for c in TRANSPOSED} <= set(SHAPES)
    assert {"linear", "conv2d"} <= {c[0] for c in TRANSPOSED}


@pytest.mark.parametrize(("layer", "form", "name", "arg"), ALL, ids=_ids(ALL))
def test_the_spelled_call_is_what_the_form_does(layer, form, name, arg):
    """The numpy call a message spells turns their array into gradcli's, as the form's own
    ``back`` does (the call is built from the Arg's axes, not written per layer)."""
    lay = get_layer(layer)
    at_default = form.applies(lay.make_options({})) and name in lay.default_shapes
    shapes = [lay.default_shapes[name]] if at_default else []
    if layer in SHAPES and name in SHAPES[layer][1]:
        shapes += [SHAPES[layer][1][name], SHAPES[layer][2][name]]
    assert shapes
    for shape in shapes:
        ours = np.arange(int(np.prod(shape)), dtype=float).reshape(shape)
        theirs = np.asarray(arg.to(ours))
        fixed = eval("a" + arg.call(shape), {"a": theirs})  # noqa: S307 - our own spelled call
        assert fixed.shape == shape and np.array_equal(fixed, ours), (shape, arg.call(shape))
        assert np.array_equal(arg.back(theirs, shape), ours)


# ---------------------------------------------------------------- 1. answers of their shapes
@pytest.mark.parametrize(("layer", "form", "name", "arg"), ALL, ids=_ids(ALL))
def test_an_answer_in_their_shape_is_refused_naming_their_layout(layer, form, name, arg):
    lay = get_layer(layer)
    options, shapes, _ = SHAPES.get(layer, ({}, dict(lay.default_shapes), None))
    if not form.applies(lay.make_options(options)):
        pytest.skip("this form is not the layer's at these options")
    if name in lay.constants(shapes, lay.make_options(options)):
        pytest.skip("no gradient: labels and indices are passed, never answered")
    theirs = arg.theirs(shapes[name])
    if theirs == tuple(shapes[name]):
        pytest.skip("their layout of it has gradcli's shape here")
    tensors = _tensors(shapes)
    right = _right(layer, tensors, options, _upstream())
    grads = {**right, name: np.zeros(theirs)}
    with pytest.raises(GradcliError) as e:
        gradcli.check(layer, tensors, options=options, grads={f"d{n}": a for n, a in grads.items()})
    text = str(e.value)
    assert f"is d{name} in CS231n's layout {arg.label}" in text, text
    assert f"pass d{name}{arg.call(shapes[name])}" in text, text
    assert "\n" not in text


def _their_conv_answers(cli, tmp_path, x_shape, filters):
    """(a conv2d spec of X ``x_shape``, padding 1, and CS231n's conv_backward_naive's dx, dw,
    db at its tensors, in their layout), their forward checked to be ours."""
    n, h, w, c = x_shape
    spec = tmp_path / "conv.yaml"
    spec.write_text(f"layer: conv2d\noptions: {{stride: 1, padding: 1}}\ntensors:\n"
                    f"  X: {{shape: [{n}, {h}, {w}, {c}]}}\n"
                    f"  W: {{shape: [3, 3, {c}, {filters}]}}\n  b: {{shape: [{filters}]}}\n")
    dump = tmp_path / "c.npz"
    assert cli("compute", "conv2d", spec, "-o", dump).exit_code == 0
    d = np.load(dump)
    out, cache = STUDENT.conv_forward_naive(d["X"].transpose(0, 3, 1, 2),
                                            d["W"].transpose(3, 2, 0, 1), d["b"],
                                            {"stride": 1, "pad": 1})  # fmt: skip
    assert np.allclose(out.transpose(0, 2, 3, 1), d["output"])  # their forward is ours
    return spec, STUDENT.conv_backward_naive(d["grad_output"].transpose(0, 3, 1, 2), cache)


def test_conv2d_answer_file_in_nchw_is_refused_with_the_transposes(cli, tmp_path,
                                                                   assert_usage_error):  # fmt: skip
    """t20 F1's non-square repro: dX (N, C, H, W) and dW (F, C, HH, WW) from CS231n's
    conv_backward_naive, saved as it returns them; both calls named in the one line, and the
    file fixed by exactly those calls passes."""
    spec, (dx, dw, db) = _their_conv_answers(cli, tmp_path, (2, 5, 5, 3), 4)
    theirs = tmp_path / "theirs.npz"
    np.savez(theirs, dX=dx, dW=dw, db=db)
    result = cli("check", "conv2d", spec, "--grads", theirs)
    assert_usage_error(
        result, "theirs.npz", "dX", "[2, 3, 5, 5] is dX in CS231n's layout (N, C, H, W)",
        "conv_backward_naive", "X (..., H, W, C_in)", "converts nothing",
        "save dX.transpose(0, 2, 3, 1)", "and dW.transpose(2, 3, 1, 0)",
    )  # fmt: skip
    fixed = tmp_path / "fixed.npz"
    np.savez(fixed, dX=dx.transpose(0, 2, 3, 1), dW=dw.transpose(2, 3, 1, 0), db=db)
    result = cli("check", "conv2d", spec, "--grads", fixed, "-q")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "hint" not in result.stdout


def test_linear_answer_as_their_dw_is_refused_with_the_transpose(cli, tmp_path,
                                                                 assert_usage_error):  # fmt: skip
    """affine_backward's dw (D, M) as a .npy --wrt W: named, and dW.T (well, W.T: the key) given."""
    spec = tmp_path / "lin.yaml"
    spec.write_text("layer: linear\ntensors:\n  x: {shape: [4, 5]}\n  W: {shape: [3, 5]}\n"
                    "  b: {shape: [3]}\n")  # fmt: skip
    dump = tmp_path / "c.npz"
    assert cli("compute", "linear", spec, "-o", dump).exit_code == 0
    d = np.load(dump)
    _, cache = STUDENT.affine_forward(d["x"], d["W"].T, d["b"])
    _, dw, _ = STUDENT.affine_backward(d["grad_output"], cache)
    np.save(tmp_path / "dw.npy", dw)
    result = cli("check", "linear", spec, "--grads", tmp_path / "dw.npy", "--wrt", "W")
    assert_usage_error(result, "[5, 3] is W in CS231n's layout (D, M)", "affine_backward",
                       "W (out, in)", "save W.T")  # fmt: skip
    np.save(tmp_path / "fixed.npy", dw.T)
    result = cli("check", "linear", spec, "--grads", tmp_path / "fixed.npy", "--wrt", "W", "-q")
    assert result.exit_code == 0, result.stdout + result.stderr


def test_a_wrong_shape_that_is_no_layout_of_theirs_says_nothing_of_it(cli, tmp_path):
    spec = tmp_path / "lin.yaml"
    spec.write_text("layer: linear\ntensors:\n  x: {shape: [4, 5]}\n  W: {shape: [3, 5]}\n")
    np.save(tmp_path / "dw.npy", np.zeros((5, 4)))
    result = cli("check", "linear", spec, "--grads", tmp_path / "dw.npy", "--wrt", "W")
    assert result.exit_code == 2
    assert "has shape [3, 5]" in result.stderr and "CS231n" not in result.stderr


# ---------------------------------------------------------------- 2. square: told by values
@pytest.mark.parametrize(("layer", "form", "name", "arg"), TRANSPOSED, ids=_ids(TRANSPOSED))
def test_a_right_answer_in_their_square_layout_fails_with_the_layout_hint(layer, form, name,
                                                                          arg):  # fmt: skip
    options, _, shapes = SHAPES[layer]
    lay = get_layer(layer)
    assert form.applies(lay.make_options(options))
    assert arg.theirs(shapes[name]) == tuple(shapes[name])
    tensors = _tensors(shapes)
    right = _right(layer, tensors, options, _upstream())
    g = _upstream()(lay.forward(tensors, lay.resolve_options(
        lay.make_options(options), {n: a.shape for n, a in tensors.items()}))[0].shape)
    right = _right(layer, tensors, options, lambda s: g)
    # the twin first: the right answer in gradcli's layout passes, no hint of a layout
    report = gradcli.check(layer, tensors, options=options, grad_output=g, grads=right)
    assert report.passed and not _layout_hints(report)
    theirs = np.asarray(arg.to(right[name]))
    report = gradcli.check(layer, tensors, options=options, grad_output=g,
                           grads={**right, name: theirs})  # fmt: skip
    assert not report.passed and not report.results[name].passed
    hints = report.results[name].hints
    assert hints, report.table()
    text = str(hints[0])
    assert text.startswith(f"d{name} is the right gradient in CS231n's layout {arg.label}"), text
    assert f"give d{name}{arg.call(shapes[name])}" in text, text
    assert "cs231n-layout" in hints[0].cause
    # the call the hint gives fixes it
    fixed = eval(f"a{arg.call(shapes[name])}", {"a": theirs})  # noqa: S307 - our own call
    assert np.array_equal(fixed, right[name])


@pytest.mark.parametrize(("layer", "form", "name", "arg"), TRANSPOSED, ids=_ids(TRANSPOSED))
def test_a_wrong_answer_in_their_layout_gets_no_layout_hint(layer, form, name, arg):
    """Transposed AND wrong (a few elements off, or twice the right values): failing, and no
    hint claims it is the right gradient in their layout."""
    options, _, shapes = SHAPES[layer]
    tensors = _tensors(shapes)
    right = _right(layer, tensors, options, _upstream())
    lay = get_layer(layer)
    g = _upstream()(lay.forward(tensors, lay.resolve_options(
        lay.make_options(options), {n: a.shape for n, a in tensors.items()}))[0].shape)
    right = _right(layer, tensors, options, lambda s: g)
    theirs = np.asarray(arg.to(right[name]), dtype=float)
    off = theirs.copy()
    off.flat[:: max(1, off.size // 3)] += 0.5 + np.abs(off).max()
    for wrong in (off, 2 * theirs):
        report = gradcli.check(layer, tensors, options=options, grad_output=g,
                               grads={**right, name: wrong})  # fmt: skip
        assert not report.passed
        assert not _layout_hints(report), _layout_hints(report)


def test_conv2d_square_answer_file_in_nchw_names_the_layout(cli, tmp_path):
    """t20 F1's square repro (C == H == W == 3): shapes agree, values tell: the hint for dX and
    dW names CS231n's layouts and the transposes, from CS231n's own conv_backward_naive."""
    spec, (dx, dw, db) = _their_conv_answers(cli, tmp_path, (2, 3, 3, 3), 3)
    np.savez(tmp_path / "theirs.npz", dX=dx, dW=dw, db=db)
    result = cli("check", "conv2d", spec, "--grads", tmp_path / "theirs.npz")
    assert result.exit_code == 1, result.stderr
    flat = " ".join(result.stdout.split())
    assert ("hint: dX is the right gradient in CS231n's layout (N, C, H, W), as "
            "conv_backward_naive returns it") in flat, flat
    assert "give dX.transpose(0, 2, 3, 1)" in flat
    assert "hint: dW is the right gradient in CS231n's layout (F, C, HH, WW)" in flat
    assert "give dW.transpose(2, 3, 1, 0)" in flat
    np.savez(tmp_path / "fixed.npz", dX=dx.transpose(0, 2, 3, 1), dW=dw.transpose(2, 3, 1, 0),
             db=db)  # fmt: skip
    result = cli("check", "conv2d", spec, "--grads", tmp_path / "fixed.npz")
    assert result.exit_code == 0 and "hint" not in result.stdout, result.stdout


def test_an_impl_in_their_form_is_never_told_it_is_in_their_layout(cli, tmp_path):
    """--impl in CS231n's form is called through their layout already: its dw in gradcli's
    (M, D) (square W) comes back transposed, and no hint may call it right in CS231n's layout
    (it is the other way round); the generic 'transposed' hint still names it."""
    impl = tmp_path / "mine.py"
    impl.write_text(
        "def affine_forward(x, w, b):\n    return x @ w + b, (x, w)\n\n"
        "def affine_backward(dout, cache):\n    x, w = cache\n"
        "    return dout @ w.T, (x.T @ dout).T, dout.sum(0)\n"
    )
    spec = tmp_path / "sq.yaml"
    spec.write_text("layer: linear\ntensors:\n  x: {shape: [4, 3]}\n  W: {shape: [3, 3]}\n")
    result = cli("check", "linear", spec, "--impl", impl, "--format", "json")
    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    hints = doc["results"]["W"]["hints"]
    assert hints and not any("CS231n" in h["text"] or "cs231n-layout" in str(h["cause"])
                             for h in hints), hints  # fmt: skip
    assert any("transposed" in h["text"] for h in hints), hints


# ---------------------------------------------------------------- 3. a spec in their shapes
@pytest.mark.parametrize("layer", sorted(SHAPES))
def test_a_spec_in_their_shapes_is_told_the_transposes(layer):
    """Each tensor the layer's form transposes, given in CS231n's shape: where gradcli's shape
    check refuses them, the one line says so with the calls; the shapes those calls give load."""
    options, shapes, _ = SHAPES[layer]
    lay = get_layer(layer)
    (form,) = [f for f in lay.cs231n if f.applies(lay.make_options(options))]
    theirs = {n: (form.arg(n).theirs(s) if form.arg(n).axes else s) for n, s in shapes.items()}
    gradcli.check(layer, _tensors(shapes), options=options)  # gradcli's own shapes load
    try:
        gradcli.check(layer, _tensors(theirs), options=options)
    except GradcliError as e:
        text = str(e)
    else:
        pytest.skip("gradcli's shape check reads these shapes too (nothing to refuse)")
    assert "\n" not in text
    assert "these are CS231n's shapes" in text and "converts nothing" in text, text
    for n, s in shapes.items():
        if theirs[n] != s:
            arg = form.arg(n)
            assert f"{n} as {arg.label}" in text, text
            assert f"{n}{arg.call(s)} of shape {list(s)}" in text, text


def test_conv2d_spec_in_nchw_gets_the_transposes_on_one_line(cli, tmp_path, assert_usage_error):
    """t20 F1b: a CS231n student's X (2, 3, 8, 8), W (4, 3, 3, 3)."""
    spec = tmp_path / "nchw.yaml"
    spec.write_text("layer: conv2d\ntensors:\n  X: {shape: [2, 3, 8, 8]}\n"
                    "  W: {shape: [4, 3, 3, 3]}\n  b: {shape: [4]}\n")  # fmt: skip
    assert_usage_error(
        cli("check", "conv2d", spec), "nchw.yaml", "tensors.W",
        "W has C_in=3 (axis 2) but X has 8 channels",
        "these are CS231n's shapes (X as (N, C, H, W), W as (F, C, HH, WW))",
        "gradcli's layout is X (..., H, W, C_in), W (kh, kw, C_in, C_out)",
        "X.transpose(0, 2, 3, 1) of shape [2, 8, 8, 3]",
        "W.transpose(2, 3, 1, 0) of shape [3, 3, 3, 4]",
    )  # fmt: skip
    spec.write_text("layer: conv2d\ntensors:\n  X: {shape: [2, 8, 8, 3]}\n"
                    "  W: {shape: [3, 3, 3, 4]}\n  b: {shape: [4]}\n")  # fmt: skip
    assert cli("check", "conv2d", spec, "-q").exit_code == 0


def test_linear_spec_with_their_w_gets_the_transpose(cli, tmp_path, assert_usage_error):
    """t20 F1b: W given as CS231n's w (D, M)."""
    spec = tmp_path / "lin.yaml"
    spec.write_text("layer: linear\ntensors:\n  x: {shape: [4, 5]}\n  W: {shape: [5, 3]}\n"
                    "  b: {shape: [3]}\n")  # fmt: skip
    assert_usage_error(cli("check", "linear", spec), "tensors.W",
                       "W has in=3 (axis 1) but x has 5 features",
                       "these are CS231n's shapes (W as (D, M))", "gradcli's layout is W (out, in)",
                       "W.T of shape [3, 5]")  # fmt: skip


@pytest.mark.parametrize(
    ("layer", "text"),
    [
        ("linear", "tensors:\n  x: {shape: [4, 5]}\n  W: {shape: [2, 3]}\n"),  # fits no layout
        # X in theirs, W already gradcli's: read back together they fit no better
        ("conv2d", "tensors:\n  X: {shape: [2, 3, 8, 8]}\n  W: {shape: [3, 3, 5, 4]}\n"),
    ],
)
def test_a_spec_that_is_not_their_layout_says_nothing_of_it(cli, tmp_path, layer, text):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"layer: {layer}\n{text}")
    result = cli("check", layer, spec)
    assert result.exit_code == 2 and "CS231n" not in result.stderr, result.stderr
