"""Issue 13: the Python API (gradcli.check, check_spec, compute, assert_gradients).

Every check here has a twin: a layer with an injected bug fails and the report names the
tensor, so a test passes only when the API actually compares gradients."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradcli
from gradcli.errors import GradcliError, OptionError, SpecError

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"


def _linear_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((2, 4)), "W": rng.standard_normal((3, 4))}


class Scale:
    """A user's layer: y = x * w (elementwise, w a vector), with a bug switch on dw."""

    def __init__(self, bug: bool = False) -> None:
        self.bug = bug

    def forward(self, x, w):
        return x * w

    def backward(self, grad_output, x, w):
        dw = (grad_output * x).sum(axis=0)
        return {"x": grad_output * w, "w": 2 * dw if self.bug else dw}


SCALE = {"x": np.arange(6.0).reshape(2, 3) - 2.5, "w": np.array([0.5, -1.0, 2.0])}


def test_builtin_layer_passes_and_a_wrong_gradient_fails(capsys):
    report = gradcli.check("linear", _linear_tensors())
    assert report.passed is True
    assert set(report.results) == {"x", "W", "b"}  # b omitted: zeros
    assert all(r.passed for r in report.results.values())
    # twin: the same tensors, answers with one wrong element: fails, naming W
    answers = {"x": gradcli.compute("linear", _linear_tensors()).gradients["x"]}
    wrong_w = gradcli.compute("linear", _linear_tensors()).gradients["W"].copy()
    wrong_w[2, 1] += 1e-3
    bad = gradcli.check("linear", _linear_tensors(), grads={**answers, "dW": wrong_w})
    assert bad.passed is False
    assert bad.results["x"].passed and not bad.results["W"].passed
    assert bad.results["W"].max_abs_error == pytest.approx(1e-3, rel=1e-3)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_user_object_passes_and_its_buggy_twin_fails_naming_the_tensor(capsys):
    good = gradcli.check(Scale(), SCALE)
    assert good.passed, str(good)
    bad = gradcli.check(Scale(bug=True), SCALE)
    assert not bad.passed
    assert bad.results["x"].passed and not bad.results["w"].passed
    assert "dw" in str(bad) and "FAIL" in str(bad)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_forward_and_backward_keywords(capsys):
    layer = Scale()
    assert gradcli.check(forward=layer.forward, backward=layer.backward, tensors=SCALE).passed
    buggy = Scale(bug=True)
    report = gradcli.check(forward=buggy.forward, backward=buggy.backward, tensors=SCALE)
    assert not report.passed and not report.results["w"].passed
    assert capsys.readouterr().out == ""


def test_gradcli_prints_nothing_and_user_code_prints_on_stderr(capsys):
    def forward(x):
        print("forward called")
        return 3 * x

    def backward(grad_output, x):
        print("backward called", file=sys.stderr)
        return {"x": 3 * grad_output}

    assert gradcli.check(forward=forward, backward=backward, tensors={"x": [1.0, 2.0]}).passed
    out = capsys.readouterr()
    assert out.out == ""  # stdout is the caller's: as the CLI keeps it for the result
    assert "forward called" in out.err and "backward called" in out.err
    assert gradcli.check("linear").passed  # twin: gradcli itself says nothing on either
    assert capsys.readouterr() == ("", "")


class OldArray:
    """An array-like whose __array__ takes no copy keyword (torch's Tensor, numpy 1's style)."""

    def __init__(self, a, warn: bool = False) -> None:
        self.a, self.warn = np.asarray(a), warn

    def __array__(self, dtype=None):
        if self.warn:
            import warnings

            warnings.warn("the user's own warning", UserWarning, stacklevel=2)
        return self.a


def test_array_likes_without_a_copy_keyword_convert_without_a_warning(capsys):
    def forward(x, warn=False):
        return OldArray(3 * x, warn)

    def backward(grad_output, x, warn=False):
        return {"x": OldArray(3 * grad_output)}

    t = {"x": np.array([1.0, -2.0])}
    assert gradcli.check(forward=forward, backward=backward, tensors=t).passed
    assert capsys.readouterr() == ("", "")  # numpy's copy= DeprecationWarning was gradcli's
    # twin: a warning the user's __array__ raises itself is still theirs to see
    assert gradcli.check(forward=forward, backward=backward, tensors=t, options={"warn": True})
    assert "forward warned: UserWarning: the user's own warning" in capsys.readouterr().err


