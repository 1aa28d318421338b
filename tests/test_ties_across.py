"""Ties across tensors (numeric/joint.py): at ``maximum(a, b)``'s ``a == b`` each of ``a_i`` and
``b_i`` alone is a kink whose interval [0, 1] holds any value, but moving both together moves
the output by exactly the step: ``da_i + db_i`` must be the upstream gradient. A backward
giving both the full gradient, or neither, must fail; the correct ones (either tensor takes
it, or a half each) pass, at exact ties and near them, float64 and float32. Oracle: the joint
slope written by hand (max, min, clip: g; relu(a - b): 0)."""

import functools

import numpy as np
import pytest

import gradcli
from gradcli.numeric.nearest import nearest

A = np.array([1.0, 2.0, -0.5, 3.0, 0.25, -1.5])
B = np.array([1.0, 1.5, -0.5, 3.0, 1.0, -1.5])  # tied at 0, 2, 3, 5
TIES = [0, 2, 3, 5]
G = np.array([0.7, -1.3, 0.4, 2.0, 0.9, -0.6])


def _both(rule):
    def backward(grad_output, a, b):
        da, db = rule(a, b)
        return {"a": grad_output * da, "b": grad_output * db}

    return backward


# (forward, the joint slope at a tie per upstream g, correct backwards, wrong ones)
LAYERS = {
    "maximum": (lambda a, b: np.maximum(a, b), 1.0,
                [lambda a, b: (a >= b, a < b), lambda a, b: (a > b, a <= b),
                 lambda a, b: ((a > b) + 0.5 * (a == b), (a < b) + 0.5 * (a == b))],
                [lambda a, b: (a >= b, b >= a), lambda a, b: (a > b, b > a)]),
    "minimum": (lambda a, b: np.minimum(a, b), 1.0,
                [lambda a, b: (a <= b, a > b)],
                [lambda a, b: (a <= b, b <= a), lambda a, b: (a < b, b < a)]),
    "relu_of_difference": (lambda a, b: np.maximum(a - b, 0), 0.0,
                           [lambda a, b: (a > b, -1.0 * (a > b)),
                            lambda a, b: (a >= b, -1.0 * (a >= b))],
                           [lambda a, b: (a >= b, -1.0 * (a > b)),
                            lambda a, b: (a > b, -1.0 * (a >= b))]),
}  # fmt: skip


def _check(forward, rule, dtype="float64", b=B, **kw):
    return gradcli.check("custom", {"a": A.astype(dtype), "b": b.astype(dtype)},
                         grad_output=G, forward=forward, backward=_both(rule), **kw)  # fmt: skip


# float32-minimum left out: minimum is maximum's mirror through the same joint check (0.8 s)
@pytest.mark.parametrize(("dtype", "layer"), [
    *(("float64", layer) for layer in LAYERS),
    ("float32", "maximum"), ("float32", "relu_of_difference"),
])  # fmt: skip
def test_a_tie_across_tensors_must_sum_to_the_joint_slope(layer, dtype):
    forward, slope, right, wrong = LAYERS[layer]
    for rule in right:
        r = _check(forward, rule, dtype)
        assert r.passed, str(r)
        # the half each agrees with the central difference, but the one-sided differences
        # disagree there (numeric/bends.py): every rule's ties are examined and lie within
        assert r.results["a"].kinks == len(TIES)
    for rule in wrong:  # the twins: each coordinate within its own interval, the pair's sum not
        r = _check(forward, rule, dtype)
        assert not r.passed, layer
        failing = {int(i) for n in "ab" for i in r.results[n].kink_at
                   if not r.results[n].passed}  # fmt: skip
        assert failing <= set(TIES)
        # the values compared at the ties: the pair's sum is the joint slope (the oracle)
        pair = r.numeric["a"][TIES] + r.numeric["b"][TIES]
        np.testing.assert_allclose(pair, slope * G[TIES], atol=1e-6)


def test_the_twins_pass_one_tensor_at_a_time():
    """The twins' bugs are the joint move's alone: either tensor checked by itself (the other
    held fixed) passes, each coordinate between its one-sided slopes."""
    for rule in LAYERS["maximum"][3]:
        alone_a = gradcli.check(
            "custom", {"x": A}, grad_output=G, forward=lambda x: np.maximum(x, B),
            backward=lambda grad_output, x, r=rule: {"x": grad_output * r(x, B)[0]},
        )  # fmt: skip
        alone_b = gradcli.check(
            "custom", {"x": B}, grad_output=G, forward=lambda x: np.maximum(A, x),
            backward=lambda grad_output, x, r=rule: {"x": grad_output * r(A, x)[1]},
        )  # fmt: skip
        assert alone_a.passed and alone_b.passed


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_near_ties_pass_with_a_correct_backward(dtype):
    """a and b a hair apart (well within the step): each stencil crosses the tie, the joint
    move does not (it keeps a - b), and the strict order decides the gradient."""
    near = B + np.array([1e-9, 0, -1e-9, 3e-9, 0, -2e-9]) * (dtype == "float64")
    for layer, (forward, _, right, _) in LAYERS.items():
        for rule in right[:1]:
            r = _check(forward, rule, dtype, b=near)
            assert r.passed, (layer, str(r))


