"""Outside test t12 (F6): the Python API ran numpy's OpenBLAS on all its threads, which on a
busy machine spin waiting for each other (a check at 11x its estimated CPU, 8x its budget in
wall time). An API call runs BLAS on one thread, as the command line does, and puts the
caller's count back afterwards; a count the caller chose (OPENBLAS_NUM_THREADS ...) is left."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli
from gradcli.api import blas

T = {"x": np.linspace(-1, 1, 12).reshape(3, 4), "W": np.linspace(0.5, -0.5, 8).reshape(2, 4)}


@pytest.fixture
def two_threads(monkeypatch):
    """The caller's process as a plain ``import numpy`` leaves it: no count chosen, two threads."""
    if blas.handle() is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS gradcli can find")
    for var in blas.CHOSEN:
        monkeypatch.delenv(var, raising=False)
    get, set_ = blas.handle()
    before = get()
    set_(2)
    yield get
    set_(before)


def _seen(get):
    """A linear layer of the user's that records the BLAS threads its forward ran with."""
    seen = []

    def forward(x, W):
        seen.append(get())
        return x @ W.T

    def backward(grad_output, x, W):
        return {"x": grad_output @ W, "W": grad_output.T @ x}

    return seen, {"forward": forward, "backward": backward}


def test_an_api_call_runs_blas_on_one_thread_and_puts_the_callers_count_back(two_threads):
    seen, layer = _seen(two_threads)
    assert gradcli.check(tensors=T, **layer).passed
    assert set(seen) == {1} and two_threads() == 2
    gradcli.compute("linear", T)  # gradcli's own layers only: the same
    assert two_threads() == 2


def test_a_count_the_caller_chose_is_left(two_threads, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    seen, layer = _seen(two_threads)
    assert gradcli.check(tensors=T, **layer).passed
    assert set(seen) == {2} and two_threads() == 2
