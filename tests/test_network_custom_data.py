"""A model file's custom layer takes data as a custom layer's spec does: its tensors given as
integers (labels, indices) and the float ones its entry lists under ``data:`` (a target) are
passed to its functions, never perturbed, never given a gradient. Before, a custom loss on
integer labels could not sit in a network (``init: labels`` and integer arrays refused as
parameters), nor could a float target be kept from being differentiated.

Oracles: the built-in softmax_cross_entropy closing the same network (the custom loss's
gradients must be its gradients), the numerical check itself, and mse's gradient by hand.
Twins: a wrong backward of the custom loss fails; a mended model builds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import gradcli
from gradcli.errors import GradcliError
from gradcli.inputs.network import build_network

CE = """import numpy as np
def forward(x, y):
    z = x - x.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()
def backward(grad_output, x, y):
    z = x - x.max(axis=-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return {"x": grad_output * p / len(y)SLIP}
"""

MSE = """import numpy as np
def forward(x, target):
    return ((x - target) ** 2).mean()
def backward(grad_output, x, target):
    d = grad_output * 2 * (x - target) / x.size
    return {"x": d EXTRA}
"""

HEAD = """seed: 1
inputs:
  X: {shape: [6, 5]}
network:
  - {layer: linear, name: fc1, tensors: {W: {shape: [4, 5]}, b: {shape: [4]}}}
"""


def _model(tmp_path: Path, entry: str, loss: bool = True) -> Path:
    """The network closed by ``entry``: as its loss (grad_output 1), or as its last layer."""
    path = tmp_path / "model.yaml"
    path.write_text(f"{HEAD}loss: {entry}\n" if loss else f"{HEAD}  - {entry}\n")
    return path


@pytest.mark.parametrize(("labels", "loss"), [
    ("{shape: [6], init: labels, classes: 4}", True), ("y.npy", True), ("y.npy", False)])
@pytest.mark.parametrize("slip", ["", " * len(y)"])
def test_a_custom_loss_on_integer_labels_checks(
    tmp_path: Path, cli: Any, labels: str, loss: bool, slip: str
) -> None:
    np.save(tmp_path / "y.npy", np.array([0, 3, 1, 1, 2, 0]))
    (tmp_path / "ce.py").write_text(CE.replace("SLIP", slip))
    entry = f"{{layer: custom, name: ce, impl: ce.py, tensors: {{y: {labels}}}}}"
    path = _model(tmp_path, entry, loss)
    # --budget 0.5: the twin's failing coordinates searched for kinks at a third of the cost
    r = cli("check", "net", path, "-f", "json", "--budget", "0.5")
    doc = json.loads(r.stdout)
    if slip:  # the twin: dx N times too large
        assert r.exit_code == 1, r.stderr
        assert (doc["first_wrong"]["name"], doc["first_wrong"]["tensor"]) == ("ce", "x")
        return
    assert r.exit_code == 0 and doc["passed"], r.stderr
    ce = doc["layers"][1]
    assert ce["name"] == "ce" and list(ce["results"]) == ["x"]  # no dy: data
    assert sorted(doc["end_to_end"]["results"]) == ["X", "fc1.W", "fc1.b"]
    comp = cli("compute", "net", path, "-f", "json")
    assert comp.exit_code == 0, comp.stderr
    fixed = json.loads(comp.stdout)["fixed"]
    assert list(fixed) == ["ce.y"] and fixed["ce.y"]["shape"] == [6], fixed


def test_a_custom_loss_s_gradients_are_the_built_in_loss_s(tmp_path: Path) -> None:
    """The independent oracle: the same network closed by the built-in softmax_cross_entropy
    on the same labels (a network input there) has the same output and gradients."""
    y = np.array([0, 3, 1, 1, 2, 0])
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "ce.py").write_text(CE.replace("SLIP", ""))
    mine = _model(tmp_path, "{layer: custom, name: ce, impl: ce.py, tensors: {y: y.npy}}")
    ours = tmp_path / "ours.yaml"
    ours.write_text(HEAD.replace("X: {shape: [6, 5]}", "X: {shape: [6, 5]}\n  y: y.npy")
                    + "loss: {layer: softmax_cross_entropy, target: y}\n")  # fmt: skip
    a, b = gradcli.compute_network(str(mine)), gradcli.compute_network(str(ours))
    np.testing.assert_allclose(a.output, b.output, rtol=1e-12)
    for n in ("X", "fc1.W", "fc1.b"):
        np.testing.assert_allclose(a.gradients[n], b.gradients[n], rtol=1e-10, atol=1e-15)
    assert gradcli.check_spec(mine).passed


def test_a_custom_layer_in_code_takes_integer_labels() -> None:
    rng = np.random.default_rng(0)
    X, W, y = rng.normal(size=(6, 5)), rng.normal(size=(4, 5)), rng.integers(0, 4, 6)
    namespace: dict[str, Any] = {}
    exec(CE.replace("SLIP", ""), namespace)  # noqa: S102 - the test's own code

    class Loss:
        forward = staticmethod(namespace["forward"])
        backward = staticmethod(namespace["backward"])

    model = {"inputs": {"X": X}, "network": [
        {"layer": "linear", "name": "fc", "tensors": {"W": W}},
        {"layer": "custom", "name": "ce", "impl": Loss, "tensors": {"y": y}},
    ]}  # fmt: skip
    report = gradcli.check_network(model)
    assert report.passed, str(report)
    assert list(report.layers[1].report.results) == ["x"]


@pytest.mark.parametrize("data", ["data: [target]", "data: target", ""])
def test_a_float_target_listed_as_data(tmp_path: Path, cli: Any, data: str) -> None:
    """Under data: the target is a constant (its backward returns no gradient for it); not
    listed, it is differentiated, and the backward's missing gradient says to list it, as a
    custom layer's spec says."""
    target = np.random.default_rng(5).normal(size=(6, 4))
    np.save(tmp_path / "target.npy", target)
    (tmp_path / "mse.py").write_text(MSE.replace(" EXTRA", ""))
    entry = "{layer: custom, name: mse, impl: mse.py, tensors: {target: target.npy}"
    path = _model(tmp_path, entry + (f", {data}}}" if data else "}"))
    r = cli("check", "net", path, "-f", "json")
    if not data:
        assert r.exit_code == 2 and r.stdout == "", r.stdout
        line = r.stderr.strip()
        assert "\n" not in line and "backward returned no gradient for target" in line
        assert "data: [target]" in line, line
        return
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert list(doc["layers"][1]["results"]) == ["x"]
    # the oracle: mse's gradient by hand, 2 (x - target) / size, at the layer's input
    comp = gradcli.compute_network(str(path))
    x = comp.intermediates["fc1.out"]
    np.testing.assert_allclose(comp.intermediates["dfc1.out"], 2 * (x - target) / x.size,
                               rtol=1e-12)  # fmt: skip


def test_a_backward_s_gradient_for_a_tensor_under_data_is_refused(
    tmp_path: Path, cli: Any, assert_usage_error: Any
) -> None:
    """As in a custom layer's spec: the gradient would go unchecked, so it is refused."""
    (tmp_path / "mse.py").write_text(MSE.replace(" EXTRA", ', "target": -d'))
    entry = "{layer: custom, name: mse, impl: mse.py, tensors: {target: {shape: [6, 4]}}"
    r = cli("check", "net", _model(tmp_path, entry + ", data: [target]}"))
    assert_usage_error(r, "mse.py", "returned a gradient for target", "under data:")
    assert cli("check", "net", _model(tmp_path, entry + "}")).exit_code == 0  # the twin


def build(text: str, base: Path) -> Any:
    return build_network(yaml.safe_load(text), base=base, source="m.yaml")


@pytest.mark.parametrize(
    ("entry", "mended", "said"),
    [("{layer: custom, impl: mse.py, tensors: {target: {shape: [6, 4]}}, data: [targt]}",
      "{layer: custom, impl: mse.py, tensors: {target: {shape: [6, 4]}}, data: [target]}",
      "'targt' is not one of the entry's tensors (target) (did you mean 'target'?)"),
     ("{layer: custom, impl: mse.py, tensors: {target: {shape: [6, 4]}}, data: [x]}",
      "{layer: custom, impl: mse.py, tensors: {target: {shape: [6, 4]}}, data: []}",
      "'x' is the layer's input"),
     ("{layer: custom, impl: mse.py, tensors: {target: {shape: [6, 4]}}, data: {a: 1}}",
      "{layer: custom, impl: mse.py, tensors: {target: {shape: [6, 4]}}, data: target}",
      "expected a list of the entry's tensor names"),
     ("{layer: relu, data: [x]}", "{layer: relu}", "relu's are its own")],
)  # fmt: skip
def test_a_bad_data_marking_names_its_key(
    tmp_path: Path, cli: Any, assert_usage_error: Any, entry: str, mended: str, said: str
) -> None:
    (tmp_path / "mse.py").write_text(MSE.replace(" EXTRA", ""))
    path = _model(tmp_path, entry, loss=False)
    assert_usage_error(cli("check", "net", path), f"{path}: network[1].data: ", said)
    with pytest.raises(GradcliError) as e:
        build(path.read_text(), tmp_path)
    assert str(e.value).startswith("network[1].data: "), str(e.value)
    build(path.read_text().replace(entry, mended), tmp_path)


MASKED = """import numpy as np
def forward(x, mask):
    return (x[mask] ** 2).sum()
def backward(grad_output, x, mask):
    return {"x": grad_output * 2 * x * MASK}
"""


@pytest.mark.parametrize("mask", ["mask", "1"])
def test_a_boolean_mask_selects(tmp_path: Path, cli: Any, mask: str) -> None:
    """A boolean .npy is a mask, kept boolean so that x[mask] selects; the twin, a backward
    without the mask, fails."""
    np.save(tmp_path / "mask.npy", np.random.default_rng(2).random((6, 4)) > 0.5)
    (tmp_path / "masked.py").write_text(MASKED.replace("MASK", mask))
    path = _model(tmp_path, "{layer: custom, name: m, impl: masked.py, tensors: {mask: mask.npy}}")
    r = cli("check", "net", path)
    assert r.exit_code == (0 if mask == "mask" else 1), r.stdout
    if mask == "mask":
        comp = cli("compute", "net", path)
        assert any(line.split()[1:3] == ["m.mask", "│"] and "mask" in line.split()[3]
                   for line in comp.stdout.splitlines() if "m.mask" in line), comp.stdout


def test_a_custom_layer_s_data_reads_role_data(cli: Any, tmp_path: Path) -> None:
    """A tensor under data: is shown as data, not as a target: a net's input X read role
    'target' in the shapes table (outside test t72b F6). Twin: the other tensors keep theirs."""
    (tmp_path / "lin.py").write_text(
        "def forward(X, W):\n    return X @ W\n"
        "def backward(grad_output, X, W):\n    return {'W': X.T @ grad_output}\n")
    (tmp_path / "s.yaml").write_text(
        "layer: custom\ntensors:\n  X: {shape: [3, 2]}\n  W: {shape: [2, 4]}\ndata: [X]\n")
    r = cli("compute", "custom", str(tmp_path / "s.yaml"), "--impl", str(tmp_path / "lin.py"))
    assert r.exit_code == 0, r.stderr
    roles = {cells[0]: cells[1] for cells in (
        [c.strip() for c in line.strip("│ ").split("│")] for line in r.stdout.splitlines()
        if line.count("│") > 3)}  # fmt: skip
    assert roles["X"] == "data" and roles["W"] == "input", roles
