"""``relu(x + b) @ W`` with ``b`` still at its zero start on zero-background inputs: the two
inputs of each unit, ``x[n, j]`` and ``b[j]``, must take one piece, the same in both tensors.

Past 1,024 tied coordinates the moves that hold every tie still were not sought at all, and dx
from a mask ``>= 0`` with db from ``> 0`` passed on 8 digits' 5,196 zeros (outside test t48a
F1). Now ``x[:, j]`` is moved against ``b[j]`` (numeric/balance.py ``_aligned``). Oracle: along
(+1 on every x[:, j], -1 on b[j]) ``x + b`` does not move, so the loss is constant there and a
valid gradient's sum along it is that of the smooth parts, 0 here; the mixed masks give sum_n
c[n, j] (c = g W^T), torch's own rule (0 for both) 0."""

import numpy as np
import pytest

import gradcli


def _case():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 200))
    x[rng.random(x.shape) < 0.9] = 0.0  # 895 zeros, with b's 200: past 1,024 (6 rows: 1,272)
    assert (x == 0).sum() + (x == 0).any(axis=0).sum() == 1095  # b[j] tied where x[:, j] is 0
    return {"x": x, "b": np.zeros(200), "W": 0.2 * rng.standard_normal((200, 4))}


def _forward(x, b, W):
    return np.maximum(x + b, 0) @ W


def _backward(mask_x, mask_b):
    def backward(grad_output, x, b, W):
        z = x + b
        c = grad_output @ W.T
        return {"x": c * mask_x(z), "b": (c * mask_b(z)).sum(axis=0),
                "W": np.maximum(z, 0).T @ grad_output}

    return backward


def _gt(z):
    return z > 0


def _ge(z):
    return z >= 0


def test_one_piece_for_both_inputs_passes():  # torch's (the >= rule goes the same way)
    r = gradcli.check("custom", _case(), forward=_forward, backward=_backward(_gt, _gt))
    assert r.passed, r.verdict()


def test_twin_the_two_inputs_of_a_unit_given_different_masks_fail():
    r = gradcli.check("custom", _case(), forward=_forward, backward=_backward(_ge, _gt))
    assert not r.passed
    assert "not match (dx, db)" in r.verdict(), r.verdict()


_SMALL = {"x": np.array([[0.5, 0.0, 0.0], [0.5, 0.0, 0.0]]), "b": np.zeros(3),
          "W": np.array([[0.5, -1.0], [1.5, 0.7], [-0.8, 1.2]])}  # fmt: skip


def test_two_rows_of_a_small_layer_are_moved_against_the_bias_too():
    """Below 1,024 tied coordinates the null space's random moves missed it: x of two rows
    each zero at units 1 and 2, b = 0, dx from ``> 0`` and db from ``>= 0`` passed (outside
    test t49a F3: db[1] -5.34 along b[1] up, x[:, 1] down, where the loss is flat)."""
    wrong = gradcli.check("custom", _SMALL, forward=_forward, backward=_backward(_gt, _ge),
                          seed=3)  # the tester's upstream gradient
    assert "not match (dx, db)" in wrong.verdict(), wrong.verdict()
    right = gradcli.check("custom", _SMALL, forward=_forward, backward=_backward(_gt, _gt),
                          seed=3)
    assert right.passed, right.verdict()


def _sampled_case(shape=(8, 300)):
    """Quantized inputs with 80% zeros: at ``budget=1`` the check samples 64 coordinates per
    tensor, and the sample's ties through ``b[j]`` span rows it did not draw."""
    rng = np.random.default_rng(0)
    x = np.round(rng.random(shape) * 4) / 4
    x[rng.random(x.shape) < 0.8] = 0.0
    return {"x": x, "b": np.zeros(shape[-1]), "W": 0.05 * rng.standard_normal((shape[-1], 10))}


@pytest.mark.parametrize("mask_x, mask_b", [(_ge, _gt), (_gt, _ge)], ids=["dx>=", "db>="])
def test_a_sample_moves_every_row_of_a_column_against_the_bias(mask_x, mask_b):
    """Sampled, the ties' other rows lay outside the sample: ``b[j]`` moved against the drawn
    ``x[n, j]`` alone crossed their kinks, nothing was judged, and the mixed masks passed with a
    note (t48a F1 at ``--budget 1``). Every ``x[:, j]`` now moves, drawn or not
    (numeric/balance.py ``_whole``); oracle as above."""
    r = gradcli.check("custom", _sampled_case(), forward=_forward,
                      backward=_backward(mask_x, mask_b), budget=1)  # fmt: skip
    assert r.check.mode == "sample"
    assert not r.passed
    assert "not match (dx, db)" in r.verdict(), r.verdict()


def test_twin_a_sample_of_one_piece_for_both_inputs_passes():
    r = gradcli.check("custom", _sampled_case(), forward=_forward,
                      backward=_backward(_gt, _gt), budget=1)  # fmt: skip
    assert r.check.mode == "sample"
    assert r.passed, r.verdict()


_U = np.random.default_rng(5).standard_normal((4, 5, 5, 16))


def _channels(X, b):  # a conv's bias, channel-last: relu(X + b) weighed by _U
    return np.maximum(X + b, 0) * _U


@pytest.mark.parametrize("mixed", [False, True])
def test_a_sampled_channel_last_bias_takes_the_rule_of_its_input(mixed):
    rng = np.random.default_rng(1)
    X = np.round(rng.random((4, 5, 5, 16)) * 4) / 4
    X[rng.random(X.shape) < 0.7] = 0.0

    def backward(grad_output, X, b):
        z, c = X + b, grad_output * _U
        return {"X": c * (z > 0), "b": (c * ((z >= 0) if mixed else (z > 0))).sum((0, 1, 2))}

    r = gradcli.check("custom", {"X": X, "b": np.zeros(16)}, forward=_channels,
                      backward=backward, budget=1)  # fmt: skip
    assert r.check.mode == "sample"
    assert r.passed is not mixed, r.verdict()




def test_a_forced_sample_of_mixed_masks_fails_without_an_internal_error():
    """A forced sample has no budget: a crowd got infinite seconds, and ``int(inf)`` in its
    bounding moves (numeric/crowds.py ``_boxed``) stopped the check, exit 3, after 13 s
    (outside test t51a F2: relu(x + b) @ W, x 8x6 of small integers with zero rows and a zero
    column, b = 0, dx from ``> 0`` and db from ``>= 0``; here 5x4)."""
    rng = np.random.default_rng(4)
    x = rng.integers(-2, 3, (5, 4)).astype(float)
    x[[1, 3]] = 0.0
    x[:, 2] = 0.0
    tensors = {"x": x, "b": np.zeros(4), "W": rng.standard_normal((4, 3))}
    r = gradcli.check("custom", tensors, forward=_forward, backward=_backward(_gt, _ge),
                      mode="sample")  # fmt: skip
    assert not r.passed and "not match" in r.verdict(), r.verdict()
