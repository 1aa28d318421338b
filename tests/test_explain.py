"""``gradcli explain``: formulas, option variants, shapes and intuition per layer."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gradcli.inputs.spec import Spec, build_spec, load_spec
from gradcli.layers import REGISTRY, get_layer
from gradcli.render import explain as explain_module
from gradcli.render.explain import Section, explain, explain_doc


def spec_for(layer: str, doc: dict[str, Any]) -> Spec:
    return build_spec(get_layer(layer), doc, base=Path.cwd(), source="<test>")


def sections(spec: Spec) -> dict[str, list[str]]:
    return {s.title: s.lines for s in explain(spec)}


def text(spec: Spec) -> str:
    return "\n".join(line for s in explain(spec) for line in [s.title, *s.lines])


def shape_str(shape: tuple[int, ...]) -> str:
    return str(tuple(shape))


CONV2D_STRIDED = {
    "options": {"stride": 2, "padding": 1},
    "tensors": {"X": {"shape": [6, 6, 2]}, "W": {"shape": [3, 3, 2, 4]}, "b": {"shape": [4]}},
}
CONV2D_DILATED_SAME = {
    "options": {"dilation": 2, "padding": "same"},
    "tensors": {"X": {"shape": [2, 7, 7, 2]}, "W": {"shape": [3, 3, 2, 3]}},
}
CONV1D_CHANNELS = {
    "options": {"stride": 2, "padding": 1},
    "tensors": {"x": {"shape": [2, 9, 3]}, "w": {"shape": [3, 3, 4]}, "b": {"shape": [4]}},
}
ATTENTION_FULL = {
    "options": {"causal": True, "heads": 2},
    "tensors": {
        "X": {"shape": [2, 5, 8]},
        "W_Q": {"shape": [8, 4]},
        "W_K": {"shape": [8, 4]},
        "W_V": {"shape": [8, 6]},
        "W_O": {"shape": [6, 7]},
    },
}
LINEAR_BATCHED = {
    "tensors": {"x": {"shape": [6, 5]}, "W": {"shape": [3, 5]}, "b": {"shape": [3]}},
}
OPTION_SPECS = {
    "conv2d-strided": ("conv2d", CONV2D_STRIDED),
    "conv2d-dilated-same": ("conv2d", CONV2D_DILATED_SAME),
    "conv1d-channels": ("conv1d", CONV1D_CHANNELS),
    "attention-full": ("attention", ATTENTION_FULL),
    "linear-batched": ("linear", LINEAR_BATCHED),
}


def all_specs() -> list[Any]:
    defaults = [pytest.param(name, None, id=f"{name}-default") for name in REGISTRY]
    options = [pytest.param(layer, doc, id=key) for key, (layer, doc) in OPTION_SPECS.items()]
    return defaults + options


def make(layer: str, doc: dict[str, Any] | None) -> Spec:
    return load_spec(layer, None) if doc is None else spec_for(layer, doc)


@pytest.mark.parametrize(("layer", "doc"), all_specs())
def test_sections_for_forward_every_gradient_and_shapes(layer: str, doc: Any) -> None:
    spec = make(layer, doc)
    result = explain(spec)
    assert all(isinstance(s, Section) for s in result)
    titles = [s.title for s in result]
    tail = ["shapes", "checking your intermediates"] if spec.layer.intermediates else ["shapes"]
    assert titles[0] == "forward" and titles[-len(tail) :] == tail
    for name in spec.tensors:  # labels, indices, targets: no gradient, no section
        assert (f"dL/d{name}" in titles) == (name in spec.grad_shapes)
    for s in result:
        assert s.lines and all(isinstance(line, str) and line for line in s.lines)
        if s.title.startswith("dL/d"):  # one line of intuition per gradient
            assert sum(line.startswith("intuition: ") for line in s.lines) == 1, s


@pytest.mark.parametrize(("layer", "doc"), all_specs())
def test_the_spec_shapes_appear(layer: str, doc: Any) -> None:
    spec = make(layer, doc)
    secs = sections(spec)
    for name, shape in spec.shapes.items():
        if name in spec.grad_shapes:
            assert f"∂L/∂{name} {shape_str(shape)}" in "\n".join(secs[f"dL/d{name}"])
        assert f"{name}: {shape_str(shape)}" in secs["shapes"][0]
    assert shape_str(spec.grad_output.shape) in "\n".join(secs["shapes"])


@pytest.mark.parametrize(("layer", "doc"), all_specs())
def test_explain_doc_is_json(layer: str, doc: Any) -> None:
    spec = make(layer, doc)
    out = explain_doc(spec)
    assert set(out) == {"layer", "options", "sections"} and out["layer"] == layer
    back = json.loads(json.dumps(out, ensure_ascii=False))
    assert back["sections"] == [{"title": s.title, "lines": s.lines} for s in explain(spec)]


def test_explain_doc_options() -> None:
    assert explain_doc(load_spec("conv2d", None))["options"] == {}
    assert explain_doc(spec_for("conv2d", CONV2D_STRIDED))["options"] == {
        "stride": 2,
        "padding": 1,
    }
    assert explain_doc(spec_for("attention", ATTENTION_FULL))["options"] == {
        "causal": True,
        "heads": 2,
    }


@pytest.mark.parametrize("name", list(REGISTRY))
def test_seed_case_has_no_option_variants(name: str) -> None:
    t = text(load_spec(name, None))
    for word in ("stride", "s_h", "dilation", "padding", "Xp", "xp", "-∞", "W_O", "d_k/h"):
        # a whole word: sigmoid's exp(-x) holds "xp" but no padded input
        assert not re.search(rf"(?<![A-Za-z_]){re.escape(word)}(?![A-Za-z_])", t), word
    layer = REGISTRY[name]
    batched = any(len(layer.default_shapes[i.name]) > len(i.axes) for i in layer.tensors
                  if i.role == "input" and i.name in layer.default_shapes)  # fmt: skip
    assert ("batch" in t) == batched  # rnn_step's default is CS231n's (N, D)


def test_conv2d_seed_formulas() -> None:
    secs = sections(load_spec("conv2d", None))
    assert "Z[i,j,c] = Σ_{m,n,d} W[m,n,d,c] · X[i+m, j+n, d] + b[c]" in secs["forward"]
    assert any("cross-correlation" in line for line in secs["forward"])
    assert "∂L/∂W[m,n,d,c] = Σ_{i,j} ∂L/∂Z[i,j,c] · X[i+m, j+n, d]" in secs["dL/dW"]
    assert any("∂L/∂Z[i-m, j-n, c] · W[m,n,d,c]" in line for line in secs["dL/dX"])
    assert "∂L/∂b[c] = Σ_{i,j} ∂L/∂Z[i,j,c]" in secs["dL/db"]
    assert "X: (6, 5, 2)  W: (3, 3, 2, 5)  b: (5,)  Z: (4, 3, 5)" in secs["shapes"]
    assert "Ho = H - kh + 1 = 6 - 3 + 1 = 4" in secs["shapes"]


def test_conv2d_intuitions() -> None:
    for spec in (load_spec("conv2d", None), spec_for("conv2d", CONV2D_STRIDED)):
        secs = sections(spec)
        (why,) = [line for line in secs["dL/dX"] if line.startswith("intuition")]
        assert "rotated" in why
        assert any("correlates the input" in line for line in secs["dL/dW"])
        assert any("sums the upstream gradient over every position" in x for x in secs["dL/db"])


def test_conv2d_stride_and_padding() -> None:
    secs = sections(spec_for("conv2d", CONV2D_STRIDED))
    fwd = "\n".join(secs["forward"])
    assert "Xp[i·s_h + m, j·s_w + n, d]" in fwd
    assert "stride s_h = 2, s_w = 2" in fwd and "padding p_h = 1, p_w = 1" in fwd
    assert "dilation" not in fwd and "d_h" not in fwd
    dx = "\n".join(secs["dL/dX"])
    assert "∂L/∂X (6, 6, 2)" in dx and "+=" in dx
    assert "∂L/∂X = ∂L/∂Xp[1:7, 1:7, :]" in dx  # the padded gradient cut back
    assert any("⌊(6 + 2 - 1·(3 - 1) - 1) / 2⌋ + 1 = 3" in line for line in secs["shapes"])
    assert "Z: (3, 3, 4)" in secs["shapes"][0]


def test_conv2d_dilation_same_padding_and_batch() -> None:
    secs = sections(spec_for("conv2d", CONV2D_DILATED_SAME))
    fwd = "\n".join(secs["forward"])
    assert "Xp[i + m·d_h, j + n·d_w, d]" in fwd and "d_h = 2, d_w = 2" in fwd
    assert "'same'" in fwd and "stride" not in fwd
    assert "∂L/∂X = ∂L/∂Xp[2:9, 2:9, :]" in "\n".join(secs["dL/dX"])
    for name in ("W", "b"):
        assert any("summed over the batch" in line for line in secs[f"dL/d{name}"])
    assert not any("summed over the batch" in line for line in secs["dL/dX"])
    assert any("batch axes (2,)" in line for line in secs["shapes"])
    assert "X (2, 7, 7, 2) = (batch, H, W, C_in), indexed [b0, i, j, d]" in secs["shapes"]


def test_conv1d_seed_keeps_the_notes_notation() -> None:
    secs = sections(load_spec("conv1d", None))
    assert "z_i = Σ_{j=1}^{k} w_j · x_{i+j-1} + b,   i ∈ {1, …, m}" in secs["forward"]
    assert any("δ_i · w_{p-i+1}" in line for line in secs["dL/dx"])
    assert any("rotated" in line for line in secs["dL/dx"])
    assert "m = n - k + 1 = 8 - 3 + 1 = 6" in secs["shapes"]


def test_conv1d_channels_stride_padding() -> None:
    secs = sections(spec_for("conv1d", CONV1D_CHANNELS))
    fwd = "\n".join(secs["forward"])
    assert "z[i,c] = Σ_{j,e} w[j,e,c] · xp[i·s + j, e] + b[c]" in fwd
    assert "stride s = 2" in fwd and "padding p = 1" in fwd and "0-based" in fwd
    assert "∂L/∂x = ∂L/∂xp[1:10, :]" in "\n".join(secs["dL/dx"])
    assert "x: (2, 9, 3)  w: (3, 3, 4)  b: (4,)  z: (2, 5, 4)" in secs["shapes"]


def test_attention_seed() -> None:
    secs = sections(load_spec("attention", None))
    fwd = "\n".join(secs["forward"])
    assert "softmax(Q · Kᵀ / √d_k)" in fwd and "√d_k = √4 = 2" in fwd
    assert "∂L/∂S (5, 5) = A ⊙ (∂L/∂A - rowsum(∂L/∂A ⊙ A))" in secs["dL/dS"]
    assert any("each row of dS is A ⊙" in line for line in secs["dL/dS"])
    assert "∂L/∂Q (5, 4) = (1/√d_k) · ∂L/∂S · K" in secs["dL/dQ"]
    dx = "\n".join(secs["dL/dX"])  # the X gradient the seed leaves out: all three paths
    assert "∂L/∂Q · W_Qᵀ + ∂L/∂K · W_Kᵀ + ∂L/∂V · W_Vᵀ" in dx
    assert "heads" not in fwd and "masked" not in "\n".join(secs["dL/dS"])


def test_attention_causal_heads_and_output_projection() -> None:
    secs = sections(spec_for("attention", ATTENTION_FULL))
    fwd = "\n".join(secs["forward"])
    assert "S[i,j] = -∞ for j > i" in fwd
    assert "√(d_k/h)" in fwd and "h = 2" in fwd
    assert "out (2, 5, 7) = concat(heads) · W_O" in fwd
    assert "∂L/∂W_O (6, 7) = Hᵀ · ∂L/∂out" in secs["dL/dW_O"]
    assert any("masked" in line for line in secs["dL/dS"])
    assert "∂L/∂Q_a (2, 2, 5, 2) = (1/√(d_k/h)) · ∂L/∂S_a · K_a" in secs["dL/dQ"]
    assert any("concat(∂L/∂Q_a)" in line for line in secs["dL/dW_Q"])
    assert "out (2, 5, 7) = (batch, T, d_out)" in secs["shapes"]


@pytest.mark.parametrize(
    ("options", "present", "absent"),
    [
        ({"causal": True}, ["-∞"], ["W_O", "d_k/h"]),
        ({"heads": 2}, ["d_k/h"], ["-∞", "W_O"]),
    ],
)
def test_attention_options_one_at_a_time(options: dict, present: list, absent: list) -> None:
    shapes = {"X": [4, 6], "W_Q": [6, 4], "W_K": [6, 4], "W_V": [6, 4]}
    doc = {"options": options, "tensors": {n: {"shape": s} for n, s in shapes.items()}}
    t = text(spec_for("attention", doc))
    assert all(p in t for p in present) and not any(a in t for a in absent)


def test_linear_formulas_and_batch() -> None:
    secs = sections(load_spec("linear", None))
    assert "∂L/∂W (3, 4) = ∂L/∂z · xᵀ" in secs["dL/dW"]
    assert "∂L/∂x (4,) = Wᵀ · ∂L/∂z" in secs["dL/dx"]
    assert any("outer product of the upstream gradient and the input" in x for x in secs["dL/dW"])
    batched = sections(spec_for("linear", LINEAR_BATCHED))
    assert "∂L/∂W (3, 5) = Σ_batch ∂L/∂z · xᵀ" in batched["dL/dW"]
    assert any("parameter gradients are summed over the batch" in x for x in batched["dL/db"])
    assert "x (6, 5) = (batch, in), indexed [b0, i]" in batched["shapes"]


def test_unknown_layer_falls_back_to_shapes() -> None:
    layer = dataclasses.replace(get_layer("linear"), name="mystery", explain=None)
    spec = build_spec(layer, {"tensors": LINEAR_BATCHED["tensors"]}, base=Path.cwd(), source="t")
    secs = sections(spec)
    assert secs["forward"] == [layer.summary]
    assert "∂L/∂W (3, 5)" in secs["dL/dW"]


def test_section_is_frozen_and_the_module_does_not_import_rich() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Section("t", []).title = "u"  # type: ignore[misc]
    tree = ast.parse(Path(explain_module.__file__).read_text(encoding="utf-8"))
    imported = [
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    ]
    assert not any(str(m).split(".")[0] == "rich" for m in imported)


@pytest.mark.parametrize("layer", ["linear", "attention"])
def test_explain_says_how_to_check_intermediates(layer: str) -> None:
    secs = sections(load_spec(layer, None))
    lines = "\n".join(secs.get("checking your intermediates", []))
    if layer == "linear":  # nothing between x and z to check
        assert lines == ""
    else:
        assert "dQ, dK, dV, dS, dA" in lines and "--grads mine.npz" in lines
        assert "gradcli compute attention -o mine.npz" in lines


def test_explain_custom_without_a_module_says_how_to_start(cli: Any) -> None:
    result = cli("explain", "custom")
    assert result.exit_code == 0, result.stderr
    assert "gradcli init custom --impl" in result.stdout
    assert "gradcli check custom" in result.stdout
    doc = json.loads(cli("explain", "custom", "--format", "json").stdout)
    assert doc["layer"] == "custom" and [s["title"] for s in doc["sections"]] == [
        "a layer of your own",
        "start",
    ]


def test_explain_custom_with_a_module_shows_its_tensors(cli: Any, tmp_path: Any) -> None:
    spec, module = tmp_path / "my.yaml", tmp_path / "my_custom.py"
    assert cli("init", "custom", "-o", spec).exit_code == 0
    assert cli("init", "custom", "--impl", "-o", module).exit_code == 0
    result = cli("explain", "custom", spec, "--impl", module)
    assert result.exit_code == 0, result.stderr
    assert "dL/dx" in result.stdout and "(batch" not in result.stdout  # no invented axis names
    # a spec without its module is still the one-line error that names --impl
    missing = cli("explain", "custom", spec)
    assert missing.exit_code == 2 and "--impl" in missing.stderr


@pytest.mark.parametrize("columns", [80, 60])
def test_explain_fits_the_width_wrapping_between_terms(cli, columns):
    # a formula wider than the terminal wraps at a space, its continuation indented under it;
    # left to the terminal it was cut anywhere (lines of 87-155 columns at 80)
    from rich.cells import cell_len

    for name in REGISTRY:
        out = cli("explain", name, env={"COLUMNS": str(columns)}).stdout
        lines = out.splitlines()
        assert max(cell_len(line) for line in lines) <= columns, name
        words = " ".join(out.split())
        assert "(biased, as torch's training mode)" in words or name != "groupnorm"
    wide = cli("explain", "groupnorm", env={"COLUMNS": "200"}).stdout
    assert any(cell_len(line) > columns for line in wide.splitlines())  # the twin: unwrapped


def test_one_named_axis_is_written_as_its_shape_is(cli):
    out = cli("explain", "svm").stdout
    assert "y (5,) = (N,)" in out and "x (5, 4) = (N, C)" in out  # not "(5,) = (N)"


def _ascii(line: str) -> str:
    import gradcli.cli.emit  # noqa: F401  (registers the stand-ins' error handler)

    return line.encode("ascii", "gradcli-table").decode("ascii")


def test_every_layers_explain_has_ascii_stand_ins_for_every_character():
    """The outside tester's O1: ½ came out as "12", x³ as "x3", μ σ ε α π x̂ as "?". Every
    character an explain formula uses has a stand-in, and none is a bare number that would
    fuse with the digits around it."""
    seen = set()
    for name in REGISTRY:
        for line in text(load_spec(name, None)).splitlines():
            assert _ascii(line).count("?") == line.count("?"), (name, line)
            seen |= {c for c in line if not c.isascii()}
    for c in seen:
        sub = _ascii(c)
        assert sub and not sub.isdigit(), (c, sub)
    assert {"½", "³", "μ", "σ", "ε", "α", "π", "\u0302"} <= seen  # what was there to map
    gelu = "\n".join(map(_ascii, text(load_spec("gelu", None)).splitlines()))
    assert "1/2 (1 + tanh u)" in gelu and "x^3" in gelu and "sqrt(2/pi)" in gelu
    norm = "\n".join(map(_ascii, text(load_spec("layernorm", None)).splitlines()))
    assert "mu = mean" in norm and "sigma^2" in norm and "xhat = (x - mu)" in norm
    assert "eps = 1e-05" in norm


def test_ascii_stand_ins_are_by_what_the_character_is():
    """Characters no layer uses yet: a new formula needs no table entry to read right."""
    assert _ascii("λ ω Δ ȳ x²³ 10⁻⁵ 3¾ x₁") == "lambda omega Delta ybar x^23 10^-5 3 3/4 x_1"



def test_explain_custom_claims_no_batch_axes(cli, tmp_path):
    """Outside test t31a L1: a custom layer names no axes of its input, and an MLP's features
    were called 'batch axes (4, 3), the leading axes of the input'. Twin: a batched linear's
    leading axes are its batch."""
    mod = tmp_path / "mlp.py"
    mod.write_text("import numpy as np\n"
                   "def forward(x, W):\n    return np.tanh(x @ W)\n"
                   "def backward(grad_output, x, W):\n"
                   "    d = grad_output * (1 - np.tanh(x @ W) ** 2)\n"
                   "    return {'x': d @ W.T, 'W': x.T @ d}\n")
    spec = tmp_path / "s.yaml"
    spec.write_text("layer: custom\ntensors:\n  x: {shape: [4, 3], init: normal}\n"
                    "  W: {shape: [3, 2], init: normal}\n")
    custom = cli("explain", "custom", str(spec), "--impl", str(mod))
    assert custom.exit_code == 0 and "batch axes" not in custom.stdout, custom.stdout
    batched = cli("explain", "linear", str(Path(__file__).parents[1] / "specs/linear_batched.yaml"))
    assert batched.exit_code == 0 and "batch axes" in batched.stdout, batched.stdout


def test_your_implementation_of_a_built_in_gets_its_formulas(cli, tmp_path):
    """explain --impl of a built-in layer printed 'no formula known: a layer of your own' for
    every gradient (outside test t44a N11); a custom layer of yours still has none."""
    (tmp_path / "mine.py").write_text(
        "def forward(x, W, b):\n    return x @ W.T + b\n\n"
        "def backward(grad_output, x, W, b):\n"
        "    return {'x': grad_output @ W, 'W': grad_output.T @ x, 'b': grad_output.sum(0)}\n")
    r = cli("explain", "linear", "--impl", str(tmp_path / "mine.py"))
    assert r.exit_code == 0, r.output
    assert "no formula known" not in r.output and "∂L/∂W" in r.output
    assert "outer product" in r.output
    (tmp_path / "c.yaml").write_text("layer: custom\ntensors:\n  x: {shape: [3]}\n")
    (tmp_path / "sq.py").write_text("def forward(x):\n    return x * x\n\n"
                                    "def backward(grad_output, x):\n"
                                    "    return {'x': 2 * x * grad_output}\n")
    r = cli("explain", "custom", str(tmp_path / "c.yaml"), "--impl", str(tmp_path / "sq.py"))
    assert r.exit_code == 0, r.output
    assert "no formula known" in r.output


@pytest.mark.parametrize(("layer", "doc"), [("conv1d", None), ("conv2d", None)])
def test_a_convs_dx_is_named_as_the_index_formula_computes_it(layer: str, doc: Any) -> None:
    """dx correlates the upstream gradient with the rotated kernel, which is a true convolution
    with the kernel as it is: "δ ∗ rot180(w) (a full convolution)", beside a forward whose
    convolutions are cross-correlations, sent a student to np.convolve(d, w[::-1]), which is
    wrong (outside test t52b F3)."""
    spec = make(layer, doc)
    dx = next(s for s in explain(spec) if s.title == f"dL/d{spec.layer.tensors[0].name}")
    text = "\n".join(dx.lines)
    assert "⋆ rot180(" in text and "(a full cross-correlation)" in text, text
    assert "∗ rot180" not in text and "a true (flipping) full convolution" in text, text


def test_the_shapes_name_each_tensors_index_letters_and_each_leading_axis() -> None:
    """The tables index lstm_step's prev_h by k and prev_c by u (one H axis), and relu's
    leading axes by b0, b1, b2: explain says so, where a relu at (2, 8, 8, 4) read
    (batch, batch, batch, n) and the letters were never said (outside test t56b F6); conv2d's
    sizes say which W they mean (t56b F7)."""
    lstm = sections(make("lstm_step", None))["shapes"]
    assert any(line.startswith("prev_h ") and line.endswith("indexed [b0, k]") for line in lstm)
    assert any(line.startswith("prev_c ") and line.endswith("indexed [b0, u]") for line in lstm)
    relu = sections(spec_for("relu", {"tensors": {"x": {"shape": [2, 8, 8, 4]}}}))["shapes"]
    assert "x (2, 8, 8, 4) = (b0, b1, b2, n), indexed [b0, b1, b2, i]" in relu, relu
    assert any("(b0, b1, b2 in the tables' indices)" in line for line in relu), relu
    conv = sections(make("conv2d", None))["shapes"]
    assert "H, W in these sizes: X's height and width (not the weight W)" in conv


def test_an_input_shared_by_the_batch_says_its_gradient_is_summed():
    """lstm_step's default spec gives prev_h (5,) beside x (3, 4): 'dL/dprev_h (5,) = dL/da
    Whᵀ' is (3, 5) as written and said nothing of the sum (outside test t65c F5); the twin: a
    batched prev_h (3, 5) is per example, and says no sum."""
    shared = {s.title: s.lines for s in explain(load_spec("lstm_step", "specs/lstm_step.yaml"))}
    for name in ("prev_h", "prev_c"):
        assert any("summed over the batch axes (3,)" in x for x in shared[f"dL/d{name}"]), shared
    assert not any("summed" in x for x in shared["dL/dx"])
    doc = {"tensors": {"x": {"shape": [3, 4]}, "prev_h": {"shape": [3, 5]},
                       "prev_c": {"shape": [3, 5]}, "Wx": {"shape": [4, 20]},
                       "Wh": {"shape": [5, 20]}}}  # fmt: skip
    batched = build_spec(get_layer("lstm_step"), doc, base=Path("."), source="<test>")
    own = {s.title: s.lines for s in explain(batched)}
    assert not any("summed" in x for x in own["dL/dprev_h"]), own["dL/dprev_h"]
