"""A PASS is never wrong: exit 0 means every gradient under test was compared at every
coordinate the mode promises, all finite, all within tolerance. Each way a check used to pass
without that (NaN and inf, an overflowing forward, nothing compared, a step too small to
resolve anything) is here with its twin: the correct case still passes."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import gradcli
from gradcli.checking.check import check, compute
from gradcli.checking.compare import compare
from gradcli.errors import GradcliError
from gradcli.inputs.spec import load_spec
from gradcli.numeric.methods import METHODS, RESOLVE_MARGIN

LINEAR_IMPL = """\
import numpy as np

def forward(x, W, b):
    return W @ x + b

def backward(grad_output, x, W, b):
    dx = W.T @ grad_output
    {bug}
    return {{"x": dx, "W": np.outer(grad_output, x), "b": grad_output.copy()}}
"""


def _impl(tmp_path, bug="pass"):
    path = tmp_path / "mine.py"
    path.write_text(LINEAR_IMPL.format(bug=bug))
    return path


# ------------------------------------------------------------ the rule, in one place


def test_compare_counts_nan_and_inf_on_either_side_as_failures():
    n = np.array([1.0, -2.0, 0.5])
    assert compare("w", n.copy(), n, atol=1e-7, rtol=1e-6).passed  # the twin
    for side in ("analytic", "numeric"):
        for bad in (np.nan, np.inf, -np.inf):
            a, m = n.copy(), n.copy()
            (a if side == "analytic" else m)[1] = bad
            r = compare("w", a, m, atol=1e-7, rtol=1e-6, letters=["i"])
            assert not r.passed and r.nonfinite == 1 and r.checked == 3, (side, bad)
            assert r.worst_index == (1,) and "dw[i=1]" in r.reason and r.band == "not finite"
            assert r.hints[0] == r.reason


def test_compare_with_a_huge_tolerance_still_fails_a_nan():
    a = np.array([np.nan, 1.0])
    assert not compare("w", a, np.array([0.0, 1.0]), atol=1e300, rtol=1.0).passed


def test_nothing_compared_or_fewer_than_promised_never_passes():
    n = np.array([1.0, 2.0, 3.0])
    assert compare("w", n, n, 1e-7, 1e-6, coords=np.array([0, 2])).passed  # a sample
    empty = compare("w", np.zeros((0, 3)), np.zeros((0, 3)), 1e-7, 1e-6)
    assert not empty.passed and empty.checked == 0 and "nothing was checked" in empty.reason
    short = compare("w", n, n, 1e-7, 1e-6, coords=np.array([0, 2]), promised=3)
    assert not short.passed and "2 of the 3" in short.reason


def test_sampled_coordinate_that_is_nan_fails_and_unsampled_nan_marks_are_not_compared():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    n = np.array([1.0, np.nan, np.nan, 4.0])  # the engine's mark for "not evaluated"
    assert compare("w", a, n, 1e-7, 1e-6, coords=np.array([0, 3])).passed
    assert not compare("w", a, n, 1e-7, 1e-6, coords=np.array([0, 1])).passed


# ------------------------------------------------------------ NaN and inf under test


@pytest.mark.parametrize("bad", ["np.nan", "np.inf", "-np.inf"])
@pytest.mark.parametrize("mode", ["full", "sample", "probe"])
def test_impl_backward_returning_nan_or_inf_fails(cli, tmp_path, bad, mode):
    path = _impl(tmp_path, bug=f"dx = dx.copy(); dx[1] = {bad}")
    spec = tmp_path / "s.yaml"
    spec.write_text("tensors:\n  x: [1.0, 2.0, 3.0]\n  W: [[1.0, 0.5, 2.0], [0.0, 1.0, -1.0]]\n")
    result = cli("check", "linear", spec, "--impl", path, "--mode", mode, "--format", "json")
    assert result.exit_code == 1, (result.exit_code, result.stderr)
    doc = json.loads(result.stdout)  # valid JSON: NaN and inf are null
    r = doc["results"]["x"]
    assert not doc["passed"] and not r["passed"] and r["nonfinite"] == 1
    assert "not finite" in r["reason"] and r["worst_index"] == [1] and r["analytic"] is None
    assert doc["results"]["W"]["passed"] and doc["results"]["b"]["passed"]
    table = cli("check", "linear", spec, "--impl", path, "--mode", mode)
    assert table.exit_code == 1 and "not finite" in table.stdout
    assert "FAIL" in table.stdout.splitlines()[-1] and "dx" in table.stdout.splitlines()[-1]


def test_impl_twin_correct_backward_passes(cli, tmp_path):
    for mode in ("full", "sample", "probe"):
        result = cli("check", "linear", "--impl", _impl(tmp_path), "--mode", mode)
        assert result.exit_code == 0, (mode, result.stdout)


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_sweep_of_a_nan_gradient_fails(cli, tmp_path, fmt):
    bad = cli("check", "linear", "--impl", _impl(tmp_path, "dx = dx * np.nan"), "--sweep",
              "--format", fmt)  # fmt: skip
    assert bad.exit_code == 1, (bad.exit_code, bad.stderr)
    if fmt == "json":
        doc = json.loads(bad.stdout)
        assert not doc["passed"] and doc["wrong_at_every_step"] == ["x"]
    ok = cli("check", "linear", "--impl", _impl(tmp_path), "--sweep", "--format", fmt)
    assert ok.exit_code == 0, ok.stdout


def test_answers_with_nan_or_inf_are_refused(cli, tmp_path, assert_usage_error):
    spec = load_spec("linear", None)
    grads = {n: np.array(g) for n, g in compute(spec).gradients.items()}
    grads["W"][0, 1] = np.nan
    np.savez(tmp_path / "a.npz", **grads)
    assert_usage_error(cli("check", "linear", "--grads", tmp_path / "a.npz"), "W", "finite")
    np.save(tmp_path / "x.npy", np.where(np.arange(4) == 2, np.inf, grads["x"]))
    result = cli("check", "linear", "--grads", tmp_path / "x.npy", "--wrt", "x")
    assert_usage_error(result, "x", "finite")
    (tmp_path / "a.yaml").write_text("b: [0.1, .inf, 0.2]\n")
    assert_usage_error(cli("check", "linear", "--grads", tmp_path / "a.yaml"), "b", "finite")


def test_answers_holding_no_gradient_of_the_spec_are_refused(cli, tmp_path, assert_usage_error):
    np.savez(tmp_path / "empty.npz")
    result = cli("check", "linear", "--grads", tmp_path / "empty.npz")
    assert_usage_error(result, "empty.npz", "holds no answer", "x, W, b")


# ------------------------------------------------------------ overflow


OVERFLOW = "tensors:\n  x: [1e200, 2e200]\n  W: [[1e200, 1e200]]\n  b: [0.0]\n"


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_builtin_forward_that_overflows_is_refused(cli, write_spec, assert_usage_error, fmt):
    result = cli("check", "linear", write_spec(OVERFLOW), "--format", fmt)
    assert_usage_error(result, "forward of linear overflows", "not finite at [0]", "float64")


def test_overflow_twin_large_but_finite_values_pass(cli, write_spec):
    result = cli("check", "linear", write_spec(OVERFLOW.replace("e200", "e2")))
    assert result.exit_code == 0, result.stdout


def test_float32_forward_that_overflows_names_float32(cli, write_spec, assert_usage_error):
    spec = write_spec("dtype: float32\n" + OVERFLOW.replace("e200", "e20"))
    result = cli("check", "linear", spec)
    assert_usage_error(result, "forward of linear overflows", "float32")
    # in float64 the forward is finite, but b (0) moves z (3e40) by less than its last bit:
    # no step resolves db, and the check says so instead of raising atol over it
    doc = json.loads(cli("check", "linear", spec, "--dtype", "float64", "--eps", "6.06e-6",
                         "--format", "json").stdout)  # fmt: skip
    assert doc["results"]["x"]["passed"] and doc["results"]["W"]["passed"]
    assert doc["results"]["b"]["unresolved"] and not doc["passed"]
    # (at the automatic step the complex step, which subtracts nothing, reads it)
    doc = json.loads(cli("check", "linear", spec, "--dtype", "float64", "--format", "json").stdout)
    assert doc["passed"] and doc["results"]["b"]["method"] == "complex"


def test_builtin_backward_that_overflows_is_refused(cli, write_spec, assert_usage_error):
    # the output (1e-10 * 1e308) is finite; dW = g x^T = 10 * 1e308 is not
    text = "tensors:\n  x: [1e308]\n  W: [[1e-10]]\n  b: [0.0]\ngrad_output: [10.0]\n"
    assert_usage_error(cli("check", "linear", write_spec(text)), "backward of linear", "dW")


def test_an_input_whose_own_step_overflows_is_refused(tmp_path, write_spec):
    # W sits just below the largest float64: W + its step overflows, and no difference can
    # be taken there (a right relu at 1.8e308 failed with 'dx is not finite': t34b F2)
    text = "tensors:\n  x: [1.0]\n  W: [[1.79769e308]]\n  b: [0.0]\ngrad_output: [1.0]\n"
    with pytest.raises(GradcliError, match=r"W\[0, 0\] = 1.798e\+308 .* the step overflows"):
        check(load_spec("linear", str(write_spec(text))))


def test_perturbed_overflow_twin_passes(write_spec):
    text = "tensors:\n  x: [1.0]\n  W: [[1.7e300]]\n  b: [0.0]\ngrad_output: [1.0]\n"
    report = check(load_spec("linear", str(write_spec(text))))
    assert report.results["x"].passed and report.results["W"].passed


# ------------------------------------------------------------ unresolvable steps


@pytest.mark.parametrize("eps", ["1e-320", "1e-17"])
@pytest.mark.parametrize("mode", ["full", "probe"])
def test_a_step_too_small_to_resolve_anything_does_not_pass(cli_json, eps, mode):
    doc = cli_json("check", "linear", "--eps", eps, "--mode", mode, code=1)
    assert not doc["passed"]
    for name, r in doc["results"].items():
        assert not r["passed"] and r["unresolved"] is True, name
        assert "cannot resolve" in r["reason"] and "--eps" in r["reason"]
        assert r["band"] == "cannot resolve"


def test_unresolved_table_says_why_and_what_to_change(cli):
    result = cli("check", "conv2d", "--eps", "1e-320")
    assert result.exit_code == 1
    assert "cannot resolve dX at this step" in result.stdout and "larger --eps" in result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("FAIL") and "cannot resolve dX at this step" in last


def test_complex_step_with_a_subnormal_step_does_not_pass(cli_json):
    doc = cli_json("check", "linear", "--method", "complex", "--eps", "1e-320", code=1)
    assert all(r["unresolved"] for r in doc["results"].values())


@pytest.mark.parametrize("eps", ["1e-4", "1e-6", "1e-9"])
def test_unresolved_twin_ordinary_steps_pass(cli_json, eps):
    doc = cli_json("check", "attention", "--eps", eps)
    assert not any(r["unresolved"] for r in doc["results"].values())
    assert cli_json("check", "linear", "--method", "complex", "--eps", "1e-300")["passed"]


def test_user_atol_does_not_hide_an_unresolvable_step(cli_json):
    doc = cli_json("check", "linear", "--eps", "1e-17", "--atol", "1e3", code=1)
    assert all(r["unresolved"] for r in doc["results"].values())


def test_a_truly_zero_gradient_is_resolved(cli_json, write_spec):
    # relu off everywhere: the gradient is exactly 0, and so is every difference (an
    # all-zero upstream gradient, which made every gradient 0, is refused: test below)
    doc = cli_json("check", "relu", write_spec("tensors:\n  x: [-1.0, -2.0, -0.5]\n"))
    assert doc["passed"] and not any(r["unresolved"] for r in doc["results"].values())
    assert doc["results"]["x"]["max_abs_error"] == 0.0


SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_no_false_unresolved_on_example_specs(path, dtype):
    """Every method on every example spec, in both dtypes: resolved with room to spare (the
    estimated round-off at most 1/5 of the margin) and passing."""
    spec = load_spec(yaml.safe_load(path.read_text())["layer"], str(path), dtype=dtype)
    for method in METHODS:
        report = check(spec, method=method)
        _, numeric = report.computation, report.numeric
        assert report.passed, (method, {n: r.reason for n, r in report.results.items()})
        for name, r in report.results.items():
            scale = float(np.max(np.abs(numeric[name])))
            assert r.numerics.noise * RESOLVE_MARGIN * 5 <= scale, (method, name)


# ------------------------------------------------------- each element's own round-off
SCALES = np.array([1e8, 1.0, 1.0, 1.0])


class _Scaled:
    """y = S * x with one output 1e8 times the others (a dense user layer: no footprint)."""

    def __init__(self, off: float = 0.0):
        self.off = off

    def forward(self, x):
        return SCALES * x

    def backward(self, grad_output, x):
        d = grad_output * SCALES
        d[1:] *= 1 + self.off  # the small elements' gradient off by ``off``
        return {"x": d}


@pytest.mark.parametrize("method", ["central", "forward", "central4"])
def test_a_huge_output_does_not_lift_the_other_elements_tolerance(method):
    """The round-off of x[0]'s finite differences (1e8 * eps / h) is x[0]'s alone: x[1] moves
    only y[1], whose difference carries no share of it. A 0.1% error there must fail."""
    import gradcli

    x, g = np.array([0.3, 0.7, -0.2, 0.5]), np.ones(4)
    wrong = gradcli.check(_Scaled(1e-3), {"x": x}, grad_output=g, method=method)
    assert not wrong.passed
    assert {tuple(w["index"]) for w in wrong.results["x"].worst if w["abs_error"] > 1e-4} == {
        (1,), (2,), (3,)
    }
    # the twin: the right backward passes, the huge element at its own round-off included
    assert gradcli.check(_Scaled(), {"x": x}, grad_output=g, method=method).passed


class _SumOfSquares:
    """A loss: a scalar output, its upstream gradient a 0-d array."""

    def __init__(self, factor: float = 2.0):
        self.factor = factor

    def forward(self, x):
        return (x**2).sum()

    def backward(self, grad_output, x):
        return {"x": self.factor * x * grad_output}


def test_a_scalar_output_is_checked_and_a_wrong_one_fails():
    import gradcli

    x = {"x": np.array([1.0, 2.0, 3.0])}
    assert gradcli.check(_SumOfSquares(), x).passed
    assert not gradcli.check(_SumOfSquares(3.0), x).passed


# ------------------------------------------------------------ a zero upstream gradient
SOFTMAX_WRONG_AXIS = """\
import numpy as np

