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
from gradcli.numeric import cost, jumps, stacking
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
    of every tensor, then three of each of the three floating tensors, and a line through
    them all (the estimate counted 2 of up to 13). The twin: a forward fast enough is not timed
    again, and counted at most."""
    monkeypatch.setattr(stacking, "RETIME_SECONDS", 0.0 if retimed else 1e9)
    calls: list = []
    layer = _counted_layernorm(calls)
    Engine(layer, TENSORS, layer.options(), RNG.standard_normal((4, 8)))
    expected = stacking.point_calls(layer, TENSORS)
    assert expected == 1 + 2 + 1 + 3 * 3 + jumps.CALLS + jumps.HALF_CALLS  # and jumps.py's
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
