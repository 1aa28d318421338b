"""Outside test t10: the API takes the same arrays as the CLI and leaves the caller's objects
alone; piped output carries no padding.

- an integer array for a floating-point tensor is refused as the CLI refuses an integer .npy
  (labels and indices alone may be integers); a float32 array in a float64 check is cast and
  said so, in both;
- the caller's options are never the objects the user's code receives, and each call gets
  them as validated (a forward writing into its param dict cannot change the next call's);
- the CS231n layout line names the param dicts' keys; no piped line ends in spaces.
"""

import json
import re

import numpy as np
import pytest

import gradcli
from gradcli.errors import SpecError


def _linear(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {n: rng.standard_normal(s).astype(dtype) for n, s in (("x", (2, 4)), ("W", (3, 4)))}


@pytest.mark.parametrize(("dtype", "holds"), [(np.int64, "holds an int64"),
                                              (np.uint8, "holds a uint8"),
                                              (np.bool_, "holds a bool")])  # fmt: skip
def test_an_integer_array_for_a_float_tensor_is_refused_as_the_cli_does(dtype, holds, cli,
                                                                      tmp_path):  # fmt: skip
    t = {**_linear(), "x": np.arange(8).reshape(2, 4).astype(dtype)}
    with pytest.raises(SpecError) as e:
        gradcli.check("linear", t)
    assert f"{holds} array; expected floating-point values" in str(e.value)
    assert e.value.param == "tensors"
    np.save(tmp_path / "x.npy", t["x"])
    np.save(tmp_path / "W.npy", t["W"])
    (tmp_path / "s.yaml").write_text("tensors:\n  x: x.npy\n  W: W.npy\n")
    result = cli("check", "linear", tmp_path / "s.yaml")
    assert result.exit_code == 2
    assert f"{holds} array; expected floating-point values" in result.stderr


def test_integers_stay_allowed_for_labels_and_a_custom_layers_indices():
    x = np.random.default_rng(1).standard_normal((4, 3))
    y = np.array([0, 2, 1, 2])
    assert gradcli.check("softmax_cross_entropy", {"x": x, "y": y}).passed

    def forward(x, idx):
        return x[idx]

    def backward(grad_output, x, idx):
        dx = np.zeros_like(x)
        np.add.at(dx, idx, grad_output)
        return {"x": dx}

    t = {"x": x, "idx": np.array([1, 1, 3])}
    assert gradcli.check(forward=forward, backward=backward, tensors=t).passed


def test_a_float32_array_in_a_float64_check_is_cast_and_said_so(cli, tmp_path):
    report = gradcli.check("linear", _linear(np.float32))
    doc = json.loads(report.to_json())
    assert doc["dtype"] == "float64" and report.passed
    assert any("x, W given as float32, checked in float64" in n for n in doc["notes"]), doc["notes"]
    assert "dtype='float32' checks in float32" in " ".join(doc["notes"])
    # the CLI says the same of a float32 .npy, with its flag
    t = _linear(np.float32)
    np.save(tmp_path / "x.npy", t["x"])
    np.save(tmp_path / "W.npy", t["W"])
    (tmp_path / "s.yaml").write_text("tensors:\n  x: x.npy\n  W: W.npy\n")
    out = json.loads(cli("check", "linear", tmp_path / "s.yaml", "--format", "json").stdout)
    assert any("x, W given as float32, checked in float64 (the spec's dtype; --dtype float32"
               in n for n in out["notes"]), out["notes"]  # fmt: skip
    # twins: float64 arrays, and float32 ones in a float32 check, need no note
    assert json.loads(gradcli.check("linear", _linear()).to_json())["notes"] == []
    same = gradcli.check("linear", _linear(np.float32), dtype="float32")
    assert not any("given as" in n for n in json.loads(same.to_json())["notes"])


def _batchnorm_forward(x, bn_param):
    # CS231n's: the running statistics are written into the caller's bn_param
    bn_param["calls"] = bn_param.get("calls", 0) + 1
    bn_param["running_mean"] = 0.9 * bn_param.get("running_mean", 0) + 0.1 * x.mean(0)
    mu, var = x.mean(0), x.var(0)
    xhat = (x - mu) / np.sqrt(var + bn_param["eps"])
    return xhat, (xhat, var, bn_param["eps"], bn_param["calls"])


def _batchnorm_backward(dout, cache):
    xhat, var, eps, calls = cache
    n = dout.shape[0]
    dx = (n * dout - dout.sum(0) - xhat * (dout * xhat).sum(0)) / (n * np.sqrt(var + eps))
    return (dx,)


def test_the_callers_options_are_untouched_and_every_call_gets_them_as_validated():
    bn_param = {"eps": 1e-5, "mode": "train"}
    x = np.random.default_rng(2).standard_normal((5, 3))
    report = gradcli.check(forward=_batchnorm_forward, backward=_batchnorm_backward,
                           tensors={"x": x}, options={"bn_param": bn_param})  # fmt: skip
    assert report.passed
    assert bn_param == {"eps": 1e-5, "mode": "train"}
    seen = []

    def forward(x, bn_param):
        seen.append(dict(bn_param))
        return _batchnorm_forward(x, bn_param)

    gradcli.check(forward=forward, backward=_batchnorm_backward, tensors={"x": x},
                  options={"bn_param": bn_param})  # fmt: skip
    assert len(seen) > 3 and all(s == {"eps": 1e-5, "mode": "train"} for s in seen)


def test_the_cs231n_layout_line_names_the_param_keys(cli, tmp_path):
    path = tmp_path / "layers.py"
    path.write_text(
        "import numpy as np\n"
        "def max_pool_forward_naive(x, pool_param):\n"
        "    h, w, s = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']\n"
        "    N, C, H, W = x.shape\n"
        "    out = np.zeros((N, C, (H - h) // s + 1, (W - w) // s + 1))\n"
        "    for i in range(out.shape[2]):\n"
        "        for j in range(out.shape[3]):\n"
        "            out[:, :, i, j] = x[:, :, i*s:i*s+h, j*s:j*s+w].max(axis=(2, 3))\n"
        "    return out, (x, pool_param)\n"
        "def max_pool_backward_naive(dout, cache):\n"
        "    x, p = cache\n"
        "    h, w, s = p['pool_height'], p['pool_width'], p['stride']\n"
        "    dx = np.zeros_like(x)\n"
        "    for n in range(x.shape[0]):\n"
        "        for c in range(x.shape[1]):\n"
        "            for i in range(dout.shape[2]):\n"
        "                for j in range(dout.shape[3]):\n"
        "                    win = x[n, c, i*s:i*s+h, j*s:j*s+w]\n"
        "                    a, b = np.unravel_index(win.argmax(), win.shape)\n"
        "                    dx[n, c, i*s+a, j*s+b] += dout[n, c, i, j]\n"
        "    return dx\n"
    )
    result = cli("check", "maxpool2d", "--impl", path)
    assert result.exit_code == 0, result.stderr
    assert not re.search(" +$", result.stdout, re.M)  # a pipe: no padding
    assert "pool_param {pool_height, pool_width, stride}" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    "args",
    [("layers",), ("check", "linear"), ("compute", "linear"), ("explain", "conv2d"),
     ("check", "linear", "--values")],
)  # fmt: skip
def test_piped_output_has_no_trailing_spaces(cli, args):
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    padded = [line for line in result.stdout.splitlines() if re.search(r" +$", line)]
    assert not padded, padded[:3]


def test_compute_says_a_cast_and_a_big_endian_float64_is_none(cli, tmp_path):
    """compute cast a float16 x to float64 in silence, and check called a big-endian float64
    '>f8' and 'checked in float64' (outside test t65c F6)."""
    t = _linear()
    np.save(tmp_path / "x16.npy", t["x"].astype(np.float16))
    np.save(tmp_path / "xbe.npy", t["x"].astype(">f8"))
    np.save(tmp_path / "W.npy", t["W"])
    for name in ("x16", "xbe"):
        (tmp_path / f"{name}.yaml").write_text(f"tensors:\n  x: {name}.npy\n  W: W.npy\n")
    r = cli("compute", "linear", tmp_path / "x16.yaml")
    assert r.exit_code == 0 and "x given as float16, computed in float64" in r.stderr, r.stderr
    for command in ("compute", "check"):
        r = cli(command, "linear", tmp_path / "xbe.yaml")
        assert r.exit_code == 0 and "given as" not in r.stderr, r.stderr
