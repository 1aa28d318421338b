"""A max-pool backward that pads X with 0 where -inf belongs: a border window of negative values
gives its gradient to the padding. Its hint named 'a statement that writes those elements
alone' (outside test t34a F5); it names the padding now. Twin: the right backward passes with
no hint, and without padding no such cause is offered."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

OPTIONS = {"size": 2, "stride": 2, "padding": 1}


def _pool(fill: float):
    def forward(X, size=2, stride=None, padding=0):
        Xp = np.pad(X, [(0, 0)] * (X.ndim - 3) + [(padding, padding)] * 2 + [(0, 0)],
                    constant_values=-np.inf)
        H, W = Xp.shape[-3] // 2, Xp.shape[-2] // 2
        return Xp.reshape(*Xp.shape[:-3], H, 2, W, 2, Xp.shape[-1]).max(axis=(-4, -2))

    def backward(grad_output, X, size=2, stride=None, padding=0):
        Xp = np.pad(X, [(0, 0)] * (X.ndim - 3) + [(padding, padding)] * 2 + [(0, 0)],
                    constant_values=fill)
        dXp = np.zeros(Xp.shape)
        for i in range(grad_output.shape[-3]):
            for j in range(grad_output.shape[-2]):
                for c in range(Xp.shape[-1]):
                    win = Xp[2 * i:2 * i + 2, 2 * j:2 * j + 2, c]
                    m, q = np.unravel_index(int(np.argmax(win)), (2, 2))
                    dXp[2 * i + m, 2 * j + q, c] += grad_output[i, j, c]
        return {"X": dXp[padding:-padding, padding:-padding]}

    return forward, backward


def _X():
    X = np.random.default_rng(3).standard_normal((6, 6, 2))
    X[:2, :2] = -np.abs(X[:2, :2]) - 0.1  # a corner window of negative values
    return X


def _causes(report):
    return [getattr(h, "cause", None) for h in report.results["X"].hints]


@pytest.mark.parametrize("fill", [0.0, -np.inf])
def test_zero_padding_is_named(fill):
    forward, backward = _pool(fill)
    r = gradcli.check("maxpool2d", {"X": _X()}, options=OPTIONS, forward=forward,
                      backward=backward)
    if fill == 0.0:
        assert not r.passed and "maxpool:zero-padding" in _causes(r), _causes(r)
    else:
        assert r.passed and not r.results["X"].hints


def test_without_padding_no_such_cause():
    from gradcli.layers.maxpool2d import variants

    X = _X()
    assert "maxpool:zero-padding" not in variants({"X": X}, None, np.ones((3, 3, 2)))
    assert "maxpool:zero-padding" in variants({"X": X}, gradcli_options(), np.ones((4, 4, 2)))


def gradcli_options():
    from gradcli.layers.maxpool2d import Options

    return Options(**OPTIONS)
