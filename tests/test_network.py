"""Networks: local checks layer by layer, end to end, and the first wrong backward named.

Every layer of the registry is put between two linear layers (which adapt any last axis), its
backward broken, and the verdict must name exactly it; the same network unbroken passes. The
end-to-end gradients are compared with a plain loop of central differences of the whole
network's loss (an oracle that shares nothing with the engine but the forward)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from gradcli.checking.check import CheckOptions
from gradcli.checking.network import check_network
from gradcli.errors import GradcliError
from gradcli.inputs.network import NetSpec, build_network
from gradcli.inputs.spec import load_spec
from gradcli.layers import REGISTRY, get_layer

QUICK = CheckOptions(budget=5.0)


def _input_name(layer: Any) -> str:
    return next(i.name for i in layer.tensors if i.role == "input")


# an embedding's input is data (integer indices): nothing can feed it but the network's input
CHAINABLE = [n for n in REGISTRY if any(i.role == "input" for i in get_layer(n).tensors)]


def sandwich(name: str) -> dict[str, Any]:
    """linear -> ``name`` (its default spec's tensors) -> linear, as a model document."""
    layer = get_layer(name)
    s = load_spec(name, None)
    x = _input_name(layer)
    x_shape = list(s.tensors[x].shape)
    params = {n: np.asarray(a).tolist() for n, a in s.tensors.items()
              if n != x and layer.tensor(n).role in ("input", "weight", "bias")}  # fmt: skip
    out = list(layer.output_shape(s.shapes, s.options))
    entry = {"layer": name, "name": "culprit", "tensors": params}
    raw = {f.name: getattr(s.options, f.name) for f in dataclasses.fields(s.options)} \
        if dataclasses.is_dataclass(s.options) else {}  # fmt: skip
    if raw:
        entry["options"] = raw
    net = [{"layer": "linear", "name": "before", "tensors": {"W": {"shape": [x_shape[-1], 5]}}},
           entry]  # fmt: skip
    if out:
        net.append({"layer": "linear", "name": "after", "tensors": {"W": {"shape": [2, out[-1]]}}})
    inputs = {"X": {"shape": [*x_shape[:-1], 5]}}
    for n in layer.constants():  # a loss's labels or target: a network input it names
        inputs["T"] = np.asarray(s.tensors[n]).tolist()
        entry["target"] = "T"
    return {"seed": 1, "inputs": inputs, "network": net}


def build(doc: dict[str, Any], tmp_path: Path) -> Any:
    return build_network(doc, base=tmp_path, source="model.yaml")


def broken(layer: Any) -> Any:
    """The same layer whose backward returns a wrong input gradient (never invisible: an
    offset, not a scale, so an all-zero gradient is wrong too)."""
    x = _input_name(layer)

    def backward(g: np.ndarray, cache: Any) -> dict[str, np.ndarray]:
        grads = dict(layer.backward(g, cache))
        grads[x] = grads[x] + 1e-2 * (1 + np.abs(grads[x]))
        return grads

    return dataclasses.replace(layer, backward=backward)


def replace_layer(net: NetSpec, name: str, layer: Any) -> NetSpec:
    """The network with layer ``name`` (top level) running ``layer`` instead."""
    ops = tuple(dataclasses.replace(op, layer=layer) if getattr(op, "name", "") == name
                and hasattr(op, "layer") else op for op in net.net.ops)  # fmt: skip
    new = dataclasses.replace(net.net, ops=ops)
    return NetSpec(dataclasses.replace(net.spec, layer=new.layer()), new)


@pytest.mark.parametrize("name", CHAINABLE)
def test_correct_network_passes(name: str, tmp_path: Path) -> None:
    report = check_network(build(sandwich(name), tmp_path), QUICK)
    assert report.passed, [(lc.node.name, lc.report.failures) for lc in report.layers]
    assert report.first_wrong is None
    assert [lc.node.name for lc in report.layers][:2] == ["before", "culprit"]


@pytest.mark.parametrize("name", CHAINABLE)
def test_broken_backward_is_named(name: str, tmp_path: Path) -> None:
    bad = broken(get_layer(name))
    report = check_network(replace_layer(build(sandwich(name), tmp_path), "culprit", bad), QUICK)
    assert not report.passed
    wrong = report.first_wrong
    assert wrong is not None and (wrong.index, wrong.name, wrong.layer) == (2, "culprit", name)
    assert wrong.tensor == _input_name(bad)
    # the layer before receives the wrong upstream gradient but is not blamed
    assert report.layers[0].passed
    assert not report.end_to_end.passed  # and the chain's gradients are wrong end to end


def _loop_gradient(net: Any, name: str, h: float = 1e-6) -> np.ndarray:
    spec = net.spec
    t = {n: np.array(a, dtype=np.float64) for n, a in spec.tensors.items()}
    g = np.asarray(spec.grad_output, dtype=np.float64)
    out = np.zeros_like(t[name])
    for i in np.ndindex(t[name].shape):
        vals = []
        for s in (1, -1):
            u = {**t, name: t[name].copy()}
            u[name][i] += s * h
            vals.append(float(np.sum(g * spec.layer.forward(u, None)[0])))
        out[i] = (vals[0] - vals[1]) / (2 * h)
    return out


MODEL = """
seed: 3
inputs:
  X: {shape: [4, 6]}
network:
  - {layer: linear, name: fc1, tensors: {W: {shape: [5, 6]}, b: {shape: [5]}}}
  - residual:
    - {layer: linear, name: inner, tensors: {W: {shape: [5, 5]}}}
  - {layer: linear, name: fc2, tensors: {W: {shape: [3, 5]}}}
"""


def test_chained_gradients_match_a_loop_oracle(tmp_path: Path) -> None:
    net = build(yaml.safe_load(MODEL), tmp_path)
    from gradcli.checking.compute import compute

    comp = compute(net.spec)
    assert set(comp.gradients) == {"X", "fc1.W", "fc1.b", "inner.W", "inner.b", "fc2.W", "fc2.b"}
    for n, g in comp.gradients.items():
        np.testing.assert_allclose(g, _loop_gradient(net, n), rtol=1e-6, atol=1e-8)
    # the residual's skip: dX through the block is (1 + W_inner^T) applied, not W_inner^T alone
    t = net.spec.tensors
    d_out2 = np.asarray(net.spec.grad_output) @ t["fc2.W"]
    np.testing.assert_allclose(comp.intermediates["dres1.out"], d_out2)
    np.testing.assert_allclose(comp.intermediates["dfc1.out"], d_out2 + d_out2 @ t["inner.W"])


def test_a_wrong_skip_is_caught_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The twin: a chain whose backward forgets the skip connection fails end to end, though
    every layer's own backward is right (no layer to blame)."""
    from gradcli.layers import chain

    def no_skip(self: Any, g: np.ndarray, cache: Any) -> dict[str, np.ndarray]:
        grads: dict[str, np.ndarray] = {}
        for kind, op in reversed(self.program):
            if kind == "layer":
                grads[op.out] = g
                lg = op.layer.backward(g, cache["layers"][op.name][1])
                grads |= {op.param(p): lg[p] for p in op.params}
                g = lg[op.input]
            elif kind == "add":
                grads[op.out] = g
        grads[self.input] = g
        return grads

    monkeypatch.setattr(chain.Network, "backward", no_skip)
    net = build(yaml.safe_load(MODEL), tmp_path)
    report = check_network(net, QUICK)
    assert report.first_wrong is None and all(lc.passed for lc in report.layers)
    from gradcli.render.network import verdict_line

    line = verdict_line(net, report).plain  # it read "end to end:: 1 of ..."
    assert line.startswith("FAIL  net: end to end: ") and "::" not in line
    assert not report.end_to_end.passed
    assert not report.end_to_end.results["fc1.W"].passed


def test_shapes_that_do_not_chain(cli: Any, write_spec: Any) -> None:
    path = write_spec("""
inputs: {X: {shape: [4, 6]}}
network:
  - {layer: linear, name: fc1, tensors: {W: {shape: [5, 6]}}}
  - {layer: linear, name: fc2, tensors: {W: {shape: [3, 7]}}}
""")
    for cmd in ("compute", "check"):
        r = cli(cmd, "net", path)
        assert r.exit_code == 2 and r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert "fc1" in lines[0] and "fc2" in lines[0] and "[4, 5]" in lines[0]
        assert "[3, 7]" in lines[0] and "network[1]" in lines[0]


def test_residual_shape_mismatch_names_the_block(tmp_path: Path) -> None:
    doc = yaml.safe_load(MODEL)
    doc["network"][1]["residual"][0]["tensors"]["W"]["shape"] = [4, 5]
    with pytest.raises(GradcliError, match=r"res1.*\[4, 5\].*\[4, 4\]"):
        build(doc, tmp_path)


def test_cli_check_and_json(cli: Any, write_spec: Any) -> None:
    path = write_spec(MODEL)
    r = cli("check", "net", path)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("PASS  net:")
    doc = json.loads(cli("check", "net", path, "-f", "json").stdout)
    assert doc["passed"] and doc["first_wrong"] is None
    assert [(x["index"], x["name"], x["layer"]) for x in doc["layers"]] == [
        (1, "fc1", "linear"), (2, "inner", "linear"), (3, "fc2", "linear")]
    assert set(doc["end_to_end"]["results"]) >= {"X", "fc1.W", "inner.W", "fc2.W"}
    comp = json.loads(cli("compute", "net", path, "-f", "json").stdout)
    assert set(comp["forward"]) == {"fc1.out", "inner.out", "res1.out", "fc2.out"}
    assert "dinner.out" in comp["backward"] and "fc1.W" in comp["gradients"]


def test_grads_keyed_by_parameter_and_boundary(cli: Any, write_spec: Any, tmp_path: Path) -> None:
    path = write_spec(MODEL)
    out = tmp_path / "c.npz"
    assert cli("compute", "net", path, "-o", out).exit_code == 0
    arrays = dict(np.load(out))
    good = {"conv": 0, "fc1.W": arrays["dfc1.W"], "dinner.out": arrays["dinner.out"]}
    del good["conv"]
    np.savez(tmp_path / "good.npz", **good)
    doc = json.loads(cli("check", "net", path, "--grads", tmp_path / "good.npz",
                         "-f", "json").stdout)  # fmt: skip
    assert doc["passed"] and set(doc["end_to_end"]["results"]) == {"fc1.W", "inner.out"}
    bad = dict(good)
    bad["dinner.out"] = good["dinner.out"].copy()
    bad["dinner.out"][1, 2] += 0.01
    np.savez(tmp_path / "bad.npz", **bad)
    r = cli("check", "net", path, "--grads", tmp_path / "bad.npz", "-f", "json")
    assert r.exit_code == 1
    res = json.loads(r.stdout)["end_to_end"]["results"]
    assert res["fc1.W"]["passed"] and not res["inner.out"]["passed"]
    assert res["inner.out"]["worst_index"] == [1, 2]


def test_boundary_answers_with_a_layer_of_your_own(cli: Any, write_spec: Any,
                                                  tmp_path: Path) -> None:
    """One impl: layer in the chain refused every boundary answer, `compute net -o`'s archive
    too ('dinner.out' is not a tensor of this spec: outside test t58b F1); the twin: one
    element 0.01 off still fails there."""
    (tmp_path / "mylinear.py").write_text(MY_LINEAR % "")
    path = write_spec(MODEL.replace("name: inner,", "name: inner, impl: mylinear.py,"))
    out = tmp_path / "c.npz"
    assert cli("compute", "net", path, "-o", out).exit_code == 0
    r = cli("check", "net", path, "--grads", out, "-q")
    assert r.exit_code == 0, r.stderr + r.stdout
    bad = {"dinner.out": np.load(out)["dinner.out"].copy()}
    bad["dinner.out"][1, 2] += 0.01
    np.savez(tmp_path / "bad.npz", **bad)
    r = cli("check", "net", path, "--grads", tmp_path / "bad.npz", "-f", "json")
    assert r.exit_code == 1, r.stderr
    assert json.loads(r.stdout)["end_to_end"]["results"]["inner.out"]["worst_index"] == [1, 2]


def test_network_tensors_take_their_layers_letters(cli: Any, write_spec: Any,
                                                   tmp_path: Path) -> None:
    """The end-to-end table read dX[i=3, j=1] with i the batch, where explain and the local
    checks say [b0, i] with i an input feature (outside test t59b F1): the network's input,
    its boundaries and its output take the letters of the layer reading or writing them."""
    path = write_spec(MODEL)
    r = cli("explain", "net", path)
    assert "X (4, 6), indexed [b0, i]" in r.stdout, r.stdout
    table = cli("check", "net", path).stdout
    assert re.search(r"│ dX +│ +24/24 │ dX\[b0=\d, i=\d\] ", table), table
    out = tmp_path / "c.npz"
    assert cli("compute", "net", path, "-o", out).exit_code == 0
    bad = {"dinner.out": np.load(out)["dinner.out"].copy()}
    bad["dinner.out"][1, 2] += 0.01
    np.savez(tmp_path / "bad.npz", **bad)
    r = cli("check", "net", path, "--grads", tmp_path / "bad.npz")
    assert r.exit_code == 1 and "dinner.out[b0=1, o=2]" in r.stdout, r.stdout


MY_LINEAR = '''
import numpy as np

def forward(x, W, b):
    return x @ W.T + b

def backward(grad_output, x, W, b):
    return {"x": grad_output @ W, "W": grad_output.T @ x, "b": grad_output.sum(axis=0)%s}
'''

MY_SCALE = '''
def forward(x, s):
    return x * s

def backward(grad_output, x, s):
    return {"x": grad_output * s, "s": (grad_output * x).sum(axis=0)%s}
'''


def _impl_model(tmp_path: Path, lin_bug: str = "", scale_bug: str = "") -> Path:
    (tmp_path / "mylinear.py").write_text(MY_LINEAR % lin_bug)
    (tmp_path / "myscale.py").write_text(MY_SCALE % scale_bug)
    path = tmp_path / "model.yaml"
    path.write_text("""
seed: 2
inputs: {X: {shape: [4, 6]}}
network:
  - {layer: linear, name: fc1, tensors: {W: {shape: [5, 6]}}}
  - {layer: linear, name: mine, impl: mylinear.py, tensors: {W: {shape: [5, 5]}}}
  - {layer: custom, name: gain, impl: myscale.py, tensors: {s: {shape: [5]}}}
  - {layer: linear, name: fc3, tensors: {W: {shape: [2, 5]}}}
""")
    return path


def test_a_custom_layers_parameter_is_indexed_as_its_own_check_does(cli: Any,
                                                                    tmp_path: Path) -> None:
    """dact.beta[i=0] end to end where the layer's own check said dbeta[0]: a custom layer
    names no axes, and its parameter takes no letters in the network either (outside test
    t62b F6)."""
    (tmp_path / "scale.py").write_text(MY_SCALE % " * 2")
    path = tmp_path / "model.yaml"
    path.write_text("seed: 2\ninputs: {X: {shape: [4, 5]}}\nnetwork:\n"
                    "  - {layer: custom, name: gain, impl: scale.py, tensors: {s: {shape: [5]}}}\n")
    r = cli("check", "net", path)
    assert r.exit_code == 1
    row = next(line for line in r.stdout.splitlines() if line.startswith("│ dgain.s "))
    assert "dgain.s[" in row and "=" not in row.split("dgain.s[")[1].split("]")[0], row


def test_end_to_end_notes_say_they_are_end_to_end(cli: Any, tmp_path: Path) -> None:
    """ "dX: 306 of 384 failing coordinates were not rechecked" named neither the network's
    X nor a layer's (outside test t59b F3): the end-to-end check's notes begin "end to end:",
    and what the screen left is said as what it is (all were compared; the twin: the right
    layer has no such note)."""
    (tmp_path / "mylinear.py").write_text(MY_LINEAR.replace('"x": grad_output @ W',
                                                            '"x": 1.01 * grad_output @ W') % "")
    path = tmp_path / "model.yaml"
    path.write_text("""
seed: 2
inputs: {X: {shape: [40, 6]}}
network:
  - {layer: linear, name: mine, impl: mylinear.py, tensors: {W: {shape: [5, 6]}}}
  - {layer: linear, name: fc2, tensors: {W: {shape: [2, 5]}}}
""")
    r = cli("check", "net", path)
    assert r.exit_code == 1
    said = [line for line in r.stderr.splitlines() if "fail as computed" in line]
    assert [x.split(": ")[1:3] for x in said] == [["layer 1 'mine'", "dx"],
                                                   ["end to end", "dX"]], r.stderr
    assert all("of its 240 failing coordinates were rechecked" in x for x in said), said
    (tmp_path / "mylinear.py").write_text(MY_LINEAR % "")
    r = cli("check", "net", path)
    assert r.exit_code == 0 and "fail as computed" not in r.stderr, r.stderr


@pytest.mark.parametrize(("lin_bug", "scale_bug", "culprit", "tensor"), [
    ("", "", None, None),
    (" * 0 + 1", "", "mine", "b"),  # db of the user's linear
    ("", " * 2", "gain", "s"),  # ds of the custom layer
])  # fmt: skip
def test_impl_and_custom_entries(
    cli: Any, tmp_path: Path, lin_bug: str, scale_bug: str, culprit: Any, tensor: Any
) -> None:
    path = _impl_model(tmp_path, lin_bug, scale_bug)
    r = cli("check", "net", path, "-f", "json")
    doc = json.loads(r.stdout)
    assert r.exit_code == (0 if culprit is None else 1), r.stderr
    if culprit is None:
        assert doc["first_wrong"] is None
    else:
        assert (doc["first_wrong"]["name"], doc["first_wrong"]["tensor"]) == (culprit, tensor)


def test_api_check_spec_and_network_in_code(tmp_path: Path) -> None:
    import gradcli

    path = tmp_path / "model.yaml"
    path.write_text(MODEL)
    report = gradcli.check_spec(path)
    assert isinstance(report, gradcli.NetworkReport) and report.passed
    doc = json.loads(report.to_json())
    assert doc["first_wrong"] is None and "fc1.W" in doc["end_to_end"]["results"]
    assert "PASS  net:" in str(report)

    rng = np.random.default_rng(0)
    X, W1, W2 = (rng.standard_normal(s) for s in ((3, 4), (5, 4), (2, 5)))

    class Wrong:  # a linear whose dW is twice what it should be
        @staticmethod
        def forward(x, W, b):
            return x @ W.T + b

        @staticmethod
        def backward(grad_output, x, W, b):
            return {"x": grad_output @ W, "W": 2 * grad_output.T @ x, "b": grad_output.sum(0)}

    model = {"inputs": {"X": X}, "network": [
        {"layer": "linear", "name": "fc1", "tensors": {"W": W1}},
        {"layer": "linear", "name": "fc2", "tensors": {"W": W2}, "impl": Wrong},
    ]}  # fmt: skip
    report = gradcli.check_network(model)
    assert not report.passed
    assert (report.first_wrong.name, report.first_wrong.tensor) == ("fc2", "W")
    model["network"][1].pop("impl")
    assert gradcli.check_network(model).passed
    comp = gradcli.compute_network(model)
    np.testing.assert_allclose(comp.intermediates["fc1.out"], X @ W1.T)


def test_explain_net(cli: Any, write_spec: Any) -> None:
    path = write_spec(MODEL)
    r = cli("explain", "net", path)
    assert r.exit_code == 0, r.stderr
    assert "layer 2 linear 'inner' -> inner.out (4, 5)" in r.stdout
    assert "layer 3 linear 'fc2': dL/dW" in r.stdout and "∂L/∂W (3, 5)" in r.stdout
    doc = json.loads(cli("explain", "net", path, "-f", "json").stdout)
    assert [x["name"] for x in doc["layers"]] == ["fc1", "inner", "fc2"]


def test_omitted_parameters_are_drawn_or_named(tmp_path: Path) -> None:
    doc = {"inputs": {"X": {"shape": [6, 4]}}, "network": [
        {"layer": "linear", "name": "fc", "tensors": {"W": {"shape": [50, 4]}}},
        {"layer": "batchnorm", "name": "bn"},
    ]}  # fmt: skip
    t = build(doc, tmp_path).spec.tensors
    assert np.all(t["fc.b"] == 0) and np.all(t["bn.gamma"] == 1) and np.all(t["bn.beta"] == 0)
    assert abs(np.std(t["fc.W"]) - np.sqrt(2 / 4)) < 0.2  # He's scale, fan_in 4
    doc["network"][0]["tensors"] = {}
    with pytest.raises(GradcliError, match=r"network\[0\].*shape of linear's W \(out, in\)"):
        build(doc, tmp_path)


INIT_LAYERS = ("conv2d", "relu", "maxpool2d", "flatten", "linear", "softmax_cross_entropy")


@pytest.mark.skipif(not all(n in REGISTRY for n in INIT_LAYERS), reason="issue 14's layers")
def test_init_net_runs_as_written(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    assert cli("init", "net", "-o", path).exit_code == 0
    doc = yaml.safe_load(path.read_text())
    assert [e["layer"] for e in doc["network"]] + [doc["loss"]["layer"]] == list(INIT_LAYERS)
    r = cli("check", "net", path, "-f", "json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert [x["name"] for x in out["layers"]] == ["conv1", "relu2", "pool1", "flatten4", "fc",
                                                  "softmax_cross_entropy6"]  # fmt: skip
    assert "y" not in out["end_to_end"]["results"]  # labels are data, never differentiated
    assert cli("compute", "net", path).exit_code == 0
    assert cli("explain", "net", path).exit_code == 0
    assert cli("init", "net", "--impl").exit_code == 2


LABELS = """inputs:
  X: {shape: [4, 5]}
  y: LABELS
network:
  - {layer: linear, name: fc, tensors: {W: {shape: [3, 5]}}}
loss: {layer: LOSS, target: y}
"""


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "svm"])
@pytest.mark.parametrize(
    ("labels", "said"),
    [("[0, 1, 2, 3]", "label y[3] = 3 is not a class"),
     ("[0, 1, 2, -1]", "label y[3] = -1 is not a class"),
     ("[0, 1, 2, 0.5]", "whole numbers"),
     ("[0, 1, 2, 100000000000000000000]", "is not a class")],
)  # fmt: skip
def test_a_loss_s_labels_are_classes_of_its_input(cli, tmp_path, assert_usage_error, loss,
                                                  labels, said):  # fmt: skip
    """Labels out of range crashed (exit 3) or blamed the loss's backward; now one line."""
    model = tmp_path / "model.yaml"
    model.write_text(LABELS.replace("LABELS", labels).replace("LOSS", loss))
    assert_usage_error(cli("check", "net", model), "inputs.y", said)
    # the twin: labels in range run
    model.write_text(LABELS.replace("LABELS", "[0, 1, 2, 1]").replace("LOSS", loss))
    assert cli("check", "net", model, "-q").exit_code == 0


@pytest.mark.parametrize("name", ["fc.W", "dfc.out", "1x", "a b"])
def test_an_input_may_not_take_a_parameter_s_dotted_name(cli, tmp_path, assert_usage_error,
                                                         name):  # fmt: skip
    """An input named fc.W collided with the parameter fc.W: a correct network FAILed."""
    model = tmp_path / "model.yaml"
    model.write_text(f'inputs: {{"{name}": {{shape: [3, 4]}}}}\n'
                     "network:\n  - {layer: linear, name: fc, tensors: {W: {shape: [2, 4]}}}\n")
    assert_usage_error(cli("check", "net", model), "inputs.", "identifier")
    model.write_text("inputs: {X: {shape: [3, 4]}}\n"  # the twin
                     "network:\n  - {layer: linear, name: fc, tensors: {W: {shape: [2, 4]}}}\n")
    assert cli("check", "net", model, "-q").exit_code == 0
