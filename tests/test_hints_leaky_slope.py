"""A relu backward keeping a leaky slope (0.01 g where x < 0) read 'a mask left out of dx'
(outside test t67b F5): far smaller there than elsewhere, it is said to be a slope left where
the mask gives 0. The twin: no mask at all is still a mask left out."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def _forward(x):
    return np.maximum(x, 0)


@pytest.mark.parametrize(("slope", "said"), [(0.01, "a small slope left in dx"),
                                             (1.0, "a mask left out of dx")])
def test_a_leaky_slope_is_not_a_mask_left_out(slope, said):
    x = np.random.default_rng(0).standard_normal((4, 6))

    def backward(grad_output, x):
        return {"x": grad_output * np.where(x > 0, 1.0, slope)}

    r = gradcli.check("custom", {"x": x}, forward=_forward, backward=backward)
    hints = [str(h) for h in r.results["x"].hints]
    assert not r.passed and any(said in h for h in hints), hints
    other = "a mask left out of dx" if slope < 1 else "a small slope left"
    assert not any(other in h for h in hints), hints
