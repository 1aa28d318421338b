"""Sample mode moves the sampled coordinates of one color together, as the full check moves a
whole color: a sample costs the colors it touches, not one forward per coordinate (outside
test F7: a sampled conv2d took 42 s where the full check took 17 s)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import gradcli
from gradcli.layers import get_layer
from gradcli.numeric.engine import Engine
from gradcli.numeric.sampling import sample_coordinates


def conv_forward(X, W, b):
    """A user's conv2d (valid, stride 1, channel-last), as ``init conv2d --impl`` asks."""
    kh, kw = W.shape[:2]
    Ho, Wo = X.shape[0] - kh + 1, X.shape[1] - kw + 1
    Z = np.zeros((Ho, Wo, W.shape[3]), dtype=np.result_type(X, W)) + b
    for m in range(kh):
        for n in range(kw):
            Z = Z + X[m : m + Ho, n : n + Wo] @ W[m, n]
    return Z


def conv_backward(grad_output, X, W, b):
    kh, kw = W.shape[:2]
    Ho, Wo = grad_output.shape[:2]
    dX, dW = np.zeros_like(X), np.zeros_like(W)
    for m in range(kh):
        for n in range(kw):
            dX[m : m + Ho, n : n + Wo] += grad_output @ W[m, n].T
            dW[m, n] = np.einsum("ijd,ijc->dc", X[m : m + Ho, n : n + Wo], grad_output)
    return {"X": dX, "W": dW, "b": grad_output.sum(axis=(0, 1))}


def conv_backward_last_row(grad_output, X, W, b):
    """The bug: the image's last row gets no gradient (an off-by-one in the window loop)."""
    grads = conv_backward(grad_output, X, W, b)
    grads["X"][-1] = 0.0
    return grads


def tensors(h=16, w=16):
    rng = np.random.default_rng(3)
    return {"X": rng.normal(size=(h, w, 1)), "W": rng.normal(size=(3, 3, 1, 1)),
            "b": rng.normal(size=1)}  # fmt: skip


def test_sampled_coordinates_of_a_color_move_together_and_read_the_per_coordinate_values():
    t = tensors(24, 24)
    copies = []
    conv = get_layer("conv2d")

    def counted(ts, options):  # the stacked copies each forward call evaluates
        copies.append(ts["X"].shape[0] if ts["X"].ndim == 4 else 1)
        return conv.forward(ts, options)

    layer = dataclasses.replace(conv, forward=counted)
    g = np.random.default_rng(4).normal(size=(22, 22, 1))
    engine = Engine(layer, t, conv.make_options({}), g)
    coords = sample_coordinates((24, 24, 1), 64, np.zeros((24, 24, 1)), np.random.default_rng(0))
    copies.clear()
    grad, info = engine.gradient("X", coords=coords)
    # 3 x 3 colors, two stencil points each, and the footprint's verification (four copies)
    assert info.coloring and info.colors == 9 and sum(copies) <= 2 * 9 + 4
    # the oracle: one coordinate per copy (no coloring), the plain finite difference
    plain = Engine(conv, t, conv.make_options({}), g)
    alone, _ = plain.gradient("X", coloring=False, coords=coords)
    assert np.allclose(grad.ravel()[coords], alone.ravel()[coords], rtol=1e-9, atol=1e-12)
    assert np.isnan(np.delete(grad.ravel(), coords)).all()  # not sampled: not computed


def test_a_sample_costs_its_colors_not_its_coordinates():
    """Counted through a user's forward (one call per perturbed copy): a sample of 200 of the
    256 coordinates of X runs no more forwards than one of a single coordinate plus the
    colors (9 of X, 9 of W, two points each) and a footprint's verification."""
    calls = []

    def forward(X, W, b):
        calls.append(1)
        return conv_forward(X, W, b)

    def count(samples):
        calls.clear()
        r = gradcli.check("conv2d", tensors(), forward=forward, backward=conv_backward,
                          mode="sample", samples=samples)  # fmt: skip
        assert r.passed and r.results["X"].checked == min(samples, 256)
        return len(calls)

    few, many = count(1), count(200)
    assert many - few <= 2 * (9 + 9) + 4  # one copy per coordinate: over 400 more


