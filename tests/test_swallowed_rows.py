"""A coordinate too small for its outputs to show at all is unresolved, not wrong (outside
test t45a F4).

``exp(x) @ W`` at x ~ 60 N(0, 1): a row holding e^117 beside a term of e^50 moves its outputs
by 1e17 at the default step, far below their last bit (1e35), and by nothing even 2^16 steps
out (one side) or either side: every difference read 0, and a right dx of 2e21 was called
"does not match" while dW, whose moves show, was "cannot resolve". Oracle: the formula's
derivative, exp(x) times the upstream gradient through W (torch agrees to the last bit:
t45a's files). Twins: a wrong dW in the same run, a 1% slip at moderate x, and a flat piece
(a relu's dead input given a slope) still "do not match"."""

import numpy as np

import gradcli

RNG = np.random.default_rng(3)
CASES = ((1, 100.0), (2, 60.0), (5, 100.0))  # (seed, scale): 'does not match (dx)' before


def _exp_mm(scale_dx=1.0, dW_wrong=False):
    def forward(x, W):
        return np.exp(x) @ W

    def backward(grad_output, x, W):
        dW = x.T @ grad_output if dW_wrong else np.exp(x).T @ grad_output
        return {"x": scale_dx * (grad_output @ W.T) * np.exp(x), "W": dW}

    return forward, backward


def _data(scale, seed=None):
    rng = RNG if seed is None else np.random.default_rng(seed)
    return {"x": scale * rng.standard_normal((8, 6)), "W": rng.standard_normal((6, 4))}


def _check(t, fb, g=None):
    forward, backward = fb
    return gradcli.check("custom", t, forward=forward, backward=backward, grad_output=g)


def test_elements_no_move_shows_are_unresolved_and_a_wrong_dW_beside_them_fails():
    for seed, scale in CASES:
        right = _check(_data(scale, seed), _exp_mm())
        assert not right.passed
        assert right.results["x"].unresolved, (seed, right.verdict())
        assert "does not match" not in right.verdict()
    wrong = _check(_data(*CASES[0][::-1]), _exp_mm(dW_wrong=True))
    assert "does not match (dW)" in wrong.verdict()


def test_twin_a_slip_at_moderate_inputs_and_a_flat_piece_given_a_slope_still_fail():
    t = _data(1.0)
    assert "does not match (dx)" in _check(t, _exp_mm(scale_dx=1.01)).verdict()
    x = RNG.standard_normal((4, 6))
    x[0] = 300.0  # a row of huge outputs beside dead inputs in the other rows
    W = RNG.standard_normal((6, 3))

    def forward(x, W):
        return np.maximum(x, 0) @ W

    def no_mask(grad_output, x, W):
        return {"x": grad_output @ W.T, "W": np.maximum(x, 0).T @ grad_output}

    r = gradcli.check("custom", {"x": x, "W": W}, forward=forward, backward=no_mask)
    assert "does not match (dx)" in r.verdict(), r.verdict()


def _some_rows_huge(seed=0):
    """Half the rows hold e^60 ... e^100 in their first three columns, the rest N(0, 1): an
    ordinary element of a huge row moves its outputs 29 orders below their last bit, and an
    element of 64 beside one of 94 moves them by a fifth of it (outside test t47a F3)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 8))
    x[:3, :3] = rng.uniform(60, 100, size=(3, 3))
    return {"x": x, "W": rng.standard_normal((8, 5))}


def _rows_from(row, scale=2.0):
    def backward(grad_output, x, W):
        dx = (grad_output @ W.T) * np.exp(x)
        dx[row:] *= scale
        return {"x": dx, "W": np.exp(x).T @ grad_output}

    return _exp_mm()[0], backward


def test_only_some_huge_rows_leave_a_right_dx_unresolved_not_wrong():
    for seed in (6, 0):  # 6: dx[0, 5] 'numeric 0', and an element of 64 'confirmed' 2x off
        r = _check(_some_rows_huge(seed), _exp_mm())
        assert "does not match" not in r.verdict(), (seed, r.verdict())
        assert "cannot resolve dx" in r.verdict(), (seed, r.verdict())


def test_twin_a_wrong_dx_in_ordinary_rows_fails_and_is_shown_there():
    # (seed 0's ordinary rows are 'cannot resolve' as a whole: a forward of yours may move
    # the huge rows' outputs below their last bit from anywhere, and there a wrong value of
    # 1e29 would hide; seed 1's are read clear of it)
    t = _some_rows_huge(1)
    r = _check(t, _rows_from(3))
    assert "does not match (dx)" in r.verdict(), r.verdict()
    worst = r.results["x"].worst_index
    assert worst[0] >= 3, worst  # not an element of a huge row read at its round-off
    assert any("left out of the comparison" in n for n in r.notes), r.notes
    # a wrong value where the outputs do show it: the huge rows' own largest elements
    r = _check(t, _rows_from(0, 1.01))
    assert "does not match (dx)" in r.verdict(), r.verdict()
