"""More than pieces.LARGE equal values that do not interact (outside test t23 F6): relu's slope
at 0 taken as 1.5 over 300 zeros of an elementwise ``maximum(x, 0)`` was 'not verified at
ties of more than 4 interacting equal values (your tie rule was not judged)', with no numbers,
beside 'checked one-sidedly' for the same coordinates. The zeros do not interact (each moves
its own output only), so each one's own one-sided slopes are its derivative's pieces: the
slope fails as computed, and every slope in [0, 1] passes.

Oracle: relu's one-sided slopes at 0 by hand, 0 and 1 times the upstream gradient: a slope s
at 0 is valid exactly when 0 <= s <= 1."""

import numpy as np
import pytest

import gradcli
from gradcli.numeric.pieces import LARGE


@pytest.mark.parametrize("slope", [0.0, 0.5, 1.0, 1.5, -0.5])
def test_a_relu_slope_at_many_zeros_that_do_not_interact_is_compared(slope):
    rng = np.random.default_rng(4)
    x = rng.integers(-1, 2, size=(24, 16)).astype(float)
    x[rng.random(x.shape) < 0.6] = 0.0  # 276 zeros among 384: just past LARGE, 108 not tied
    assert np.count_nonzero(x == 0) > LARGE  # a value shared past what is read as a tie
    g = rng.normal(size=x.shape)

    def forward(x):
        return np.maximum(x, 0)

    def backward(grad_output, x):
        return {"x": grad_output * ((x > 0) + slope * (x == 0))}

    r = gradcli.check(forward=forward, backward=backward, tensors={"x": x}, grad_output=g)
    valid = 0.0 <= slope <= 1.0
    assert r.passed == valid, str(r)
    assert not r.results["x"].ties_unverified, str(r)
    if not valid:
        assert "does not match" in r.verdict() and "not verified" not in r.verdict(), str(r)
