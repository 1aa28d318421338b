"""The check's own exploratory moves never turn a forward's overflow far off into a refusal
(outside test t44b F4).

``exp(x) @ W`` at x up to 26.6 is finite at the spec's tensors and a step from them. Reading
whether the default step swallowed a coordinate whose slope is 5e-12 (x = -20.4) under a loss
rounded at 3e-5, the check moved it 2^40 steps, to x = 1.7e8, where the forward overflowed,
and a right backward was refused with exit 2 as "forward returned -inf ... at the spec's
tensors or a finite-difference step from them". Oracle: the backward is exp(x) (g W^T) and
exp(x)^T g, exactly the chain rule of the forward; the twin (exp(x) dropped from dx) fails."""

from __future__ import annotations

import numpy as np

import gradcli

X = np.array([
    [16.32735297108146, -20.445320250513454, 3.344790773806231, -4.5421568490234385,
     -3.621194336883567, -1.7247773047181272],
    [-16.159889033178008, -1.8554590211535158, -6.921704610199534, 26.58399613315906,
     1.806292905823374, -2.821046354732763],
    [-2.250299345210803, -5.344370768871601, -8.44120440964097, -3.126407817877238,
     3.855563108054287, -1.9084288525869335],
    [7.6620696236781125, -1.59841703253264, 0.19407652061331698, 12.366566809702496,
     4.3608441815011565, -4.041829884912144]])  # fmt: skip
W = np.array([
    [-0.1828389745977349, 0.5405251317548021, 1.9350880340988528],
    [-0.2696203273419135, -0.24355867907910456, 1.0023136012756912],
    [-0.8864599431605871, -0.291720232439864, 0.8825389674564839],
    [0.5803500161908991, 0.09151670328235219, 0.6701043548284794],
    [-2.8281623068437627, 1.02130681750008, -0.9596447598081417],
    [-1.6686198426559695, 0.27644575952099965, 0.7005448853493901]])  # fmt: skip


def forward(x, W):
    return np.exp(x) @ W


def backward(grad_output, x, W):
    return {"x": np.exp(x) * (grad_output @ W.T), "W": np.exp(x).T @ grad_output}


def test_a_right_layer_is_never_refused_for_where_the_check_moved_it():
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": X, "W": W})
    for res in r.results.values():  # (the loss's rounding may leave some unresolvable)
        assert res.passed or res.unresolved, r.verdict()


def test_the_twin_a_wrong_dx_still_fails():
    def wrong(grad_output, x, W):
        return {"x": grad_output @ W.T, "W": np.exp(x).T @ grad_output}

    r = gradcli.check(forward=forward, backward=wrong, tensors={"x": X, "W": W})
    assert not r.results["x"].passed and not r.results["x"].unresolved, r.verdict()
