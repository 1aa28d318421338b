"""Ties no coordinate's own move can see (numeric/pieces.py): at ``maximum(minimum(a, b), c)``'s
``a == b == c`` moving any one coordinate alone leaves the output unchanged on both sides, so
no kink is read and the central difference 0 stood for the derivative; torch's answer failed.
Oracle: the pieces written by hand. Near the point each input is the active piece on an open
region (``c < a < b`` makes the output ``a``), so the valid gradients are the mixes of e_a, e_b
and e_c times the upstream gradient (their weights >= 0 adding up to 1): torch's (1/4, 1/4,
1/2), the first tied, the last tied pass; a routing that is no such mix (all to every tied
input, a half to each of three, nothing to any: strict masks, whose zeros lie within each
coordinate's own one-sided slopes, so that only the group tells) fails. The same for
clip with tensor bounds, a median, the second largest, and a loss of overlapping maxima with
upstream weights of both signs (its gradient on the region x0 > x1 > x2 lies outside x1's
one-sided slopes)."""

import numpy as np
import pytest

import gradcli

A = np.array([0.0, 1.0, 2.0, -1.0])
B = np.array([0.0, 1.0, 2.0, 0.5])
C = np.array([0.0, 1.0, 2.0, -3.0])  # tied three ways at 0, 1, 2
G = np.array([1.0, -0.7, 0.4, 1.3])


def _nested(split):
    """max(min(a, b), c)'s backward sending a tie's gradient by ``split``: (to min, to a)
    weights at a tie."""

    def backward(grad_output, a, b, c):
        m = np.minimum(a, b)
        to_m = np.where(m > c, 1.0, np.where(m == c, split[0], 0.0))
        to_a = np.where(a < b, 1.0, np.where(a == b, split[1], 0.0))
        gm = grad_output * to_m
        return {"a": gm * to_a, "b": gm * (1 - to_a), "c": grad_output * (1 - to_m)}

    return backward


def _check_nested(backward, **kw):
    return gradcli.check(forward=lambda a, b, c: np.maximum(np.minimum(a, b), c),
                         backward=backward, tensors={"a": A, "b": B, "c": C}, grad_output=G,
                         **kw)  # fmt: skip


@pytest.mark.parametrize("split", [(0.5, 0.5), (1.0, 1.0), (0.3, 0.9)])
def test_a_mix_of_the_pieces_passes_at_a_three_way_tie(split):
    r = _check_nested(_nested(split))  # torch's, the first tied, the last, any mix
    assert r.passed, str(r)


def test_a_routing_no_piece_gives_fails_at_a_three_way_tie():
    def everything(grad_output, a, b, c):  # every tied input the whole gradient
        m = np.minimum(a, b)
        return {"a": grad_output * ((a <= b) & (m >= c)), "b": grad_output * ((b <= a) & (m >= c)),
                "c": grad_output * (c >= m)}  # fmt: skip

    def nothing(grad_output, a, b, c):  # strict masks: no tied input gets anything
        m = np.minimum(a, b)
        return {"a": grad_output * ((a < b) & (m > c)), "b": grad_output * ((b < a) & (m > c)),
                "c": grad_output * (c > m)}  # fmt: skip

    def too_much(grad_output, a, b, c):  # a half to each of the three
        out = _nested((1.0, 1.0))(grad_output, a, b, c)
        tie = (a == b) & (b == c)
        return {n: np.where(tie, 0.5 * grad_output, v) for n, v in out.items()}

    for backward in (everything, too_much, nothing):
        r = _check_nested(backward)
        assert not r.passed, str(r)
        assert r.results["a"].worst_index in [(0,), (1,), (2,)], str(r)


