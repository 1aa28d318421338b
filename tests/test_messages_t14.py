"""Gaps an outside tester found (t14, M1-M3, N1, N2): data a layer takes is accepted as data,
and a message says what gradcli did when the user's code and gradcli's choice disagree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import gradcli

MODEL = """inputs:
  X: X.npy
  y: {y}
network:
  - {{layer: linear, name: fc, tensors: {{W: {{shape: [3, 4]}}}}}}
loss: {{layer: {loss}, target: y}}
"""


def _model(tmp_path: Path, y: np.ndarray, loss: str = "softmax_cross_entropy") -> Path:
    np.save(tmp_path / "X.npy", np.random.default_rng(0).standard_normal((6, 4)))
    np.save(tmp_path / "y.npy", y)
    path = tmp_path / "model.yaml"
    path.write_text(MODEL.format(y="y.npy", loss=loss))
    return path


def test_a_model_takes_integer_labels_from_a_file(tmp_path: Path) -> None:
    """N1: "inputs.y: y.npy holds a int64 array; expected floating-point values" for the
    labels file a spec takes; the loss's labels are data, never differentiated."""
    from gradcli.checking.check import CheckOptions
    from gradcli.checking.network import check_network
    from gradcli.inputs.network import build_network

    path = _model(tmp_path, np.array([0, 2, 1, 1, 0, 2]))
    net = build_network(yaml.safe_load(path.read_text()), base=tmp_path, source="model.yaml")
    assert net.net.fixed["y"].tolist() == [0, 2, 1, 1, 0, 2]
    assert check_network(net, CheckOptions(budget=5.0)).passed


@pytest.mark.parametrize(
    ("y", "loss", "said"),
    [  # labels out of range are the loss's to refuse; a bool array is no labels; mse's target
        # is floats, as in a spec
        (np.array([0, 2, 1, 9, 0, 2]), "softmax_cross_entropy", "y[3] = 9 is not a class"),
        (np.ones(6, bool), "softmax_cross_entropy",
         "y.npy holds a bool array; expected integer or floating-point values"),
        (np.ones((6, 3), np.int64), "mse",
         "y.npy holds an int64 array; expected floating-point values"),
    ],
)  # fmt: skip
def test_integers_are_still_refused_where_they_are_not_labels(
    cli: Any, tmp_path: Path, assert_usage_error: Any, y: np.ndarray, loss: str, said: str
) -> None:
    assert_usage_error(cli("compute", "net", _model(tmp_path, y, loss)), "inputs.y", said)


def _l1(pred, target):
    return np.abs(pred - target).mean()


def _l1_backward(grad_output, pred, target):
    return {"pred": grad_output * np.sign(pred - target) / pred.size}


L1 = {"pred": np.linspace(-1.0, 1.0, 6).reshape(2, 3), "target": np.full((2, 3), 0.05)}


def test_a_custom_loss_takes_a_float_target_as_data() -> None:
    """N2: a float target was differentiated, so a loss whose backward rightly returns no
    gradient for it was refused, and the message gave no way to say it is data."""
    with pytest.raises(gradcli.GradcliError, match=r"no gradient for target .*list it in the "
                       r"spec as data: \[target\] \(the API's data=\['target'\]\)"):  # fmt: skip
        gradcli.check(forward=_l1, backward=_l1_backward, tensors=L1)
    report = gradcli.check(forward=_l1, backward=_l1_backward, tensors=L1, data=["target"])
    assert report.passed and list(report.results) == ["pred"], report.verdict()
    # its twin: the data role does not bless a wrong gradient of the other tensors
    wrong = gradcli.check(forward=_l1, backward=lambda g, pred, target: {"pred": g * np.sign(
        pred - target)}, tensors=L1, data=["target"])  # fmt: skip
    assert not wrong.passed
    with pytest.raises(gradcli.GradcliError, match="gradient for target, which the spec lists "
                       "under data:"):  # fmt: skip
        gradcli.check(forward=_l1, backward=lambda g, pred, target: {
            "pred": g * np.sign(pred - target) / pred.size, "target": 0 * target},
            tensors=L1, data=["target"])  # fmt: skip


