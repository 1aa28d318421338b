"""Near-ties of a built-in layer's own kinks (outside test t9, K4 and K7): values equal in exact
arithmetic but apart by round-off (1 ulp ... 1e-10), and margins the forward rounds to 0.

A coordinate whose kink lies closer than any step whose round-off the tolerance allows cannot
be checked on a clean side: it is checked like a tie (numeric/kinks.py), so the built-in
backward passes with every method, while the bugs the ties catch (every tied element, a
routing outside the window's maxima, a hinge counted on one side only) still fail. Oracles:
the built-in backward is the exact derivative at the point (it routes to the strict maximum,
counts the margins the forward found > 0); the wrong ones are written by hand."""

import numpy as np
import pytest

import gradcli
from gradcli.layers import REGISTRY
from gradcli.layers._pool import Options

U = 2.0**-52  # one ulp of 1.0


# ---------------------------------------------------------------- svm: margins rounded to 0
def _svm_forward(x, y):
    """svm's forward in torch's multi_margin_loss's order: x - (x_y - 1) (ours: (x - x_y) + 1)."""
    n = x.shape[0]
    m = x - (x[np.arange(n), y][:, None] - 1.0)
    m[np.arange(n), y] = 0
    return np.maximum(m, 0).sum() / n


def _svm_counting(ge_class, ge_true):
    """A backward whose class columns count margins >= 0 (``ge_class``) or > 0, and whose true
    class counts them the same way or not (``ge_true``)."""

    def backward(grad_output, x, y):
        n = x.shape[0]
        m = x - (x[np.arange(n), y][:, None] - 1.0)
        m[np.arange(n), y] = -1.0
        a, b = (m >= 0 if ge_class else m > 0), (m >= 0 if ge_true else m > 0)
        dx = a.astype(float)
        dx[np.arange(n), y] = -b.sum(axis=1)
        return {"x": grad_output * dx / n}

    return backward


@pytest.mark.parametrize("big", [1e17, 1e300])
def test_svm_at_scores_whose_margins_round_to_zero(big):
    """Equal scores of 1e17: (x - x_y) + 1, ours, is 1, and x - (x_y - 1), torch's
    multi_margin_loss's order, rounds it to exactly 0, a margin below the scores' last bit
    (16): the kink map calls every margin a near-tie, and dx = 0 (torch's) and ours both lie
    between the one-sided slopes; the user's forward in torch's order is ours to the scores'
    rounding (it was 'your forward does not match' at 1e300: outside test t67a F1)."""
    x, y = np.full((1, 3), big), np.array([0])
    kinks = REGISTRY["svm"].kinks("x", {"x": x, "y": y}, None, np.zeros(x.shape))
    assert kinks.all()
    for method in ("central", "complex"):
        r = gradcli.check("svm", {"x": x, "y": y}, method=method)
        assert r.passed, (method, str(r))
        assert r.results["x"].kinks == 3
    # twins: a class counted but not the true class's push (or the reverse) fails
    for cls, true in ((True, False), (False, True)):
        r = gradcli.check("svm", {"x": x, "y": y}, forward=_svm_forward,
                          backward=_svm_counting(cls, true))  # fmt: skip
        assert not r.passed, (cls, true)
    r = gradcli.check("svm", {"x": x, "y": y}, forward=_svm_forward,
                      backward=_svm_counting(True, True))  # fmt: skip
    assert r.passed, str(r)  # every margin at 0 counted on both sides: a valid subgradient


@pytest.mark.parametrize(("big", "dtype"), [(1e17, np.float64), (1e300, np.float64),
                                          (1e8, np.float32)])  # fmt: skip
