"""Kinks central differences pass over (numeric/bends.py). Across a kink 1e-12 from x the
central difference reads the average of the two pieces' slopes, to 1e-7: a custom backward
giving that average where ``np.isclose`` calls it a tie (relu 0.5 at x = +-1e-12, maximum's
half each at a - b = 1e-12, a max-pool's window split between its maximum and a runner-up
1e-12 below) passed with no kink read, as no coordinate failed. The coordinates whose two
one-sided differences disagree beyond what curvature explains are now examined as failing
ones are. Oracle: the slope of the piece x lies on, by hand (relu and maximum are linear on
each side: 1 or 0 times the upstream gradient; a max-pool's window routes all of it to its
strict maximum). Twins: the correct backwards at the same near-kinks, any valid rule at exact
kinks, and smooth layers of large curvature (x**4 at 1e3, exp at 30 and 600, tanh(x W)): they
pass, and the smooth ones read no kink."""

import functools

import numpy as np
import pytest

import gradcli
from gradcli.checking import check as check_module

METHODS = ["central", "central4"]
X = np.array([[1e-12, -1e-12, 2e-12, -2e-12], [1e-13, -1e-13, 0.3, -0.7]])
NEAR = np.abs(X) < 1e-11
G = np.array([[0.7, -1.3, 0.4, 2.0], [0.9, -0.6, 1.1, -0.8]])


def relu(x):
    return np.maximum(x, 0)


def relu_rule(at_close):
    """relu's backward: the strict mask, ``at_close`` where np.isclose(x, 0) (a "tie")."""

    def backward(grad_output, x):
        mask = np.where(np.isclose(x, 0), at_close, (x > 0) * 1.0) if at_close is not None \
            else (x > 0) * 1.0  # fmt: skip
        return {"x": grad_output * mask}

    return backward


def _relu(backward, x=X, method="central"):
    return gradcli.check("custom", {"x": x}, grad_output=G, forward=relu, backward=backward,
                         method=method)  # fmt: skip


@pytest.mark.parametrize("method", METHODS)
def test_relu_half_at_near_kinks_fails(method):
    r = _relu(relu_rule(0.5), method=method)
    assert not r.passed
    res = r.results["x"]
    assert not res.passed
    # the values compared at the near-kinks: the slope of x's own piece (the oracle)
    np.testing.assert_allclose(r.numeric["x"][NEAR], (G * (X > 0))[NEAR], atol=1e-6)
    assert set(res.kink_at) >= set(np.flatnonzero(NEAR).tolist())


@pytest.mark.parametrize("method", METHODS)
def test_relu_strict_mask_at_near_kinks_passes(method):
    r = _relu(relu_rule(None), method=method)
    assert r.passed, str(r)
    assert r.results["x"].kinks == int(NEAR.sum())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("slope", [0.0, 0.5, 1.0])
def test_any_slope_of_relu_at_exact_zeros_passes(method, slope):
    """At x == 0 itself both sides are clean and any slope between them is a subgradient."""
    x = np.array([[0.0, 0.0, 1e-12, -1e-12], [0.3, -0.7, 0.0, 2.0]])

    def backward(grad_output, x):
        return {"x": grad_output * np.where(x == 0, slope, (x > 0) * 1.0)}

    r = _relu(backward, x, method)
    assert r.passed, str(r)
    assert r.results["x"].kinks == 5


@pytest.mark.parametrize("method", METHODS)
def test_a_slope_outside_at_exact_zeros_fails(method):
    x = np.array([[0.0, 0.0, 1e-12, -1e-12], [0.3, -0.7, 0.0, 2.0]])

    def backward(grad_output, x):
        return {"x": grad_output * np.where(x == 0, 2.0, (x > 0) * 1.0)}

    assert not _relu(backward, x, method).passed