def test_a_custom_layer_s_data_in_a_spec(cli: Any, tmp_path: Path, assert_usage_error: Any) -> None:
    (tmp_path / "l1.py").write_text(
        "import numpy as np\n"
        "def forward(pred, target):\n    return np.abs(pred - target).mean()\n"
        "def backward(grad_output, pred, target):\n"
        "    return {'pred': grad_output * np.sign(pred - target) / pred.size}\n"
    )
    spec = tmp_path / "s.yaml"
    body = "tensors:\n  pred: {shape: [3, 2]}\n  target: {shape: [3, 2]}\n"
    impl = ("--impl", tmp_path / "l1.py")
    spec.write_text(body + "data: [target]\n")
    result = cli("check", "custom", spec, *impl, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert "dtarget" not in result.stdout
    for data, said in [("[tagret]", "data: 'tagret' is not one of the tensors (pred, target) "
                        "(did you mean 'target'?)"),
                       ("[pred, target]", "every tensor is data"),
                       ("3", "data: expected a list of tensor names")]:  # fmt: skip
        spec.write_text(body + f"data: {data}\n")
        assert_usage_error(cli("check", "custom", spec, *impl), said)
    spec.write_text("tensors:\n  x: [1.0, 2.0]\ndata: [x]\n")
    assert_usage_error(cli("check", "relu", spec), "data: it lists a custom layer's tensors")


def _layernorm(eps_default: float, wrong: float = 0.0) -> tuple[Any, Any]:
    def forward(x, gamma, beta=None, eps=eps_default):
        xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
        return gamma * xhat + (0 if beta is None else beta) + wrong

    def backward(grad_output, x, gamma, beta=None, eps=eps_default):
        r = 1 / np.sqrt(x.var(-1, keepdims=True) + eps)
        xhat = (x - x.mean(-1, keepdims=True)) * r
        d = grad_output * gamma
        dx = r * (d - d.mean(-1, keepdims=True) - xhat * (d * xhat).mean(-1, keepdims=True))
        return {"x": dx, "gamma": (grad_output * xhat).sum(0), "beta": grad_output.sum(0)}

    return forward, backward


LN = {"x": np.random.default_rng(3).standard_normal((2, 5)), "gamma": np.linspace(0.5, 1.5, 5),
      "beta": np.zeros(5)}  # fmt: skip


@pytest.mark.parametrize(
    ("eps_default", "wrong", "options", "said"),
    [(1e-6, 0.0, None, "your forward ran with its own default eps=1e-06, not layernorm's 1e-05"),
     (1e-5, 1e-5, None, ""),  # the layer's default and a wrong forward: nothing to blame it on
     (1e-6, 1e-5, {"eps": 1e-4}, "")],  # passed, its default is not used
)  # fmt: skip
def test_a_forward_s_own_option_default_is_named(eps_default: float, wrong: float,
                                                 options: Any, said: str) -> None:  # fmt: skip
    """M1: a forward whose signature default eps=1e-6 is not layernorm's 1e-5 (the spec sets no
    eps, so gradcli passes none) failed with a bare "max abs error 4.38e-06"."""
    forward, backward = _layernorm(eps_default, wrong)
    report = gradcli.check("layernorm", LN, forward=forward, backward=backward, options=options)
    assert report.forward is not None and not report.forward.passed
    verdict = report.verdict()
    assert ("ran with its own default" in verdict) == bool(said), verdict
    assert said in verdict


def conv_forward_naive(x, w, b, conv_param):  # never runs: the shapes are refused first
    raise AssertionError("called")


def conv_backward_naive(dout, cache):
    raise AssertionError("called")


def test_an_option_the_spec_sets_at_its_default_reaches_the_forward() -> None:
    """The remedy M1's message gives: eps: 1e-5 in the spec, the layer's default, was not
    passed (only values other than the default were), and the forward kept its own 1e-6."""
    forward, backward = _layernorm(1e-6)
    report = gradcli.check("layernorm", LN, forward=forward, backward=backward,
                           options={"eps": 1e-5})  # fmt: skip
    assert report.passed, report.verdict()


def test_tensors_in_the_layout_of_cs231n_code_are_told_gradcli_s() -> None:
    """M2: CS231n's conv functions with their own (N, C, H, W) tensors: the error spoke of
    channel-last axes only, not that tensors= must be in gradcli's layout."""
    rng = np.random.default_rng(0)
    nchw = {"X": rng.standard_normal((2, 3, 5, 5)), "W": rng.standard_normal((4, 3, 3, 3))}
    with pytest.raises(gradcli.GradcliError) as e:
        gradcli.check("conv2d", nchw, forward=conv_forward_naive, backward=conv_backward_naive)
    assert ("W has C_in=3 (axis 2) but X has 5 channels (last axis); the tensors must be in "
            "gradcli's layout (X (..., H, W, C_in), W (kh, kw, C_in, C_out), b (C_out,)) "
            "whatever your code takes: gradcli passes them to your conv_forward_naive in "
            "CS231n's layout (X as (N, C, H, W)") in str(e.value)  # fmt: skip
    assert "as your conv_backward_naive takes (dout, cache)" in str(e.value)
    # code in gradcli's own layout gets the layer's error alone
    with pytest.raises(gradcli.GradcliError) as e:
        gradcli.check("conv2d", nchw, forward=lambda X, W: X, backward=lambda g, X, W: {})
    assert str(e.value).endswith("but X has 5 channels (last axis)"), str(e.value)


def forward(x, W, b):
    return x @ W.T + b, (x, W)


def backward(dout, cache):
    x, W = cache
    return dout @ W, dout.T @ x, dout.sum(0)


def test_a_users_error_in_cs231n_s_layout_says_what_gradcli_passed() -> None:
    """M3: an (out, cache) pair written in gradcli's own layout (W (out, in)) died with a
    bare numpy matmul error: gradcli had chosen CS231n's layout, w = W transposed."""
    rng = np.random.default_rng(1)
    t = {"x": rng.standard_normal((6, 5)), "W": rng.standard_normal((3, 5)), "b": np.ones(3)}
    with pytest.raises(gradcli.GradcliError) as e:
        gradcli.check("linear", t, forward=forward, backward=backward)
    assert e.value.message.startswith(
        "gradcli called forward in CS231n's layout (x as (N, D) rows, w = Wᵀ (D, M)) as your "
        "backward takes (dout, cache): x (6, 5), W (5, 3) (gradcli's W (3, 5)), b (3,); "
        "forward raised ValueError: matmul"), e.value.message  # fmt: skip

    def cs231n_backward(dout, cache):  # its twin, the same pair in CS231n's layout
        x, w = cache
        return dout @ w.T, x.T @ dout, dout.sum(0)

    report = gradcli.check("linear", t, forward=lambda x, w, b: (x @ w + b, (x, w)),
                           backward=cs231n_backward)  # fmt: skip
    assert report.passed, report.verdict()
