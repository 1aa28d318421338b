"""Bad input an outside tester found (t34b F1-F6): refused with one line naming the file, the
key and what was expected, never judged. Twins: the same input made right is accepted."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

import gradcli

LINEAR = """layer: linear
tensors:
  x: [[1.0, 2.0], [0.5, -1.0]]
  W: [[0.3, -0.2], [0.1, 0.4], [-0.5, 0.2]]
  b: [0.1, 0.2, 0.3]
grad_output: [[1.0, 0.5, -0.2], [0.3, -0.4, 0.6]]
"""


def _right_dW() -> np.ndarray:
    x = np.array([[1.0, 2.0], [0.5, -1.0]])
    g = np.array([[1.0, 0.5, -0.2], [0.3, -0.4, 0.6]])
    return g.T @ x


def _npz(path: Path, members: list[tuple[str, np.ndarray]]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, a in members:
            with z.open(name, "w", force_zip64=False) as f:
                np.lib.format.write_array(f, a)
    return path


@pytest.mark.parametrize("second", ["W.npy", "W"])
def test_an_archive_holding_an_answer_twice_is_refused(cli, tmp_path, assert_usage_error,
                                                       second):
    (tmp_path / "lin.yaml").write_text(LINEAR)
    right = _right_dW()
    import warnings

    with warnings.catch_warnings():  # zipfile warns of the duplicate name it writes
        warnings.simplefilter("ignore")
        dup = _npz(tmp_path / "dup.npz", [("W.npy", right), (second, 2 * right)])
    assert_usage_error(cli("check", "linear", tmp_path / "lin.yaml", "--grads", dup),
                       "dup.npz", "'W' twice")
    ok = _npz(tmp_path / "ok.npz", [("W.npy", right)])
    assert cli("check", "linear", tmp_path / "lin.yaml", "--grads", ok).exit_code == 0


@pytest.mark.parametrize("layer", ["relu", "softmax", "maxpool2d"])
def test_an_input_at_the_largest_float_is_refused(cli, tmp_path, assert_usage_error, layer):
    x = "[[1.7976931348623157e308, 1.0], [0.5, 2.0]]"
    name, value = ("X", f"[{x}]") if layer == "maxpool2d" else ("x", x)
    opts = "options: {size: 1, stride: 1}\n" if layer == "maxpool2d" else ""
    spec = tmp_path / "big.yaml"
    spec.write_text(f"layer: {layer}\n{opts}tensors:\n  {name}: {value}\n")
    result = cli("check", layer, spec)
    assert_usage_error(result, "big.yaml", "the step overflows")
    spec.write_text(f"layer: {layer}\n{opts}tensors:\n  {name}: {value.replace('e308', 'e300')}\n")
    assert cli("check", layer, spec, "-q").exit_code in (0, 1)  # judged, not refused


def test_a_step_beyond_x_is_refused(cli, assert_usage_error):
    assert_usage_error(cli("check", "tanh", "--eps", "1e5"), "--eps", "at most 1")
    assert cli("check", "tanh", "--eps", "1", "-q").exit_code == 0
    # the complex step's truncation is never refined: a step of 1e-3 failed a right tanh
    assert_usage_error(cli("check", "tanh", "--method", "complex", "--eps", "1e-3"),
                       "--eps", "complex step of at most")
    assert cli("check", "tanh", "--method", "complex", "--eps", "1e-7", "-q").exit_code == 0
    with pytest.raises(gradcli.GradcliError):
        gradcli.check("tanh", eps=2.0)


@pytest.mark.parametrize(("name", "said"), [("grad_output", "upstream gradient"),
                                            ("lambda", "Python keyword")])
def test_a_tensor_named_as_no_tensor_can_be_is_refused(name, said):
    with pytest.raises(gradcli.GradcliError, match=said):
        gradcli.check(forward=lambda **t: 2 * next(iter(t.values())),
                      backward=lambda g, **t: {name: 2 * g}, tensors={name: np.ones(3)})


def test_a_tensor_and_an_option_of_one_name_are_refused(cli, tmp_path, assert_usage_error):
    spec = tmp_path / "c.yaml"
    spec.write_text("layer: custom\noptions: {x: 2}\ntensors:\n  x: [1.0, 2.0]\n")
    impl = tmp_path / "lay.py"
    impl.write_text("def forward(x, **o):\n    return 2 * x\n"
                    "def backward(grad_output, x, **o):\n    return {'x': 2 * grad_output}\n")
    assert_usage_error(cli("check", "custom", spec, "--impl", impl), "c.yaml", "options.x",
                       "a tensor of this layer")


def test_file_messages(cli, tmp_path, assert_usage_error, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("lin.yaml").write_text(LINEAR)
    # an expression in a .npy header: no parser object with its address
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1+1,), }"
    header += b" " * (118 - len(header)) + b"\n"
    Path("hdr.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
                                + np.zeros(2).tobytes())
    Path("r1.yaml").write_text("layer: relu\ntensors:\n  x: hdr.npy\n")
    result = cli("check", "relu", "r1.yaml")
    assert_usage_error(result, "hdr.npy", "invalid .npy header")
    assert " at 0x" not in result.stderr
    # a short text file: no NUMPY header, not 'truncated in the magic'
    Path("short.npy").write_text("hello")
    Path("r2.yaml").write_text("layer: relu\ntensors:\n  x: short.npy\n")
    assert_usage_error(cli("check", "relu", "r2.yaml"), "short.npy", "not a .npy file")
    # an empty archive of answers is named
    _npz(Path("empty.npz"), [])
    assert_usage_error(cli("check", "linear", "lin.yaml", "--grads", "empty.npz"),
                       "empty.npz", "holds no answer")
    # an unknown key of a YAML answers file is named as such before its file is looked for
    Path("answers.yaml").write_text("W: [[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]\ndq: foo.npy\n")
    result = cli("check", "linear", "lin.yaml", "--grads", "answers.yaml")
    assert_usage_error(result, "answers.yaml", "'dq' is not a tensor")
    assert "not found" not in result.stderr


def test_probe_results_carry_the_same_keys(cli_json):
    keys = None
    for mode in ("full", "sample", "probe"):
        doc = cli_json("check", "linear", "--mode", mode)
        got = set(doc["results"]["W"])
        assert {"colors", "forward_passes", "coloring", "incremental"} <= got
        keys = got if keys is None else keys
    assert doc["results"]["W"]["forward_passes"] is None
