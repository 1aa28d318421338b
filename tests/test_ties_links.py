"""A tie's members against each other (numeric/links.py): ``relu(a + b)`` at ``a + b == 0``
takes slope 0 with both moved down and 2g with both up, each alone 0 or g, so the sum and the
two intervals held ``da = 0, db = g`` (masks ``> 0`` and ``>= 0``): a wrong PASS (outside test
t9, K8). One relu gives every input the same piece: the valid gradients are ``da = db = s g``,
s in [0, 1]. Oracle: that set, written by hand for each layer below (the move of one input up
and another down leaves the relu's input, and the output, unchanged: the difference of their
gradients is 0), and for a max of three tied inputs any convex split of g (a link's interval
is [-g, g])."""

import numpy as np
import pytest

import gradcli
from gradcli.numeric import links
from gradcli.numeric.nearest import nearest

A = np.array([1.0, -2.0, 0.5, 3.0, -1.0])
B = np.array([-1.0, 2.0, 0.7, -1.0, -0.5])  # a + b == 0 at 0 and 1
G = np.array([1.0, -0.7, 0.4, 1.3, -0.9])
ABOVE = {">": lambda s: s > 0, ">=": lambda s: s >= 0,
         "half": lambda s: np.where(s == 0, 0.5, s > 0)}  # fmt: skip


def _relu_sum(mask_a, mask_b, alpha=0.0):
    """relu(a + b) (leaky for alpha != 0), each tensor's gradient from its own mask."""

    def forward(a, b):
        s = a + b
        return np.where(s > 0, s, alpha * s)

    def backward(grad_output, a, b):
        s = a + b
        piece = lambda m: m + alpha * (1 - m)  # noqa: E731
        return {"a": grad_output * piece(ABOVE[mask_a](s)),
                "b": grad_output * piece(ABOVE[mask_b](s))}  # fmt: skip

    return forward, backward


@pytest.mark.parametrize("method", ["central", "forward", "complex"])
def test_two_tensors_must_take_the_same_piece_of_one_relu(method):
    cases = [((">", ">"), True), ((">", ">="), False)]
    if method == "central":
        cases += [((">=", ">="), True), (("half", "half"), True), ((">=", ">"), False)]
    for masks, valid in cases:
        forward, backward = _relu_sum(*masks)
        r = gradcli.check("custom", {"a": A, "b": B}, grad_output=G, forward=forward,
                          backward=backward, method=method)  # fmt: skip
        assert r.passed is valid, (masks, str(r))
        if not valid:  # the nearest valid gradient: half of g to each
            assert "analytic 0, numeric 0.5" in r.verdict(), str(r)


def test_a_loss_and_a_leaky_relu_of_a_sum_too():
    forward, backward = _relu_sum(">", ">=")
    loss = lambda a, b: float((forward(a, b) * G).sum())  # noqa: E731
    wrong = lambda grad_output, a, b: {  # noqa: E731
        n: v * grad_output for n, v in backward(G, a, b).items()}  # fmt: skip
    assert not gradcli.check(forward=loss, backward=wrong, tensors={"a": A, "b": B}).passed
    forward, backward = _relu_sum(">", ">")
    right = lambda grad_output, a, b: {  # noqa: E731
        n: v * grad_output for n, v in backward(G, a, b).items()}  # fmt: skip
    assert gradcli.check(forward=loss, backward=right, tensors={"a": A, "b": B}).passed
    for alpha in (0.1, -2.0):  # -2: the pieces' slopes 1 and -2, the joint move's 2 and -4
        for masks, valid in (((">", ">"), True), ((">", ">="), False)):
            forward, backward = _relu_sum(*masks, alpha=alpha)
            r = gradcli.check("custom", {"a": A, "b": B}, grad_output=G, forward=forward,
                              backward=backward)  # fmt: skip
            assert r.passed is valid, (alpha, masks, str(r))


@pytest.mark.parametrize("mode", ["full", "probe"])
def test_within_one_tensor(mode):
    x = np.array([[1.0, -1.0], [0.5, 0.7], [-2.0, 2.0], [3.0, -1.0]])
    g = np.array([1.0, 0.5, -0.7, 1.2])

    def backward(second):
        def bw(grad_output, x):
            s = x.sum(1)
            return {"x": np.stack([grad_output * (s > 0), grad_output * second(s)], axis=1)}

        return bw

    forward = lambda x: np.maximum(x.sum(1), 0)  # noqa: E731
    for second, valid in ((ABOVE[">"], True), (ABOVE[">="], False)):
        r = gradcli.check(forward=forward, backward=backward(second), tensors={"x": x},
                          grad_output=g, mode=mode)  # fmt: skip
        assert r.passed is valid, str(r)


