"""A sample at a max-pool's ties (outside test t17 F5, F6): its ties' members outside the sample
are read off the layer's footprint (no search), and the estimate the planner chooses a sample
on holds them, found, rechecked and tied in. So a budget below the full check's estimate keeps
a correct max-pool full and passing where a sample costs as much, a forced sample runs what its
estimate says, and wrong max-pools still fail, sampled or full. Oracles: the calls a user's
forward counts (against the estimate, in calls), and backwards written out by hand over the
3x3 windows (the first maximum's routing, the argmin's, every tied maximum's)."""

import json

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import gradcli
from gradcli.checking import budget as planner
from gradcli.layers import REGISTRY
from gradcli.numeric import cost, kinkplan, partners
from gradcli.numeric.engine import Engine

POOL = {"size": 3, "stride": 1}  # overlapping windows: a tie reaches nine of them
FACTOR = 2.0  # the estimate in calls and the calls made agree within it, both ways


def integer_ties(shape=(2, 16, 16, 3), seed=0):
    """X of integers 0..2: most 3x3 windows tie at their maximum (t17's big31, smaller)."""
    return np.random.default_rng(seed).integers(0, 3, shape).astype(np.float64)


def windows(X):
    """(N, Ho, Wo, C, 3, 3): each window's elements."""
    return sliding_window_view(X, (3, 3), axis=(1, 2))


def routed(X, g, rule):
    """dX of a backward sending each window's gradient by ``rule``: "first" (its first maximum
    in row-major order: the built-in's, torch's), "argmin" (its smallest element: routing to
    the wrong element), "all" (every tied maximum gets all of it: CS231n's mask)."""
    w = windows(X)
    flat = w.reshape(w.shape[:4] + (9,))
    if rule == "all":
        pick = (flat == flat.max(axis=-1, keepdims=True)).astype(np.float64)
    else:
        at = flat.argmax(axis=-1) if rule == "first" else flat.argmin(axis=-1)
        pick = np.zeros(flat.shape)
        np.put_along_axis(pick, at[..., None], 1.0, axis=-1)
    pick = pick.reshape(w.shape)
    ho, wo = w.shape[1], w.shape[2]
    dX = np.zeros(X.shape)
    for a in range(3):
        for b in range(3):
            dX[:, a : a + ho, b : b + wo, :] += pick[..., a, b] * g
    return dX


def upstream(X, seed=1):
    w = windows(X)
    return np.random.default_rng(seed).standard_normal(w.shape[:4])


class Counted:
    """A user's max-pool (3x3, stride 1) that counts its calls, with a backward by ``rule``."""

    def __init__(self, rule="first"):
        self.calls, self.rule = 0, rule

    def forward(self, X, size=3, stride=1, padding=0):
        self.calls += 1
        return windows(X).max(axis=(-2, -1))

    def backward(self, grad_output, X, size=3, stride=1, padding=0):
        self.calls += 1
        return {"X": routed(X, grad_output, self.rule)}


def test_the_hand_written_routings_are_the_builtins_or_not():
    """The oracle's own check: the first maximum's routing is the built-in's gradient."""
    X = integer_ties()
    g = upstream(X)
    ours = gradcli.compute("maxpool2d", {"X": X}, options=POOL, grad_output=g).gradients["X"]
    np.testing.assert_array_equal(routed(X, g, "first"), ours)
    assert not np.array_equal(routed(X, g, "all"), ours)
    assert not np.array_equal(routed(X, g, "argmin"), ours)


def test_a_forced_sample_at_ties_runs_what_its_estimate_says(monkeypatch):
    """--impl of a max-pool, --mode sample at integer ties (t17 F5: estimated 0.75 s, ran 66 s
    of a search for the ties' members): the members are read off the footprint, never
    searched for, nothing is counted beyond the estimate, and the user's calls stay within
    FACTOR of the estimate in calls (they ran 36 times it)."""

    def refused(*args, **kwargs):
        raise AssertionError("searched")

    monkeypatch.setattr(partners, "find", refused)
    # the model's call, not one timed on a loaded machine (a slow one is counted at its time,
    # and the calls predicted here are the model's)
    monkeypatch.setattr(cost, "user_call_seconds", lambda engine: None)
    monkeypatch.setattr(cost, "user_backward_seconds", lambda engine: None)
    # one example (768 elements, 64 sampled): the twin "all" read two for 9 s to the same verdict
    X = integer_ties((1, 16, 16, 3))
    user = Counted()
    r = gradcli.check("maxpool2d", {"X": X}, options=POOL, forward=user.forward,
                      backward=user.backward, mode="sample", seed=0)  # fmt: skip
    doc = json.loads(r.to_json())
    assert r.passed, str(r)
    assert r.results["X"].mode == "sample" and r.results["X"].kinks > 10
    assert doc["cost"]["counted_seconds"] == doc["cost"]["estimated_seconds"]
    per = cost.SECONDS_PER_CALL  # a user's call is its guard, nearly all of it at this size
    predicted = (doc["cost"]["estimated_seconds"] - cost.CHECK_SECONDS) / per
    assert user.calls / FACTOR <= predicted <= user.calls * FACTOR, (predicted, user.calls)
    # the twin: the sample's ties read without their members outside it pass CS231n's mask
    # (each sampled maximum within its own interval); with them, it fails
    for rule in ("all", "argmin"):
        wrong = Counted(rule)
        r = gradcli.check("maxpool2d", {"X": X}, options=POOL, forward=wrong.forward,
                          backward=wrong.backward, mode="sample", seed=0)  # fmt: skip
        assert not r.passed and "does not match" in r.verdict(), (rule, str(r))


