"""Ties whose outputs bend opposite ways (outside test t21 F10): a custom ``relu(x @ W)`` at
integer inputs puts several units of a row at relu's kink, and moving the row's tied
coordinates together sends some of those units up and others down. With upstream gradients of
both signs the loss's two one-sided slopes along that move do not bound the valid gradients:
each unit may take its own piece whatever the others take. The tie group's sum was held
between the loss's two slopes, and its projection (a blend of pieces) was compared: torch's
backward (relu'(0) = 0) and the ``>= 0`` mask both FAILed, a backward giving 0.5 at 0 passed.
A group's sum is now held between the sums over its outputs of each one's smaller and larger
one-sided slope, as each coordinate's own value and each link already were.

Oracles, by hand: the layers below are sums of relus of linear maps, so the valid gradients at
the point are the chain rule's with each tied unit's slope s in [0, 1], chosen unit by unit
(``_valid``); relu'(0) = 0 is the gradient of the piece where every tied unit is inactive,
read by a plain central difference at a point nudged into that piece. Twins: slopes outside
[0, 1] at the ties, a mask inverted away from them, every tied input of a maximum given the
whole gradient or none still fail."""

import functools

import numpy as np
import pytest

import gradcli

# /tmp/t21/f10: rows 2 and 3 of x @ W hold 3 and 1 zeros
_X = np.array([[-1.0, 2, 0, 0], [1, 0, 2, 1], [-2, -2, 0, 2],
               [-2, 1, 1, 1], [2, -2, 0, 2], [-1, -2, 0, -2]])  # fmt: skip
_W = np.array([[-1.0, 1, 1, 1, 1], [1, -1, 0, 0, -1], [1, -1, 1, 0, -1], [1, 0, 1, 1, -1]])

_IMPL = """import numpy as np
# CS231n-style affine + relu (no bias), relu'(0) = 0 as torch
def forward(x, W):
    return np.maximum(x @ W, 0)
def backward(grad_output, x, W):
    a = x @ W
    da = grad_output * (a > 0)
    return {"x": da @ W.T, "W": x.T @ da}
"""


def _slope(kind):
    """relu's slope at each pre-activation ``a`` (a kind of tie rule, or a wrong mask)."""
    return {
        "torch": lambda a: (a > 0) * 1.0,  # relu'(0) = 0
        ">=": lambda a: (a >= 0) * 1.0,  # relu'(0) = 1
        "half": lambda a: np.where(a == 0, 0.5, a > 0),
        "two": lambda a: np.where(a == 0, 2.0, a > 0),  # beyond both pieces at the ties
        "minus": lambda a: np.where(a == 0, -0.5, a > 0),
        "inverted": lambda a: (a <= 0) * 1.0,  # wrong away from the ties
    }[kind]


def _affine_relu(kind, seen=None):
    def forward(x, W):
        return np.maximum(x @ W, 0)

    def backward(grad_output, x, W):
        if seen is not None:
            seen.append(np.array(grad_output))
        da = grad_output * _slope(kind)(x @ W)
        return {"x": da @ W.T, "W": x.T @ da}

    return forward, backward


def test_the_reported_case_passes_from_the_command_line(cli, tmp_path):
    np.save(tmp_path / "x.npy", _X)
    np.save(tmp_path / "W.npy", _W)
    (tmp_path / "affine_relu.py").write_text(_IMPL)
    (tmp_path / "s2.yaml").write_text("layer: custom\ntensors:\n  x: x.npy\n  W: W.npy\n")
    r = cli("check", "custom", tmp_path / "s2.yaml", "--impl", tmp_path / "affine_relu.py", "-q")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert r.stdout.startswith("PASS"), r.stdout


@functools.cache
def _torch_at_x():
    """torch's rule checked at _X: (the report, the upstream gradient the check drew)."""
    seen = []
    forward, backward = _affine_relu("torch", seen)
    r = gradcli.check("custom", {"x": _X, "W": _W}, forward=forward, backward=backward)
    return r, seen[0]


