"""A layer of your own at inputs far below the step: x**3 at |x| = 1e-100 (dx = 3e-200).

Every step from 6e-6 down reads h^2 of truncation there. Under central differences that
reading was taken for a cancellation ('its terms cancel here') and a negated backward passed;
the complex step, whose truncation is h^2 too, failed the right backward, and the check that
it is safe read the real differences' h^2 and called x**3 'not complex-safe' (outside test
t37b F4, F6). Each now says the step cannot resolve it, with the advice that does (a smaller
--eps), and at --eps 1e-105 the complex step passes the right backward and fails the negated.
Twins: at |x| ~ 1 the same backward's slips fail; x * |x| is still refused by the complex step.
"""

from __future__ import annotations

import re

import pytest

import gradcli
from gradcli import OptionError

SPEC = """layer: custom
tensors:
  x: {{shape: [6], init: normal, scale: {scale}}}
"""
CODE = """import numpy as np
def forward(x):
    return {forward}
def backward(grad_output, x):
    return {{"x": {sign}grad_output * {slope}}}
"""


def _files(tmp_path, scale, sign="", forward="x**3", slope="3 * x**2"):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(scale=scale))
    code = tmp_path / f"layer{len(sign)}.py"
    code.write_text(CODE.format(forward=forward, sign=sign, slope=slope))
    return spec, str(code)


@pytest.mark.parametrize("method", ["central", "complex"])
@pytest.mark.parametrize("sign", ["", "-"])
def test_far_below_the_step_it_cannot_be_resolved(tmp_path, method, sign):
    spec, code = _files(tmp_path, "1.0e-100", sign)
    r = gradcli.check_spec(spec, impl=code, method=method)
    assert not r.passed
    assert re.search("smaller (--)?eps", r.results["x"].unresolved), r.results["x"]


def test_at_a_step_of_its_scale_the_complex_step_judges(tmp_path):
    spec, code = _files(tmp_path, "1.0e-100")
    assert gradcli.check_spec(spec, impl=code, method="complex", eps=1e-105).passed
    spec, code = _files(tmp_path, "1.0e-100", "-")
    r = gradcli.check_spec(spec, impl=code, method="complex", eps=1e-105)
    assert not r.passed and not r.results["x"].unresolved


@pytest.mark.parametrize("method", ["central", "complex"])
def test_at_its_own_scale_a_slip_fails(tmp_path, method):
    spec, code = _files(tmp_path, "1.0")
    assert gradcli.check_spec(spec, impl=code, method=method).passed
    spec, code = _files(tmp_path, "1.0", "-")
    r = gradcli.check_spec(spec, impl=code, method=method)
    assert not r.passed and not r.results["x"].unresolved


@pytest.mark.parametrize("scale", ["1.0e-5", "1.0e-7"])
def test_a_step_spanning_the_rise_is_read_again_finer(tmp_path, scale):
    # x**3 at 1e-5 reads 1e-4 off at 1/64 of central's step: 'not complex-safe' before
    spec, code = _files(tmp_path, scale)
    assert gradcli.check_spec(spec, impl=code, method="complex").passed
    spec, code = _files(tmp_path, scale, "-")
    assert not gradcli.check_spec(spec, impl=code, method="complex").passed


@pytest.mark.parametrize("scale", ["1.0e-100", "1.0e-5", "1.0"])
def test_a_forward_that_drops_the_imaginary_part_is_still_refused(tmp_path, scale):
    spec, code = _files(tmp_path, scale, forward="x * np.abs(x)",
                        slope="2 * np.abs(x)")
    with pytest.raises(OptionError, match="not complex-safe"):
        gradcli.check_spec(spec, impl=code, method="complex")


@pytest.mark.parametrize("layer", ["tanh", "sigmoid"])
def test_a_layer_of_scale_one_at_tiny_inputs_is_still_judged_by_the_complex_step(layer):
    # tanh at 1e-30 varies on a scale of 1: the complex step reads it exactly, and a 0.1%
    # slip was 'cannot resolve ... use a smaller --eps' (outside test t39a F3)
    import numpy as np

    x = 1e-30 * np.random.default_rng(0).normal(size=(2, 3))
    right = dict(gradcli.compute(layer, {"x": x}).gradients)
    assert gradcli.check(layer, {"x": x}, method="complex", grads=right).passed
    r = gradcli.check(layer, {"x": x}, method="complex", grads={"x": 1.001 * right["x"]})
    assert not r.passed and not r.results["x"].unresolved
