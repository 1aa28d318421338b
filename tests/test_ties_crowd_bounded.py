"""A crowd of ties whose mix would take a least squares over hundreds of pieces.

A numpy 3 x 3 max-pool of stride 1 over small integers, every tied maximum given the
gradient: its ties join into crowds, and each piece read added columns to a least squares
that grows as their fourth power (409 columns took 6 s a call): 5 minutes at --budget 0.3,
unfinished after 22 at 3 (outside test t42a F3). Past MIX_COLUMNS no mix is fitted: the even
mix of the pieces read stands in, and the crowd's own reading decides. Twins: the wrong rule
still fails with the cap, the right one passes.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.numeric import pieces


def _pool(x, k=3):
    N, C, H, W = x.shape
    out = np.empty((N, C, H - k + 1, W - k + 1))
    for i in range(H - k + 1):
        for j in range(W - k + 1):
            out[:, :, i, j] = x[:, :, i:i + k, j:j + k].max(axis=(2, 3))
    return out


def _backward(every):
    def backward(grad_output, x, k=3):
        N, C, H, W = x.shape
        dx = np.zeros_like(x)
        for i in range(H - k + 1):
            for j in range(W - k + 1):
                win = x[:, :, i:i + k, j:j + k].reshape(N, C, -1)
                g = grad_output[:, :, i, j][:, :, None]
                if every:
                    m = (win == win.max(axis=2, keepdims=True)).astype(float)
                else:
                    m = np.zeros_like(win)
                    np.put_along_axis(m, win.argmax(2)[:, :, None], 1.0, axis=2)
                dx[:, :, i:i + k, j:j + k] += (m * g).reshape(N, C, k, k)
        return {"x": dx}

    return backward


def _x():
    # one 5 x 5 channel: its crowds read 21 pieces, a 21-column least squares uncapped, past
    # the cap of 6 below (two 6 x 6 channels read 109 and took 12 s; the mechanism is one)
    return np.random.default_rng(0).integers(0, 3, (1, 1, 5, 5)).astype(float)


def test_past_the_cap_no_least_squares_runs_and_the_wrong_rule_fails(monkeypatch):
    monkeypatch.setattr(pieces, "MIX_COLUMNS", 6)

    def refused(A, b):
        assert A.shape[1] <= pieces.MIX_COLUMNS, A.shape
        return _nnls(A, b)

    _nnls, inside, capped = pieces.nnls, pieces._inside, []

    def counted(found, *args):
        capped.append(len(found))
        return inside(found, *args)

    monkeypatch.setattr(pieces, "nnls", refused)
    monkeypatch.setattr(pieces, "_inside", counted)
    wrong = gradcli.check("custom", {"x": _x()}, forward=_pool, backward=_backward(True))
    assert not wrong.passed, wrong.verdict()
    assert max(capped) > pieces.MIX_COLUMNS  # the crowds read past the cap


@pytest.mark.parametrize("cap", [6, None])
def test_twin_the_right_rule_still_passes(monkeypatch, cap):
    if cap is not None:
        monkeypatch.setattr(pieces, "MIX_COLUMNS", cap)
    right = gradcli.check("custom", {"x": _x()}, forward=_pool, backward=_backward(False))
    assert right.passed, right.verdict()


def test_the_even_mix_stands_in_past_the_cap(monkeypatch):
    """_inside over more distinct pieces than MIX_COLUMNS: the pieces' even mix, no fit."""
    monkeypatch.setattr(pieces, "MIX_COLUMNS", 3)
    monkeypatch.setattr(pieces, "nnls", lambda A, b: pytest.fail("a fit past the cap"))
    k = 2
    found = [(np.array([0]), np.array([[float(i)], [1.0]])) for i in range(5)]  # 5 distinct
    mix = pieces._inside(found, np.zeros(k), np.array([2.0, 1.0]), np.full(k, 1e-9), 1e-6)
    np.testing.assert_allclose(mix.values, [2.0, 1.0])
    assert mix.inside
    off = pieces._inside(found, np.zeros(k), np.array([9.0, 1.0]), np.full(k, 1e-9), 1e-6)
    assert not off.inside
