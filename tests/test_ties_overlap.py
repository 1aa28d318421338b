"""Ties in overlapping max-pool windows (stride < size): an element tied in several windows
may take any one of those windows' gradients, whatever the others do, so its interval at the
kink is taken output by output (numeric/kinks.both_sides), not from the loss's two slopes: an
element in windows of upstream +1 and -1 moves the loss by 0 on both sides, while torch's
first-element rule gives it +1 (outside test L1: gradcli's own backward failed). Oracle: the
routing rules are written out here by window loops; the built-in backward is also torch's.
Twins: every tied element the gradient, none, a non-tied element of the window, an element
outside it: each still fails, at exact ties and near ones, overlapping or not."""

import numpy as np
import pytest

import gradcli

OVERLAPPING = [
    {"size": 2, "stride": 1},
    {"size": 3, "stride": 1},
    {"size": 3, "stride": 2, "padding": 1},
    {"size": [1, 2], "stride": 1},
]
DISJOINT = {"size": 2, "stride": 2}


def windows(shape, size=2, stride=None, padding=0):
    """Each window's (row, column) elements of X (H, W, C), padding left out, as lists."""
    kh, kw = (size, size) if isinstance(size, int) else size
    sh, sw = (kh, kw) if stride is None else (stride, stride)
    H, W = shape[0], shape[1]
    ho, wo = (H + 2 * padding - kh) // sh + 1, (W + 2 * padding - kw) // sw + 1
    for i in range(ho):
        for j in range(wo):
            cells = [(r, c) for r in range(i * sh - padding, i * sh - padding + kh)
                     for c in range(j * sw - padding, j * sw - padding + kw)
                     if 0 <= r < H and 0 <= c < W]  # fmt: skip
            yield (i, j), cells


def forward(X, size=2, stride=None, padding=0):
    """The max over each window, by taps over X padded with -inf (any leading axes)."""
    kh, kw = (size, size) if isinstance(size, int) else size
    sh, sw = (kh, kw) if stride is None else (stride, stride)
    pad = [(0, 0)] * (X.ndim - 3) + [(padding, padding), (padding, padding), (0, 0)]
    Xp = np.pad(X, pad, constant_values=-np.inf)
    ho = (Xp.shape[-3] - kh) // sh + 1
    wo = (Xp.shape[-2] - kw) // sw + 1
    taps = [Xp[..., m : m + sh * (ho - 1) + 1 : sh, n : n + sw * (wo - 1) + 1 : sw, :]
            for m in range(kh) for n in range(kw)]  # fmt: skip
    return np.max(taps, axis=0)


def routed(rule):
    """A backward sending each window's gradient by ``rule``: "first" or "last" tied maximum
    (row-major), "all" of them, "none" at a tie, "runner_up" (the window's largest element
    below its maximum, when there is one), "outside" (at a tie, the element right of the
    window's first maximum when it lies outside the window)."""

    def backward(grad_output, X, size=2, stride=None, padding=0):
        dX = np.zeros_like(X)
        for (i, j), cells in windows(X.shape, size, stride, padding):
            for ch in range(X.shape[2]):
                v = np.array([X[r, c, ch] for r, c in cells])
                top = np.flatnonzero(v == v.max())
                below = np.flatnonzero(v < v.max())
                pick = {"first": top[:1], "last": top[-1:], "all": top,
                        "none": top if len(top) == 1 else top[:0]}.get(rule, top[:1])  # fmt: skip
                targets = [cells[k] for k in pick]
                if rule == "runner_up" and below.size:
                    targets = [cells[below[np.argmax(v[below])]]]
                if rule == "outside" and len(top) > 1:
                    r, c = cells[top[0]]
                    while (r, c) in cells:
                        c += 1
                    targets = [(r, c)] if c < X.shape[1] else targets
                for r, c in targets:
                    dX[r, c, ch] += grad_output[i, j, ch]
        return {"X": dX}

    return backward


