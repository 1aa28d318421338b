"""A tensor the automatic step cannot resolve for its round-off alone is read again by the
complex step, which has no round-off (checking/complex_recheck.py). y = sin(x) + 1e-9
sum(sin(w)): dw of 2e-9 beside a modelled round-off of 1.6e-9 read "cannot resolve dw", exit 1,
on right code that --method complex passes (outside test t60b F1). Twins: a dw zeroed,
negated or 0.1% off never passes (the complex step's failure leaves it "cannot resolve"); a
step the user chose is theirs; a forward that takes no complex input stays "cannot resolve",
saying so. Larger real steps, tried before, let wrong
answers through (t61a, t62a, t63a): their cases are kept here, each failing now.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import gradcli

RNG = np.random.default_rng(7)
T = {"x": RNG.normal(size=(3, 4)), "w": RNG.normal(size=3)}


def _layer(k: float):
    def forward(x, w):
        return np.sin(x) + 1e-9 * np.sin(w).sum()

    def backward(grad_output, x, w):
        return {"x": grad_output * np.cos(x), "w": k * 1e-9 * grad_output.sum() * np.cos(w)}

    return forward, backward


def test_the_right_tiny_gradient_passes_by_the_complex_step():
    f, b = _layer(1.0)
    r = gradcli.check(forward=f, backward=b, tensors=T)
    assert r.passed, r.verdict()
    assert any(n.startswith("dw: the round-off at the automatic step") and "complex step" in n
               for n in r.notes), r.notes  # fmt: skip
    doc = json.loads(r.to_json())
    assert doc["results"]["w"]["method"] == "complex" and "method" not in doc["results"]["x"]
    assert "eps 6.06e-06; dw by the complex step)" in " ".join(str(r).split()), str(r)
    # the step the user gives is theirs: there it cannot be resolved, and nothing else read
    mine = gradcli.check(forward=f, backward=b, tensors=T, eps=doc["eps"])
    assert not mine.passed and mine.results["w"].unresolved, mine.verdict()
    assert "complex step" not in mine.results["w"].unresolved


def test_a_forward_taking_no_complex_input_stays_unresolved_saying_so():
    def forward(x, w):
        return np.sin(x) + 1e-9 * np.sin(np.mod(w, 10.0)).sum()

    def backward(grad_output, x, w):
        return {"x": grad_output * np.cos(x), "w": 1e-9 * grad_output.sum() * np.cos(w)}

    r = gradcli.check(forward=forward, backward=backward, tensors=T)
    assert not r.passed, r.verdict()
    assert "the complex step could not read it" in r.results["w"].unresolved


@pytest.mark.parametrize("k", [0.0, -1.0, 1.5, 1.001])
def test_a_wrong_tiny_gradient_never_passes(k):
    f, b = _layer(k)
    r = gradcli.check(forward=f, backward=b, tensors=T)
    assert not r.passed and not r.results["w"].passed, r.verdict()
    assert r.results["x"].passed


X8 = np.array([0.1257302, -0.1321049, 0.6404227, 0.1049001, -0.5356694, 0.3615951, 1.304, 0.947])
W5 = np.array([0.31, -0.52, 0.77, 0.12, -0.91])
G8 = np.array([1.0, -0.5, 0.7, 1.2, -0.3, 0.8, 0.4, -1.1])
K, S, CENTER, C = 3e-3, 2e-4, 0.3098, 3e-10
A = 1024 * np.pi


def _bump(x, w):
    return np.sin(x) + C * (np.sin(w).sum() + K * np.exp(-(w[0] - CENTER) ** 2 / (2 * S * S)))


def _bump_grad(grad_output, x, w, with_bump=True):
    dw = np.cos(w)
    if with_bump:
        dw[0] += K * np.exp(-(w[0] - CENTER) ** 2 / (2 * S * S)) * (-(w[0] - CENTER) / S**2)
    return {"x": grad_output * np.cos(x), "w": C * dw * grad_output.sum()}


def _waves(x, w):
    return np.sin(x) + 1e-9 * (np.sin(w).sum() + np.sin(A * w).sum() / A)


def _waves_grad(grad_output, x, w, with_waves=True):
    dw = np.cos(w) + (np.cos(A * w) if with_waves else 0.0)
    return {"x": grad_output * np.cos(x), "w": 1e-9 * dw * grad_output.sum()}


@pytest.mark.parametrize(("forward", "backward"), [(_bump, _bump_grad), (_waves, _waves_grad)])
def test_a_term_a_larger_step_steps_past_never_passes(forward, backward):
    """Outside test t61a F1: a bump of width 2e-4 one width from w[0] (its derivative most of
    dw[0]), and sin(1024 pi w) / (1024 pi), whose central difference is 0 at 256 times the
    step: a backward leaving that term out passed there, and the right bump failed. The steps
    climb by 4, each reading held to the one below within their round-off. Oracle: the
    derivatives written out; the twin: the right backward passes."""
    t = {"x": X8, "w": W5}
    wrong = gradcli.check(forward=forward, tensors=t, grad_output=G8,
                          backward=lambda grad_output, x, w: backward(grad_output, x, w, False))
    assert not wrong.passed and not wrong.results["w"].passed, wrong.verdict()
    right = gradcli.check(forward=forward, backward=backward, tensors=t, grad_output=G8)
    # (the bump's: the real steps that confirm the complex step's reading of a forward of
    # yours step past it, so it stays unresolved, never a mismatch)
    assert right.passed or right.results["w"].unresolved, right.verdict()


@pytest.mark.parametrize("k", [65536.0, 16384.0])
def test_a_truncated_reading_passed_off_as_the_gradient_never_passes(k):
    """Outside test t62a F1: y = sin(x) + 1e-9 sum(sin(K w)) / K; at 4 (K = 65536) or 16
    (K = 16384) times the step, central differences read sinc(K h) dw, 0.84 dw, which agreed
    with the automatic step's reading within its round-off: an answer 16% off passed there.
    A step's reading is taken only where the next step's agrees with it to its tolerance (its
    truncation then a fifteenth of that). Oracle: dw = 1e-9 cos(K w) sum(g)."""
    rng = np.random.default_rng(0)
    t = {"x": rng.normal(size=4), "w": rng.normal(size=3) * 0.01}
    g = rng.normal(size=4)

    def forward(x, w):
        return np.sin(x) + 1e-9 * np.sum(np.sin(k * w)) / k

    for h in (2.0**-16, 2.0**-14):
        def backward(grad_output, x, w, h=h):
            return {"x": grad_output * np.cos(x),
                    "w": 1e-9 * np.cos(k * w) * grad_output.sum() * np.sin(k * h) / (k * h)}

        r = gradcli.check(forward=forward, backward=backward, tensors=t, grad_output=g)
        assert not r.results["w"].passed, r.verdict()


def test_a_layernorms_coarse_differences_given_as_answers_never_pass(tmp_path):
    """Outside test t62a F2: layernorm at eps 1e-20, x of 1e-4, gamma 1e-6, beta 1e5: dx
    computed by central differences at h = 2^-16 (13% off at an element) passed at 4 times
    the automatic step, the exact answer 'cannot resolve'. Oracle: the exact dx written out."""
    rng = np.random.default_rng(1)
    x = 1e-4 * rng.normal(size=(3, 5))
    gamma, beta, g = 1e-6 * np.ones(5), 1e5 * np.ones(5), rng.normal(size=(3, 5))
    E = 1e-20

    def loss(x):
        m = x.mean(-1, keepdims=True)
        return np.sum(g * gamma * (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + E))

    coarse = np.zeros_like(x)
    h = 2.0**-16
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        coarse[i] = (loss(xp) - loss(xm)) / (2 * h)
    t = {"x": x, "gamma": gamma, "beta": beta}
    r = gradcli.check("layernorm", t, options={"eps": E}, grad_output=g, grads={"x": coarse})
    assert not r.passed, r.verdict()


def test_a_term_the_complex_step_cannot_read_never_passes_left_out():
    """np.abs drops a complex input's imaginary part: the complex step read sum |w| as flat,
    and a backward leaving its sign(w) out passed there, the forward's own cross-check held
    to the automatic step's differences, whose round-off swallows it. Its reading of code of
    yours is confirmed by real differences at steps 256 times larger now. The twin: the right
    backward is never called a mismatch."""
    def forward(x, w):
        return np.sin(x) + 1e-9 * (np.sin(w).sum() + np.abs(w).sum())

    def backward(grad_output, x, w, with_abs=True):
        dw = np.cos(w) + (np.sign(w) if with_abs else 0.0)
        return {"x": grad_output * np.cos(x), "w": 1e-9 * grad_output.sum() * dw}

    wrong = gradcli.check(forward=forward, tensors=T,
                          backward=lambda grad_output, x, w: backward(grad_output, x, w, False))
    assert not wrong.passed, wrong.verdict()
    right = gradcli.check(forward=forward, backward=backward, tensors=T)
    assert right.passed or right.results["w"].unresolved, right.verdict()


@pytest.mark.parametrize(("k", "method"), [(3000.0, "central"), (30000.0, "central"),
                                           (1.0, "forward"), (300.0, "backward")])
def test_a_real_part_term_the_confirming_steps_miss_never_passes_left_out(k, method):
    """sin(K Re(w)) / K: the complex step reads it flat. At K = 3000 and 30000 the two real
    steps confirming the complex reading read it apart, and their gap taken for truncation let
    a backward leaving it out pass; under forward and backward differences 256 times their own
    automatic step of 7.5e-9 read round-off as large as the gradient (outside test t64a F1,
    F2). Oracle: the term's derivative cos(K w), left out."""
    rng = np.random.default_rng(0)
    t = {"x": rng.normal(size=(3, 4)), "w": rng.uniform(-1, 1, size=5)}

    def forward(x, w):
        return np.sin(x) + 1e-9 * (np.sin(w).sum() + np.sum(np.sin(k * np.real(w))) / k)

    def backward(grad_output, x, w):
        return {"x": grad_output * np.cos(x), "w": 1e-9 * grad_output.sum() * np.cos(w)}

    r = gradcli.check(forward=forward, backward=backward, tensors=t, method=method)
    assert not r.passed, r.verdict()