def test_a_forward_in_another_order_is_ours_to_the_scores_rounding(big, dtype):
    """Scores 1e17 apart by thousands: a loss of thousands whose margins cancel terms of 1e17,
    each rounded by 16 either way. The user's forward in torch's order differs from ours by
    that rounding and matches; twin: one three times ours, thousands off, does not."""
    x = (big * (1 + np.array([[0.0, 1.0, -1.0], [2.0, 0.0, 1.0]]) * 4e-14
                * (1 if dtype == np.float64 else 1e7))).astype(dtype)  # fmt: skip
    y = np.array([2, 1])
    check = {"dtype": "float32"} if dtype == np.float32 else {}
    right = gradcli.check("svm", {"x": x, "y": y}, forward=_svm_forward,
                          backward=_svm_counting(False, False), **check)  # fmt: skip
    assert right.forward.passed, right.verdict()
    assert REGISTRY["svm"].forward({"x": x.astype(float), "y": y}, None)[0] > 100
    wrong = gradcli.check("svm", {"x": x, "y": y}, forward=lambda x, y: 3 * _svm_forward(x, y),
                          backward=_svm_counting(False, False), **check)  # fmt: skip
    assert not wrong.forward.passed, wrong.verdict()


# ---------------------------------------------------------------- near-ties of max-pool windows
# 1.0 with entries d above and below: exact ties and near-ties in overlapping 2x2 windows
PATTERN = np.array([[0, 1, 0], [-1, 0, 1], [0, 0, 0]], dtype=float)
POOL = {"size": 2, "stride": 1}


def _near(d):
    return {"X": (1.0 + d * PATTERN)[..., None]}


def _pool_forward(X, size=2, stride=1, padding=0):
    H, W, C = X.shape
    n = (H - size) // stride + 1
    win = np.stack([X[i : i + size, j : j + size].reshape(-1, C)
                    for i in range(n) for j in range(n)])  # fmt: skip
    pick = np.argmax(win.real, axis=1)  # the first maximum, complex-safe
    return np.take_along_axis(win, pick[:, None], axis=1)[:, 0].reshape(n, n, C)


def _pool_backward(rule):
    """A 2x2 stride-1 max-pool backward sending each window's gradient by ``rule``: "first"
    (the first maximum: the built-in's, torch's), "all" (CS231n's ``win == win.max()``
    mask), "near" (every element within 1e-9 of the maximum), "min" (the window's minimum)."""

    def backward(grad_output, X, size=2, stride=1, padding=0):
        dX = np.zeros_like(X)
        n = grad_output.shape[0]
        for i in range(n):
            for j in range(n):
                win = X[i : i + 2, j : j + 2, 0]
                if rule == "first":
                    m = np.arange(4).reshape(2, 2) == np.argmax(win)
                elif rule == "all":
                    m = win == win.max()
                elif rule == "near":
                    m = win >= win.max() - 1e-9
                else:
                    m = np.arange(4).reshape(2, 2) == np.argmin(win)
                dX[i : i + 2, j : j + 2, 0] += grad_output[i, j, 0] * m
        return {"X": dX}

    return backward


@pytest.mark.parametrize("d", [U, 1e-14, 1e-12, 1e-10])
def test_builtin_max_pool_passes_at_near_ties_with_every_method(d):
    """Every halving of the step crosses a kink 1 ulp ... 1e-12 away, and a clean side at
    1e-13 reads round-off: the built-in's strict maximum failed ('cannot resolve', or a
    mismatch for one-sided methods). Read like a tie, it passes, nothing left unchecked."""
    for method in ("central", "forward", "backward", "central4", "complex"):
        r = gradcli.check("maxpool2d", _near(d), options=POOL, method=method, seed=1)
        assert r.passed, (d, method, str(r))
        assert r.results["X"].kinks_unchecked == 0 and not r.results["X"].unresolved


@pytest.mark.parametrize("d", [U, 1e-12])
def test_wrong_routings_still_fail_at_near_ties(d):
    """The twins: every tied (or near-tied) element, or the window's minimum, takes its
    gradient; the first maximum (the built-in's rule) written by hand passes."""
    for rule, method, passes in (("first", "forward", True), ("first", "central", True),
                                 ("all", "central", False), ("near", "forward", False),
                                 ("min", "central", False)):  # fmt: skip
        r = gradcli.check("maxpool2d", _near(d), options=POOL, forward=_pool_forward,
                          backward=_pool_backward(rule), method=method, seed=1)  # fmt: skip
        assert r.passed is passes, (rule, method, str(r))