def forward(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)

def backward(grad_output, x):
    y = forward(x)
    return {"x": y * (grad_output - (grad_output * y).sum(0, keepdims=True))}  # axis 0: wrong
"""


@pytest.mark.parametrize("upstream", ["{init: zeros}", "0.0"])
def test_an_all_zero_upstream_gradient_is_refused_not_passed(
    cli, write_spec, assert_usage_error, upstream
):
    # every gradient is 0 whatever the backward: the wrong-axis softmax would pass
    impl = write_spec(SOFTMAX_WRONG_AXIS, "mine.py")
    text = f"tensors: {{x: {{shape: [4, 4]}}}}\ngrad_output: {upstream}\n"
    spec = write_spec(text)
    if upstream == "0.0":  # a number is a scalar upstream: a loss's
        spec = write_spec("tensors: {x: {shape: [3, 4]}, y: [0, 1, 2]}\ngrad_output: 0.0\n")
        assert_usage_error(cli("check", "svm", spec), "spec.yaml", "grad_output", "every")
        return
    assert_usage_error(cli("check", "softmax", spec, "--impl", impl), "grad_output", "is 0")
    # the twin: with one non-zero upstream element the same backward fails
    one = write_spec("tensors: {x: {shape: [4, 4]}}\ngrad_output: {init: zeros}\n", "one.yaml")
    g = np.zeros((4, 4))
    g[1, 2] = 1.0
    np.save(one.parent / "g.npy", g)
    one.write_text("tensors: {x: {shape: [4, 4]}}\ngrad_output: g.npy\n")
    result = cli("check", "softmax", one, "--impl", impl, "-q")
    assert result.exit_code == 1, result.stderr


def test_the_api_refuses_an_all_zero_upstream_gradient():
    import gradcli

    x = np.random.default_rng(0).standard_normal((3, 4))
    with pytest.raises(gradcli.GradcliError, match="grad_output"):
        gradcli.check("softmax", {"x": x}, grad_output=np.zeros((3, 4)))
    assert gradcli.check("softmax", {"x": x}, grad_output=np.eye(3, 4)).passed


def test_the_advice_never_names_the_method_in_use():
    """The complex step's own difference has no round-off: what cannot be resolved there is a
    one-sided recheck's, whose step follows --eps only under central differences."""
    from gradcli.checking.soundness import resolvable

    grad = np.array([1.0, 2.0])
    for method, named, absent in (("central", "method='complex'", None),
                                  ("complex", "method='central'", "method='complex'")):
        _, why = resolvable(1e-7, 0.5, grad, RESOLVE_MARGIN, method=method)
        assert named in why and "eps" in why, why
        assert absent is None or absent not in why