@pytest.mark.parametrize("with_term", [True, False], ids=["right", "wrong"])
def test_method_complex_refuses_a_forward_dropping_a_small_terms_imaginary_part(with_term):
    """--method complex chosen: a forward taking the real part of a term of 1e-9 beside
    outputs of 1 passed its complex-safety cross-check, whose central differences' round-off
    swallowed the term; a backward leaving it out passed and the right one failed as a
    mismatch (outside test t64a F3). Both are refused now: 'not complex-safe'."""
    rng = np.random.default_rng(0)
    t = {"x": rng.normal(size=(3, 4)), "w": rng.uniform(-1, 1, size=5)}

    def forward(x, w):
        return np.sin(x) + 1e-9 * (np.sin(w).sum() + np.sum(np.sin(np.real(w))))

    def backward(grad_output, x, w):
        dw = np.cos(w) * (2.0 if with_term else 1.0)
        return {"x": grad_output * np.cos(x), "w": 1e-9 * grad_output.sum() * dw}

    with pytest.raises(gradcli.GradcliError, match="not complex-safe"):
        gradcli.check(forward=forward, backward=backward, tensors=t, method="complex")


def test_the_twin_a_complex_safe_forward_with_a_tiny_term_passes_under_the_complex_step():
    """The same forward without np.real: its readings at 256 times the step agree, and the
    right backward passes under --method complex, a 1% slip of dw fails."""
    f, b = _layer(1.0)
    assert gradcli.check(forward=f, backward=b, tensors=T, method="complex").passed
    f, b = _layer(1.01)
    r = gradcli.check(forward=f, backward=b, tensors=T, method="complex")
    assert not r.passed and not r.results["w"].passed, r.verdict()


