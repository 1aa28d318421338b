"""A loss whose kinks bend both ways at one point: ``sum_n G[n] max_j x[n, j] + sum relu(x @ W)``
with a row of zeros and a negative G there. Moving one zero of that row up makes it the row's
maximum (a kink lowering the slope by |G|) and turns relu units on (kinks raising it), so the
loss is not regular: a piece both one-sided moves miss (this zero the row's maximum, every unit
off) gives a value outside the two one-sided slopes. The right backward (each row's first
maximum, relu's 0 at 0: torch's) was called "wrong" there at the default budget, with a hint
blaming slopes it does not break (outside test t43a F4); an even split too.

Now a failure only at such kinks, each value within what the pieces touching the point may give
(numeric/nudged.py: Clarke's sum rule read along nudged lines), is "not verified", not a
mismatch; the wrong rules whose values leave that range (relu's slope 2 at 0, a value off by 5)
still fail as mismatches.

Oracle (hand): along x[2, j] of the zero row, the max's kink moves the slope by G[2] and each
relu unit h by |W[j, h]|; from the far left slope sum_h min(0, W[j, h]), the pieces give at most
the range [sum_h min(0, W[j, h]) + G[2], sum_h max(0, W[j, h])] (G[2] < 0)."""

from pathlib import Path

import numpy as np
import pytest

import gradcli

_X = [[2, 1, 1, 0, 0, 0], [0, 0, 0, 2, 1, 2], [0, 0, 0, 0, 0, 0]]  # halves; row 2 all zeros
_W = [[0, 2, -1, 2], [1, -2, -1, 2], [0, -2, 1, 1], [2, -2, -2, 2], [-2, 0, -2, -1],
      [0, 0, 0, -2]]  # fmt: skip
_G = np.array([0.7, 1.2, -0.64])


def _arrays():
    return np.array(_X, dtype=np.float64) / 2, np.array(_W, dtype=np.float64)


def _forward(x, W):
    return (_G * x.max(1)).sum() + np.maximum(x @ W, 0).sum()


def _backward_for(rule: str):
    def backward(grad_output, x, W):
        z = x @ W
        gz = (z > 0) + (2.0 * (z == 0) if rule == "slope2" else 0.0)
        tied = x == x.max(1, keepdims=True)
        if rule == "even":
            m = tied / tied.sum(1, keepdims=True)
        else:
            m = np.zeros_like(x)
            m[np.arange(x.shape[0]), x.argmax(1)] = 1
        dx = gz @ W.T + _G[:, None] * m
        if rule == "off":
            dx[2, 0] += 5.0
        return {"x": grad_output * dx, "W": grad_output * (x.T @ gz)}

    return backward


def _check(rule: str):
    x, W = _arrays()
    return gradcli.check(forward=_forward, backward=_backward_for(rule), tensors={"x": x, "W": W},
                         grad_output=1.0)  # fmt: skip


def _hand_box(j: int) -> tuple[float, float]:
    W = np.array(_W, dtype=np.float64)
    return np.minimum(W[j], 0).sum() + _G[2], np.maximum(W[j], 0).sum()


@pytest.mark.parametrize("rule", ["first", "even"])
def test_the_right_values_lie_in_the_hand_box_and_outside_the_one_sided_slopes(rule: str):
    """The premise, at x[2, 5] (W[5] = [0, 0, 0, -2]): moving it up makes it the row's maximum
    (G[2]), down turns unit 3 on (-2); the right values (0, G[2] / 6) lie beyond both."""
    x, W = _arrays()
    dx = _backward_for(rule)(1.0, x, W)["x"]
    lo, hi = _hand_box(5)
    assert lo <= dx[2, 5] <= hi
    e = np.zeros_like(x)
    e[2, 5] = 1e-7
    up = (_forward(x + e, W) - _forward(x, W)) / 1e-7
    down = (_forward(x, W) - _forward(x - e, W)) / 1e-7
    assert up == pytest.approx(_G[2]) and down == pytest.approx(-2.0)
    assert not min(up, down) <= dx[2, 5] <= max(up, down)


@pytest.mark.parametrize("j", [0, 5])
def test_the_nudged_box_holds_the_hand_box(j: int):
    """numeric/nudged.box reads the same range as the hand formula, and both signs."""
    from gradcli.numeric import kinks, nudged
    from gradcli.numeric.engine import Engine
    from gradcli.user import impl

    x, W = _arrays()
    layer = impl.user_layer(impl.Impl(Path("mine.py"), _forward, _backward_for("first")), None,
                            ("x", "W"))  # fmt: skip
    engine = Engine(layer, {"x": x, "W": W}, {}, np.ones(()))
    idx = np.array([2 * 6 + j])
    h = kinks.one_sided_step(engine, "x")[idx] / 4
    lo, hi, both = nudged.box(engine, "x", [idx], h)
    want = _hand_box(j)
    assert both[0]
    # (read at a point nudged by about a step: the slopes move by as much, relatively)
    assert lo[0] == pytest.approx(want[0], rel=1e-4, abs=1e-4)
    assert hi[0] == pytest.approx(want[1], rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("rule", ["first", "even"])
def test_right_rules_are_never_called_wrong(rule: str):
    r = _check(rule)
    x = r.results["x"]
    assert x.passed or x.unresolved, str(r)
    if not x.passed:
        assert "bending both ways" in x.unresolved, str(r)
        assert not any("neither side" in str(h) for h in x.hints), str(r)


@pytest.mark.parametrize("rule", ["slope2", "off"])
def test_the_twins_values_beyond_the_pieces_still_fail_as_mismatches(rule: str):
    r = _check(rule)
    assert not r.passed
    x = r.results["x"]
    assert not x.passed and not x.unresolved, str(r)
