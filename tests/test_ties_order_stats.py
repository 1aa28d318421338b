"""Order statistics at ties (outside test t27 N1, N5, N6): a median, a top-k and a sort of
tied values have as many pieces as orders of the ties, and a backward (numpy's stable argsort,
torch's own order) routes by one of them. Correct backward passes failed:

- a median of 5 or more tied values (zero padding, constant rows): no coordinate moves it
  alone, and no pair does (3 must move together), so no tie was formed and the central
  difference, 0, was read as the derivative ("wrong", with a hint);
- torch's topk / kthvalue at 5 or more tied values: the few pieces read gave each tied
  coordinate some ranks' upstream gradients, not the one torch gave it, and that was taken as
  a contradiction ("yours takes one the forward has on neither side");
- the rows of a batch of relu activations sorted (548 zeros, 5 to 12 a row): more than 256
  equal values, "not verified" (exit 1), though no two rows interact.

Oracle: each backward routes the upstream gradient by a permutation of the tied values, the
gradient of the piece in which the values are in that order (which touches the point): a
Clarke gradient. Twins: routings that no order gives (the whole gradient to every tied value,
half of it, nothing) fail at the same points."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli


def _median_to(pick):
    """A row median whose backward gives the upstream gradient to ``pick(row_order)``, one of
    the row's values at the middle rank."""

    def forward(x):
        return np.median(x, axis=-1)

    def backward(grad_output, x):
        dx = np.zeros_like(x)
        for i in range(x.shape[0]):
            order = np.argsort(x[i], kind="stable")
            dx[i, pick(order, x[i])] = grad_output[i]
        return {"x": dx}

    return forward, backward