def test_the_pieces_are_read_on_a_curved_piece_too():
    # exp(max(min(a, b), c)): the pieces' gradients change along the nudge, extrapolated to it
    f = lambda a, b, c: np.exp(np.maximum(np.minimum(a, b), c))  # noqa: E731
    inner = _nested((0.5, 0.5))

    def backward(grad_output, a, b, c):
        return inner(grad_output * f(a, b, c), a, b, c)

    def scaled(grad_output, a, b, c):  # 1e-4 too much at the ties only
        out = backward(grad_output, a, b, c)
        tie = (a == b) & (b == c)
        return {n: np.where(tie, v * (1 + 1e-4), v) for n, v in out.items()}

    r = gradcli.check(forward=f, backward=backward, tensors={"a": A, "b": B, "c": C},
                      grad_output=G)  # fmt: skip
    assert r.passed, str(r)
    r = gradcli.check(forward=f, backward=scaled, tensors={"a": A, "b": B, "c": C},
                      grad_output=G)  # fmt: skip
    assert not r.passed, str(r)


def _clip_backward(at_tie):
    """clip(x, lo, hi) with tensor bounds; ``at_tie``: (dx, dlo, dhi) weights at x == lo == hi."""

    def backward(grad_output, x, lo, hi):
        tie = (x == lo) & (lo == hi)
        dx = np.where(tie, at_tie[0], (x >= lo) & (x <= hi))  # torch.clamp's
        dlo = np.where(tie, at_tie[1], x < lo)
        dhi = np.where(tie, at_tie[2], x > hi)
        return {"x": grad_output * dx, "lo": grad_output * dlo, "hi": grad_output * dhi}

    return backward


def test_clip_with_tensor_bounds_all_equal():
    x = np.array([0.5, -1.0, 0.2, 3.0])
    lo = np.array([0.5, -1.0, -1.0, 0.0])
    hi = np.array([0.5, -1.0, 1.0, 1.0])
    g = np.array([1.0, -0.6, 0.8, 0.3])
    run = lambda at: gradcli.check(forward=lambda x, lo, hi: np.clip(x, lo, hi),  # noqa: E731
                                   backward=_clip_backward(at),
                                   tensors={"x": x, "lo": lo, "hi": hi}, grad_output=g)
    for at in [(1, 0, 0), (0, 1, 0), (0.5, 0.25, 0.25)]:  # torch's first
        assert run(at).passed, str(run(at))
    for at in [(1, 1, 0), (1, 1, 1), (0.5, 0.5, 0.5), (0, 0, 0)]:
        assert not run(at).passed, str(run(at))


def test_clip_below_equal_bounds_still_fails_torchs_zero():
    # x < lo == hi: the output is lo or hi, whichever is smaller; torch gives both 0
    x, lo, hi = np.array([0.0, 0.2]), np.array([1.0, -1.0]), np.array([1.0, 1.0])

    def backward(grad_output, x, lo, hi):
        equal = lo == hi
        return {"x": grad_output * ((x >= lo) & (x <= hi)),
                "lo": grad_output * ((x < lo) & ~equal), "hi": grad_output * ((x > hi) & ~equal)}

    r = gradcli.check(forward=lambda x, lo, hi: np.clip(x, lo, hi), backward=backward,
                      tensors={"x": x, "lo": lo, "hi": hi}, grad_output=np.array([1.0, 0.5]))
    assert not r.passed, str(r)


def _median_backward(weights):
    def backward(grad_output, x):
        m = np.median(x, axis=-1, keepdims=True)
        tie = (x == m).astype(float)
        w = np.zeros_like(x)
        for row in range(x.shape[0]):
            idx = np.flatnonzero(tie[row])
            w[row, idx] = weights[: idx.size] if idx.size > 1 else 1.0
        return {"x": grad_output[:, None] * w}

    return backward


def test_a_median_of_three_tied_values():
    x = np.array([[1.0, 2.0, 2.0, 2.0, 3.0], [0.3, -1.0, 2.0, 0.7, 5.0]])
    g = np.array([1.0, -0.5])
    run = lambda w: gradcli.check(forward=lambda x: np.median(x, axis=-1),  # noqa: E731
                                  backward=_median_backward(np.array(w)), tensors={"x": x},
                                  grad_output=g)  # fmt: skip
    for w in ([0, 1, 0], [1, 0, 0], [1 / 3, 1 / 3, 1 / 3]):  # torch's middle one, first, even
        assert run(w).passed, str(run(w))
    for w in ([1, 1, 0], [1, 1, 1], [0.5, 0.5, 0.5], [0, 0, 0]):
        assert not run(w).passed, str(run(w))


