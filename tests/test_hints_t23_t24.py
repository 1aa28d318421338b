"""Classic slips outside testers found failing with no hint (t23 F4, t24 F4), and two hints'
wording (t24 F11, F12). Each slip is named by its cause, verified by recomputation, through
--impl and through answer files (tests/bugcorpus/classic.py holds the bugs); each twin (the
right backward, or another slip of the same layer) does not get it.

The oracle of each cause is the slip written out as students write it (bugcorpus/classic.py),
independently of the layer's variant that names it.
"""

from __future__ import annotations

import numpy as np
import pytest
from bugcorpus import classic

import gradcli

BUGS = {b.id: b for b in classic.bugs()}


def _check(bug_id: str, answers: bool = False, grad_output=None):
    b = BUGS[bug_id]
    t = b.tensors()
    kw = {"options": b.options, "seed": 0}
    if grad_output is not None:
        kw["grad_output"] = grad_output
    if answers:
        comp = gradcli.compute(b.layer, t, forward=b.forward, backward=b.backward, **kw)
        return gradcli.check(b.layer, t, grads=dict(comp.gradients), **kw)
    return gradcli.check(b.layer, t, forward=b.forward, backward=b.backward, **kw)


def _causes(report) -> dict[str, list[str]]:
    return {n: [h.cause for h in r.hints] for n, r in report.results.items() if r.hints}


SLIPS = [
    ("softmax_loss/no_onehot", "x", "softmax_cross_entropy:no-onehot",
     "dx = p / N where dx = (p - onehot(y)) / N belongs"),
    ("softmax_loss/column_index", "x", "softmax_cross_entropy:column-index",
     "with dx[:, y] -= 1 where dx[np.arange(N), y] -= 1 belongs"),
    ("svm/no_true_class", "x", "svm:true-class-left-out", "the correct class's term left out"),
    ("svm/counted", "x", "svm:true-class-counted", "the correct class counted"),
    ("rnn_step/Wh_not_T", "prev_h", "tensor-transposed:Wh", "Wh transposed in the backward"),
    ("lstm_step/no_forget", "prev_c", "lstm_step:dprev_c-without-f",
     "dprev_c = dc where dprev_c = dc * f belongs"),
    ("gelu/no_3", "x", "gelu:cubic-without-3", "the 3 of d(x^3)/dx = 3 x^2 left out"),
    ("gelu/no_cubic", "x", "gelu:cubic-derivative-missing", "the cubic term's derivative"),
    ("gelu/erf", "x", "gelu:erf-derivative", "the exact GELU's derivative"),
    ("flatten/order_F", "x", "flatten:order-F", 'dx = dy.reshape(x.shape, order="F")'),
    ("maxpool2d/argmin", "X", "maxpool:argmin", "routed to its smallest element"),
]  # fmt: skip


@pytest.mark.parametrize("answers", [False, True], ids=["impl", "grads"])
@pytest.mark.parametrize(("bug", "name", "cause", "words"), SLIPS, ids=[s[0] for s in SLIPS])
def test_each_classic_slip_is_named_on_its_tensor_alone(bug, name, cause, words, answers):
    report = _check(bug, answers)
    assert not report.passed
    assert [n for n, r in report.results.items() if not r.passed] == [name]
    assert _causes(report) == {name: [cause]}, _causes(report)
    hint = report.results[name].hints[0]
    assert hint.verified and words in str(hint), str(hint)


@pytest.mark.parametrize("layer", sorted({b.layer for b in BUGS.values()}))
def test_the_correct_twins_pass_without_a_hint(layer):
    twin = next(i for i, b in BUGS.items() if b.layer == layer and not b.wrong)
    report = _check(twin)
    assert report.passed and not _causes(report), _causes(report)


def test_one_slip_of_a_layer_is_not_named_as_another():
    """gelu's three slips are told apart: each names its own cause alone."""
    named = {bug: _causes(_check(bug))["x"] for bug in ("gelu/no_3", "gelu/no_cubic", "gelu/erf")}
    assert named == {"gelu/no_3": ["gelu:cubic-without-3"],
                     "gelu/no_cubic": ["gelu:cubic-derivative-missing"],
                     "gelu/erf": ["gelu:erf-derivative"]}  # fmt: skip


def test_rnn_dx_reading_Wh_is_not_called_a_transposed_Wh():
    """Another rnn slip on a square Wh (dx = da Wh^T, D = H) keeps its own cause: the new
    transposed-in-the-backward candidate does not reproduce it."""
    b = BUGS["rnn_step/correct"]
    rng = np.random.default_rng(3)
    t = {"x": rng.standard_normal((4, 5)), "prev_h": rng.standard_normal((4, 5)),
         "Wx": rng.standard_normal((5, 5)), "Wh": rng.standard_normal((5, 5)),
         "b": rng.standard_normal(5)}  # fmt: skip

    def backward(grad_output, **kw):
        g = b.backward(grad_output, **kw)
        h = b.forward(**kw)
        return {**g, "x": (grad_output * (1 - h**2)) @ kw["Wh"].T}

    report = gradcli.check("rnn_step", t, forward=b.forward, backward=backward, seed=0)
    causes = _causes(report)
    assert list(causes) == ["x"] and "read-for:Wx:Wh" in causes["x"][0], causes
    assert "tensor-transposed" not in causes["x"][0], causes


