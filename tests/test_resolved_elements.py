"""A tensor the step cannot resolve as a whole may still fail at elements it resolves.

A batchnorm with gamma[2] = 1e8 reads dbeta[2] to about 0.08 (its outputs are 1e8) and the
other elements to 1e-10; a sign-flipped dbeta was only 'cannot resolve dbeta' (outside test
t30b F4). A failure beyond its tolerance at an element whose own round-off is far below it is
a mismatch; the right answer still cannot be resolved (dbeta[2] is not, to rtol, at this
step), and our own backward's line says so rather than 'does not match'."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def tensors():
    rng = np.random.default_rng(3)
    gamma = rng.normal(size=5)
    gamma[2] = 1e8
    return {"x": rng.normal(size=(4, 5)), "gamma": gamma, "beta": rng.normal(size=5)}


def right_dbeta(t):
    return gradcli.check("batchnorm", tensors=t, seed=0).computation.gradients["beta"]


@pytest.mark.parametrize("slip", [-1.0, 1.05])
def test_a_slip_at_the_resolved_elements_is_a_mismatch(slip):
    t = tensors()
    wrong = right_dbeta(t) * slip
    r = gradcli.check("batchnorm", tensors=t, seed=0, grads={"beta": wrong})
    res = r.results["beta"]
    assert not r.passed and not res.unresolved, r.verdict()
    assert "does not match" in r.verdict()


def test_the_right_answer_still_cannot_be_resolved():
    t = tensors()
    r = gradcli.check("batchnorm", tensors=t, seed=0, grads={"beta": right_dbeta(t)})
    assert not r.passed and r.results["beta"].unresolved, r.verdict()
    assert "built-in dbeta cannot be resolved" in str(r)


def test_a_slip_only_at_the_unresolved_element_stays_unresolved():
    t = tensors()
    wrong = right_dbeta(t)
    wrong[2] *= 1 + 1e-9  # within what the step reads of it
    r = gradcli.check("batchnorm", tensors=t, seed=0, grads={"beta": wrong})
    assert not r.passed and r.results["beta"].unresolved, r.verdict()
