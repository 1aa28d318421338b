"""'dX is wrong at N elements only ... every other element is the right one to round-off' was
said of a float32 svm dx 1.0001 x right everywhere, its smaller elements passing for
round-off at 1e-4 of the largest (outside test t66b F1): in float32 an element is right to
round-off within 64 float32 ulps of itself (or 1e-6 of the largest). The twin: one element off
by 1e-3 is still named alone."""

from __future__ import annotations

import numpy as np

import gradcli


def _svm():
    """Integer scores with exact ties; CS231n's dx (margins > 0): thirds and two thirds."""
    x = np.array([[1, 0, 2, 1], [3, 2, 3, 0], [0, 0, 0, -1]], dtype=np.float32)
    y = np.array([0, 2, 1])
    m = x - x[np.arange(3), y][:, None] + 1
    m[np.arange(3), y] = -1
    dx = (m > 0).astype(np.float32)
    dx[np.arange(3), y] = -(m > 0).sum(axis=1)
    return {"x": x, "y": y}, dx / np.float32(3)


def test_a_float32_answer_off_everywhere_is_not_wrong_at_a_few_elements():
    t, right = _svm()
    r = gradcli.check("svm", t, dtype="float32", grads={"x": right * np.float32(1.0001)})
    assert not r.passed
    assert not any("elements only" in str(h) or "one element only" in str(h)
                   for h in r.results["x"].hints), r.results["x"].hints
    one = right.copy()
    one[1, 0] *= np.float32(1.001)  # its margin is 1: no kink
    r = gradcli.check("svm", t, dtype="float32", grads={"x": one.astype(np.float32)})
    assert not r.passed
    assert any("one element only" in str(h) for h in r.results["x"].hints), r.results["x"].hints