def test_assert_gradients_raises_with_the_table_text():
    report = gradcli.assert_gradients(Scale(), SCALE)
    assert report.passed
    with pytest.raises(AssertionError) as info:
        gradcli.assert_gradients(Scale(bug=True), SCALE)
    text = str(info.value)
    table = str(gradcli.check(Scale(bug=True), SCALE))
    # pytest shows the first line of an assertion's message: the verdict, naming the tensor
    first, blank, rest = text.split("\n", 2)
    assert first == table.rstrip().splitlines()[-1] and first.startswith("FAIL") and "dw" in first
    assert blank == "" and rest.splitlines() == [line.rstrip() for line in table.splitlines()]
    assert "\x1b[" not in text and not any(line != line.rstrip() for line in text.splitlines())
    # the table itself is no longer padded either (render/text.Trimmed): no line ends in spaces
    assert not any(line != line.rstrip() for line in table.splitlines())


@pytest.mark.parametrize("name", ["conv2d", "linear"])
def test_to_json_is_the_cli_document(name, cli):
    spec = SPECS / f"{name}.yaml"
    result = cli("check", name, spec, "--format", "json")
    assert result.exit_code == 0, result.stderr
    report = gradcli.check_spec(spec)
    assert report.to_json() == result.stdout
    assert gradcli.check_spec(spec, name).to_json() == result.stdout
    assert json.loads(report.to_json())["passed"] is True


def test_str_is_the_cli_table_without_ansi(cli):
    spec = SPECS / "linear.yaml"
    result = cli("check", "linear", spec, env={"COLUMNS": "100"})
    report = gradcli.check_spec(spec)
    assert report.table(width=100) == result.stdout
    assert "\x1b[" not in str(report)


def test_a_failing_spec_fails_as_the_cli_exit_code(cli, tmp_path):
    mine = tmp_path / "mine.py"
    mine.write_text(
        "def forward(x):\n    return x ** 2\n"
        "def backward(grad_output, x):\n    return {'x': 3 * x * grad_output}\n"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text("layer: custom\ntensors:\n  x: [0.5, -1.5, 2.0]\n")
    result = cli("check", "custom", spec, "--impl", mine, "--format", "json")
    assert result.exit_code == 1
    report = gradcli.check_spec(spec, impl=str(mine))
    assert report.passed is False and not report.results["x"].passed
    assert report.to_json() == result.stdout


def test_options_missing_bias_and_default_grad_output():
    rng = np.random.default_rng(1)
    X, W = rng.standard_normal((7, 7, 2)), rng.standard_normal((3, 3, 2, 4))
    report = gradcli.check("conv2d", {"X": X, "W": W}, options={"stride": 2})
    assert report.passed
    assert set(report.results) == {"X", "W", "b"}  # the omitted bias is zeros
    assert json.loads(report.to_json())["options"] == {"stride": 2}
    comp = gradcli.compute("conv2d", {"X": X, "W": W}, options={"stride": 2})
    assert comp.output.shape == (3, 3, 4)
    # the upstream gradient drawn from the seed, as the CLI does: same seed, same result
    again = gradcli.compute("conv2d", {"X": X, "W": W}, options={"stride": 2})
    np.testing.assert_array_equal(comp.gradients["W"], again.gradients["W"])
    other = gradcli.compute("conv2d", {"X": X, "W": W}, options={"stride": 2}, seed=5)
    assert not np.array_equal(comp.gradients["W"], other.gradients["W"])


def test_compute_matches_an_independent_oracle():
    t = _linear_tensors()
    G = np.ones((2, 3))
    comp = gradcli.compute("linear", t, grad_output=G)
    np.testing.assert_allclose(comp.output, t["x"] @ t["W"].T)
    np.testing.assert_allclose(comp.gradients["W"], G.T @ t["x"])
    np.testing.assert_allclose(comp.gradients["x"], G @ t["W"])
    att = gradcli.compute("attention")
    assert {"Q", "K", "V", "S", "A"} <= set(att.intermediates)


def test_check_options_as_keywords():
    report = gradcli.check("linear", _linear_tensors(), method="complex", mode="sample", samples=3)
    assert report.passed and report.check.method == "complex"
    assert all(r.mode == "sample" for r in report.results.values())
    assert json.loads(report.to_json())["method"] == "complex"


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"method": "nope"}, OptionError),
        ({"eps": -1.0}, OptionError),
        ({"tensors": {"x": [1.0, 2.0], "Q": [1.0]}}, SpecError),
        ({"tensors": {"x": "not/a/file.npy"}}, GradcliError),
        ({"tensors": [1.0]}, OptionError),
    ],
)
def test_bad_input_raises_the_error_family(kwargs, error, capsys):
    args = {"tensors": _linear_tensors(), **kwargs}
    with pytest.raises(error):
        gradcli.check("linear", **args)
    assert issubclass(error, gradcli.GradcliError)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_a_raising_user_forward_is_an_error_not_a_crash():
    def forward(x):
        raise SystemExit(0)

    with pytest.raises(gradcli.GradcliError, match="SystemExit"):
        gradcli.check(forward=forward, backward=lambda grad_output, x: {}, tensors={"x": [1.0]})


