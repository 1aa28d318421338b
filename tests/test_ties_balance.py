"""Ties of pre-activations computed by a matmul, held still (numeric/balance.py): a custom
``relu(x @ W + b)`` at a unit exactly at 0, or a maxout ``maximum(x @ W1, x @ W2)`` at a tied
unit, whose backward takes one tensor's gradient from one tie rule and another's from another
(``dx`` from ``a > 0``, ``db`` from ``a >= 0``; ``dx`` routed to branch 1, ``dW`` to branch 2)
passed as verified, or as "ties_unverified": each coordinate, each tie's sum and each link lie
within their one-sided slopes. Every rule used by all tensors alike passes (torch's, the other
strict or loose one, half to each branch), every mix fails.

Oracle (numpy only, independent of gradcli's reading): a valid gradient is the gradient with
every tied unit given some slope s in [0, 1], shared by every tensor, so it lies in the affine
span of ``base + A s`` (A's columns: each tied unit's share); an answer off that span (least
squares residual > 0) is no valid gradient. At the one-unit specs the direction that shows it is
written by hand too: the loss's two one-sided slopes along it agree, the answer's ``G . v`` does
not."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import gradcli

# one unit of row 0 at relu's kink (1 - 1 + 0), row 1 smooth
_TINY_RELU = {"x": np.array([[1.0, -1.0], [0.5, 2.0]]), "W": np.array([[1.0], [1.0]]),
              "b": np.array([0.0])}  # fmt: skip
# row 0: x @ W1 == x @ W2 == 1, row 1 smooth
_TINY_MAXOUT = {"x": np.array([[1.0, 1.0], [0.5, -2.0]]), "W1": np.array([[1.0], [0.0]]),
                "W2": np.array([[0.0], [1.0]])}  # fmt: skip


def _relu_layer(mx: str, mw: str, mb: str):
    """relu(x @ W + b) whose backward takes dx, dW, db from the masks ``a > 0`` or ``a >= 0``."""
    masks = {">": lambda a: (a > 0) * 1.0, ">=": lambda a: (a >= 0) * 1.0}

    def forward(x, W, b):
        return np.maximum(x @ W + b, 0)

    def backward(grad_output, x, W, b):
        a = x @ W + b
        g = grad_output
        return {"x": (g * masks[mx](a)) @ W.T, "W": x.T @ (g * masks[mw](a)),
                "b": (g * masks[mb](a)).sum(0)}  # fmt: skip

    return forward, backward


_RULES = {  # a tie's share to branch 1 (branch 2 takes the rest, or its own share)
    "first": (lambda a1, a2: (a1 >= a2) * 1.0, lambda a1, a2: (a1 < a2) * 1.0),
    "second": (lambda a1, a2: (a1 > a2) * 1.0, lambda a1, a2: (a1 <= a2) * 1.0),
    "half": (lambda a1, a2: (a1 > a2) + 0.5 * (a1 == a2),
             lambda a1, a2: (a2 > a1) + 0.5 * (a1 == a2)),
    "both": (lambda a1, a2: (a1 >= a2) * 1.0, lambda a1, a2: (a2 >= a1) * 1.0),
    "none": (lambda a1, a2: (a1 > a2) * 1.0, lambda a1, a2: (a2 > a1) * 1.0),
}


def _maxout_layer(dx_rule: str, dw_rule: str):
    def forward(x, W1, W2):
        return np.maximum(x @ W1, x @ W2)

    def backward(grad_output, x, W1, W2):
        a1, a2, g = x @ W1, x @ W2, grad_output
        x1, x2 = (r(a1, a2) for r in _RULES[dx_rule])
        w1, w2 = (r(a1, a2) for r in _RULES[dw_rule])
        return {"x": (g * x1) @ W1.T + (g * x2) @ W2.T, "W1": x.T @ (g * w1),
                "W2": x.T @ (g * w2)}  # fmt: skip

    return forward, backward


def _off_span(answer: dict, grads, tied: np.ndarray, shape) -> float:
    """The least-squares residual of the answer off ``base + A s`` (``grads(S)``: the flat
    gradient with the tied units' slopes S; ``tied``: their (row, unit) indices)."""
    base_s = np.zeros(shape)
    base = grads(base_s)
    cols = []
    for n, j in tied:
        s = base_s.copy()
        s[n, j] = 1.0
        cols.append(grads(s) - base)
    a = np.stack(cols, 1)
    vec = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in answer.values()])
    sol = np.linalg.lstsq(a, vec - base, rcond=None)[0]
    return float(np.linalg.norm(a @ sol - (vec - base)))


def _check(forward, backward, tensors, g):
    return gradcli.check(forward=forward, backward=backward, tensors=tensors, grad_output=g)


