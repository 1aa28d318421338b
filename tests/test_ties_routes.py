"""At ties of overlapping max-pool windows the gradient must be a routing: each window's
upstream gradient split over that window's own tied maxima (numeric/routes.py), not merely
within per-coordinate intervals and group sums, which a window's gradient sent outside the
window (to a neighbour's tied element) met on an input of equal values.

Oracle: the routing rules are written out here by window loops over lists of cells, and
torch's max-pool backward (one valid routing) where torch is installed; the flow's own answers
are checked by their certificates (a flow meeting every bound, a cut as large as the flow).
Twins: the gradient sent outside its window, to no element, doubled, to the runner-up."""

import itertools
import math

import numpy as np
import pytest

import gradcli
from gradcli.numeric.maxflow import Network, feasible

CASES = [
    {"size": 3, "stride": 1},
    {"size": 2, "stride": 1},
    {"size": 3, "stride": 1, "padding": 1},
    {"size": 2, "stride": 1, "padding": 1},
]


def cells(shape, size, stride, padding=0):
    """Each window's (row, column) cells of X (H, W, C), padding left out."""
    H, W = shape[0], shape[1]
    ho, wo = (H + 2 * padding - size) // stride + 1, (W + 2 * padding - size) // stride + 1
    for i, j in itertools.product(range(ho), range(wo)):
        yield (i, j), [(r, c) for r in range(i * stride - padding, i * stride - padding + size)
                       for c in range(j * stride - padding, j * stride - padding + size)
                       if 0 <= r < H and 0 <= c < W]  # fmt: skip


def forward(X, size=2, stride=None, padding=0):
    """torch's max_pool2d, channel-last, by window loops (X: H, W, C)."""
    stride = size if stride is None else stride
    out = list(cells(X.shape, size, stride, padding))
    ho, wo = out[-1][0][0] + 1, out[-1][0][1] + 1
    Z = np.empty((ho, wo, X.shape[2]))
    for (i, j), cs in out:
        Z[i, j] = np.max([X[r, c] for r, c in cs], axis=0)
    return Z


def routed(rule):
    """A backward sending each window's gradient by ``rule``: "first" / "last" tied maximum
    (row-major; torch's is first), "even" (split over all of them), "double" (twice to the
    first), "none" (nowhere at a tie), "outside" (to the cell right of the window's first
    maximum, outside the window), "runner_up" (the largest element below the maximum)."""

    def backward(grad_output, X, size=2, stride=None, padding=0):
        stride = size if stride is None else stride
        dX = np.zeros_like(X)
        for (i, j), cs in cells(X.shape, size, stride, padding):
            for ch in range(X.shape[2]):
                v = np.array([X[r, c, ch] for r, c in cs])
                top = np.flatnonzero(v == v.max())
                g = grad_output[i, j, ch]
                share = {"first": {top[0]: g}, "last": {top[-1]: g},
                         "even": {k: g / len(top) for k in top}, "double": {top[0]: 2 * g},
                         "none": {top[0]: g} if len(top) == 1 else {}}.get(rule)  # fmt: skip
                if rule == "outside":
                    r, c = cs[top[0]]
                    while (r, c) in cs:
                        c += 1
                    share = {} if c >= X.shape[1] else None
                    if share is None:
                        dX[r, c, ch] += g
                        continue
                if rule == "runner_up":
                    below = np.flatnonzero(v < v.max())
                    share = {below[np.argmax(v[below])] if below.size else top[0]: g}
                for k, s in share.items():
                    dX[cs[k][0], cs[k][1], ch] += s
        return {"X": dX}

    return backward


def check(X, options, rule, g=None):
    if g is None:  # mixed signs
        g = np.random.default_rng(1).standard_normal(forward(X, **options).shape)
    return gradcli.check("maxpool2d", {"X": X}, options=options, grad_output=g,
                         forward=forward, backward=routed(rule))  # fmt: skip


@pytest.mark.parametrize("options", CASES)
def test_every_routing_passes_on_equal_values_and_the_wrong_ones_fail(options):
    X = np.ones((4, 4, 1))
    for rule in ("first", "last", "even"):
        r = check(X, options, rule)
        assert r.passed, (rule, str(r))
        assert r.results["X"].kinks == X.size
    for rule in ("outside", "none", "double"):
        r = check(X, options, rule)
        assert not r.passed, rule
        assert any("no routing" in n for n in r.notes), (rule, r.notes)