def test_a_budget_below_the_full_check_keeps_a_max_pool_at_ties_full_and_passing(monkeypatch):
    """t17 F6: a budget below the full check's estimate sampled (the sample counted without
    its ties' members outside it), then the search for them ran out of budget and a correct
    max-pool failed as 'not verified'. The sample's estimate holds them, here more than the
    full check (every color is touched either way), so the check stays full, passes, and says
    why. The twin: an estimate without them samples."""
    # t17's huge31 (8 examples: 3.6 s) at 2 of them, its upstream gradient drawn: the estimates
    # are the model's, from sizes, in the same proportions (the sample's 1.7 times the full's)
    X = integer_ties((2, 32, 32, 3), seed=8)
    roomy = gradcli.check("maxpool2d", {"X": X}, options=POOL)
    whole = json.loads(roomy.to_json())["cost"]["estimated_seconds"]
    assert roomy.passed and roomy.results["X"].mode == "full"
    budget = 0.9 * whole
    r = gradcli.check("maxpool2d", {"X": X}, options=POOL, budget=budget)
    assert r.passed, str(r)
    assert r.results["X"].mode == "full" and r.results["X"].checked == X.size
    (note,) = r.notes
    assert "a sample of 64 coordinates per tensor as long: checked every coordinate" in note
    # the planner's choice, from its two estimates: the sample's holds its ties' members
    layer = REGISTRY["maxpool2d"]
    g = r.spec.grad_output
    engine = Engine(layer, {"X": X}, layer.options(**POOL), g)
    full = planner.estimate(engine, "X", "central", True)
    ours = {"X": routed(X, g, "first")}
    coords = planner.draw(ours, 64, np.random.default_rng(0))["X"]
    sample = planner.estimate(engine, "X", "central", True, coords)
    assert sample.partners > 0 and sample.seconds > full.seconds
    # the twin: an estimate without them samples (and the sample once stopped its search short)
    monkeypatch.setattr(kinkplan, "partners_seconds", lambda *args, **kwargs: 0.0)
    blind = gradcli.check("maxpool2d", {"X": X}, options=POOL, budget=budget)
    assert blind.results["X"].mode == "sample", str(blind)


@pytest.mark.parametrize("rule", ["all", "argmin"])
@pytest.mark.parametrize("how", [{"mode": "sample"}, {"mode": "full"}, {"budget": 0.0}])
def test_wrong_max_pools_fail_at_ties_sampled_or_full(rule, how):
    """Every tied maximum given the gradient, or the gradient routed to the smallest element,
    fails sampled, full, and under a budget of nothing; the built-in's own routing, written
    out by hand and given as answers, passes in each."""
    X = integer_ties()
    g = upstream(X)
    kw = {"options": POOL, "grad_output": g, "seed": 0, **how}
    right = gradcli.check("maxpool2d", {"X": X}, grads={"X": routed(X, g, "first")}, **kw)
    assert right.passed, str(right)
    r = gradcli.check("maxpool2d", {"X": X}, grads={"X": routed(X, g, rule)}, **kw)
    assert not r.passed and "does not match" in r.verdict(), str(r)
    assert r.results["X"].kinks > 0


def test_a_forced_samples_long_run_beyond_an_estimate_never_said_is_noted(monkeypatch):
    """A forced sample of ``relu(x + b) @ W`` (8x784 quantized digits) estimated at 0.12 s,
    never printed, counted 51 s beyond it and ran 40 s with no word: work beyond an estimate
    not said goes without a note only up to QUIET seconds (checking/check.py). Here a smaller
    run and QUIET lowered below what it counts; the twin sets QUIET above it."""
    from gradcli.checking import check as check_module

    rng = np.random.default_rng(0)
    x = np.round(rng.random((2, 60)) * 4) / 4  # counts 5.6 s beyond at 2 rows (10.5 at 4)
    x[rng.random(x.shape) < 0.8] = 0.0
    tensors = {"x": x, "b": np.zeros(60), "W": 0.05 * rng.standard_normal((60, 10))}

    def forward(x, b, W):
        return np.maximum(x + b, 0) @ W

    def backward(grad_output, x, b, W):
        z, c = x + b, grad_output @ W.T
        return {"x": c * (z > 0), "b": (c * (z > 0)).sum(0), "W": np.maximum(z, 0).T @ grad_output}

    def run():
        return gradcli.check("custom", tensors, forward=forward, backward=backward, mode="sample")

    monkeypatch.setattr(check_module, "QUIET", 1e3)
    r = run()
    beyond = r.check.counted_seconds - r.check.estimated_seconds
    assert r.passed and r.check.estimated_seconds < 2 and 1 < beyond, str(r)
    assert not any("beyond the estimate" in n for n in r.notes), r.notes
    monkeypatch.setattr(check_module, "QUIET", beyond / 2)
    said = [n for n in run().notes if "beyond the estimate" in n]
    assert said and f"of {r.check.estimated_seconds:.2g} s" in said[0], said