def _relu_case(tensors, g, masks):
    forward, backward = _relu_layer(*masks)
    x, W, b = tensors["x"], tensors["W"], tensors["b"]
    a = x @ W + b
    tied = np.argwhere(a == 0)
    assert tied.size  # the spec holds a tie

    def grads(s):  # s: the slope at each tied unit; 1 where a > 0
        m = np.where(a == 0, s, (a > 0) * 1.0) * g
        return np.concatenate([(m @ W.T).ravel(), (x.T @ m).ravel(), m.sum(0)])

    residual = _off_span(backward(g, **tensors), grads, tied, a.shape)
    return _check(forward, backward, tensors, g), residual


@pytest.mark.parametrize("masks", list(itertools.product([">", ">="], repeat=3)))
def test_relu_of_a_matmul_fails_masks_mixed_across_tensors_at_one_tied_unit(masks):
    g = np.array([[1.6013], [0.2005]])
    r, residual = _relu_case(_TINY_RELU, g, masks)
    valid = len(set(masks)) == 1
    assert (residual < 1e-9) == valid, residual
    assert r.passed == valid, str(r)
    assert not any(res.ties_unverified for res in r.results.values()), str(r)


def test_the_tiny_relu_direction_shows_the_mix_by_hand():
    """Oracle for the one-unit spec: along v = (db = +1, dx[0, 0] = -1) the unit does not
    move, the loss's one-sided slopes agree, and dx from ``a > 0`` with db from ``a >= 0``
    gives ``G . v`` off them by the unit's upstream gradient; the rule of every tensor alike
    gives the slope."""
    g = np.array([[1.6013], [0.2005]])
    t = _TINY_RELU
    vx, vb, h = np.array([[-1.0, 0.0], [0.0, 0.0]]), np.array([1.0]), 1e-6
    for masks, off in (((">", ">", ">"), 0.0), ((">", ">", ">="), 1.6013)):
        forward, backward = _relu_layer(*masks)

        def loss(s, forward=forward):
            return float((g * forward(t["x"] + s * vx, t["W"], t["b"] + s * vb)).sum())

        right, left = (loss(h) - loss(0)) / h, (loss(0) - loss(-h)) / h
        G = backward(g, **t)
        gv = float((G["x"] * vx).sum() + (G["b"] * vb).sum())
        assert abs(right - left) < 1e-6 and abs(gv - right - off) < 1e-6, (right, left, gv)


@pytest.mark.parametrize("masks", [(">", ">", ">"), (">=", ">=", ">="), (">", ">", ">="),
                                   (">=", ">", ">"), (">", ">=", ">=")])  # fmt: skip