def test_a_layer_whose_output_is_zero_around_the_point_is_refused():
    """The outside tester's D1: dropout at p 0.9 on 5 elements keeps none (seed 0), so every
    gradient is 0 and a backward that forgot 1/(1 - p) passed. Refused as an all-zero
    grad_output is; a kink (relu at 0) and a relu of negatives are checked as ever."""
    from gradcli.checking.soundness import refuse_zero_output
    from gradcli.errors import SpecError
    from gradcli.inputs.spec import build_spec
    from gradcli.layers import get_layer

    def refused(layer, x, **options):
        doc = {"options": options, "tensors": {"x": x}}
        spec = build_spec(get_layer(layer), doc, base=Path.cwd(), source="<test>")
        try:
            refuse_zero_output(spec, compute(spec))
        except SpecError as e:
            assert "is 0 at every element here and around this point" in str(e)
            return True
        return False

    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert refused("dropout", x, p=0.9)
    assert not refused("dropout", x, p=0.5)  # the twin: it keeps some
    assert not refused("relu", [0.0, 0.0, 0.0]) and not refused("relu", [-v for v in x])


def test_a_loss_that_is_zero_only_here_is_checked_and_a_wrong_backward_fails():
    """Outside test t17 F1: an svm whose every margin is met (the true class ahead by 40, the
    end of training) was refused as if identically 0, so a student's backward giving every
    class a gradient there (dx[margins >= 0] = 1 after clamping) was never failed. Its scores
    moved each its own way break the margins: checked, and the correct 0 passes. An svm of
    one class has no margin anywhere: refused, in words that are not a dropout's."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    x[np.arange(5), y] += 40
    assert gradcli.check("svm", {"x": x, "y": y}).passed
    wrong = np.where(np.arange(4) == y[:, None], -3.0, 1.0) / 5  # every class counted
    assert not gradcli.check("svm", {"x": x, "y": y}, grads={"x": wrong}).passed
    with pytest.raises(gradcli.GradcliError) as e:
        gradcli.check("svm", {"x": rng.standard_normal((5, 1)), "y": np.zeros(5, dtype=int)})
    assert "is 0 at every element here and around this point" in str(e.value)
    assert "dropout" not in str(e.value) and "mask" not in str(e.value)