def test_torchs_value_there_is_the_adjacent_pieces_gradient():
    """The oracle behind the case above: dx[2, 3] = 0.3417 (the loss's left slope) is the
    gradient at a point nudged into the piece where a[2, 1:4] < 0, read by central
    differences away from every kink; and the check passes it."""
    r, g = _torch_at_x()
    assert r.passed, str(r)
    _, backward = _affine_relu("torch")
    a = _X @ _W
    assert np.count_nonzero(a[2] == 0) == 3
    d = np.array([-1.0, -1.0, 0.5, -1.0])  # moves a[2, 1:4] down, a[2, 0] and a[2, 4] stay apart
    assert np.all((d @ _W)[1:4] < 0)
    nudged = _X.copy()
    nudged[2] += 1e-3 * d
    loss = lambda x: float((np.maximum(x @ _W, 0) * g).sum())  # noqa: E731
    h = 1e-6
    e = np.zeros_like(_X)
    e[2, 3] = h
    piece = (loss(nudged + e) - loss(nudged - e)) / (2 * h)
    assert backward(g, _X, _W)["x"][2, 3] == pytest.approx(piece, abs=1e-8)


def _trials():
    """t21's draws (/tmp/t21/ties/t2.py): 1 to 8 zeros in x @ W; the last two failed."""
    rng = np.random.default_rng(1)
    out = []
    for _ in range(4):
        x = rng.integers(-2, 3, size=(6, 4)).astype(float)
        W = rng.integers(-1, 2, size=(4, 5)).astype(float)
        out.append((x, W))
    return out


# the twins where they cost least: a wrong slope at a tie is searched through every piece
# touching it before it fails (5 s a check at trial 3's 8 zeros). Beyond both pieces: below
# them at trial 0's lone kink, above them at trial 2's tie of 3 ("two" at trial 0: 4 s more);
# a mask wrong away from the ties fails alike at any trial: once
_TWINS = {0: ("minus", "inverted"), 2: ("two",), 3: ()}


# trial 1 (ties of 3 and 2 in a row, which passed before) left out: trial 2 holds a row's 3,
# trial 3 rows of 2 (4 s)
@pytest.mark.parametrize("trial", [0, 2, 3])
def test_any_slope_in_0_1_at_the_ties_passes_and_others_fail(trial):
    x, W = _trials()[trial]
    assert np.any(x @ W == 0)
    for kind, valid in (("torch", True), (">=", True), ("half", True),
                        *((k, False) for k in _TWINS[trial])):  # fmt: skip
        forward, backward = _affine_relu(kind)
        r = gradcli.check("custom", {"x": x, "W": W}, forward=forward, backward=backward)
        assert r.passed is valid, (kind, str(r))


# the smallest such tie: u = x0 + x1 and v = x0 - 2 x1 - 6 both 0 at x = (2, -2); moving x
# together sends u up and v down, and with g = (1, -0.25) the loss's slopes along (1, 1) are
# 2.5 and 0.75 (relu(x0)'s 0.5 in both): the sums of torch's dx (0.5) and of the >= mask's
# (2.75) lay outside them
_G = np.array([1.0, -0.25, 0.5])


def _small(s):
    """relu(u), relu(v), relu(x0) with slope ``s`` (per unit: u's, v's) at the tied units."""

    def forward(x):
        return np.maximum(np.stack([x[..., 0] + x[..., 1], x[..., 0] - 2 * x[..., 1] - 6,
                                    x[..., 0]], axis=-1), 0)  # fmt: skip

    def backward(grad_output, x):
        a = np.array([x[0] + x[1], x[0] - 2 * x[1] - 6, x[0]])
        tied = np.r_[s, 0.0]
        da = grad_output * np.where(a == 0, tied, a > 0)
        return {"x": np.array([da[0] + da[1] + da[2], da[0] - 2 * da[1]])}

    return forward, backward


def _valid(s):
    """The chain rule by hand with unit slopes s = (s_u, s_v): dx = s_u g_u (1, 1) + s_v g_v
    (1, -2) + g_0 (1, 0)."""
    return s[0] * _G[0] * np.array([1.0, 1.0]) + s[1] * _G[1] * np.array([1.0, -2.0]) + (
        _G[2] * np.array([1.0, 0.0]))  # fmt: skip


@pytest.mark.parametrize("s", [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.5, 0.5),
                               (0.3, 0.9)])  # fmt: skip
