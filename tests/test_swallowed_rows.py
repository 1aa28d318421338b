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
