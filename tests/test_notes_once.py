"""A note is said once, however many stages reach it (outside retest t22 N6: --mode sample
printed a max-pool's tie note twice on stderr). Twin: a full check says it too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gradcli

X = np.load(Path(__file__).parent / "fixtures" / "t22" / "pool_X.npy")  # integer-valued ties


def max_pool_forward_naive(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    n, c, h, w = x.shape
    out = np.zeros((n, c, 1 + (h - ph) // s, 1 + (w - pw) // s), dtype=x.dtype)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = x[:, :, i * s:i * s + ph, j * s:j * s + pw].max(axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache):  # every tied maximum gets the gradient: wrong
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            win = x[:, :, i * s:i * s + ph, j * s:j * s + pw]
            top = win.max(axis=(2, 3), keepdims=True)
            dx[:, :, i * s:i * s + ph, j * s:j * s + pw] += (win == top) * dout[:, :, i:i + 1,
                                                                                  j:j + 1]
    return dx


@pytest.mark.parametrize("mode", ["sample", "full"])
def test_each_note_once(mode):
    r = gradcli.check("maxpool2d", {"X": X}, mode=mode,
                      forward=max_pool_forward_naive, backward=max_pool_backward_naive)  # fmt: skip
    assert not r.passed
    notes = list(r.check.notes)
    assert notes and len(notes) == len(set(notes)), notes