def test_each_tied_unit_may_take_its_own_piece(s):
    forward, backward = _small(np.array(s))
    x = np.array([2.0, -2.0])
    assert backward(_G, x)["x"] == pytest.approx(_valid(s))
    # the loss's own slopes along (1, 1), by hand: 2 g_u + 0.5 up, -g_v + 0.5 down
    sums = float(_valid(s).sum())
    if s in ((0.0, 0.0), (1.0, 1.0)):
        assert not (min(2.5, 0.75) <= sums <= max(2.5, 0.75))  # the old reference's interval
    r = gradcli.check("custom", {"x": x}, grad_output=_G, forward=forward, backward=backward)
    assert r.passed, (s, str(r))


@pytest.mark.parametrize("s", [(2.0, 2.0), (-0.5, -0.5), (0.0, 2.0), (1.5, 0.0)])
def test_a_slope_outside_0_1_at_a_tied_unit_still_fails(s):
    forward, backward = _small(np.array(s))
    x = np.array([2.0, -2.0])
    r = gradcli.check("custom", {"x": x}, grad_output=_G, forward=forward, backward=backward)
    assert not r.passed, (s, str(r))


def _maxout(rule):
    """max(x @ W1, x @ W2), each tensor's share at a tie from ``rule``."""

    def forward(x, W1, W2):
        return np.maximum(x @ W1, x @ W2)

    def backward(grad_output, x, W1, W2):
        a, b = x @ W1, x @ W2
        ma, mb = {
            "first": (a >= b, a < b),
            "last": (a > b, a <= b),
            "half": (np.where(a == b, 0.5, a > b), np.where(a == b, 0.5, a < b)),
            "both": (a >= b, b >= a),
            "none": (a > b, b > a),
        }[rule]
        da, db = grad_output * ma, grad_output * mb
        return {"x": da @ W1.T + db @ W2.T, "W1": x.T @ da, "W2": x.T @ db}

    return forward, backward


def test_a_maxout_at_integer_ties_passes_any_split_and_fails_both_or_none():
    """t21's maxout.py draw (seed 5, the fifth: 10 ties) whose first-wins backward failed."""
    rng = np.random.default_rng(5)
    for _ in range(5):
        x = rng.integers(-2, 3, size=(5, 3)).astype(float)
        W1 = rng.integers(-1, 2, size=(3, 4)).astype(float)
        W2 = rng.integers(-1, 2, size=(3, 4)).astype(float)
    assert np.count_nonzero(x @ W1 == x @ W2) == 10
    for rule, valid, rows in (("first", True, slice(None)), ("last", True, slice(None)),
                              ("half", True, slice(None)), ("both", False, slice(3, None)),
                              ("none", False, slice(3, None))):  # fmt: skip
        # the twins on rows 3 and 4 alone (5 of the 10 ties: a row of 4 tied units and one
        # of 1): 3 s, not 27 s, each reading its crowds of ties; row 2 has none
        t = {"x": x[rows], "W1": W1, "W2": W2}
        forward, backward = _maxout(rule)
        r = gradcli.check("custom", t, forward=forward, backward=backward)
        assert r.passed is valid, (rule, str(r))
    assert np.count_nonzero(x[3:] @ W1 == x[3:] @ W2) == 5


def test_the_backward_there_is_torchs_own():
    """Optional cross-check: torch.relu's autograd gives the backward above, bit for bit."""
    torch = pytest.importorskip("torch")
    _, g = _torch_at_x()
    _, backward = _affine_relu("torch")
    # relu's own backward, bit for bit (the products around it round as each BLAS sums: one
    # ulp apart between numpy's and torch's builds)
    a = torch.tensor(_X @ _W, requires_grad=True)
    torch.relu(a).backward(torch.tensor(g))
    np.testing.assert_array_equal(a.grad.numpy(), g * _slope("torch")(_X @ _W))
    x = torch.tensor(_X, requires_grad=True)
    W = torch.tensor(_W, requires_grad=True)
    torch.relu(x @ W).backward(torch.tensor(g))
    ours = backward(g, _X, _W)
    np.testing.assert_allclose(x.grad.numpy(), ours["x"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(W.grad.numpy(), ours["W"], rtol=0, atol=1e-14)
