"""An error of a network layer's own code names the model file and the layer (outside tests
t55a F2 and t55b F4): two relu layers sharing one impl file, whose backward raises only at the
second, said `myrelu.py: backward raised ...`, and a layer's forward that refuses the complex
step said `--method: your forward is not complex-safe ... dx`, in a network of four impl
layers. Twins: a layer spec's error (no network) reads as before; a model without user code
errors in its keys as before."""

from __future__ import annotations

from pathlib import Path

RELU = """import numpy as np
def forward(x):
    return np.maximum(x, 0)
def backward(grad_output, x):
    if x.shape[-1] == 3:
        raise ValueError("shapes not aligned")
    return {"x": grad_output * (x > 0)}
"""

MODEL = """inputs:
  X: {shape: [4, 6]}
  y: {shape: [4], init: labels, classes: 3}
network:
  - {layer: linear, name: fc1, tensors: {W: {shape: [5, 6]}}}
  - {layer: relu, name: act1, impl: myrelu.py}
  - {layer: linear, name: fc2, tensors: {W: {shape: [3, 5]}}}
  - {layer: relu, name: act2, impl: myrelu.py}
loss: {layer: softmax_cross_entropy, target: y}
"""

ABS = """import numpy as np
def forward(x):
    return np.sqrt(x * np.conj(x)).real  # |x|, not complex-safe
def backward(grad_output, x):
    return {"x": grad_output * np.sign(x)}
"""


def _write(tmp: Path, model: str, **files: str) -> Path:
    for name, text in files.items():
        (tmp / f"{name}.py").write_text(text)
    (tmp / "m.yaml").write_text(model)
    return tmp / "m.yaml"


def test_a_layers_raising_backward_names_the_model_and_the_layer(cli, tmp_path):
    model = _write(tmp_path, MODEL, myrelu=RELU)
    for command in ("check", "compute"):
        r = cli(command, "net", model)
        assert r.exit_code == 2
        assert "m.yaml: layer 4 'act2' (" in r.stderr, r.stderr
        assert "myrelu.py): backward raised ValueError" in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1


def test_a_layer_refusing_the_complex_step_is_named(cli, tmp_path):
    model = _write(tmp_path, MODEL.replace("myrelu.py}", "myabs.py}", 1)
                   .replace("impl: myrelu.py", "impl: ok.py"),
                   myabs=ABS, ok=RELU.replace("== 3", "== -1"))  # fmt: skip
    r = cli("check", "net", model, "--method", "complex")
    assert r.exit_code == 2
    assert "m.yaml: layer 2 'act1'" in r.stderr and "not complex-safe" in r.stderr, r.stderr


def test_twin_a_layer_specs_error_reads_as_before(cli, tmp_path):
    (tmp_path / "myrelu.py").write_text(RELU)
    (tmp_path / "s.yaml").write_text("tensors:\n  x: {shape: [2, 3]}\n")
    r = cli("check", "relu", tmp_path / "s.yaml", "--impl", tmp_path / "myrelu.py")
    assert r.exit_code == 2
    assert "layer " not in r.stderr and "myrelu.py: backward raised ValueError" in r.stderr


def test_a_layers_raising_forward_is_named_too(cli, tmp_path):
    """The forward ran for the layer's output shape while the model loads: its error named
    only the impl file (outside test t57a F8)."""
    raising = RELU.replace("return np.maximum(x, 0)", "raise RuntimeError('boom')")
    model = _write(tmp_path, MODEL, myrelu=raising)
    r = cli("check", "net", model)
    assert r.exit_code == 2
    assert "m.yaml: layer 2 'act1' (" in r.stderr and "forward raised RuntimeError" in r.stderr


def test_a_target_naming_no_input_is_said_at_its_key(cli, tmp_path, assert_usage_error):
    """`target: Y` where the input is y read "inputs: expected exactly one input the network
    is differentiated at ..., got X, y" (outside test t65c F4): the target's own key says it,
    with the input it nearly names. The twin: `target: y` runs."""
    plain = MODEL.replace("impl: myrelu.py", "").replace(", }", "}")
    model = _write(tmp_path, plain.replace("target: y", "target: Y"))
    assert_usage_error(cli("check", "net", model),
                       "loss.target: expected the name of one of the inputs (X, y)")
    assert "did you mean 'y'?" in cli("check", "net", model).stderr
    assert cli("check", "net", _write(tmp_path, plain), "-q").exit_code == 0


def test_a_mistyped_loss_key_and_a_target_naming_the_data(cli, tmp_path, assert_usage_error):
    """`targt: y` read as an inputs problem, and `target: X` (the data) as 'inputs.y: unknown
    key classes' (outside test t66b F5): each is said at the loss's own key."""
    plain = MODEL.replace("impl: myrelu.py", "").replace(", }", "}")
    typo = _write(tmp_path, plain.replace("target: y", "targt: y"))
    assert_usage_error(cli("check", "net", typo), "loss.targt: unknown key (did you mean "
                       "'target'?)")
    data = _write(tmp_path, plain.replace("target: y", "target: X"))
    assert_usage_error(cli("check", "net", data), "loss.target: names 'X', which leaves y, "
                       "drawn as labels, as the input the network is differentiated at")
