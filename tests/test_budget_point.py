"""The calls a check makes of a user's layer before any finite difference, and the digests of
its cache, are in the estimate (numeric/stacking.point_calls, checking/budget.calls_before).
Counted, never timed: the oracle counts the forward's calls, and the bytes digested."""

import dataclasses
import hashlib
import sys

import numpy as np
import pytest

import gradcli
from gradcli.checking import written
from gradcli.layers import REGISTRY
from gradcli.numeric import cost, stacking
from gradcli.numeric.engine import Engine

RNG = np.random.default_rng(0)
TENSORS = {"x": RNG.standard_normal((4, 8)), "gamma": RNG.standard_normal(8),
           "beta": RNG.standard_normal(8)}  # fmt: skip


def _counted_layernorm(calls: list):
    builtin = REGISTRY["layernorm"]

    def forward(t, options=None):
        calls.append(1)
        return builtin.forward(t, options)

    return dataclasses.replace(builtin, forward=forward, broadcasts=False)


@pytest.mark.parametrize("retimed", [False, True])
def test_the_engines_calls_at_the_point_are_counted(monkeypatch, retimed):
    """Its forward, the timing's two more when the first call is slow, the precision: a move
    of every tensor, then three of each of the three floating tensors (the estimate counted 2
    of up to 13). The twin: a forward fast enough is not timed again, and counted at most."""
    monkeypatch.setattr(stacking, "RETIME_SECONDS", 0.0 if retimed else 1e9)
    calls: list = []
    layer = _counted_layernorm(calls)
    Engine(layer, TENSORS, layer.options(), RNG.standard_normal((4, 8)))
    expected = stacking.point_calls(layer, TENSORS)
    assert expected == 1 + 2 + 1 + 3 * 3
    assert len(calls) == (expected if retimed else expected - stacking.RETIMES)
    assert stacking.point_calls(REGISTRY["layernorm"], TENSORS) == 1  # ours: one call


def test_a_user_caches_digests_are_in_the_estimate(monkeypatch):
    """The contract digests a user's cache before and after its backward calls: the elements
    hashed are the ones the estimate counts (the cache it keeps, twice). A built-in's cache
    is not digested, and not counted."""
    hashed = []
    real = hashlib.blake2b

    def counting(data, **kw):
        if sys._getframe(1).f_globals["__name__"] == written.__name__:  # the contract's only
            hashed.append(memoryview(data).nbytes)
        return real(data, **kw)

    monkeypatch.setattr(hashlib, "blake2b", counting)
    x = RNG.standard_normal((64, 32))

    def forward(x):  # CS231n's form: (out, cache), the cache its own writable array
        y = np.tanh(x)
        return y, y

    def backward(grad_output, cache):
        return grad_output * (1 - cache**2)

    seen = {}
    real_digest = cost.digest_seconds

    def digest_seconds(engine, digests):
        kept = stacking.kept_arrays(engine.cache)
        seen["elements"] = digests * sum(a.size for a in kept if a.flags.writeable)
        return real_digest(engine, digests)

    monkeypatch.setattr(cost, "digest_seconds", digest_seconds)
    report = gradcli.check("tanh", {"x": x}, forward=forward, backward=backward, seed=0)
    assert report.passed
    assert sum(hashed) == 8 * seen["elements"] > 0, (hashed, seen)
    hashed.clear()
    seen.clear()
    assert gradcli.check("tanh", {"x": x}, seed=0).passed
    assert not hashed and not seen


def _relu_engine(monkeypatch, measured: float, load: float) -> Engine:
    """A user's relu whose forward measured ``measured`` s a call on a machine ``load`` times
    slower than usual (both given: nothing timed)."""
    monkeypatch.setattr(stacking, "_call_seconds", lambda *a: measured)
    monkeypatch.setattr(stacking, "load_factor", lambda: load)
    layer = dataclasses.replace(REGISTRY["relu"], broadcasts=False)
    x = RNG.standard_normal(5000)
    return Engine(layer, {"x": x}, layer.options(), RNG.standard_normal(5000))


@pytest.mark.parametrize(("times", "load", "slow"), [
    (4, 1.0, True),  # measured at 4 model calls on a machine as busy as usual: its own time
    (4, 2.0, False),  # ... on a machine twice as busy: 2 model calls, the model's call
    (8, 2.0, True),  # at 8, twice as busy: 4 model calls, counted as such
])  # fmt: skip
def test_a_user_forward_is_costed_with_the_machines_load_taken_out(monkeypatch, times, load,
                                                                   slow):  # fmt: skip
    """A tiny forward measured at 3 times the model's call on a busy machine flipped its
    estimate between runs: the guard around a call of nothing, timed beside it, says how busy
    the machine is, and the measured time is read against it."""
    probe = _relu_engine(monkeypatch, 0.0, 1.0)
    model = cost.pass_elements(probe) * cost.SECONDS_PER_ELEMENT + cost.SECONDS_PER_CALL
    engine = _relu_engine(monkeypatch, times * model, load)
    counted = cost.user_call_seconds(engine)
    assert (counted is not None) is slow, counted
    if slow:
        assert times / load * model <= counted < 2 * times / load * model


def test_the_load_is_read_from_calls_of_nothing_through_the_guard(monkeypatch):
    from gradcli.user import call as guard

    made = []
    real = guard.call

    def counted(path, what, fn, **kw):
        made.append(what)
        return real(path, what, fn, **kw)

    monkeypatch.setattr(guard, "call", counted)
    assert stacking.load_factor() >= 1.0
    assert made == ["reference"] * stacking.REFERENCE_CALLS