A = np.array([[-0.8, -1.3, -0.25, 0.42], [1.1, 0.11, -0.55, -0.78], [0.75, 1.6, 0.27, -1.2]])
GAP = np.array([[1e-12, -1e-12, 1e-13, -3e-13], [1e-12, -1e-12, 1e-13, -3e-13],
                [1e-12, -1e-12, 1e-13, -3e-13]])  # a - b
GM = np.array([[0.7, -1.3, 0.4, 2.0], [0.9, -0.6, 1.1, -0.8], [-0.5, 1.2, 0.3, -1.7]])


def maximum(a, b):
    return np.maximum(a, b)


def max_rule(tie):
    def backward(grad_output, a, b):
        t = tie(a, b)
        wa = np.where(t, 0.5, (a > b) * 1.0)
        wb = np.where(t, 0.5, (b > a) * 1.0)
        return {"a": grad_output * wa, "b": grad_output * wb}

    return backward


def _max(backward, b, method):
    return gradcli.check("custom", {"a": A, "b": b}, grad_output=GM, forward=maximum,
                         backward=backward, method=method)  # fmt: skip


@pytest.mark.parametrize("method", METHODS)
def test_maximum_split_at_near_ties_fails(method):
    b = A - GAP
    r = _max(max_rule(np.isclose), b, method)
    assert not r.passed
    assert not r.results["a"].passed and not r.results["b"].passed
    # the oracle: the larger input takes the whole upstream gradient
    np.testing.assert_allclose(r.numeric["a"], GM * (A > b), atol=1e-6)
    np.testing.assert_allclose(r.numeric["b"], GM * (b > A), atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_maximum_strict_at_near_ties_and_split_at_exact_ties_pass(method):
    r = _max(max_rule(lambda a, b: np.zeros(a.shape, dtype=bool)), A - GAP, method)
    assert r.passed, str(r)
    # exact ties (values on float32's grid: the precision test keeps them tied), half each
    a32 = A.astype(np.float32).astype(np.float64)
    b = a32.copy()
    b[:, 1] += 0.5
    r = gradcli.check("custom", {"a": a32, "b": b}, grad_output=GM, forward=maximum,
                      backward=max_rule(np.equal), method=method)  # fmt: skip
    assert r.passed, str(r)
    assert r.results["a"].kinks == 9


def pool(X):
    H, W, C = X.shape
    return X.reshape(H // 2, 2, W // 2, 2, C).max(axis=(1, 3))


def pool_rule(close):
    """A 2x2 max-pool's backward splitting each window's gradient evenly among the elements
    ``close`` to its maximum (CS231n-style)."""

    def backward(grad_output, X):
        H, W, C = X.shape
        w = X.reshape(H // 2, 2, W // 2, 2, C)
        mask = close(w, w.max(axis=(1, 3), keepdims=True)).astype(float)
        mask /= mask.sum(axis=(1, 3), keepdims=True)
        return {"X": (mask * grad_output[:, None, :, None, :]).reshape(H, W, C)}

    return backward


def _image() -> np.ndarray:
    """4 x 4 x 2, half of its windows with a runner-up 1e-12 below the maximum."""
    X = np.random.default_rng(3).normal(size=(4, 4, 2))
    w = X.reshape(2, 2, 2, 2, 2)
    for i, j, c in [(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)]:
        window = w[i, :, j, :, c]
        top = np.unravel_index(np.argmax(window), (2, 2))
        other = (1 - top[0], top[1])
        window[other] = window[top] - 1e-12
    return X


@pytest.mark.parametrize("method", METHODS)
def test_max_pool_split_at_near_ties_fails_and_the_strict_maximum_passes(method):
    X = _image()
    g = np.random.default_rng(4).normal(size=(2, 2, 2))
    r = gradcli.check("custom", {"X": X}, grad_output=g, forward=pool,
                      backward=pool_rule(np.isclose), method=method)  # fmt: skip
    assert not r.passed
    # the oracle: each window's gradient to its strict maximum
    right = pool_rule(np.equal)(g, X)["X"]
    np.testing.assert_allclose(r.numeric["X"], right, atol=1e-6)
    r = gradcli.check("custom", {"X": X}, grad_output=g, forward=pool,
                      backward=pool_rule(np.equal), method=method)  # fmt: skip
    assert r.passed, str(r)


@pytest.mark.parametrize("method", METHODS)
def test_max_pool_even_split_at_exact_ties_passes(method):
    X = np.random.default_rng(1).integers(0, 3, size=(6, 6, 2)).astype(float)
    g = np.random.default_rng(4).normal(size=(3, 3, 2))
    r = gradcli.check("custom", {"X": X}, grad_output=g, forward=pool,
                      backward=pool_rule(np.equal), method=method)  # fmt: skip
    assert r.passed, str(r)
    assert r.results["X"].kinks > 0


def _power4(x):
    return x**4


def _power4_backward(grad_output, x):
    return {"x": grad_output * 4 * x**3}


def _exp(x):
    return np.exp(x)


def _tanh(x, W):
    return np.tanh(x @ W)


def _tanh_backward(grad_output, x, W):
    d = grad_output * (1 - np.tanh(x @ W) ** 2)
    return {"x": d @ W.T, "W": x.T @ d}


rng = np.random.default_rng(5)
SMOOTH = {
    "x**4 at 1e3": (_power4, _power4_backward, {"x": 1e3 + rng.normal(size=(4, 5))}),
    "x**4 at 0.01": (_power4, _power4_backward, {"x": 0.01 * rng.normal(size=(4, 5))}),
    "exp at 30": (_exp, lambda grad_output, x: {"x": grad_output * np.exp(x)},
                  {"x": 30 + 5 * rng.normal(size=(4, 5))}),
    "exp at 600": (_exp, lambda grad_output, x: {"x": grad_output * np.exp(x)},
                   {"x": 600 + 30 * rng.normal(size=(4, 5))}),
    "sin(40 x)": (lambda x: np.sin(40 * x),
                  lambda grad_output, x: {"x": grad_output * 40 * np.cos(40 * x)},
                  {"x": rng.normal(size=(4, 5))}),
    "tanh(x W)": (_tanh, _tanh_backward, {"x": rng.normal(size=(16, 32)),
                                         "W": 0.3 * rng.normal(size=(32, 8))}),
}  # fmt: skip


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", SMOOTH)
def test_a_smooth_layer_of_large_curvature_reads_no_kink(case, method):
    forward, backward, tensors = SMOOTH[case]
    r = gradcli.check("custom", tensors, forward=forward, backward=backward, method=method)
    assert r.passed, str(r)
    assert all(res.kinks == 0 for res in r.results.values()), case


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", ["x**4 at 1e3", "tanh(x W)"])
def test_the_screen_costs_at_most_the_output_at_the_point(case, method, monkeypatch):
    """The screen reads central differences' own points and the output at x: on a smooth
    layer of ordinary scale it adds one call of the forward (central4), and for central the
    two copies at h/2 of the few coordinates whose central difference nearly cancels (it is
    the measure of curvature's share): within 1% of the calls (counted, not timed; the timing
    of your forward, which may take a call or two more on a loaded machine, aside)."""
    forward, backward, tensors = SMOOTH[case]
    calls = []

    @functools.wraps(forward)
    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    def run():
        calls.clear()
        r = gradcli.check("custom", tensors, forward=counted, backward=backward, method=method,
                          mode="full")  # fmt: skip
        assert r.passed, str(r)
        return len(calls)

    screened = run()
    monkeypatch.setattr(check_module, "_screens_bends", lambda p, name: False)
    plain = run()
    assert screened <= (plain + 4 if method == "central4" else 1.01 * plain + 4)


@pytest.mark.parametrize("method", METHODS)
def test_without_the_screen_the_half_at_near_kinks_would_pass(method, monkeypatch):
    """What the screen adds: the same check with it off is the wrong PASS it was."""
    monkeypatch.setattr(check_module, "_screens_bends", lambda p, name: False)
    assert _relu(relu_rule(0.5), method=method).passed
