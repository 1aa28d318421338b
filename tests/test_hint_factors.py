"""Scale hints name the layer's own constants (checking/factors.py), in the report's letters.

The oracle is the layer's definition, written out here by hand: a loss means over its N
examples (mse over its N D elements), dropout scales by 1/(1 - p), batchnorm's statistics
average over N (and H, W), a group's mean over its C/groups channels and H W positions, an
average pool over its window. A backward that leaves one of them out gives the right gradient
times it; the hint must name it. The twins: a factor the layer does not have (linear's dW
times its output count) is still "a constant factor this layer does not name".
"""

import numpy as np
import pytest

import gradcli
from gradcli.inputs.spec import load_spec

# (spec, tensor, factor, words the hint must hold): a classic slip of each layer's constant
SLIPS = [
    ("softmax_cross_entropy", "x", 8, "8 = N, the size of n"),  # dx without its 1/N
    ("svm", "x", 6, "6 = N, the size of n"),
    ("mse", "pred", 3, "3 = D, the size of d"),  # divided by N where N D belongs
    ("mse", "pred", 15, "15 = N D, the size of n, d"),  # no mean at all
    ("dropout_p03", "x", 0.7, "1 - p = 0.7 (p = 0.3)"),  # the backward without 1/(1 - p)
    ("batchnorm", "x", 8, "8 = N, the size of n"),
    ("batchnorm_spatial", "x", 3, "3 = N, the size of n"),
    ("batchnorm_spatial", "x", 48, "48 = N H W, the size of n, i, j"),
    ("layernorm", "x", 8, "8 = D, the size of d"),
    ("groupnorm", "X", 2, "C/groups = 2"),
    ("groupnorm", "X", 32, "32, the elements of a group"),
    ("avgpool2d", "X", 9, "9, the window's size"),
    # the outside tester's H1: the backward's 1/(N - 1), an unbiased variance's
    ("batchnorm", "x", 8 / 7, "8/7: the variance's 1/7 (N - 1: an unbiased estimate"),
    ("layernorm", "x", 8 / 7, "8/7: the variance's 1/7 (N - 1"),
]


def _right(spec_name):
    spec = load_spec(None, f"specs/{spec_name}.yaml")
    layer = spec.layer
    cache = layer.forward(dict(spec.tensors), spec.options)[1]
    right = layer.backward(np.asarray(spec.grad_output, dtype=np.float64), cache)
    return {n: np.asarray(g, dtype=np.float64) for n, g in right.items() if n in spec.tensors}


def _hint(spec_name, tensor, factor):
    grads = _right(spec_name)
    grads[tensor] = grads[tensor] * factor
    report = gradcli.check_spec(f"specs/{spec_name}.yaml", grads=grads)
    assert not report.passed
    return " ".join(map(str, report.results[tensor].hints))


@pytest.mark.parametrize(("spec", "tensor", "factor", "words"), SLIPS)
def test_a_slip_by_the_layers_own_constant_is_named(spec, tensor, factor, words):
    text = _hint(spec, tensor, factor)
    assert words in text and "does not name" not in text, text


def test_a_factor_the_layer_does_not_have_is_not_named():
    # linear has no mean over its outputs: dW times out (3) is no slip of its own
    assert "a constant factor this layer does not name" in _hint("linear", "W", 3)
    # dropout has no mean over its elements
    assert "does not name" in _hint("dropout_p03", "x", 4)
    # an unbiased variance is a normalization's slip, not linear's
    assert "does not name" in _hint("linear", "x", 8 / 7)


def test_the_right_gradient_still_passes():
    assert gradcli.check_spec("specs/mse.yaml", grads=_right("mse")).passed


@pytest.mark.parametrize(
    ("spec", "tensor", "factor", "words"),
    [
        # spatial batchnorm indexes dx as [n, i, j, c]: a mean over H, W is over i, j
        ("batchnorm_spatial", "gamma", 1 / 16, "the size of i, j (a mean over i, j"),
        ("batchnorm_spatial", "gamma", 1 / 3, "the size of n (a mean over n"),
        ("groupnorm", "gamma", 1 / 16, "the size of i, j"),
        # attention with a batch axis (X[b0, t, e]): its own factor, 1/sqrt(d_k) per head
        ("attention_causal_multihead", "X", 2**0.5, "a missing 1/sqrt(d_k) = 0.7071"),
    ],
)
def test_hints_use_the_reports_axis_letters(spec, tensor, factor, words):
    text = _hint(spec, tensor, factor)
    assert words in text, text
    assert "b1" not in text, text