def test_relu_of_a_matmul_at_a_zero_row_with_zero_bias(masks):
    """CS231n's zero-initialized b and a zero padding row: every unit of that row at 0."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 3))
    x[0] = 0.0
    tensors = {"x": x, "W": rng.normal(size=(3, 4)), "b": np.zeros(4)}
    g = rng.normal(size=(6, 4))
    r, residual = _relu_case(tensors, g, masks)
    valid = len(set(masks)) == 1
    assert (residual < 1e-9) == valid, residual
    assert r.passed == valid, str(r)
    assert not any(res.ties_unverified for res in r.results.values()), str(r)


@pytest.mark.parametrize(("dx_rule", "dw_rule"), [
    ("first", "first"), ("second", "second"), ("half", "half"),
    ("first", "second"), ("second", "first"), ("both", "both"), ("none", "none"),
])  # fmt: skip
def test_maxout_at_one_tied_unit(dx_rule, dw_rule):
    forward, backward = _maxout_layer(dx_rule, dw_rule)
    g = np.array([[1.6013], [0.2005]])
    r = _check(forward, backward, _TINY_MAXOUT, g)
    valid = dx_rule == dw_rule and dx_rule in ("first", "second", "half")
    assert r.passed == valid, str(r)
    assert not any(res.ties_unverified for res in r.results.values()), str(r)


@pytest.mark.parametrize(("dx_rule", "dw_rule"), [
    ("first", "first"), ("second", "second"), ("half", "half"),
    ("first", "half"), ("first", "second"), ("both", "both"),
])  # fmt: skip  # ("half", "first"), first-half's mirror, took 11 s
def test_maxout_of_integer_matmuls_with_seven_tied_units(dx_rule, dw_rule):
    """Integer x, W1, W2 in {-1, 0, 1}: 7 tied units, some sharing a row or a column (each
    coordinate moves several ties, which a move must hold still together)."""
    rng = np.random.default_rng(1)
    x = rng.integers(-1, 2, size=(5, 3)).astype(float)
    W1 = rng.integers(-1, 2, size=(3, 4)).astype(float)
    W2 = rng.integers(-1, 2, size=(3, 4)).astype(float)
    a1, a2 = x @ W1, x @ W2
    tied = np.argwhere(a1 == a2)
    assert len(tied) == 7
    g = np.random.default_rng(2).normal(size=a1.shape)
    forward, backward = _maxout_layer(dx_rule, dw_rule)

    def grads(s):  # s: branch 1's share at each tied unit
        m = np.where(a1 == a2, s, (a1 > a2) * 1.0)
        g1, g2 = g * m, g * (1 - m)
        return np.concatenate([(g1 @ W1.T + g2 @ W2.T).ravel(), (x.T @ g1).ravel(),
                               (x.T @ g2).ravel()])  # fmt: skip

    valid = dx_rule == dw_rule and dx_rule in ("first", "second", "half")
    residual = _off_span(backward(g, x, W1, W2), grads, tied, a1.shape)
    assert (residual < 1e-9) == valid, residual
    # budget=1 (not the claim): the mixes still fail on contradicting pieces, 1 s, not 6
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": x, "W1": W1, "W2": W2},
                      grad_output=g, budget=1)  # fmt: skip
    assert r.passed == valid, str(r)
    assert not any(res.ties_unverified for res in r.results.values()), str(r)


DEAD_X = np.array([[-2.711162, -1.889013, -0.174772], [-0.42219, 0.213643, 0.217322],
                   [2.117839, -1.112021, -0.377605], [2.042772, 0.646703, 0.663063],
                   [-0.514006, -1.648075, 0.167465]])  # fmt: skip
DEAD_W = np.array([[0.0, -1.227352, -0.683227], [0.0, -0.944752, -0.09827],
                   [0.0, 0.035586, -0.506292]])  # fmt: skip


def _dead_unit(dw_ge, db_ge):
    def forward(x, W, b):
        return np.maximum(x @ W + b, 0)

    def backward(grad_output, x, W, b):
        a = x @ W + b
        m_w = grad_output * ((a >= 0) if dw_ge else (a > 0))
        m_b = grad_output * ((a >= 0) if db_ge else (a > 0))
        return {"x": (grad_output * (a > 0)) @ W.T, "W": x.T @ m_w, "b": m_b.sum(0)}

    return forward, backward


@pytest.mark.parametrize(("dw_ge", "db_ge", "passed"), [
    (False, False, True), (True, True, True),    # one rule for W and b: valid
    (False, True, False), (True, False, False),  # dW and db from different masks
])  # fmt: skip
def test_a_dead_unit_s_mixed_masks_fail(dw_ge, db_ge, passed):
    """t25 F2: a unit whose column of W is zero (b = 0) has every pre-activation tied and no
    move holding them all still; dW from a > 0 with db from a >= 0 passed with no flag.
    Random moves of every tied position, each output's share held between its one-sided
    slopes, fail it at this upstream gradient (random moves find such a direction at 3 of 8
    upstream gradients drawn for the tester's point, 2 before: a partial check); one rule for
    both passes."""
    forward, backward = _dead_unit(dw_ge, db_ge)
    g = np.random.default_rng(5).standard_normal((5, 3))
    r = gradcli.check(forward=forward, backward=backward, grad_output=g,
                      tensors={"x": DEAD_X, "W": DEAD_W, "b": np.zeros(3)})  # fmt: skip
    assert r.passed is passed, r.verdict()


@pytest.mark.parametrize(("seed", "dw_ge", "db_ge", "passed"), [
    # one rule at the two draws the mixes use (a third draw went through the same path: 2 s)
    *((seed, False, False, True) for seed in range(2)),
    *((seed, True, True, True) for seed in range(2)),
    # the mixed masks, each at one of two draws: each reads every tied hinge's share
    (1, False, True, False), (0, True, False, False),
])  # fmt: skip
def test_zero_weights_mixed_masks_fail(seed, dw_ge, db_ge, passed):
    """t25 F2 at W = 0, b = 0 (every unit dead, every pre-activation tied): no move holds
    them still and random moves rarely separate a mix; each tied hinge's share s in [0, 1],
    shared by W and b, is solved for (bounded least squares): dW from a > 0 asks s = 0 and
    db from a >= 0 asks s = 1, which no shares reproduce."""
    rng = np.random.default_rng(seed)
    forward, backward = _dead_unit(dw_ge, db_ge)
    r = gradcli.check(forward=forward, backward=backward,
                      grad_output=rng.standard_normal((4, 2)),
                      tensors={"x": rng.standard_normal((4, 3)), "W": np.zeros((3, 2)),
                               "b": np.zeros(2)})  # fmt: skip
    assert r.passed is passed, r.verdict()