def test_a_window_gradient_sent_outside_the_window_is_named():
    # one row, windows {0,1} {1,2} {2,3}: the last window's gradient sent to element 1, which
    # is tied in the first two; intervals and group sums passed it
    X = np.ones((1, 4, 1))
    options = {"size": [1, 2], "stride": 1}
    g = np.ones((1, 3, 1))

    kw = {"options": options, "grad_output": g}
    first = {"X": np.array([1.0, 1.0, 1.0, 0.0]).reshape(1, 4, 1)}
    assert gradcli.check("maxpool2d", {"X": X}, grads=first, **kw).passed
    outside = {"X": np.array([1.0, 2.0, 0.0, 0.0]).reshape(1, 4, 1)}
    r = gradcli.check("maxpool2d", {"X": X}, grads=outside, **kw)
    assert not r.passed
    note = next(n for n in r.notes if "no routing" in n)
    # the certificate: the third window's 1 must stay in X[2] or X[3]
    assert ("every routing gives X[0, 2, 0], X[0, 3, 0] at least 1 in all (the windows tied "
            "there: Z[0, 1, 0], Z[0, 2, 0]), yours give 0") in note, note
    # compared with a routing: the first window's to X[0], the second's and third's where
    # they belong, X[1] and X[2]
    wrong = {tuple(w["index"]) for w in r.results["X"].worst if w["abs_error"] > 0}
    assert wrong == {(0, 1, 0), (0, 2, 0)}, r.results["X"].worst