def _clip_backward(rule):
    def backward(grad_output, x, lo, hi):
        if rule == "torch":  # x where lo <= x <= hi, lo below it, hi above
            up = np.maximum(x, lo) > hi
            d = (~up & (x >= lo), ~up & (x < lo), up)
        elif rule == "all":
            d = ((x >= lo) & (x <= hi), x <= lo, x >= hi)
        else:  # none
            d = ((x > lo) & (x < hi), x < lo, x > hi)
        return {n: grad_output * v for n, v in zip(("x", "lo", "hi"), d, strict=True)}

    return backward


@pytest.mark.parametrize("method", ["central", "forward", "central4"])
def test_clip_with_tensor_bounds(method):
    """central4: lo's gradient is 0 everywhere, and so is every value compared for it (its ties
    take 0, between 0 and g): the one-sided slopes g, not the zeros, say the step resolves it."""
    x = np.array([0.0, 1.0, -1.0, 0.5, 2.0, -0.3, 0.7, 0.2])
    lo = np.array([0.0, 0.0, -1.5, -1.0, 0.0, -0.3, 0.7, 0.2])
    hi = np.array([1.0, 1.0, 1.0, 0.5, 1.0, 0.3, 0.9, 0.9])

    def forward(x, lo, hi):
        return np.minimum(np.maximum(x, lo), hi)

    t = {"x": x, "lo": lo, "hi": hi}
    ok = gradcli.check("custom", t, forward=forward, backward=_clip_backward("torch"),
                       method=method)  # fmt: skip
    assert ok.passed, str(ok)
    for rule in ("all", "none"):
        r = gradcli.check("custom", t, forward=forward, backward=_clip_backward(rule),
                          method=method)  # fmt: skip
        assert not r.passed, rule


def test_a_broadcast_bound_ties_with_many_elements():
    """b of shape (3,) against a (2, 3): b_j ties with both a_0j and a_1j through different
    outputs, one tie group of three; b's gradient sums over the rows."""
    a = np.array([[1.0, 2.0, 0.0], [1.0, -1.0, 0.0]])
    b = np.array([1.0, 0.5, 0.0])
    g = np.array([[0.5, 1.0, -2.0], [1.5, 0.25, 0.75]])

    def forward(a, b):
        return np.maximum(a, b)

    def backward(rule):
        def bwd(grad_output, a, b):
            da = a >= b
            db = (a < b) if rule == "ok" else (a <= b)
            return {"a": grad_output * da, "b": (grad_output * db).sum(axis=0)}

        return bwd

    ok = gradcli.check("custom", {"a": a, "b": b}, grad_output=g, forward=forward,
                       backward=backward("ok"))  # fmt: skip
    assert ok.passed, str(ok)
    bad = gradcli.check("custom", {"a": a, "b": b}, grad_output=g, forward=forward,
                        backward=backward("all"))  # fmt: skip
    assert not bad.passed


def test_nested_projection_keeps_a_consistent_point_and_meets_every_sum():
    lo, hi = np.zeros(4), np.ones(4)
    # a tie within one tensor (0, 1), inside the tie across tensors (all four)
    layers = [(np.array([0, 0, -1, -1]), np.array([0.0]), np.array([1.0])),
              (np.zeros(4, dtype=np.int64), np.array([1.0]), np.array([1.0]))]  # fmt: skip
    a = np.array([1.0, 0.0, 0.0, 0.0])
    assert nearest(a, lo, hi, layers).tolist() == a.tolist()
    v = nearest(np.array([1.0, 1.0, 1.0, 0.0]), lo, hi, layers)
    assert v[:2].sum() <= 1.0 + 1e-9 and v.sum() == pytest.approx(1.0, abs=1e-9)
    assert np.all(v >= -1e-12) and np.all(v <= 1 + 1e-12)


