"""A model file's errors name the full key from the file's top (``network[1].options.size``)
and what was expected, in one line; parameters known by their shape alone are drawn as a
framework initializes them. Each refusal has a twin: the mended model builds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from gradcli.errors import GradcliError
from gradcli.inputs.network import build_network


def build(text: str, base: Path | None = None) -> Any:
    return build_network(yaml.safe_load(text), base=base or Path.cwd(), source="m.yaml")


def refused(text: str, base: Path | None = None) -> str:
    with pytest.raises(GradcliError) as e:
        build(text, base)
    return str(e.value)


X = "inputs: {X: {shape: [1, 8, 8, 2]}}\n"
NET = "network:\n  - {layer: maxpool2d, name: p1, options: {size: 2}}\n"


@pytest.mark.parametrize(
    ("entry", "mended", "key", "said"),
    [  # an option of the second layer, an entry without layer:, a target on an entry, an empty
        # residual block, an option of a layer inside a block, options not a mapping
        ("{layer: maxpool2d, name: p2, options: {size: 0}}",
         "{layer: maxpool2d, name: p2, options: {size: 2}}", "network[1].options.size", "size"),
        ("{impl: mine.py}", "{layer: relu}", "network[1].layer", "expected the layer's name"),
        ("{layer: relu, target: y}", "{layer: relu}", "network[1].target", "one of the inputs (X)"),
        ("{residual: []}", "{residual: [{layer: relu}]}", "network[1].residual",
         "got an empty list"),
        ("{residual: [{layer: relu}, {layer: maxpool2d, options: {size: -1}}]}",
         "{residual: [{layer: relu}, {layer: maxpool2d, options: {size: 1}}]}",
         "network[1].residual[1].options.size", "size"),
        ("{layer: relu, options: [1]}", "{layer: relu, options: {}}", "network[1].options",
         "expected a mapping of options, got a list"),
        ("{layer: relu, name: p1}", "{layer: relu, name: p3}", "network[1].name",
         "already the name of network[0]"),
        ("{layer: relu, name: X}", "{layer: relu, name: x2}", "network[1].name",
         "the network input's"),
        ("{layer: relu, impl: nope.py}", "{layer: relu}", "network[1].impl", "file not found"),
    ],
)  # fmt: skip
def test_an_error_names_its_entry_s_full_key(entry: str, mended: str, key: str, said: str,
                                             tmp_path: Path) -> None:  # fmt: skip
    message = refused(f"{X}{NET}  - {entry}\n", tmp_path)
    assert message.startswith(f"{key}: "), message
    assert said in message, message
    build(f"{X}{NET}  - {mended}\n", tmp_path)


def test_an_empty_network_says_it_is_empty() -> None:
    message = refused(f"{X}network: []\n")
    assert message.startswith("network: ") and "got an empty list" in message, message
    build(f"{X}{NET}")


def test_a_deep_key_leaves_room_for_the_reason(cli: Any, write_spec: Any,
                                               assert_usage_error: Any) -> None:  # fmt: skip
    """A key path 100 levels deep once filled the line: the reason was cut off."""
    deep = "network:\n" + "".join("  " * k + "- residual:\n" for k in range(101))
    result = cli("check", "net", write_spec(X + deep + "  " * 101 + "- {layer: relu}\n"))
    assert_usage_error(result, "network[0].residual[0].residual[0]", "nested more than 100")
    line = result.stderr.strip()
    assert len(line) < 300 and line.endswith("levels deep"), line
    shallow = "network:\n" + "".join("  " * k + "- residual:\n" for k in range(3))
    build(X + shallow + "      - {layer: relu}\n")


def test_a_parameter_given_by_its_shape_alone_is_drawn_by_its_role() -> None:
    """A norm's gamma given as {shape: [6]} was drawn normal (negative, near-zero scales)."""
    net = build("inputs: {X: {shape: [4, 6]}}\nnetwork:\n"
                "  - {layer: layernorm, name: ln,\n"
                "     tensors: {gamma: {shape: [6]}, beta: {shape: [6]}}}\n"
                "  - {layer: linear, name: fc, tensors: {W: {shape: [3, 6]}, b: {shape: [3]}}}\n")
    t = net.spec.tensors
    assert np.all(t["ln.gamma"] == 1) and np.all(t["ln.beta"] == 0) and np.all(t["fc.b"] == 0)
    assert 0.2 < np.std(t["fc.W"]) < 1.5  # He's scale sqrt(2/6), not ones or zeros
    # the twin: a source given beside the shape is the user's
    net = build("inputs: {X: {shape: [4, 6]}}\nnetwork:\n"
                "  - {layer: layernorm, name: ln, tensors: {gamma: {shape: [6], init: normal}}}\n")
    assert not np.all(net.spec.tensors["ln.gamma"] == 1)