def _middle(order, row):
    return order[row.size // 2]


def _first_tied_with_middle(order, row):
    """torch's choice may be any of the values equal to the median: the first of them."""
    return int(np.flatnonzero(row == row[order[row.size // 2]])[0])


@pytest.mark.parametrize("pick", [_middle, _first_tied_with_middle], ids=["stable", "first"])
@pytest.mark.parametrize("shape", [(1, 5), (1, 7), (2, 5)])  # (4, 5): 5 to 11 s at "first"
def test_a_median_of_many_tied_values_passes(pick, shape):
    forward, backward = _median_to(pick)
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": np.zeros(shape)})
    assert r.passed, str(r)


@pytest.mark.parametrize("wrong", ["every", "half", "none"])
def test_a_median_routing_no_order_gives_fails(wrong):
    def forward(x):
        return np.median(x, axis=-1)

    def backward(grad_output, x):
        g = grad_output[:, None]
        tied = (x == np.median(x, axis=-1, keepdims=True)).astype(float)
        share = {"every": 1.0, "half": 0.5 / tied.sum(-1, keepdims=True), "none": 0.0}[wrong]
        return {"x": tied * g * share}

    r = gradcli.check(forward=forward, backward=backward, tensors={"x": np.zeros((2, 5))})
    assert not r.passed


TORCH_ORDER = [2, 4, 3]  # the tied indices torch.topk returned for a row of 5 zeros


def _topk(ranked):
    def forward(x):
        return -np.sort(-x, axis=-1, kind="stable")[..., :3]

    def backward(grad_output, x):
        dx = np.zeros_like(x)
        for i in range(x.shape[0]):
            dx[i, ranked(x[i])] = grad_output[i]
        return {"x": dx}

    return forward, backward


@pytest.mark.parametrize("rows", [1, 2])
def test_torch_topk_order_at_five_tied_values_passes(rows):
    forward, backward = _topk(lambda row: TORCH_ORDER)
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": np.zeros((rows, 5))})
    assert r.passed, str(r)


def test_a_topk_giving_every_tied_value_the_first_gradient_fails():
    def forward(x):
        return -np.sort(-x, axis=-1, kind="stable")[..., :3]

    def backward(grad_output, x):
        return {"x": np.repeat(grad_output[:, :1], x.shape[1], axis=1)}

    r = gradcli.check(forward=forward, backward=backward, tensors={"x": np.zeros((1, 5))})
    assert not r.passed


def _relu_rows():
    """29 rows of 16 (the first 29 of the 64 once drawn): 263 zeros, just past LARGE."""
    return np.maximum(np.random.default_rng(7).standard_normal((29, 16)), 0.0)


def _sort(route):
    def forward(x):
        return np.sort(x, axis=-1)

    def backward(grad_output, x):
        return {"x": route(grad_output, x)}

    return forward, backward


def _stable(grad_output, x):
    dx = np.zeros_like(x)
    np.put_along_axis(dx, np.argsort(x, axis=-1, kind="stable"), grad_output, axis=-1)
    return dx


def _summed_at_ties(grad_output, x):
    """Each tied value given the sum of the upstream gradients of the sorted positions its
    ties fill: no order gives that."""
    dx = _stable(grad_output, x)
    for i in range(x.shape[0]):
        zeros = x[i] == 0
        dx[i, zeros] = grad_output[i, : zeros.sum()].sum()
    return dx


def test_sorting_the_rows_of_relu_activations_passes():
    x = _relu_rows()
    assert np.count_nonzero(x == 0) > 256  # more than pieces.LARGE: read row by row
    forward, backward = _sort(_stable)
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": x})
    assert r.passed, str(r)


def test_a_sort_routing_no_order_gives_fails_with_numbers():
    forward, backward = _sort(_summed_at_ties)
    r = gradcli.check(forward=forward, backward=backward, tensors={"x": _relu_rows()})
    assert not r.passed
    assert "not verified" not in r.verdict(), r.verdict()


def _top6(route):
    def forward(x):
        return -np.sort(-x, axis=-1, kind="stable")[..., :6]

    def backward(grad_output, x):
        dx = np.zeros_like(x)
        np.put_along_axis(dx, route(x)[..., :6], grad_output, axis=-1)
        return {"x": dx}

    return forward, backward


def test_top6_of_relu_rows_passes_and_a_wrong_pick_fails():
    """More than 256 zeros, each row's zeros below six larger values moving nothing alone and
    interacting with none (t27 N6: 'not verified at 27 coordinates'). Twin: the six smallest
    picked instead."""
    x = _relu_rows()
    right = _top6(lambda x: np.argsort(-x, axis=-1, kind="stable"))
    wrong = _top6(lambda x: np.argsort(x, axis=-1, kind="stable"))
    for (forward, backward), passed in ((right, True), (wrong, False)):
        r = gradcli.check(forward=forward, backward=backward, tensors={"x": x})
        assert r.passed is passed, str(r)


@pytest.mark.parametrize(("share", "passed"), [(1 / 3, True), (1 / 2, False), (1.0, False)])
def test_three_tied_maxima_share_the_gradient_as_a_mix(share, passed):
    """Outside test t26 F7: each of three tied maxima given half the gradient passed: each
    one's central difference (half its two sides) equals its answer, so no kink was read and
    no tie formed. The kink screen reads them now, and a kink's group is held to the slope of
    moving it together (a third each is a mix; a half or the whole each is none)."""
    x = np.array([[1.0, 3.0, 3.0, 3.0, -2.0], [0.5, 0.5, 0.5, -1.0, 0.2]])

    def forward(x):
        return x.max(axis=1)

    def backward(grad_output, x):
        tied = (x == x.max(axis=1, keepdims=True)).astype(float)
        return {"x": tied * share * grad_output[:, None]}

    r = gradcli.check(forward=forward, backward=backward, tensors={"x": x})
    assert r.passed is passed, str(r)


@pytest.mark.parametrize(("answer", "passed"), [
    ((0.5, -0.5, 0, 0, 0), True), ((0, 0, 0, 0, -1), True), ((2.0, 0, 0, 0, 0), False)])
def test_a_max_of_absolute_values_at_zeros_takes_a_sign_either_way(answer, passed):
    """Outside test t28 R9: max |x| over a zero row has the gradients +-e_i, and their mixes (the
    l1 ball): (1/2, -1/2, 0, ...) failed once a coordinate beyond the pieces read was read at
    every rank moving up only. It is read moving down too. Twin: 2 e_0, beyond every piece."""

    def forward(x):
        return np.abs(x).max(axis=-1)

    def backward(grad_output, x):
        return {"x": np.array(answer, dtype=float)[None, :] * grad_output[:, None]}

    r = gradcli.check(forward=forward, backward=backward, tensors={"x": np.zeros((1, 5))})
    assert r.passed is passed, str(r)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_value_at_a_tie_fails_as_not_finite(bad):
    """A median's backward with a NaN (or an infinity) at a tied element crashed the least
    squares that fits a mix of pieces ('internal error', exit 3); it fails as not finite, and
    its twin, the same backward without it, passes (test_a_median_of_many_tied_values_passes)."""

    def forward(x):
        return np.median(x, axis=-1)

    def backward(grad_output, x):
        d = np.zeros_like(x)
        d[:, 2] = grad_output
        d[0, 0] = bad
        return {"x": d}

    r = gradcli.check(forward=forward, backward=backward, tensors={"x": np.zeros((2, 5))})
    assert not r.passed and r.results["x"].nonfinite == 1, str(r)