def test_opposite_upstream_gradients_at_one_element():
    # an element tied in windows of +1 and -1 may take either (torch: the first) or both (0)
    X = np.ones((1, 3, 1))
    kw = {"options": {"size": [1, 2], "stride": 1}, "grad_output": np.array([[[1.0], [-1.0]]])}
    for right in ([0.0, 0.0, 0.0], [1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [0.5, 0.0, -0.5]):
        answer = {"X": np.array(right).reshape(1, 3, 1)}
        assert gradcli.check("maxpool2d", {"X": X}, grads=answer, **kw).passed, right
    for wrong in ([0.0, -1.0, 1.0], [-1.0, 0.0, 1.0], [0.0, 2.0, 0.0], [1.0, 1.0, -1.0]):
        answer = {"X": np.array(wrong).reshape(1, 3, 1)}
        assert not gradcli.check("maxpool2d", {"X": X}, grads=answer, **kw).passed, wrong


def test_the_runner_up_fails_off_ties():
    X = np.random.default_rng(5).standard_normal((5, 5, 2))
    for options in CASES[:2]:
        assert check(X, options, "first").passed
        assert not check(X, options, "runner_up").passed


IMPL = """
import numpy as np


def forward(X, size=2, stride=None, padding=0):
    s = size if stride is None else stride
    Xp = np.pad(X, [(padding, padding)] * 2 + [(0, 0)], constant_values=-np.inf)
    ho, wo = (Xp.shape[0] - size) // s + 1, (Xp.shape[1] - size) // s + 1
    return np.stack([Xp[m:m + s * (ho - 1) + 1:s, n:n + s * (wo - 1) + 1:s]
                     for m in range(size) for n in range(size)]).max(axis=0)


def backward(grad_output, X, size=2, stride=None, padding=0):
    s = size if stride is None else stride
    Xp = np.pad(X, [(padding, padding)] * 2 + [(0, 0)], constant_values=-np.inf)
    dXp = np.zeros_like(Xp)
    for i, j, c in np.ndindex(grad_output.shape):
        k = np.argmax(Xp[i * s:i * s + size, j * s:j * s + size, c])  # the first, as torch
        r, q = i * s + k // size + SHIFT, j * s + k % size
        dXp[r, q, c] += grad_output[i, j, c]
    return {"X": dXp[padding:padding + X.shape[0], padding:padding + X.shape[1]]}
"""


def test_an_impl_written_like_torch_passes_and_one_row_off_fails(cli_json, write_spec,
                                                                  tmp_path):  # fmt: skip
    spec = write_spec("layer: maxpool2d\noptions: {size: 3, stride: 1, padding: 1}\n"
                      "tensors:\n  X: {shape: [4, 4, 2], init: ones}\n")  # fmt: skip
    for shift, code in ((0, 0), (1, 1)):  # one row down: outside the window at its last row
        module = tmp_path / f"pool{shift}.py"
        module.write_text(IMPL.replace("SHIFT", str(shift)))
        out = cli_json("check", "maxpool2d", spec, "--impl", module, code=code)
        assert out["passed"] is (shift == 0), out
        assert out["results"]["X"]["kinks"] == 32


def test_torch_routes_validly_at_equal_values():
    torch = pytest.importorskip("torch")
    X = np.ones((4, 4, 2))
    for options in CASES[2:]:
        g = np.random.default_rng(2).standard_normal(forward(X, **options).shape)
        xt = torch.tensor(X).permute(2, 0, 1)[None].requires_grad_()
        torch.nn.functional.max_pool2d(
            xt, options["size"], options["stride"], options.get("padding", 0)
        ).backward(torch.tensor(g).permute(2, 0, 1)[None])
        theirs = xt.grad[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(theirs, routed("first")(g, X, **options)["X"])
        kw = {"options": options, "grad_output": g}
        assert gradcli.check("maxpool2d", {"X": X}, grads={"X": theirs}, **kw).passed
        # twin: one window's share given twice
        doubled = theirs.copy()
        doubled[0, 0, 0] += g[0, 0, 0]
        assert not gradcli.check("maxpool2d", {"X": X}, grads={"X": doubled}, **kw).passed


def test_maxflow_meets_its_cut():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = 7
        net = Network(n)
        for u, v in itertools.permutations(range(n), 2):
            if rng.random() < 0.4:
                net.add(u, v, float(rng.integers(1, 6)) if rng.random() < 0.9 else math.inf)
        try:
            flow = net.maxflow(0, n - 1)
        except ValueError:  # an infinite path
            continue
        side = net.reachable(0)
        assert not side[n - 1]
        cut = sum(net.total[e] for u in range(n) for e in net.out[u]
                  if e % 2 == 0 and side[u] and not side[net.head[e]])  # fmt: skip
        assert flow == pytest.approx(cut)


def test_feasible_flows_meet_their_bounds():
    rng = np.random.default_rng(1)
    found = 0
    for _ in range(30):
        edges = [(int(u), int(v), lo, lo + float(rng.integers(0, 3)))
                 for u, v in rng.integers(0, 5, (9, 2)) if u != v
                 for lo in [float(rng.integers(0, 2))]]  # fmt: skip
        flows = feasible(5, edges)
        if flows is None:
            continue
        found += 1
        net = np.zeros(5)
        for (u, v, lo, hi), f in zip(edges, flows, strict=True):
            assert lo - 1e-9 <= f <= hi + 1e-9
            net[u] -= f
            net[v] += f
        np.testing.assert_allclose(net, 0, atol=1e-9)
    assert found
    assert feasible(2, [(0, 1, 1.0, 2.0)]) is None  # 1 leaves node 0 and never returns


def test_a_piece_too_large_for_the_flow_keeps_the_intervals(monkeypatch):
    from gradcli.numeric import routes

    X = np.ones((1, 4, 1))
    kw = {"options": {"size": [1, 2], "stride": 1}, "grad_output": np.ones((1, 3, 1))}
    outside = {"X": np.array([1.0, 2.0, 0.0, 0.0]).reshape(1, 4, 1)}
    assert not gradcli.check("maxpool2d", {"X": X}, grads=outside, **kw).passed
    monkeypatch.setattr(routes, "LIMIT", 2)
    r = gradcli.check("maxpool2d", {"X": X}, grads=outside, **kw)
    assert r.passed  # the intervals' relaxation, said so
    assert any("not held to routings" in n for n in r.notes), r.notes
    # a piece's total is settled without a flow: a doubled gradient still fails
    doubled = {"X": np.array([2.0, 2.0, 2.0, 0.0]).reshape(1, 4, 1)}
    assert not gradcli.check("maxpool2d", {"X": X}, grads=doubled, **kw).passed


def test_windows_that_do_not_give_the_forward_are_not_used():
    from types import SimpleNamespace

    from gradcli.layers.maxpool2d import LAYER
    from gradcli.numeric import routes

    X = np.arange(16.0).reshape(4, 4, 1)
    options = LAYER.make_options({"size": 2, "stride": 1})
    right = LAYER.maxima("X", {"X": X.shape}, options)
    engine = SimpleNamespace(layer=LAYER, declared_maxima=None, t64={"X": X},
                             shapes={"X": X.shape}, options=options, g=np.ones(9))  # fmt: skip
    assert np.array_equal(routes.maxima_of(engine, "X"), right)
    engine.declared_maxima = lambda name, s, o: np.roll(right, 1, axis=0)  # a wrong window
    assert routes.maxima_of(engine, "X") is None