def test_the_complex_step_is_mirrored_at_ties():
    """np.maximum orders complex values by their real, then imaginary part: x + ih reads one
    side of the tie (1 for both a and b), which the both-full backward matches exactly; the
    mirror x - ih reads the other side, so those coordinates are examined like failing ones."""
    forward, _, right, wrong = LAYERS["maximum"]
    assert _check(forward, right[0], method="complex").passed
    assert not _check(forward, wrong[0], method="complex").passed


def test_the_conjugate_step_is_the_complex_step_on_an_analytic_forward():
    from gradcli.layers import REGISTRY
    from gradcli.numeric.engine import Engine
    from gradcli.numeric.methods import CONJUGATE

    x = np.random.default_rng(3).standard_normal((3, 4))
    e = Engine(REGISTRY["tanh"], {"x": x}, None, np.ones((3, 4)), method="complex")
    mirror = Engine(REGISTRY["tanh"], {"x": x}, None, np.ones((3, 4)), method="complex")
    mirror.method = CONJUGATE
    np.testing.assert_array_equal(mirror.gradient("x")[0], e.gradient("x")[0])
    np.testing.assert_allclose(e.gradient("x")[0], 1 - np.tanh(x) ** 2, rtol=1e-12)


def _half_to_a(a, b):
    """A tie's half to a (what its central difference reads) and all of it to b: 1.5 in all."""
    return (a > b) + 0.5 * (a == b), b >= a


@functools.cache
def _half_to_a_report():
    """The check of maximum with _half_to_a, read by two tests (each asserts its own part)."""
    return _check(LAYERS["maximum"][0], _half_to_a)


def test_a_tie_member_that_passes_alone_is_found_and_checked_with_its_tie():
    """a's coordinates at the ties agree with their central differences (0.5), so the
    detector, which examines failing coordinates, never saw them: they are found as moving the
    outputs of b's ties at a kink (numeric/partners.py), and the pair must sum to g."""
    forward, _, right, _ = LAYERS["maximum"]
    r = _half_to_a_report()
    assert not r.passed
    assert r.results["a"].kinks == len(TIES)  # found, examined, at a kink
    np.testing.assert_allclose(r.numeric["a"][TIES] + r.numeric["b"][TIES], G[TIES], atol=1e-6)
    assert _check(forward, right[2]).passed  # half each: nothing flagged, nothing to find


def test_within_one_tensor_too():
    """A max over pairs giving the first of a tie half and the second all of it."""
    x = np.array([1.0, 1.0, 2.0, 0.5, -1.0, -1.0])
    g = np.array([0.7, -1.3, 0.4])

    def backward(grad_output, x):
        p = x.reshape(-1, 2)
        tie = p[:, 0] == p[:, 1]
        d = np.stack([(p[:, 0] > p[:, 1]) + 0.5 * tie, p[:, 1] >= p[:, 0]], axis=1)
        return {"x": (d * grad_output[:, None]).ravel()}

    r = gradcli.check("custom", {"x": x}, grad_output=g, backward=backward,
                      forward=lambda x: x.reshape(-1, 2).max(axis=1))  # fmt: skip
    assert not r.passed
    assert r.results["x"].worst_index[0] in (0, 1, 4, 5)


def test_the_search_costs_one_set_on_a_smooth_tensor_and_stops_at_the_budget():
    import dataclasses

    from gradcli.layers import REGISTRY
    from gradcli.numeric import partners
    from gradcli.numeric.engine import Engine
    from gradcli.numeric.kinks import one_sided_step

    def forward(t, options):
        return np.maximum(t["a"], t["b"]) * t["w"], {}

    # a layer of the engine's own (no footprint, kinks or shortcuts): one call per copy
    layer = dataclasses.replace(
        REGISTRY["relu"], name="maximum", forward=forward, tensors=(), broadcasts=False,
        footprint=None, kinks=None, terms=None, perturbed=None, sources=None,
        forward_elements=None, perturbed_elements=None,
    )  # fmt: skip

    rng = np.random.default_rng(0)
    a = np.round(rng.standard_normal(300))
    b = np.round(rng.standard_normal(300))
    t = {"a": a, "b": b, "w": rng.standard_normal(300)}
    e = Engine(layer, t, None, rng.standard_normal(300))
    ties_at = np.flatnonzero(a == b)

    def tol(noise, ref):
        return np.maximum(1e-9, noise) + 1e-8 * np.abs(ref)

    # w is smooth: one set of all its coordinates, found to hold no kink
    h = one_sided_step(e, "w") / 4
    found, seconds, done = partners.find(e, "w", np.arange(300), ties_at, h, tol)
    assert found.size == 0 and done
    # a's ties reach b's: every one found, and no other
    h = one_sided_step(e, "a") / 4
    found, seconds, done = partners.find(e, "a", np.arange(300), ties_at, h, tol)
    assert found.tolist() == ties_at.tolist() and done and seconds > 0
    cut = partners.find(e, "a", np.arange(300), ties_at, h, tol, budget=0.0)
    assert not cut[2] and cut[0].size < ties_at.size