def test_the_kink_map_reads_a_segment_from_its_start():
    """``start``: kinks in (x + start, x + step] only, the near-tie's 1 ulp left out (oracle:
    the windows' values written out)."""
    t = _near(U)
    kinks, options = REGISTRY["maxpool2d"].kinks, Options(**POOL)
    h = np.full((3, 3, 1), 1e-6)
    near = kinks("X", t, options, h) | kinks("X", t, options, -h) | kinks("X", t, options, 0 * h)
    assert near.all()  # every element at a tie, or within 1 ulp of one
    assert not kinks("X", t, options, 2 * h, h).any()  # none between 1e-6 and 2e-6 up
    assert not kinks("X", t, options, -2 * h, -h).any()  # nor down
    x = t["X"].copy()
    x[2, 2, 0] = 1.0 + 1.5e-6  # X[1, 1], X[1, 2], X[2, 1] meet it 1.5e-6 up, in w11 only
    far = kinks("X", {"X": x}, options, 2 * h, h)[..., 0]
    assert far.tolist() == [[False] * 3, [False, True, True], [False, True, False]]


def test_near_ties_in_sampled_and_probed_checks_and_answers_files():
    """A sample's ties' partners are read by the declared kinks too (near-ties as ties, the
    windows' routings kept), a probe falls back to them, and --grads holding the built-in's
    own gradient passes; the all-ties mask's answers fail."""
    t, g = _near(1e-13), np.array([0.7, -1.2, 1.8, -0.1]).reshape(2, 2, 1)
    for mode in ("sample", "probe"):
        r = gradcli.check("maxpool2d", t, options=POOL, grad_output=g, mode=mode, samples=4)
        assert r.passed, (mode, str(r))
    ours = gradcli.compute("maxpool2d", t, options=POOL, grad_output=g)
    r = gradcli.check("maxpool2d", t, options=POOL, grad_output=g, grads=ours.gradients)
    assert r.passed, str(r)
    wrong = _pool_backward("all")(g, t["X"])
    r = gradcli.check("maxpool2d", t, options=POOL, grad_output=g, grads=wrong)
    assert not r.passed


# ---------------------------------------------------------------- relu and the hinge near 0
@pytest.mark.parametrize("layer", ["relu", "leaky_relu"])
def test_activations_at_inputs_a_hair_from_zero(layer):
    """x = +-1e-13, +-5e-324 (the smallest subnormal), 0 with an upstream of both signs: the
    built-in passes every method, a mask shifted to 1e-3 fails (oracle: the mask itself)."""
    x = np.array([1e-13, -1e-13, 5e-324, -5e-324, 0.0, 2e-3, -2e-3, 0.5])
    g = np.array([0.3, -1.7, 2.0, 0.9, -0.4, -0.8, 1.3, 1.1])
    slope = 0.0 if layer == "relu" else 0.01
    for method in ("central", "backward", "complex"):
        r = gradcli.check(layer, {"x": x}, grad_output=g, method=method)
        assert r.passed, (method, str(r))

    def shifted(grad_output, x, alpha=0.01):
        return {"x": grad_output * np.where(x > 1e-3, 1.0, slope)}

    r = gradcli.check(layer, {"x": x}, grad_output=g, backward=shifted,
                      forward=lambda x, alpha=0.01: np.where(x.real > 0, x, slope * x))  # fmt: skip
    assert not r.passed
    assert r.results["x"].worst_index in [(0,), (2,), (5,)]  # 0 < x <= 1e-3


