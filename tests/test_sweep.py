"""`check --sweep` on the gradients under test: the user's answers (--grads, including
attention's intermediates) and a user's backward (--impl), each with a twin carrying a bug that
no step can explain."""

import json
import textwrap

import numpy as np
import pytest

from gradcli.checking.check import compute
from gradcli.checking.sweep import run_sweep
from gradcli.inputs.spec import load_spec
from gradcli.layers import REGISTRY


def _answers(tmp_path, layer, bad=None, keep=None):
    """The built-in gradients (tensors and intermediates) of the default spec as an answer
    file, optionally restricted to ``keep`` and with one element off by 1e-3 relative."""
    comp = compute(load_spec(layer, None))
    grads = {n: np.array(g) for n, g in comp.gradients.items()}
    grads |= {n[1:]: np.array(comp.intermediates[n]) for n in comp.intermediates if n[0] == "d"}
    if keep is not None:
        grads = {n: grads[n] for n in keep}
    if bad is not None:
        name, idx = bad
        grads[name][idx] += 1e-3 * (1 + abs(grads[name][idx]))
    path = tmp_path / "answers.npz"
    np.savez(path, **{"d" + n: g for n, g in grads.items()})
    return path


def _sweep(cli, *args, code):
    result = cli("check", *args, "--sweep", "--format", "json")
    assert result.exit_code == code, (result.exit_code, result.stderr)
    return json.loads(result.stdout)


@pytest.mark.parametrize("layer", list(REGISTRY))
def test_builtin_gradients_are_reconciled_by_some_step(layer):
    rows, best, wrong = run_sweep(load_spec(layer, None))
    assert wrong == [] and best in [r["eps"] for r in rows]


@pytest.mark.parametrize(
    ("layer", "tensor", "idx"),
    [("linear", "W", (1, 2)), ("conv2d", "W", (1, 2, 0, 2)), ("attention", "X", (2, 3))],
)
def test_sweep_tests_the_answer_file(cli, tmp_path, layer, tensor, idx):
    right = _sweep(cli, layer, "--grads", _answers(tmp_path, layer), code=0)
    assert right["passed"] and right["wrong_at_every_step"] == []
    doc = _sweep(cli, layer, "--grads", _answers(tmp_path, layer, bad=(tensor, idx)), code=1)
    assert not doc["passed"] and doc["wrong_at_every_step"] == [tensor]
    assert all(r["errors"][tensor] > 1e-5 for r in doc["sweep"])
    # the regimes come from the tensors a step does reconcile, as if the wrong one were absent
    others = [max(e for n, e in r["errors"].items() if n != tensor) for r in right["sweep"]]
    assert [r["error"] for r in doc["sweep"]] == others
    assert doc["best_eps"] == right["sweep"][int(np.argmin(others))]["eps"]


def test_sweep_of_an_intermediate_answer(cli, tmp_path):
    path = _answers(tmp_path, "attention", keep=("S", "A"))
    doc = _sweep(cli, "attention", "--grads", path, code=0)
    assert set(doc["sweep"][0]["errors"]) == {"S", "A"} and doc["passed"]
    bad = _answers(tmp_path, "attention", bad=("S", (1, 2)), keep=("S", "A"))
    doc = _sweep(cli, "attention", "--grads", bad, code=1)
    assert doc["wrong_at_every_step"] == ["S"]


def test_sweep_table_names_the_wrong_tensor(cli, tmp_path):
    path = _answers(tmp_path, "linear", bad=("W", (0, 1)))
    result = cli("check", "linear", "--grads", path, "--sweep")
    assert result.exit_code == 1 and result.stderr == ""
    assert "dW: no step brings the error within the check's tolerance" in result.stdout
    right = cli("check", "linear", "--grads", _answers(tmp_path, "linear"), "--sweep")
    assert right.exit_code == 0 and "no step brings" not in right.stdout


@pytest.mark.parametrize("factor", [1.0, 1.001])
def test_sweep_tests_an_impl_backward(cli, tmp_path, factor):
    impl = tmp_path / "mine.py"
    impl.write_text(textwrap.dedent(f"""
        import numpy as np

        def forward(x, W, b):
            return W @ x + b

        def backward(grad_output, x, W, b):
            return {{"x": W.T @ grad_output, "W": np.outer(grad_output, x) * {factor},
                    "b": grad_output}}
    """))
    doc = _sweep(cli, "linear", "--impl", impl, code=0 if factor == 1.0 else 1)
    assert doc["wrong_at_every_step"] == ([] if factor == 1.0 else ["W"])


def test_sweep_refuses_the_complex_step_on_a_forward_that_is_not_complex_safe(cli, tmp_path):
    """conj is the identity on real inputs, so forward and backward are right; only the complex
    step breaks (Im conj(z + ih) = -h). A sweep must say so, not blame the gradients."""
    impl = tmp_path / "mine.py"
    impl.write_text(textwrap.dedent("""
        import numpy as np

        def forward(x, W, b):
            return np.conj(W @ x + b)

        def backward(grad_output, x, W, b):
            return {"x": W.T @ grad_output, "W": np.outer(grad_output, x), "b": grad_output}
    """))
    result = cli("check", "linear", "--impl", impl, "--method", "complex", "--sweep")
    assert result.exit_code == 2 and result.stdout == ""
    assert "not complex-safe" in result.stderr
    assert _sweep(cli, "linear", "--impl", impl, code=0)["passed"]  # central differences: fine


