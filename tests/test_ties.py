"""Tie groups (numeric/ties.py): at a tie each coordinate may take any slope between its
one-sided ones, but the group's sum must lie between the slopes of moving the whole group,
so a backward giving a tie's full gradient to every tied element, or to none, fails; the
first (torch's) or last element's passes. Oracle: the group direction's slope is written out
by hand (a max over pairs: g; svm: the margins' count)."""

import numpy as np
import pytest

import gradcli

PAIRS = np.array([1.0, 1.0, 2.0, 0.5, -1.0, -1.0, 3.0, 4.0])  # two tied pairs, two not


def pair_max(x):
    return x.reshape(-1, 2).max(axis=1)


def routed(rule):
    """A backward of the max over pairs sending a tie's gradient by ``rule``."""

    def backward(grad_output, x):
        p = x.reshape(-1, 2)
        m = p == p.max(axis=1, keepdims=True)
        if rule == "first":
            m[:, 1] &= ~m[:, 0]
        elif rule == "none":
            m &= ~(m[:, :1] & m[:, 1:])
        return {"x": (m * np.asarray(grad_output)[:, None]).ravel()}

    return backward


@pytest.mark.parametrize("method", ["central", "forward", "backward", "complex"])
def test_a_tie_groups_sum_is_checked_for_a_users_layer(method):
    g = np.array([0.7, -1.3, 0.4, 2.0])
    ok = gradcli.check("custom", {"x": PAIRS}, grad_output=g, forward=pair_max,
                       backward=routed("first"), method=method)  # fmt: skip
    assert ok.passed, str(ok)
    assert ok.results["x"].kinks == 4
    for rule in ("all", "none"):  # the twins: each element within its interval, the sum not
        r = gradcli.check("custom", {"x": PAIRS}, grad_output=g, forward=pair_max,
                          backward=routed(rule), method=method)  # fmt: skip
        assert not r.passed, (rule, method)
        bad = r.results["x"].worst_index[0]
        assert bad in (0, 1, 4, 5)  # at a tie: the pairs without one are right
        # the value compared: the tie's g shared out so that the pair sums to g (the oracle)
        pair = bad // 2
        assert r.numeric["x"].reshape(-1, 2)[pair].sum() == pytest.approx(g[pair], rel=1e-6)


def _pool_forward(X, size=2, stride=None, padding=0):
    n = X.shape[0] // 2
    return X.reshape(n, 2, n, 2, -1).max(axis=(1, 3))


def _pool_backward(rule):
    """maxpool2d's backward sending a window's gradient to its first maximum, or to all."""

    def bwd(grad_output, X, size=2, stride=None, padding=0):
        n = X.shape[0] // 2
        w = X.reshape(n, 2, n, 2, -1)
        m = (w == w.max(axis=(1, 3), keepdims=True)).astype(float)
        if rule == "first":  # the first maximum of each window (ties or not)
            flat = w.transpose(0, 2, 4, 1, 3).reshape(n, n, -1, 4)
            first = np.zeros_like(flat)
            np.put_along_axis(first, flat.argmax(-1)[..., None], 1.0, -1)
            m = first.reshape(n, n, -1, 2, 2).transpose(0, 3, 1, 4, 2)
        return {"X": (m * grad_output[:, None, :, None]).reshape(X.shape)}

    return bwd


def test_maxpool_impl_giving_every_tied_element_the_gradient_fails_with_forward():
    """--impl of a built-in whose forward agrees uses the built-in's declared kinks, every
    method included (forward differences read exactly what the all-ties mask returns)."""
    X = np.ones((4, 4, 1))
    for method in ("forward", "central"):
        ok = gradcli.check("maxpool2d", {"X": X}, forward=_pool_forward,
                           backward=_pool_backward("first"), method=method)  # fmt: skip
        assert ok.passed and ok.results["X"].kinks == 16, (method, str(ok))
        bad = gradcli.check("maxpool2d", {"X": X}, forward=_pool_forward,
                            backward=_pool_backward("all"), method=method)  # fmt: skip
        assert not bad.passed, method


def test_a_sampled_window_tie_is_checked_with_its_members_outside_the_sample():
    """--mode sample on a built-in's declared kinks: a sampled tied maximum whose window
    partners were not sampled is held to the window's sum with them (found by the search of
    numeric/partners.py), so the all-ties mask fails; it passed at every seed."""
    X = np.round(np.random.default_rng(0).standard_normal((8, 8, 1)))  # 6 tied windows
    for rule, passes in (("all", False), ("first", True)):
        r = gradcli.check("maxpool2d", {"X": X}, forward=_pool_forward, mode="sample",
                          backward=_pool_backward(rule), samples=6, seed=0)  # fmt: skip
        assert r.passed is passes, rule
        assert np.isfinite(r.numeric["X"]).sum() == 6  # the sample, and no more


def _svm_backward(ge_class, ge_true):
    def backward(grad_output, x, y):
        n = x.shape[0]
        m = x - x[np.arange(n), y][:, None] + 1.0
        m[np.arange(n), y] = 0
        a = (m >= 0 if ge_class else m > 0).astype(float)
        b = (m >= 0 if ge_true else m > 0).astype(float)
        a[np.arange(n), y] = b[np.arange(n), y] = 0
        dx = a.copy()
        dx[np.arange(n), y] = -b.sum(axis=1)
        return {"x": grad_output * dx / n}

    return backward


def test_svm_at_the_margin_must_count_what_it_routes():
    """At margin 0 a class column may take 1/N or 0, but its row's true class must count it
    the same way: moving both together leaves the margin alone (a smooth direction)."""
    x = np.array([[1.0, 0.0, 0.5, -3.0], [0.25, 2.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    y = np.array([0, 1, 2])

    def forward(x, y):
        n = x.shape[0]
        m = x - x[np.arange(n), y][:, None] + 1.0
        m[np.arange(n), y] = 0
        return np.maximum(m, 0).sum() / n

    for ge in (True, False):
        r = gradcli.check("svm", {"x": x, "y": y}, forward=forward,
                          backward=_svm_backward(ge, ge))  # fmt: skip
        assert r.passed, str(r)
    for cls, true in ((True, False), (False, True)):
        r = gradcli.check("svm", {"x": x, "y": y}, forward=forward,
                          backward=_svm_backward(cls, true))  # fmt: skip
        assert not r.passed


def test_grouping_joins_coordinates_through_shared_outputs():
    from gradcli.numeric import ties
    from gradcli.numeric.nearest import nearest

    label = ties.groups(5, np.array([0, 1, 1, 2, 4]), np.array([7, 7, 3, 3, 9]))
    assert label.tolist() == [0, 0, 0, 3, 4]  # 0-1 share 7, 1-2 share 3; 3 alone; 4 alone
    one = (np.zeros(2, dtype=np.int64), np.array([1.0]), np.array([1.0]))  # a sum of 1
    v = nearest(np.array([1.0, 1.0]), np.zeros(2), np.ones(2), [one])
    np.testing.assert_allclose(v, [0.5, 0.5])
    assert nearest(np.array([1.0, 0.0]), np.zeros(2), np.ones(2), [one]).tolist() == [1.0, 0.0]