def points(shape=(5, 5, 2)):
    """X at exact ties (all ones; small integers), at near ones only (the integers apart by
    less than the central step, 6e-6: stencils cross the runner-up), and both (an element
    tied in one window and near its runner-up in another: only overlapping windows)."""
    rng = np.random.default_rng(3)
    ints = rng.integers(0, 3, shape).astype(float)
    near = ints + rng.permutation(ints.size).reshape(ints.shape) * 2.0**-24
    both = ints + rng.integers(0, 4, ints.shape) * 2.0**-20
    return {"ones": np.ones(shape), "integers": ints, "near": near, "both": both}


def check(X, options, rule, how):
    """The built-in maxpool2d with a user's backward (``impl``: its declared kinks), or a
    ``custom`` layer (the generic detector)."""
    g = np.random.default_rng(1).standard_normal(forward(X, **options).shape)
    return gradcli.check("maxpool2d" if how == "impl" else "custom", {"X": X}, options=options,
                         grad_output=g, forward=forward, backward=routed(rule))  # fmt: skip


@pytest.mark.parametrize("options", OVERLAPPING + [DISJOINT])
def test_the_builtin_backward_passes_at_ties_in_overlapping_windows(options):
    for name, X in points().items():
        report = gradcli.check("maxpool2d", {"X": X}, options=options)
        assert report.passed, (name, options, str(report))
        assert report.results["X"].kinks > 0


@pytest.mark.parametrize("how", ["impl", "custom"])
@pytest.mark.parametrize("options", [OVERLAPPING[0], OVERLAPPING[2], DISJOINT])
def test_any_tied_element_passes_and_the_twins_fail(options, how):
    # a custom layer's forward is called once per copy: a smaller X. The generic detector
    # sees a side from H/4 on: ties nearer than that, in windows that overlap, are beyond it
    pts = points((3, 4, 1) if how == "custom" else (5, 5, 2))
    exact = ("ones", "integers") if how == "custom" else tuple(pts)
    for name in exact:  # (near ties have one maximum a window: the last is the first)
        for rule in ("first",) if name == "near" else ("first", "last"):
            r = check(pts[name], options, rule, how)
            assert r.passed, (name, rule, how, str(r))
    # every tied element the full gradient, or none: each within its interval, the group not
    for rule in ("all", "none"):
        for name in ("ones", "integers"):
            assert not check(pts[name], options, rule, how).passed, (name, rule, how)
    # a window's gradient to an element that does not hold its maximum, or outside the window
    for name in ("integers", "near", "both"):
        assert not check(pts[name], options, "runner_up", how).passed, (name, how)
    assert not check(pts["integers"], options, "outside", how).passed, how
    # on all ones an element outside the window is tied in windows of its own: the built-in's
    # windows (Layer.maxima) hold the gradient to routings and it fails; a custom layer
    # declares none and a value within the sum of theirs passes its intervals (README)
    if how == "impl":
        assert not check(pts["ones"], options, "outside", how).passed


def test_torch_routes_as_the_builtin_does():
    torch = pytest.importorskip("torch")
    X = points()["integers"]
    for options in OVERLAPPING:
        g = np.random.default_rng(1).standard_normal(forward(X, **options).shape)
        ours = routed("first")(g, X, **options)["X"]
        size, stride = options["size"], options["stride"]
        xt = torch.tensor(X).permute(2, 0, 1)[None].requires_grad_()
        torch.nn.functional.max_pool2d(xt, size, stride, options.get("padding", 0)).backward(
            torch.tensor(g).permute(2, 0, 1)[None])  # fmt: skip
        np.testing.assert_array_equal(xt.grad[0].permute(1, 2, 0).numpy(), ours)
        assert gradcli.check("maxpool2d", {"X": X}, options=options, grad_output=g,
                             forward=forward, backward=routed("first")).passed  # fmt: skip