def _impl(tmp_path, extra):
    impl = tmp_path / "mine.py"
    impl.write_text(textwrap.dedent(f"""
        import numpy as np

        def forward(x, W, b):
            return W @ x + b

        def backward(grad_output, x, W, b):
            dW = np.outer(grad_output, x)
            {extra}
            return {{"x": W.T @ grad_output, "W": dW, "b": grad_output}}
    """))
    return impl


@pytest.mark.parametrize(
    "extra, name",
    [
        ("dW.flat[np.argmin(abs(dW))] += 5e-7", "one element"),  # drowned by max|a| in the error
        ("dW = dW + np.random.rand() * 1e-9", "nondeterministic"),
        ("dW = dW.astype(np.float32)", "float32"),
    ],
)
def test_sweep_verdict_is_the_checks_too(cli, tmp_path, extra, name):
    """The sweep's error is normalized by the largest gradient, so one wrong element or a
    broken contract hides in it: the verdict is the check's at the default step as well."""
    impl = _impl(tmp_path, extra)
    doc = _sweep(cli, "linear", "--impl", impl, code=1)
    assert doc["passed"] is False and doc["check"]["passed"] is False, name
    if name == "one element":  # the sweep alone sees nothing: only the check catches it
        assert doc["wrong_at_every_step"] == []
    quiet = cli("check", "linear", "--impl", impl, "--sweep", "-q")
    assert quiet.exit_code == 1 and quiet.stdout.startswith("FAIL") and len(
        quiet.stdout.splitlines()
    ) == 1
    right = cli("check", "linear", "--impl", _impl(tmp_path, "pass"), "--sweep")
    assert right.exit_code == 0 and right.stdout.splitlines()[-1].startswith("PASS")


@pytest.mark.parametrize(("layer", "regime"), [("relu", "exact"), ("svm", "flat")])
def test_a_piecewise_linear_layer_sweeps_as_exact_or_flat_not_round_off(layer, regime, cli):
    """Outside test t17 F7: relu's differences are exact at every step (error 0), svm's error
    is the same at every step; both were labelled 'round-off' at 11 of 12 steps, with a plot
    of log(0) clamped to 1e-300. The twin: linear's sweep keeps its regimes and plot."""
    r = cli("check", layer, "--sweep", "--format", "json")
    assert r.exit_code == 0, r.output
    assert {row["regime"] for row in json.loads(r.stdout)["sweep"]} == {regime}
    text = " ".join(cli("check", layer, "--sweep").stdout.split())
    assert "any step works" in text and "1e-300" not in text and "best step" not in text
    r = cli("check", "linear", "--sweep", "--format", "json")
    assert {"best", "round-off"} <= {row["regime"] for row in json.loads(r.stdout)["sweep"]}
    assert "best step" in cli("check", "linear", "--sweep").stdout


def test_a_sweep_of_a_linear_layer_with_one_round_off_step_draws_zeros_at_the_bottom(cli):
    """Outside test t18 R-F7: maxpool2d's sweep, exact but for 7e-16 at 1e-1, drew its zeros
    on the top row level with 7e-16, called that 7e-16 'truncation', and wrapped its legend
    mid-item at 80 columns."""
    doc = json.loads(cli("check", "maxpool2d", "--sweep", "--format", "json").stdout)
    regimes = {row["regime"] for row in doc["sweep"]}
    assert "truncation" not in regimes and "exact" in regimes
    text = cli("check", "maxpool2d", "--sweep").stdout
    plot = [line for line in text.splitlines() if "|" in line and "│" not in line]
    assert " 0 " in plot[-1] and " 0 " not in plot[0]  # zeros at the bottom, not the top
    assert all(len(line) <= 80 for line in text.splitlines() if "truncation," in line)
    assert "any of 1e-02 ... 1e-12" in text


_TANH = """
import numpy as np


def forward(x):
    return np.tanh(x)


def backward(grad_output, x):
    return {"x": grad_output * (1 - np.tanh(x)%s)}
"""


@pytest.mark.parametrize(("power", "off"), [("", True), ("** 2", False)])
def test_a_gradient_off_at_every_step_sweeps_as_off_not_round_off(cli, tmp_path, power, off):
    """Outside test t20 F2: a tanh backward without its square swept as 'flat' with 'the
    differences are exact ... round-off; any step works', above 'the gradient is off'. Twin:
    the right backward keeps its regimes."""
    impl = tmp_path / "tanh.py"
    impl.write_text(_TANH % power)
    doc = _sweep(cli, "tanh", "--impl", impl, code=1 if off else 0)
    regimes = {row["regime"] for row in doc["sweep"]}
    assert (regimes == {"off"}) is off
    text = " ".join(cli("check", "tanh", "--impl", impl, "--sweep").stdout.split())
    assert ("any step works" in text) is False
    assert ("the error is the gradient's, not the step's" in text) is off