def test_svm_at_margins_a_hair_from_zero():
    """Margins of +-1 ulp and +-1e-13: the built-in (strict margins) passes with the
    one-sided methods too; a backward whose class column counts a margin of 1e-13 while its
    true class does not fails (the true class's clean side reads the count)."""
    x = np.array([[2.0, 1 + U, 1 - 2 * U, 0.3], [0.5, 0.5 - 1e-13, 3.0, -0.5 + 1e-13]])
    y = np.array([0, 0])
    for method in ("central", "forward", "backward"):
        r = gradcli.check("svm", {"x": x, "y": y}, method=method)
        assert r.passed, (method, str(r))

    def counted(grad_output, x, y):
        n = x.shape[0]
        m = x - (x[np.arange(n), y][:, None] - 1.0)
        m[np.arange(n), y] = -1.0
        dx = (m > 0).astype(float)
        dx[np.arange(n), y] = -(m > 1e-9).sum(axis=1)  # the true class misses 1e-13
        return {"x": grad_output * dx / n}

    r = gradcli.check("svm", {"x": x, "y": y}, forward=_svm_forward, backward=counted)
    assert not r.passed


def test_float32_near_ties():
    x = (1.0 + 1e-7 * PATTERN)[..., None].astype(np.float32)  # 1 float32 ulp is 1.2e-7
    r = gradcli.check("maxpool2d", {"X": x}, options=POOL, seed=1)
    assert r.passed, str(r)


def test_a_sampled_svm_at_integer_scores_runs_its_ties_one_copy_each():
    """Integer scores tie margins at 0; a sample's ties told apart into groups, one of them at
    the end alone, sent the groups to copies of their own (an output, the loss, no group owns)
    and crashed there on arrays of two sizes (exit 3). The built-in passes; the twin whose true
    class counts margins of exactly 0 and whose columns do not fails."""
    rng = np.random.default_rng(13)
    x, y = rng.integers(0, 3, (8, 4)).astype(float), rng.integers(0, 4, 8)
    r = gradcli.check("svm", {"x": x, "y": y}, mode="sample", samples=6, seed=13)
    assert r.passed, str(r)
    r = gradcli.check("svm", {"x": x, "y": y}, forward=_svm_forward, mode="sample", samples=6,
                      backward=_svm_counting(False, True), seed=13)  # fmt: skip
    assert not r.passed


def test_exact_ties_beside_near_ties_with_tight_tolerances():
    """Integer values and some 4 ulps off (a tie beside a near-tie in an overlapping window),
    under central4's and the complex step's tolerances (rtol 1e-8, 1e-10), where any
    one-sided difference's round-off takes an eighth of the tolerance: only a step the
    halving shrank is read as a near-tie (every exact tie was), and a maximum a few ulps
    above its runner-up keeps its window's routing (the group sums alone, over windows of both
    signs, moved its value)."""
    rng = np.random.default_rng(22)
    X = rng.integers(0, 3, (5, 5, 1)) + rng.choice([-1, 0, 1], (5, 5, 1)) * 2.0**-50
    for method in ("central4", "complex"):
        r = gradcli.check("maxpool2d", {"X": X}, options=POOL, method=method, seed=22)
        assert r.passed, (method, str(r))


def _svm_dx(x, y, threshold):
    """CS231n's svm dx whose masks count a margin only above ``threshold`` (0: the right one)."""
    n = x.shape[0]
    r = np.arange(n)
    m = x - x[r, y][:, None] + 1
    m[r, y] = -1
    act = m > threshold
    dx = act.astype(float)
    dx[r, y] -= act.sum(axis=1)
    return dx / n


@pytest.mark.parametrize("method", ["central", "central4"])
@pytest.mark.parametrize("d", [1e-9, 1e-6])
def test_a_margin_far_beyond_round_off_is_no_near_tie(method, d):
    """Masks that skip a margin of +d (threshold 2d) passed under central4, whose strict
    tolerance made the clean side's round-off look large and the margin a near-tie whose
    interval admitted 0 (the outside tester's W1): a side read that far from its kink tells.
    The twin: the right masks pass at the same point."""
    x = np.array([[2.0, 1 + d, 1 - d, 0.0], [1.0, 1.0, 2.0, 2.0], [3.0, 2.0, 2.0, 3.0],
                  [0.3, 0.1, -2.9, 0.25]])  # fmt: skip
    y = np.array([0, 2, 3, 0])
    wrong = gradcli.check("svm", {"x": x, "y": y}, method=method,
                          grads={"x": _svm_dx(x, y, 2 * d)})  # fmt: skip
    right = gradcli.check("svm", {"x": x, "y": y}, method=method, grads={"x": _svm_dx(x, y, 0)})
    assert not wrong.passed
    assert right.passed, str(right)