LABELS = """inputs:
  X: {shape: [3, 4]}
  y: [2, 0, 1]
network:
  - {layer: linear, name: fc, tensors: {W: {shape: [3, 4]}}}
loss: {layer: softmax_cross_entropy, target: y}
"""


def test_compute_shows_the_labels(cli: Any, write_spec: Any) -> None:
    """compute net showed the input and the activations, never the labels the loss takes."""
    result = cli("compute", "net", write_spec(LABELS), env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.stderr
    row = next(r for r in result.stdout.splitlines()
               if [c.strip() for c in r.split("│")[1:2]] == ["y"])
    assert "labels" in row and "[3]" in row, row
    doc = cli("compute", "net", write_spec(LABELS), "--format", "json")
    assert json_of(doc)["fixed"]["y"]["values"] == [2, 0, 1]


def json_of(result: Any) -> Any:
    import json

    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


EMB = """import numpy as np
def forward(idx, W):
    return W[idx]
def backward(grad_output, idx, W):
    dW = np.zeros_like(W)
    dW[idx] += grad_output    # the classic slip: a repeated index is added once
    return {"W": dW}
"""


@pytest.mark.parametrize("impl", [None, "emb.py"])
def test_an_embedding_takes_the_network_s_integer_input(tmp_path: Path, impl: Any) -> None:
    """An embedding could not be placed in a network (network[0].input: expected a Python
    identifier, got ''). It takes the network's input as its indices; its wrong backward
    (repeated indices added once) is named as any layer's."""
    from gradcli.checking.check import CheckOptions
    from gradcli.checking.network import check_network

    (tmp_path / "emb.py").write_text(EMB)
    own = f", impl: {impl}" if impl else ""
    net = build("inputs:\n  tok: [[3, 0, 3, 5], [1, 3, 2, 0]]\nnetwork:\n"
                f"  - {{layer: embedding, name: emb{own}, tensors: {{W: {{shape: [6, 4]}}}}}}\n"
                "  - {layer: linear, name: fc, tensors: {W: {shape: [2, 4]}}}\n", tmp_path)
    assert net.spec.tensors["tok"].dtype.kind == "i"
    report = check_network(net, CheckOptions(budget=5.0))
    if impl is None:
        assert report.passed, report.first_wrong
        assert set(report.end_to_end.results) == {"emb.W", "fc.W", "fc.b"}
    else:
        assert (report.first_wrong.name, report.first_wrong.tensor) == ("emb", "W")


@pytest.mark.parametrize(
    ("model", "key", "said"),
    [("  tok: [[3, 0, 3, 6]]\nnetwork:\n"
      "  - {layer: embedding, name: emb, tensors: {W: {shape: [6, 4]}}}\n",
      "inputs.tok", "tok[0, 3] = 6 is not a row of emb.W (expected 0 ... 5)"),
     ("  X: {shape: [2, 6]}\nnetwork:\n  - {layer: tanh}\n"
      "  - {layer: embedding, name: emb, tensors: {W: {shape: [6, 4]}}}\n",
      "network[1].layer", "it can only be the first layer, taking the network's input X")],
)  # fmt: skip
def test_an_embedding_s_indices_are_the_network_s_input_alone(model: str, key: str,
                                                             said: str) -> None:  # fmt: skip
    message = refused("inputs:\n" + model)
    assert message.startswith(f"{key}: ") and said in message, message


def test_a_model_file_where_the_layer_goes_is_checked_as_a_network(
    cli: Any, write_spec: Any, assert_usage_error: Any
) -> None:
    """gradcli check model.yaml said "unknown layer 'model.yaml'", then named the command it
    would run (gradcli check net model.yaml); now it runs it (outside test t54a F6), as a spec
    file alone runs the layer it names."""
    model = write_spec(f"{X}{NET}", "model.yaml")
    alone, named = cli("check", model, "-q"), cli("check", "net", model, "-q")
    assert alone.exit_code == named.exit_code == 0, alone.stderr
    assert alone.stdout == named.stdout and alone.stdout.startswith("PASS  net"), alone.stdout
    assert_usage_error(cli("compute", "lineer"), "unknown layer 'lineer'")  # the twin: a name


def test_an_answer_key_nearly_right_is_suggested(cli: Any, tmp_path: Path,
                                                 assert_usage_error: Any) -> None:  # fmt: skip
    """An answer keyed dfc.w (for dfc.W) listed every name, and difflib offered dfc.b."""
    model = tmp_path / "model.yaml"
    model.write_text("inputs: {X: {shape: [3, 4]}}\nnetwork:\n"
                     "  - {layer: linear, name: fc, tensors: {W: {shape: [2, 4]}}}\n")  # fmt: skip
    np.savez(tmp_path / "g.npz", **{"dfc.w": np.zeros((2, 4))})
    result = cli("check", "net", model, "--grads", tmp_path / "g.npz")
    assert_usage_error(result, "dfc.w", "(did you mean 'dfc.W'?)")
    np.savez(tmp_path / "g.npz", **{"dfc.W": np.zeros((2, 4))})  # the twin: spelled right
    assert cli("check", "net", model, "--grads", tmp_path / "g.npz", "-q").exit_code == 1


SCALE = """def forward(x, s):
    return x * s
def backward(grad_output, x, s):
    return {"x": grad_output * s, "s": (grad_output * x).sum(axis=0)}
"""


@pytest.mark.parametrize(
    ("entry", "key", "said"),
    [("tensors: {}", "network[0].tensors", "your forward takes s"),
     ("input: y, tensors: {s: {shape: [5]}}", "network[0].input", "(one of x, s), got 'y'"),
     ("tensors: {s: {shape: [5]}, t: {shape: [5]}}", "network[0].tensors.t", "takes no t"),
     ("tensors: {s: {shape: [5]}}", None, "")],  # the twin: as its forward takes them
)  # fmt: skip
def test_a_custom_layer_s_tensors_are_those_its_forward_takes(
    tmp_path: Path, entry: str, key: Any, said: str
) -> None:
    """A custom layer without its forward's tensor s failed at the first call: "forward()
    missing 1 required positional argument: 's'", naming no key."""
    (tmp_path / "scale.py").write_text(SCALE)
    model = (f"{{inputs: {{X: {{shape: [4, 5]}}}}, "
             f"network: [{{layer: custom, impl: scale.py, {entry}}}]}}")
    if key is None:
        build(model, tmp_path)
        return
    message = refused(model, tmp_path)
    assert message.startswith(f"{key}: ") and said in message, message


def test_a_module_of_cs231n_functions_is_an_impl_in_code(tmp_path):
    """Outside test t17 F9: check_network refused an imported student module (relu_forward,
    relu_backward) as impl, naming 'model' and 'a layer name'; the same file as a path worked.
    The twin: the module's wrong backward fails; an impl of the wrong type names its entry."""
    import importlib.util

    import gradcli

    def module(backward: str):
        f = tmp_path / f"student_{abs(hash(backward))}.py"
        f.write_text("import numpy as np\n"
                     "def relu_forward(x):\n    return np.maximum(0, x), x\n"
                     f"def relu_backward(dout, cache):\n    return {backward}\n")  # fmt: skip
        spec = importlib.util.spec_from_file_location(f.stem, f)
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        return m

    rng = np.random.default_rng(0)

    def model(impl):
        return {"inputs": {"X": rng.standard_normal((4, 3)), "t": rng.standard_normal((4, 2))},
                "network": [{"layer": "linear", "name": "fc",
                             "tensors": {"W": rng.standard_normal((2, 3)), "b": np.zeros(2)}},
                            {"layer": "relu", "name": "act", "impl": impl}],
                "loss": {"layer": "mse", "target": "t"}}  # fmt: skip

    assert gradcli.check_network(model(module("dout * (cache > 0)"))).passed
    wrong = gradcli.check_network(model(module("dout * (cache < 0)")))
    assert not wrong.passed and wrong.first_wrong.name == "act"
    with pytest.raises(gradcli.GradcliError) as e:
        gradcli.check_network(model(42))
    assert "network[1].impl" in str(e.value) and "layer name" not in str(e.value)


SVM_LOSS = """import numpy as np
def svm_loss(x, y):
    N = x.shape[0]
    margins = np.maximum(0, x - x[np.arange(N), y][:, None] + 1)
    margins[np.arange(N), y] = 0
    dx = (margins > 0).astype(x.dtype)
    dx[np.arange(N), y] = -dx.sum(axis=1)
    return margins.sum() / N, dx / N * SCALE
"""


def test_inline_labels_reach_a_users_loss_as_integers(tmp_path, cli):
    """Outside test t18 N4: labels written inline in a model file loaded in the network's
    dtype, so a user's CS231n svm_loss (impl:) indexed by floats and crashed (exit 2), where
    the built-in loss and the single-layer check worked; JSON's fixed labels were floats.
    The twin: the same loss without its 1/N fails."""
    rng = np.random.default_rng(0)
    for scale, code in (("1", 0), ("4", 1)):
        (tmp_path / f"loss{scale}.py").write_text(SVM_LOSS.replace("SCALE", scale))
        model = {"inputs": {"X": rng.standard_normal((4, 6)).round(3).tolist(),
                            "y": [0, 3, 1, 4]},
                 "network": [{"layer": "linear", "name": "fc",
                              "tensors": {"W": rng.standard_normal((5, 6)).round(3).tolist()}}],
                 "loss": {"layer": "svm", "target": "y", "impl": f"loss{scale}.py"}}  # fmt: skip
        f = tmp_path / f"model{scale}.yaml"
        f.write_text(yaml.safe_dump(model))
        r = cli("check", "net", f, "-q")
        assert r.exit_code == code, r.output
    del model["loss"]["impl"]
    f.write_text(yaml.safe_dump(model))
    fixed = json.loads(cli("compute", "net", f, "--format", "json").stdout)["fixed"]["y"]
    assert fixed["values"] == [0, 3, 1, 4]


def test_a_spec_file_alone_is_checked_as_the_layer_it_names(
    cli: Any, write_spec: Any, assert_usage_error: Any
) -> None:
    """gradcli check spec.yaml asked for the layer's name the file holds (outside test t52a F4):
    now read as gradcli check LAYER spec.yaml. Twins: a file naming an unknown layer, or none,
    is still a one-line usage error naming the file."""
    spec = write_spec("layer: linear\nseed: 1\ntensors: {x: {shape: [2, 3]}, W: {shape: [4, 3]}}\n")
    alone, named = cli("check", spec, "-q"), cli("check", "linear", spec, "-q")
    assert alone.exit_code == named.exit_code == 0, alone.stderr
    assert alone.stdout == named.stdout and alone.stdout.startswith("PASS  linear"), alone.stdout
    unknown = write_spec("layer: lineer\n", "unknown.yaml")
    assert_usage_error(cli("check", unknown), f"{unknown}: layer: unknown layer 'lineer'")
    none = write_spec("seed: 1\n", "none.yaml")
    assert_usage_error(cli("compute", none), "expected a layer's name first")


def test_an_unreadable_spec_file_alone_says_why(cli, write_spec, assert_usage_error):
    """A spec file alone with a key given twice, a tab or a second document read "expected a
    layer's name first" though it said `layer: linear` (outside test t65c F1): it says what
    it says with the layer given. The twin: a file that is no YAML spec (x.npy) still asks
    for the layer's name."""
    twice = write_spec("layer: linear\ntensors:\n  x: [1, 2]\n  x: [1, 3]\n", "twice.yaml")
    for command in ("check", "compute", "explain"):
        alone = cli(command, twice)
        assert_usage_error(alone, "line 4: the key 'x' is given twice")
        assert "layer's name first" not in alone.stderr
    tab = write_spec("layer: linear\ntensors:\n\tx: [1, 2]\n", "tab.yaml")
    assert_usage_error(cli("check", tab), f"{tab}: invalid YAML: line 3")
    assert "(a tab: YAML indents with spaces)" in cli("check", tab).stderr  # (t66b F7)
    unclosed = write_spec("layer: linear\noptions: {a: [1, 2}\n", "unclosed.yaml")
    assert "a tab" not in cli("check", unclosed).stderr
    model = write_spec("network:\n  - {layer: relu}\n  - {layer: relu}\nnetwork: []\n",
                       "model.yaml")
    assert_usage_error(cli("check", model), "the key 'network' is given twice")
    npy = write_spec("not a spec", "dir/x.npy")
    assert_usage_error(cli("check", npy), "expected a layer's name first")


def test_a_missing_spec_file_alone_is_said_missing(cli, tmp_path):
    """`gradcli check typo_spec.yaml` read "expected a layer's name first, got the file ...":
    the file is not there, and that is what it says now (outside test t55a F6)."""
    for command in ("check", "compute", "explain"):
        r = cli(command, tmp_path / "typo_spec.yaml")
        assert r.exit_code == 2
        assert "typo_spec.yaml: file not found" in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1


def test_a_spec_or_a_model_on_stdin_alone_is_read_by_what_it_names(cli):
    """`cat spec.yaml | gradcli check -` said "unknown layer '-'" though the spec names its
    layer (outside test t56b F3): stdin is read once, its layer: (or network:) decides."""
    spec = "layer: linear\ntensors: {x: {shape: [2, 3]}, W: {shape: [4, 3]}}\n"
    r = cli("check", "-", "-q", input=spec)
    assert r.exit_code == 0 and r.stdout.startswith("PASS  linear"), r.stderr
    assert cli("compute", "-", input=spec).exit_code == 0
    model = cli("init", "net").stdout
    r = cli("check", "-", "-q", input=model)
    assert r.exit_code == 0 and r.stdout.startswith("PASS  net"), r.stderr
    r = cli("check", "-", input="seed: 1\n")
    assert r.exit_code == 2 and "<stdin>: expected a spec naming its layer" in r.stderr


def test_papercuts_of_odd_input(cli, write_spec, assert_usage_error):
    """(outside test t65c F9) A layer's spec given to `check net` says what it is; a date
    where the seed goes reads as a date, not datetime.date(...); a spec's dtype Float32 is
    float32, as --dtype FLOAT32 is. The twins: a model runs, a seed runs."""
    spec = write_spec("layer: linear\ntensors: {x: {shape: [2, 3]}, W: {shape: [4, 3]}}\n")
    for command in ("check", "compute", "explain"):  # (t66b F6: compute said 'gradcli check')
        assert_usage_error(cli(command, "net", spec), "this is a layer's spec (layer: linear), "
                           "not a model (network: [...]): give its layer, linear, in place of net")
    dated = write_spec("layer: linear\nseed: 2020-01-01\n", "dated.yaml")
    assert_usage_error(cli("check", dated), "seed: expected an integer from 0 to 2**63-1, got "
                       "the date 2020-01-01")
    cased = write_spec("layer: linear\ndtype: Float32\nseed: 3\n"
                       "tensors: {x: {shape: [2, 3]}, W: {shape: [4, 3]}}\n", "cased.yaml")
    r = cli("check", cased, "--format", "json")
    assert r.exit_code == 0 and '"dtype": "float32"' in r.stdout, r.stderr