# ---------------------------------------------------------------- t24 F11: grad_output ignored
def _mse(ignores: bool, times: float = 1.0):
    def forward(pred, target):
        return np.mean((pred - target) ** 2)

    def backward(grad_output, pred, target):
        g = 1.0 if ignores else grad_output
        return {"pred": times * g * 2 * (pred - target) / pred.size}

    return forward, backward


def _mse_check(ignores: bool, grad_output: float, times: float = 1.0):
    rng = np.random.default_rng(0)
    t = {"pred": rng.standard_normal((4, 3)), "target": rng.standard_normal((4, 3))}
    fwd, bwd = _mse(ignores, times)
    return gradcli.check("mse", t, forward=fwd, backward=bwd, grad_output=np.array(grad_output),
                         seed=0)  # fmt: skip


def test_a_loss_backward_ignoring_grad_output_is_named():
    report = _mse_check(ignores=True, grad_output=2.5)
    assert _causes(report) == {"pred": ["upstream-left-out"]}, _causes(report)
    hint = str(report.results["pred"].hints[0])
    assert "0.4 x the right gradient" in hint and "grad_output = 2.5 left out" in hint, hint
    assert "does not name" not in hint


def test_its_twins_a_right_backward_and_a_factor_of_its_own():
    assert _mse_check(ignores=False, grad_output=2.5).passed
    # at grad_output 1 its values are the right ones: only the contract fails it (a backward
    # must be linear in its upstream gradient), and no factor is claimed
    one = _mse_check(ignores=True, grad_output=1.0)
    assert not one.passed and "upstream-left-out" not in str(_causes(one)), _causes(one)
    # a backward that takes grad_output in but doubles: a factor 2, not grad_output left out
    doubled = _mse_check(ignores=False, grad_output=2.5, times=2.0)
    assert _causes(doubled) == {"pred": ["scale:2"]}, _causes(doubled)


# ---------------------------------------------------------------- t24 F12: a factor reg missing
L2_SPEC = "layer: custom\noptions: {reg: 0.3}\ntensors:\n  w: {shape: [4, 3], init: normal}\n"


def _l2(tmp_path, write_spec, run, body: str, spec: str = L2_SPEC):
    impl = tmp_path / "l2.py"
    impl.write_text("import numpy as np\n"
                    "def forward(w, reg):\n    return 0.5 * reg * np.sum(w * w)\n"
                    "def backward(grad_output, w, reg):\n"
                    f"    return {{'w': {body}}}\n")  # fmt: skip
    return run("check", "custom", write_spec(spec), "--impl", impl)


@pytest.fixture
def cli_any(cli):
    """``cli_any(*args)``: run with ``--format json``, exit 0 or 1 (pass or mismatch), parse."""
    import json

    def run(*args):
        result = cli(*args, "--format", "json")
        assert result.exit_code in (0, 1), (result.exit_code, result.stderr)
        return json.loads(result.stdout)

    return run


def test_a_factor_reg_missing_is_said_so(tmp_path, write_spec, cli_any):
    doc = _l2(tmp_path, write_spec, cli_any, "grad_output * w")  # forgot * reg
    hints = doc["results"]["w"]["hints"]
    assert [h["cause"] for h in hints] == ["scale:1/(reg)"], hints
    assert "a factor reg = 0.3 missing, or a 1/(reg) too many" in hints[0]["text"], hints


def test_its_twins_the_right_l2_and_reg_twice(tmp_path, write_spec, cli_any):
    assert _l2(tmp_path, write_spec, cli_any, "grad_output * reg * w")["passed"]
    doc = _l2(tmp_path, write_spec, cli_any, "grad_output * reg * reg * w")
    hints = doc["results"]["w"]["hints"]
    assert [h["cause"] for h in hints] == ["scale:reg"], hints
    assert "missing" not in hints[0]["text"], hints


def test_a_custom_loss_ignoring_grad_output_is_named_against_the_numerical_gradient(
    tmp_path, write_spec, cli_any
):
    """No built-in backward here: the factor is read against the numerical gradient."""
    spec = L2_SPEC + "grad_output: 2.5\n"
    doc = _l2(tmp_path, write_spec, cli_any, "reg * w", spec)
    hints = doc["results"]["w"]["hints"]
    assert [h["cause"] for h in hints] == ["upstream-left-out"], hints
    assert "grad_output = 2.5 left out" in hints[0]["text"], hints
    assert _l2(tmp_path, write_spec, cli_any, "grad_output * reg * w", spec)["passed"]
