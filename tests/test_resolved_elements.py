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


def test_the_right_answer_passes_by_the_complex_step():
    """Not at the automatic step, whose round-off at dbeta[2] is 0.08; read again by the
    complex step (checking/complex_recheck.py), which has none, with our own backward's line
    read there too."""
    t = tensors()
    r = gradcli.check("batchnorm", tensors=t, seed=0, grads={"beta": right_dbeta(t)})
    assert r.passed, r.verdict()
    assert any(n.startswith("dbeta: the round-off at the automatic step") and "complex step"
               in n for n in r.notes), r.notes  # fmt: skip
    assert "built-in dbeta matches" in str(r)


@pytest.mark.parametrize("eps", [None, 6e-6])
def test_a_slip_only_at_the_unresolved_element_never_passes(eps):
    """10% at dbeta[2] (0.26): three times the automatic step's round-off there (0.08), not
    resolved, nor passed by the complex step; a step the user gives (--eps) is theirs, and
    there it cannot be resolved, the right answer either."""
    t = tensors()
    wrong = right_dbeta(t)
    wrong[2] *= 1.1
    r = gradcli.check("batchnorm", tensors=t, seed=0, grads={"beta": wrong}, eps=eps)
    assert not r.passed and r.results["beta"].unresolved, r.verdict()
    right = gradcli.check("batchnorm", tensors=t, seed=0, grads={"beta": right_dbeta(t)},
                          eps=eps)  # fmt: skip
    assert right.passed == (eps is None), right.verdict()


def test_an_incremental_path_rereads_what_it_rounds_at_the_largest_terms():
    """Outside test t33b F4: a batchnorm with gamma [1, 1e8, 1] differenced dx by whole
    losses of 1e8, reading the first feature's dx (outputs of 1) to 0.05, and its own
    backward 'could not be resolved'; read again output by output, dx passes, and a 10% slip
    at dx[0, 0] is a mismatch. dbeta[1] (outputs of 1e8) truly cannot be resolved, and its
    advice is no smaller step (beta = 0 is no input far below the step); the complex step
    passes it (checking/complex_recheck.py)."""
    rng = np.random.default_rng(0)
    t = {"x": rng.normal(size=(4, 3)), "gamma": np.array([1.0, 1e8, 1.0])}
    r = gradcli.check("batchnorm", tensors=t, eps=6e-6)
    assert r.results["x"].passed, r.verdict()
    assert r.results["beta"].unresolved and "smaller" not in r.results["beta"].unresolved
    assert gradcli.check("batchnorm", tensors=t).results["beta"].passed
    wrong = r.computation.gradients["x"].copy()
    wrong[0, 0] *= 1.1
    bad = gradcli.check("batchnorm", tensors=t, grads={"x": wrong})
    assert not bad.results["x"].passed and not bad.results["x"].unresolved, bad.verdict()
