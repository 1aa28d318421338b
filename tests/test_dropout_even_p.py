"""dropout at p = 0.5, its default: 1 / p and 1 / (1 - p) agree there.

A student's dropout scaling by 1 / p (CS231n's p is the keep rate) passed `gradcli check
dropout --impl mine.py`, the first command its skeleton suggests, with no word (outside test
t38a N6). A note says so and names another p; at p = 0.3 the same file fails. Twins: the
built-in's own check has no such note; the right dropout passes at both.
"""

from __future__ import annotations

import json

import gradcli

CODE = """import numpy as np
def forward(x, p=0.5, seed=0):
    keep = np.random.default_rng(seed).random(x.shape) >= p
    return x * keep / {scale}
def backward(grad_output, x, p=0.5, seed=0):
    keep = np.random.default_rng(seed).random(x.shape) >= p
    return {{"x": grad_output * keep / {scale}}}
"""
SPEC = """layer: dropout
options: {{p: {p}}}
tensors:
  x: {{shape: [4, 5], init: normal}}
"""


def _notes(report) -> list[str]:
    return [n for n in json.loads(report.to_json())["notes"] if "1 / p and 1 / (1 - p)" in n]


def test_at_half_a_scale_by_1_over_p_passes_with_a_note(tmp_path):
    spec = tmp_path / "half.yaml"
    spec.write_text(SPEC.format(p=0.5))
    wrong = tmp_path / "wrong.py"
    wrong.write_text(CODE.format(scale="p"))
    r = gradcli.check_spec(spec, impl=str(wrong))
    assert r.passed and _notes(r)
    spec.write_text(SPEC.format(p=0.3))
    assert not gradcli.check_spec(spec, impl=str(wrong)).passed


def test_the_built_in_and_a_right_one_say_nothing_more(tmp_path):
    spec = tmp_path / "half.yaml"
    spec.write_text(SPEC.format(p=0.5))
    assert not _notes(gradcli.check_spec(spec))
    right = tmp_path / "right.py"
    right.write_text(CODE.format(scale="(1 - p)"))
    assert gradcli.check_spec(spec, impl=str(right)).passed
    spec.write_text(SPEC.format(p=0.3))
    r = gradcli.check_spec(spec, impl=str(right))
    assert r.passed and not _notes(r)
