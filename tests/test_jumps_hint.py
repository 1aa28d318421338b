"""A forward that jumps (a floor at an integer) has no derivative there: its central
difference, the jump over 2h, was quoted as a gradient ('numeric 209884') with the hint of a
missing term (outside test t38b N6). The kink detector reads a side whose change stays as its
step halves, and the hint says the forward jumps there. Twins: a kink (relu's slope 2 at 0)
and a smooth bug get no such hint; a backward wrong away from the jumps still fails.
"""

from __future__ import annotations

import json

import numpy as np

import gradcli


def _x():
    x = np.random.default_rng(0).normal(size=(4, 5)) * 3
    x[0, 1], x[2, 3] = 2.0, -1.0
    return x


def _hints(r, name="x"):
    return [h for h in json.loads(r.to_json())["results"][name]["hints"]]


def test_a_floor_at_integers_is_said_to_jump_there():
    r = gradcli.check("custom", {"x": _x()}, forward=np.floor,
                      backward=lambda grad_output, x: {"x": np.zeros_like(x)})  # fmt: skip
    assert not r.passed
    hints = _hints(r)
    assert [h["cause"] for h in hints] == ["jump"], hints
    assert "your forward jumps at x[0, 1] (and 1 more)" in hints[0]["text"]
    assert "missing" not in hints[0]["text"]


def test_twin_a_wrong_backward_away_from_the_jumps_still_fails_and_is_named():
    def backward(grad_output, x):
        d = np.zeros_like(x)
        d[3, 4] = 1.0
        return {"x": grad_output * d}

    r = gradcli.check("custom", {"x": _x()}, forward=np.floor, backward=backward)
    assert not r.passed
    causes = [h["cause"] for h in _hints(r)]
    assert "jump" in causes  # said, beside what else fails
    assert tuple(r.results["x"].worst_index) == (3, 4), r.verdict()


def test_twin_a_kink_is_no_jump():
    x = _x()
    x[1, 2] = 0.0
    r = gradcli.check("custom", {"x": x}, forward=lambda x: np.maximum(x, 0),
                      backward=lambda grad_output, x: {"x": grad_output * (
                          (x > 0) + 2.0 * (x == 0))})  # fmt: skip
    assert not r.passed
    assert all(h["cause"] != "jump" for h in _hints(r)), _hints(r)


def test_twin_a_smooth_bug_is_no_jump():
    r = gradcli.check("custom", {"x": _x()}, forward=np.tanh,
                      backward=lambda grad_output, x: {"x": grad_output * (1 - np.tanh(x))})
    assert not r.passed
    assert all(h["cause"] != "jump" for h in _hints(r))


def test_twin_a_steep_continuous_forward_is_no_jump():
    """tanh(1e7 x) at x ~ 1e-7 moves alike at the detector's two steps (both far beyond its
    feature scale), and was called a jump (outside test t41a F1); read again 65,536 times
    closer, it moves far less: no jump hint, whatever the verdict."""
    x = np.random.default_rng(2).normal(size=(6, 6)) * 1e-7
    for backward in (lambda grad_output, x: {"x": grad_output * 1e7 * (1 - np.tanh(1e7 * x) ** 2)},
                     lambda grad_output, x: {"x": grad_output * 1e7 * (1 - np.tanh(1e7 * x))}):
        r = gradcli.check("custom", {"x": x}, forward=lambda x: np.tanh(1e7 * x),
                          backward=backward)  # fmt: skip
        if not r.passed:
            assert all(h["cause"] != "jump" for h in _hints(r)), _hints(r)


def test_a_jump_beside_a_slope_is_said_to_jump_not_read_as_round_off():
    """0.5 sign(x) + x at exact zeros: each side moves by the jump, and the round-off measured
    on the line through x read the jump as rounding ('cannot resolve ... round-off', outside
    test t41a N1). Rounding is no larger at x than beside it: the line beside x decides."""
    x = _x()
    x[1, 2] = x[3, 0] = 0.0
    r = gradcli.check("custom", {"x": x}, forward=lambda x: 0.5 * np.sign(x) + x,
                      backward=lambda grad_output, x: {"x": grad_output})  # fmt: skip
    assert not r.passed and not r.results["x"].unresolved, r.verdict()
    hints = _hints(r)
    assert hints[0]["cause"] == "jump", hints
    assert "your forward jumps at x[1, 2] (and 1 more)" in hints[0]["text"]


def test_twin_rounding_of_far_larger_numbers_still_cannot_be_resolved():
    """The measured round-off it was made for: x - mean at |x| = 1e11, whose outputs carry
    the rounding of the 1e11 at every point of the line, beside x as through it."""
    x = 1e11 + np.random.default_rng(3).normal(size=(3, 4))

    def forward(x):
        return (x - x.mean(axis=-1, keepdims=True)) ** 2

    def backward(grad_output, x):
        d = x - x.mean(axis=-1, keepdims=True)
        gd = 2 * d * grad_output
        return {"x": gd - gd.mean(axis=-1, keepdims=True)}

    r = gradcli.check("custom", {"x": x}, forward=forward, backward=backward)
    assert all(h["cause"] != "jump" for h in _hints(r)), _hints(r)
    assert r.passed or r.results["x"].unresolved, r.verdict()


def _quantized(shape=(16, 16)):
    """x with three elements at a half-step of round(4x)/4, among many failing elements."""
    x = np.random.default_rng(0).normal(size=shape)
    x[0, 5], x[2, 8], x[4, 13] = 0.125, 0.375, -0.625
    return x


def test_a_straight_through_round_gets_the_jump_not_a_made_up_scale():
    """A straight-through backward (g) of round(4x)/4 fails everywhere; its 3 jumps, numeric
    3e4 among 253 zeros, were left unexamined by the screen of the worst and read as 'a scale
    3.05e-05' (the step over the jump: outside test t41a N3). The screen takes the largest
    numeric values too, and the patterns fit what is not a jump."""
    r = gradcli.check("custom", {"x": _quantized()}, forward=lambda x: np.round(4 * x) / 4,
                      backward=lambda grad_output, x: {"x": grad_output})  # fmt: skip
    assert not r.passed
    hints = _hints(r)
    assert hints[0]["cause"] == "jump" and "x[0, 5] (and 2 more)" in hints[0]["text"], hints
    assert not any("scale" in h["text"] for h in hints), hints


def test_twin_a_real_scale_beside_the_jumps_is_still_named():
    r = gradcli.check("custom", {"x": _quantized()},
                      forward=lambda x: np.round(4 * x) / 4 + 2 * x,
                      backward=lambda grad_output, x: {"x": 4 * grad_output})  # fmt: skip
    assert not r.passed
    hints = _hints(r)
    assert any("= 2 x numeric" in h["text"] for h in hints), hints