def test_the_second_largest_of_tied_values():
    x = np.array([[1.0, 1.0, 1.0, 0.0], [2.0, 2.0, 0.0, -1.0]])
    g = np.array([0.58, -1.2])

    def backward(routing):
        def b(grad_output, x):
            dx = np.zeros_like(x)
            dx[0, routing] = grad_output[0]
            dx[1, 1] = grad_output[1]
            return {"x": dx}

        return b

    run = lambda k: gradcli.check(forward=lambda x: np.sort(x, -1)[:, -2],  # noqa: E731
                                  backward=backward(k), tensors={"x": x}, grad_output=g)
    assert run([1]).passed, str(run([1]))
    assert not run([1, 2]).passed, str(run([1, 2]))
    assert not run([3]).passed, str(run([3]))


W = np.array([-0.8, 1.1])


def _overlap_loss(dx):
    return gradcli.check(forward=lambda x: float((W * np.maximum(x[:-1], x[1:])).sum()),
                         backward=lambda grad_output, x: {"x": grad_output * np.array(dx)},
                         tensors={"x": np.array([1.0, 1.0, 1.0])})  # fmt: skip


def test_a_loss_of_overlapping_maxima_with_weights_of_both_signs():
    # each window to its first maximum (torch's max_pool1d): the gradient on x0 > x1 > x2
    for dx in ([-0.8, 1.1, 0.0], [0.0, -0.8, 1.1], [-0.4, 0.7, 0.0]):
        r = _overlap_loss(dx)
        assert r.passed, str(r)
    for dx in ([-0.8, 1.1, 1.1], [0.0, 0.0, 0.0], [-0.8, 0.3, 1.1], [0.0, 1.1, 0.0]):
        r = _overlap_loss(dx)
        assert not r.passed, str(r)


def test_relu_of_x_minus_relu_of_minus_x_still_fails_zero_at_zero():
    x = np.array([[0.0, 1.0, -2.0], [0.0, 0.0, 2.0]])  # the identity, whose slope at 0 is 1
    g = np.array([[0.5, -1.0, 0.3], [1.2, -0.7, 0.4]])

    def backward(grad_output, x):
        return {"x": grad_output * ((x > 0) + (x < 0))}  # torch: relu's 0 at 0, twice

    r = gradcli.check(forward=lambda x: np.maximum(x, 0) - np.maximum(-x, 0), backward=backward,
                      tensors={"x": x}, grad_output=g)  # fmt: skip
    assert not r.passed, str(r)
    r = gradcli.check(forward=lambda x: float((g * (np.maximum(x, 0) - np.maximum(-x, 0))).sum()),
                      backward=lambda grad_output, x: {"x": grad_output * g * ((x > 0) + (x < 0))},
                      tensors={"x": x})  # fmt: skip
    assert not r.passed, str(r)


def test_torchs_own_backward_passes_at_ties_no_coordinate_sees():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    def autograd(tf):
        def backward(grad_output, **ts):
            tt = {k: torch.tensor(v, requires_grad=True) for k, v in ts.items()}
            tf(**tt).backward(torch.tensor(grad_output))
            return {k: t.grad.numpy() for k, t in tt.items()}

        return backward

    r = _check_nested(autograd(lambda a, b, c: torch.maximum(torch.minimum(a, b), c)))
    assert r.passed, str(r)
    x = np.array([[1.0, 2.0, 2.0, 2.0, 3.0], [0.3, -1.0, 2.0, 0.7, 5.0]])
    r = gradcli.check(forward=lambda x: np.median(x, axis=-1),
                      backward=autograd(lambda x: torch.median(x, dim=-1).values),
                      tensors={"x": x}, grad_output=np.array([1.0, -0.5]))  # fmt: skip
    assert r.passed, str(r)
    pool = autograd(lambda x: (torch.tensor(W) * F.max_pool1d(x[None, None], 2, 1)[0, 0]).sum())
    r = gradcli.check(forward=lambda x: float((W * np.maximum(x[:-1], x[1:])).sum()),
                      backward=lambda grad_output, x: {"x": grad_output * pool(1.0, x=x)["x"]},
                      tensors={"x": np.array([1.0, 1.0, 1.0])})  # fmt: skip
    assert r.passed, str(r)
