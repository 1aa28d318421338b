"""--mode probe on a layer whose declared kinks its probe would cross, over --budget.

An svm whose scores sit exactly at their margins (scores rounded to halves) cannot be probed:
its +-1 direction crosses the hinges. Where every element costs more than --budget, a sample is
checked instead, as an automatic check over --budget does; but it was then held to the whole
tensor a failed probe owes, and the built-in's right backward failed: 'only 64 of the 5000
coordinates promised were compared' (outside test t38b F4). The probe never ran and saw
nothing: the sample stands. Twin: a wrong answer still fails in that sample.
"""

from __future__ import annotations

import numpy as np

import gradcli


def _svm():
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(0, 2, (500, 10)) * 2) / 2  # many margins exactly 0
    y = rng.integers(0, 10, 500)
    return {"x": x, "y": y}


def test_a_sampled_probe_fallback_passes_the_right_backward():
    t = _svm()
    r = gradcli.check("svm", t, mode="probe", budget=0.05)
    assert r.passed, r.results["x"]
    assert r.results["x"].mode == "sample"


def test_a_wrong_answer_fails_there():
    t = _svm()
    right = gradcli.compute("svm", t).gradients["x"]
    for wrong in (1.01 * right, np.where(right < 0, 0.0, right)):  # 1% off; true class left out
        r = gradcli.check("svm", t, mode="probe", budget=0.05, grads={"x": wrong})
        assert not r.passed and not r.results["x"].passed
