"""A note is said once, however many stages reach it (outside retest t22 N6: --mode sample
printed a max-pool's tie note twice on stderr). Twin: a full check says it too."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import gradcli

FIXTURES = Path(__file__).parent / "fixtures"
X = np.load(FIXTURES / "t22" / "pool_X.npy")  # integer-valued: ties in most windows
_spec = importlib.util.spec_from_file_location("student_layers_notes",
                                               FIXTURES / "cs231n" / "layers.py")  # fmt: skip
STUDENT = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(STUDENT)


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
                      forward=STUDENT.max_pool_forward_naive,
                      backward=max_pool_backward_naive)  # fmt: skip
    assert not r.passed
    notes = list(r.check.notes)
    assert notes and len(notes) == len(set(notes)), notes