def test_import_is_lazy_and_check_stays_the_function():
    code = (
        "import sys, gradcli; assert 'numpy' not in sys.modules, 'numpy imported';"
        "import gradcli.checking.check; assert callable(gradcli.check) and not isinstance("
        "gradcli.check, type(sys)); print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert out.stdout.strip() == "ok", out.stderr


def affine_forward(x, w, b):
    """CS231n's affine layer, as students write it: (out, cache)."""
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    return dx, dw, dout.sum(axis=0)


def affine_backward_bug(dout, cache):
    dx, dw, db = affine_backward(dout, cache)
    return dx, dw, dout.mean(axis=0)  # the classic: mean instead of sum over the batch


AFFINE = {"x": np.linspace(-1, 1, 12).reshape(2, 2, 3), "w": np.linspace(1, 2, 30).reshape(6, 5),
          "b": np.linspace(-0.5, 0.5, 5)}  # fmt: skip


def test_cs231n_convention_student_code_and_its_bug():
    good = gradcli.check(forward=affine_forward, backward=affine_backward, tensors=AFFINE)
    assert good.passed and set(good.results) == {"x", "w", "b"}
    bad = gradcli.check(forward=affine_forward, backward=affine_backward_bug, tensors=AFFINE)
    assert not bad.passed
    assert [n for n, r in bad.results.items() if not r.passed] == ["b"]
    # matched by position (the tensors mapping's order), checked against a hand oracle
    G = np.ones((2, 5))
    comp = gradcli.compute(
        forward=affine_forward, backward=affine_backward, tensors=AFFINE, grad_output=G
    )
    np.testing.assert_allclose(comp.gradients["w"], AFFINE["x"].reshape(2, -1).T @ G)
    np.testing.assert_allclose(comp.gradients["b"], [2.0] * 5)


def test_cs231n_misreadings_are_refused_naming_the_convention():
    def forward_no_cache(x, w, b):
        return affine_forward(x, w, b)[0]

    with pytest.raises(gradcli.GradcliError, match=r"\(out, cache\)"):
        gradcli.check(forward=forward_no_cache, backward=affine_backward, tensors=AFFINE)

    def backward_two(dout, cache):
        return affine_backward(dout, cache)[:2]

    with pytest.raises(gradcli.GradcliError, match="one gradient per tensor"):
        gradcli.check(forward=affine_forward, backward=backward_two, tensors=AFFINE)


def test_cs231n_module_through_impl(cli, tmp_path):
    mine = tmp_path / "layers.py"
    mine.write_text(
        "def forward(x, w):\n    return x * w, (x, w)\n"
        "def backward(dout, cache):\n    x, w = cache\n    return dout * w, dout * x\n"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text("tensors:\n  x: [0.5, -1.5, 2.0]\n  w: [1.0, 2.0, 3.0]\n")
    result = cli("check", "custom", spec, "--impl", mine, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert set(json.loads(result.stdout)["results"]) == {"x", "w"}
    mine.write_text(mine.read_text().replace("dout * w, dout * x", "dout * x, dout * w"))
    result = cli("check", "custom", spec, "--impl", mine, "--format", "json")
    assert result.exit_code == 1, result.stderr


def test_method_and_mode_are_names_not_spellings():
    report = gradcli.check("linear", method="Complex", mode="FULL")
    assert report.passed and report.check.method == "complex" and report.check.mode == "full"


def test_errors_name_the_parameter_not_a_flag():
    with pytest.raises(gradcli.GradcliError) as err:
        gradcli.check("linear", max_memory=0.5)
    assert str(err.value).startswith("max_memory: ") and "--" not in str(err.value).split(":")[0]
    with pytest.raises(gradcli.GradcliError, match=r"^method: unknown method 'newton'"):
        gradcli.check("linear", method="newton")


def test_the_cli_shows_the_same_error_with_its_flag(cli):
    result = cli("check", "linear", "--max-memory", "0")
    assert result.exit_code == 2
    assert result.stderr.startswith("gradcli: error: --max-memory: ")


def test_values_too_large_to_show_point_each_user_to_their_own_way(cli, tmp_path):
    """The API's table names to_json, never a CLI flag; the CLI names its flags."""
    x, W, b = np.ones(20), np.ones((10, 20)), np.ones(10)
    text = gradcli.check("linear", {"x": x, "W": W, "b": b}).table(values=True)
    assert "W (200 elements)" in text and "to_json(values=True)" in text
    assert "--" not in text.split("values not shown")[1]
    spec = tmp_path / "s.yaml"
    spec.write_text("layer: linear\ntensors: {x: {shape: [20]}, W: {shape: [10, 20]}}\n")
    shown = cli("check", "linear", spec, "--values", env={"COLUMNS": "200"}).stdout
    assert "use --format json --values or --output FILE.npz" in shown
    assert "to_json" not in shown
