"""A float64 output computed wholly in float16 is named float16 (outside test t45a N6).

``(x.astype(float16) @ W.astype(float16)).astype(float64)`` is blind to moves float32 cannot
hold, as float32 work is, and was named float32 with a measured round-off of 8e-5: its steps
(0.043) were float32's rule at that round-off. Its rounding is float16's, and so are its
steps now. Oracle: the forwards' construction. Twins: the same in float32, and a float64
forward of rounded inputs (np.round(x, 5): 5e-6), stay float32-sized."""

import numpy as np
import pytest

import gradcli

RNG = np.random.default_rng(1)  # (named float32 before at seeds 1-3; float16 at 0)
T = {"x": RNG.standard_normal((16, 32)), "W": 0.2 * RNG.standard_normal((32, 8))}


def _backward(grad_output, x, W):
    return {"x": grad_output @ W.T, "W": x.T @ grad_output}


def _notes(forward):
    r = gradcli.check("custom", T, forward=forward, backward=_backward)
    return " ".join(n for n in r.notes if n.startswith("your forward computes in"))


def test_float16_work_throughout_is_named_float16():
    note = _notes(lambda x, W: (x.astype(np.float16) @ W.astype(np.float16)).astype(np.float64))
    assert note.startswith("your forward computes in float16"), note


@pytest.mark.parametrize("forward", [
    lambda x, W: (x.astype(np.float32) @ W.astype(np.float32)).astype(np.float64),
    lambda x, W: np.round(x, 5) @ W,
])  # fmt: skip
def test_twins_coarser_than_float64_but_not_float16_stay_float32(forward):
    note = _notes(forward)
    assert note.startswith("your forward computes in float32"), note