def test_a_tie_within_a_tensor_inside_a_tie_across_tensors():
    """z_i = max(a_2i, a_2i+1, b_i): a pair of a tied together and with b. The pair is a tie
    group of a (its sum between 0 and g) inside the tie across a and b (its sum g)."""
    a = np.array([1.0, 1.0, 2.0, 0.5, -1.0, -1.0, 0.0, 3.0])
    b = np.array([1.0, 1.0, -1.0, 0.0])  # pairs 0 and 2 tied with b_0, b_2; b_1 apart
    g = np.array([0.7, -1.3, 0.4, 2.0])

    def forward(a, b):
        return np.maximum(a.reshape(-1, 2).max(axis=1), b)

    def backward(rule):
        def bwd(grad_output, a, b):
            p = a.reshape(-1, 2)
            m = np.maximum(p.max(axis=1), b)
            first = p[:, 0] == m
            da = np.stack([first, (p[:, 1] == m) & ~first], axis=1)
            db = (b == m) & ~da.any(axis=1) if rule == "ok" else b == m
            return {"a": (da * grad_output[:, None]).ravel(), "b": grad_output * db}

        return bwd

    ok = gradcli.check("custom", {"a": a, "b": b}, grad_output=g, forward=forward,
                       backward=backward("ok"))  # fmt: skip
    assert ok.passed, str(ok)
    bad = gradcli.check("custom", {"a": a, "b": b}, grad_output=g, forward=forward,
                        backward=backward("both"))  # fmt: skip
    assert not bad.passed
    assert not bad.results["b"].passed or bad.results["a"].worst_index[0] in (0, 1)


def test_the_hint_names_the_tie_not_a_scale():
    """db is 1.333 x its values compared at every element where it is not 0 (all of them at
    ties): no constant factor, a tie's members that do not add up."""
    r = _half_to_a_report()
    hints = r.results["b"].hints
    assert hints and hints[0].cause == "ties" and "constant factor" not in hints[0], hints
    wrong_away = _check(LAYERS["maximum"][0], lambda a, b: (a >= b, 2.0 * (b >= a)))
    assert all(h.cause != "ties" for h in wrong_away.results["b"].hints)  # the twin


def test_a_sampled_tie_is_checked_with_its_members_outside_the_sample():
    """--mode sample: a tie whose other member was not sampled is still held to its sum (the
    member is found and shapes the tie's values, and is not compared itself). Seed 0 samples
    ties whose partners are left out: both members' full gradient passed there."""
    rng = np.random.default_rng(0)
    t = {"a": np.round(rng.standard_normal(40)), "b": np.round(rng.standard_normal(40))}
    forward, _, right, wrong = LAYERS["maximum"]
    r = gradcli.check("custom", t, forward=forward, backward=_both(wrong[0]), mode="sample",
                      samples=4, seed=0)  # fmt: skip
    assert not r.passed
    assert np.isfinite(r.numeric["a"]).sum() == 4  # the sample, and no more
    assert gradcli.check("custom", t, forward=forward, backward=_both(right[0]), mode="sample",
                         samples=4, seed=0).passed  # fmt: skip


@pytest.mark.parametrize(("share", "passed"), [(0.5, True), (1.0, False)])
def test_probe_mode_checks_a_tie_across_tensors_together(share, passed):
    """a's probe read a's half of maximum's tie as its central difference and passed; b's
    elements alone lay within their kinks: a half to a and all to b (1.5 in all) passed in
    probe mode only (the outside tester's K3). The twin: half and half passes."""
    a = np.array([0.5, -1.0, 2.0, 0.3, 1.0])
    b = np.array([0.5, -1.0, 2.0, -0.2, 1.5])
    g = np.array([1.0, -0.7, 0.4, 1.3, -0.9])

    def backward(grad_output, a, b):
        t = a == b
        return {"a": grad_output * ((a > b) + 0.5 * t),
                "b": grad_output * ((b > a) + share * t)}  # fmt: skip

    def forward(a, b):
        return np.maximum(a, b)

    report = gradcli.check(forward=forward, backward=backward, tensors={"a": a, "b": b},
                           grad_output=g, mode="probe")  # fmt: skip
    assert report.passed == passed and report.check.mode == "probe"