def test_three_inputs_and_a_linear_layer_under_a_relu():
    c = -(A + B)
    c[[2, 3]] = 0.3  # a + b + c == 0 at 0, 1, 4
    forward = lambda a, b, c: np.maximum(a + b + c, 0)  # noqa: E731
    for mask_c, valid in ((">", True), (">=", False)):
        def backward(grad_output, a, b, c, mask_c=mask_c):
            s = a + b + c
            return {"a": grad_output * (s > 0), "b": grad_output * (s > 0),
                    "c": grad_output * ABOVE[mask_c](s)}  # fmt: skip

        r = gradcli.check(forward=forward, backward=backward, tensors={"a": A, "b": B, "c": c},
                          grad_output=G)  # fmt: skip
        assert r.passed is valid, str(r)
    # relu(x W + bias), the bias's mask >= where W's and x's are >: row 0 at the kink
    x = np.array([[1.0, 2.0], [-1.0, 0.5], [0.5, 0.5]])
    W = np.array([[1.0, -1.0, 0.5], [0.5, 0.5, -1.0]])
    bias = -(x @ W)[0]
    bias[1] = 0.2
    g = np.resize(G, (3, 3))
    for mask_b, valid in ((">", True), (">=", False)):
        def linear(grad_output, x, W, bias, mask_b=mask_b):
            s = x @ W + bias
            gs = grad_output * (s > 0)
            return {"x": gs @ W.T, "W": x.T @ gs, "bias": (grad_output * ABOVE[mask_b](s)).sum(0)}

        r = gradcli.check(forward=lambda x, W, bias: np.maximum(x @ W + bias, 0),
                          backward=linear, tensors={"x": x, "W": W, "bias": bias},
                          grad_output=g)  # fmt: skip
        assert r.passed is valid, str(r)


def test_a_max_of_three_takes_any_convex_split():
    z, c = np.zeros(4), np.array([0.0, 1.0, -1.0, 0.0])  # a == b == c at 0 and 3
    forward = lambda a, b, c: np.maximum(np.maximum(a, b), c)  # noqa: E731

    def split(w):
        def backward(grad_output, a, b, c):
            m = forward(a, b, c)
            t = np.stack([a == m, b == m, c == m]) * np.array(w)[:, None]
            d = grad_output * t / t.sum(0)
            return {"a": d[0], "b": d[1], "c": d[2]}

        return backward

    tiny = 1e-300  # a share of nothing that keeps the division defined where one input wins
    for w in ((1, tiny, tiny), (tiny, tiny, 1), (1, 1, 1), (0.2, 0.5, 0.3)):
        r = gradcli.check(forward=forward, backward=split(w), tensors={"a": z, "b": z, "c": c},
                          grad_output=G[:4])  # fmt: skip
        assert r.passed, (w, str(r))
    wrong = split((1, 1, 1))
    twice = lambda grad_output, **t: {n: 2 * v for n, v in wrong(grad_output, **t).items()}  # noqa: E731
    assert not gradcli.check(forward=forward, backward=twice, tensors={"a": z, "b": z, "c": c},
                             grad_output=G[:4]).passed  # fmt: skip


def test_links_form_a_tree_and_the_nearest_point_meets_them():
    label = np.array([0, 0, 0, 1, 1, -1])
    first = np.array([3, 1, 2, 5, 5, 0])
    i, j = links.chain(label, first)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [(1, 2), (2, 0), (3, 4)]
    i, j = links.chain(label, first, known=(np.array([1]), np.array([2])))
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [(2, 0), (3, 4)]
    pair = links.Links(np.array([0]), np.array([1]), np.zeros(1), np.zeros(1), np.zeros(1))
    lo, hi = np.zeros(2), np.ones(2)
    sums = [(np.zeros(2, dtype=np.int64), np.array([0.0]), np.array([2.0]))]
    assert nearest(np.array([0.3, 0.3]), lo, hi, sums, pair).tolist() == [0.3, 0.3]
    np.testing.assert_allclose(nearest(np.array([0.0, 1.0]), lo, hi, sums, pair), [0.5, 0.5])


def test_links_the_budget_leaves_out_are_not_verified(monkeypatch):
    monkeypatch.setattr(links, "FLOOR", 0)
    forward, backward = _relu_sum(">", ">")
    r = gradcli.check("custom", {"a": A, "b": B}, grad_output=G, forward=forward,
                      backward=backward, budget=1e-9)  # fmt: skip
    assert not r.passed and "pairs of tied coordinates" in r.verdict(), str(r)
    assert gradcli.check("custom", {"a": A, "b": B}, grad_output=G, forward=forward,
                         backward=backward, mode="full", budget=1e-9).passed  # fmt: skip