def _grid_scores(dtype):
    """Scores on a 0.1 grid with x_j = x_y - 1 in exact arithmetic: torch's order,
    x - (x_y - 1), rounds some margins to +-1e-17 (float64) or +-6e-8 (float32 scores,
    differenced in float64), and CS231n's (x - x_y) + 1, ours, in the scores' own dtype to
    exactly 0 at every one."""
    rng = np.random.default_rng(4)
    n, c = 12, 4
    y = rng.integers(0, c, n)
    x = np.round(rng.uniform(-2, 2, (n, c)), 1)
    for i in range(n):
        x[i, (y[i] + 1) % c] = float(f"{x[i, y[i]] - 1:.1f}")  # the decimal, rounded once
    return x.astype(dtype), y


def _cs231n_dx(x, y, ge, ge_true=None, torch_order=False):
    """CS231n's dx with its margins in the scores' dtype, masks > 0 or >= 0 (``ge``), the true
    class counted by the same mask or (``ge_true`` not None) by the other; ``torch_order``:
    the margins summed as x - (x_y - 1)."""
    n = x.shape[0]
    r = np.arange(n)
    one = x.dtype.type(1)
    m = x - (x[r, y][:, None] - one) if torch_order else (x - x[r, y][:, None]) + one
    m[r, y] = -1
    a = (m >= 0) if ge else (m > 0)
    b = a if ge_true is None else ((m >= 0) if ge_true else (m > 0))
    dx = a.astype(np.float64)
    dx[r, y] = -b.sum(axis=1)
    return dx / n


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("torch_order", [False, True], ids=["cs231n", "torch"])
def test_svm_margins_rounding_to_zero_in_another_order_are_near_ties(dtype, torch_order):
    """CS231n's svm rounds margins of x_j = x_y - 1 to exactly 0; torch's order to a hair
    either side, and whichever mask CS231n's code took failed where the forward's sum was on
    the other side (outside test t65b F1). A margin within the rounding of its sum is a
    near-tie: both masks pass, in either order; a true class counting those margins otherwise
    than its columns still fails."""
    x, y = _grid_scores(dtype)
    x64 = x.astype(np.float64)
    other = x64 - (x64[np.arange(len(y)), y][:, None] - 1.0)
    other[np.arange(len(y)), y] = 1.0
    assert np.any((other != 0) & (np.abs(other) < 1e-6)), "no margin a hair from zero"
    check = {"dtype": "float32"} if dtype == np.float32 else {}
    for ge in (False, True):
        right = _cs231n_dx(x, y, ge, torch_order=torch_order)
        r = gradcli.check("svm", {"x": x, "y": y}, grads={"x": right}, **check)
        assert r.passed, (ge, r.verdict())
    for ge in (False, True):  # the twins: columns by one mask, the true class by the other
        wrong = _cs231n_dx(x, y, ge, ge_true=not ge, torch_order=torch_order)
        r = gradcli.check("svm", {"x": x, "y": y}, grads={"x": wrong}, **check)
        assert not r.passed, (ge, r.verdict())


def test_an_svm_answer_of_eighths_is_not_called_float32_work():
    """A wrong svm dx of multiples of 1/8 (every element a float32 number, as the right one's
    are) beside a float32 run of the built-in whose near-ties flipped (0.5 off): the hint said
    it was computed or stored in float32 (outside test t65b F5)."""
    x, y = _grid_scores(np.float64)
    wrong = 1.5 * _cs231n_dx(x, y, False)
    r = gradcli.check("svm", {"x": x, "y": y}, grads={"x": wrong})
    assert not r.passed
    assert all(h.cause != "precision:float32" for h in r.results["x"].hints), r.results["x"].hints