def test_a_sampled_check_catches_a_bug_at_a_few_coordinates_of_X():
    ok = gradcli.check("conv2d", tensors(), forward=conv_forward, backward=conv_backward,
                       mode="sample", samples=32)  # fmt: skip
    assert ok.passed and ok.results["X"].mode == "sample"
    bad = gradcli.check("conv2d", tensors(), forward=conv_forward,
                        backward=conv_backward_last_row, mode="sample", samples=32)  # fmt: skip
    x = bad.results["X"]
    # (32 drawn, and where the built-in comparison found the backward worst: t54a F1)
    assert not bad.passed and not x.passed and x.checked in (32, 33)
    assert x.worst_index[0] == 15  # named on the wrong row
    assert bad.results["W"].passed and bad.results["b"].passed


@pytest.mark.parametrize("seed", range(3))
def test_sample_coordinates_are_the_stratified_picks(seed):
    """The same picks as the plain formulation (a full sort, the complement built), which
    sampled 262,144 coordinates in 0.3 s: corners, edges, the largest entries, random ones."""
    rng = np.random.default_rng(seed)
    shape = (30, 40)
    a = np.round(rng.normal(size=shape), 1)  # many ties among the largest
    a[0, 5] = np.nan
    k = 50
    got = sample_coordinates(shape, k, a, np.random.default_rng(seed))
    r = np.random.default_rng(seed)
    q = k // 4
    corners = np.ravel_multi_index(np.array([[0, 0], [0, 39], [29, 0], [29, 39]]).T, shape)
    picked = list(corners[:q])
    for _ in range(q):
        idx = [int(r.integers(n)) for n in shape]
        axis = int(r.integers(2))
        idx[axis] = int(r.choice([0, shape[axis] - 1]))
        picked.append(int(np.ravel_multi_index(idx, shape)))
    picked += list(np.argsort(-np.abs(a.ravel()), kind="stable")[:q])
    chosen = np.unique(picked)
    rest = np.setdiff1d(np.arange(a.size), chosen)
    extra = r.choice(rest, size=k - len(chosen), replace=False)
    assert np.array_equal(got, np.unique(np.concatenate([chosen, extra])))


def test_over_the_budget_only_a_sample_that_is_cheaper_is_taken():
    """64 coordinates of X touch all 9 colors: a sample costs the full check, which runs (and
    the note says why). One coordinate per copy (no coloring), X's sample is cheaper; W's 9
    and b's 1 coordinates would all be sampled: checked in full."""
    full = gradcli.check("conv2d", tensors(), budget=0.0)
    assert full.passed and full.check.mode == "full"
    assert {n: (r.mode, r.checked) for n, r in full.results.items()} == {
        "X": ("full", 256), "W": ("full", 9), "b": ("full", 1)}  # fmt: skip
    (note,) = full.notes
    assert "a sample of 64 coordinates per tensor as long: checked every coordinate" in note
    part = gradcli.check("conv2d", tensors(), budget=0.0, coloring=False)
    assert part.passed and part.check.mode == "sample"
    assert {n: (r.mode, r.checked) for n, r in part.results.items()} == {
        "X": ("sample", 64), "W": ("full", 9), "b": ("full", 1)}  # fmt: skip
    (note,) = part.notes
    assert "checked 64 sampled coordinates of dX and every coordinate of dW, db" in note
    again = gradcli.check("conv2d", tensors(), budget=0.0, coloring=False)
    assert again.to_json() == part.to_json()  # counted, never timed: the same decision


def test_a_failed_probe_is_rechecked_in_full_where_a_sample_is_no_cheaper():
    g = np.random.default_rng(5).normal(size=(14, 14, 1))
    off = conv_backward(g, **tensors())
    off["X"][-1, -1, 0] += 1e-3
    r = gradcli.check("conv2d", tensors(), grad_output=g, grads=off, mode="probe", budget=0.0)
    x = r.results["X"]
    assert not x.passed and x.mode == "full" and x.worst_index == (15, 15, 0)
    assert any("probe of dX disagreed" in n and "as long: checked every element" in n
               for n in r.notes)  # fmt: skip