@pytest.mark.parametrize("l1", [True, False], ids=["right", "without the L1 term"])
def test_a_term_the_complex_step_drops_below_the_real_readings_blur_is_never_passed(l1):
    """loss = 1e9 sum(x^2) + sum(sin w) + 0.005 sum(|w|): dw is unresolved at the automatic
    step, the complex step reads cos(w) (np.abs drops the L1 term), and real differences at
    larger steps, blurred to 0.015 by the data term, confirmed it: a backward leaving the L1
    term out passed (outside test t70a F1). Confirmed only to the check's tolerance now: both
    'cannot resolve', neither a pass. Oracle: dw = cos(w) + 0.005 sign(w) (torch agrees)."""
    t = {"x": RNG.normal(size=4), "w": RNG.normal(size=6)}

    def forward(x, w):
        return 1e9 * np.sum(x**2) + np.sum(np.sin(w)) + 0.005 * np.sum(np.abs(w))

    def backward(grad_output, x, w):
        dw = np.cos(w) + (0.005 * np.sign(w) if l1 else 0.0)
        return {"x": grad_output * 2e9 * x, "w": grad_output * dw}

    r = gradcli.check(forward=forward, backward=backward, tensors=t, grad_output=1.0)
    assert not r.passed and r.results["w"].unresolved, r.verdict()