def _svm_dx32(x, y):
    """CS231n's dx in float32 (margins x - x_y + 1 > 0), as float64."""
    n = x.shape[0]
    m = x - x[np.arange(n), y][:, None] + np.float32(1)
    m[np.arange(n), y] = -1
    dx = (m > 0).astype(np.float64)
    dx[np.arange(n), y] = -(m > 0).sum(axis=1)
    return dx / n


def test_a_float32_route_flip_is_no_round_off_to_allow_16_times():
    """float32 scores on a 0.1 grid: a margin of 2.2e-8 rounds to 0 in float32, the built-in's
    float32 run takes the other route there, and 16 times that 'round-off' (a whole 1/N) let
    dx[0, 1] = 3 where 1/3 is right pass (outside test t66a F1). The twin: the right answer
    passes."""
    x = np.array([[0.1, -0.9, -2.0, 0.3], [0.7, -0.3, -0.5, 0.2], [-0.4, 0.6, 0.6, -1.4]],
                 dtype=np.float32)  # fmt: skip
    y = np.array([0, 0, 1])
    right = _svm_dx32(x, y)
    assert gradcli.check("svm", {"x": x, "y": y}, grads={"x": right}, dtype="float32").passed
    wrong = right.copy()
    wrong[0, 0], wrong[0, 1] = -4.0, 3.0
    for dtype in ("float32", "float64"):
        r = gradcli.check("svm", {"x": x, "y": y}, grads={"x": wrong.astype(np.float32)},
                          dtype=dtype)  # fmt: skip
        assert not r.passed, (dtype, r.verdict())


def test_a_margin_no_order_rounds_to_zero_is_a_margin():
    """float32 scores 10 (the true class) and the float after 9: a margin of 1 ulp, 9.5e-7 in
    every order of x - x_y + 1, was taken for a near-tie and an answer leaving it out passed
    (outside test t66a F3). The twin: the answer counting it passes."""
    x = np.array([[10.0, np.nextafter(np.float32(9), np.float32(10)), 3.5, 7.25],
                  [0.5, -1.0, 2.0, 1.25], [1.0, -2.0, 4.0, 0.0]], dtype=np.float32)
    y = np.array([0, 1, 3])
    right = _svm_dx32(x, y)
    assert right[0, 1] > 0  # counted: the margin is positive
    assert gradcli.check("svm", {"x": x, "y": y}, grads={"x": right}, dtype="float32").passed
    wrong = right.copy()
    wrong[0] = 0.0
    r = gradcli.check("svm", {"x": x, "y": y}, grads={"x": wrong}, dtype="float32")
    assert not r.passed, r.verdict()


def test_the_built_ins_line_says_cannot_be_resolved_where_the_step_cannot():
    """float32 svm scores of 1e17 beside scores of 1: the loss's round-off at the small
    scores' steps is millions of times their slope, and the check cannot resolve dx. Beside
    torch's right answer, our own backward read 'built-in dx does not match', blaming the
    built-in for the numerical side (outside test t66a F4); it cannot be resolved either."""
    x = np.array([[1e17, 1e17, 3e16, -1e17], [5e16] * 4, [1.0, 1e17, -1e17, 0.5]], np.float32)
    y = np.array([0, 2, 3])
    right = REGISTRY["svm"].backward(np.float64(1.0), REGISTRY["svm"].forward(
        {"x": x.astype(float), "y": y}, None)[1])["x"]  # fmt: skip
    r = gradcli.check("svm", {"x": x, "y": y}, grads={"x": right}, dtype="float32")
    assert not r.passed and r.results["x"].unresolved
    text = r.table(width=100)
    assert "built-in dx cannot be resolved" in text and "does not match" not in text, text
