"""A user's forward is first called at the spec's own tensors where they are read: at values
of gradcli's ([0.5, 1.5), to learn the output's shape) a forward checking its inputs' domain
was refused (a cross-entropy asserting 0 < p < 1 on p in (0.1, 0.9); a log(-x) on negative
x), its first call's warnings were never shown (torch's 'not writable' warning is given once
a process), and a forward returning float32 away from the spec's point blamed the spec's
call (outside test t68a F2, F4, F5). Oracles: the derivatives by hand; twins: a wrong backward
still fails."""

import warnings

import numpy as np
import pytest

import gradcli
from gradcli.errors import UserCodeError

P = np.random.default_rng(0).uniform(0.1, 0.9, (4, 3))
T = np.random.default_rng(1).uniform(0.0, 1.0, (4, 3))


def _bce(factor):
    def forward(p, t):
        assert np.all((p > 0) & (p < 1)), "p must be probabilities in (0, 1)"
        return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))

    def backward(grad_output, p, t):
        return {"p": factor * grad_output * (-(t / p) + (1 - t) / (1 - p)) / p.size}

    return forward, backward


@pytest.mark.parametrize(("factor", "right"), [(1.0, True), (2.0, False)])
def test_a_forward_asserting_its_domain_is_checked(factor, right):
    forward, backward = _bce(factor)
    r = gradcli.check("custom", {"p": P, "t": T}, forward=forward, backward=backward, data=["t"])
    assert r.passed is right, r.verdict()


NEGATIVE = -np.random.default_rng(2).uniform(0.5, 2.0, (3, 4))


def _negative_tanh(factor=1.0):
    """tanh of yours that raises unless x < 0, its backward ``factor`` times the right one."""

    def forward(x):
        if np.any(x >= 0):
            raise ValueError("x must be negative")
        return np.tanh(x)

    def backward(grad_output, x):
        return {"x": factor * grad_output * (1 - np.tanh(x) ** 2)}

    return forward, backward


@pytest.mark.parametrize(("factor", "right"), [(1.0, True), (0.5, False)])
def test_a_built_ins_forward_of_yours_raising_outside_the_specs_domain(factor, right):
    """tanh of yours that raises unless x < 0, on a spec of negative x."""
    x = NEGATIVE
    forward, backward = _negative_tanh(factor)

    r = gradcli.check("tanh", {"x": x}, forward=forward, backward=backward)
    assert r.passed is right, r.verdict()


def test_a_warning_of_the_first_call_only_is_shown(capsys):
    seen = []

    def forward(x):
        if not seen:
            warnings.warn("deprecated: scale", FutureWarning, stacklevel=1)
        seen.append(1)
        return np.tanh(x)

    def backward(grad_output, x):
        return {"x": grad_output * (1 - np.tanh(x) ** 2)}

    r = gradcli.check("custom", {"x": P}, forward=forward, backward=backward)
    assert r.passed
    assert "deprecated: scale" in capsys.readouterr().err


def test_a_forward_returning_float32_away_from_the_spec_blames_that_call():
    def forward(x):
        y = np.tanh(x)
        return y if np.array_equal(x, P) else y.astype(np.float32)

    def backward(grad_output, x):
        return {"x": grad_output * (1 - np.tanh(x) ** 2)}

    with pytest.raises(UserCodeError) as e:
        gradcli.check("custom", {"x": P}, forward=forward, backward=backward)
    assert ("returned shape [4, 3] (float64) at the spec's tensors and [4, 3] (float32) at "
            "other values" in str(e.value)), str(e.value)


def test_the_drawn_points_a_forward_refuses_are_said():
    x = NEGATIVE
    forward, backward = _negative_tanh()

    r = gradcli.check("tanh", {"x": x}, forward=forward, backward=backward)
    # (the first refused, the last drawn within the spec's ranges instead: compared there)
    assert any("your forward refused a point gradcli drew" in n
               and "x must be negative" in n and "the other points drawn" in n
               for n in r.notes), r.notes  # fmt: skip


def _linear(bias, refuse):
    def forward(x, W, b):
        if refuse(x):
            raise ValueError("this layer takes non-negative activations (after a ReLU)")
        return x @ W.T + (b if bias else 0.0)

    def backward(grad_output, x, W, b):
        return {"x": grad_output @ W, "W": grad_output.T @ x,
                "b": grad_output.sum(0) if bias else np.zeros_like(b)}  # fmt: skip

    return forward, backward


ONES = {"x": np.ones((6, 5)), "W": np.random.default_rng(0).standard_normal((3, 5)),
        "b": np.zeros(3)}  # fmt: skip


@pytest.mark.parametrize(("bias", "right"), [(True, True), (False, False)])
def test_a_forward_refusing_the_drawn_signs_is_compared_within_the_specs_ranges(bias, right):
    """x all ones and b = 0 hide a linear without its bias; a forward refusing negative x
    refused every point drawn, was compared at the spec alone and passed (outside test t69a
    F3). The last point is drawn within the spec's own ranges then. Oracle: db = sum(dz)."""
    forward, backward = _linear(bias, lambda x: (x < 0).any())
    r = gradcli.check("linear", ONES, forward=forward, backward=backward)
    assert r.passed is right, r.verdict()
    if not right:
        assert not r.forward.passed


def test_a_forward_refusing_every_point_is_not_verified():
    forward, backward = _linear(True, lambda x: bool(np.any(np.abs(x - 1.0) > 0.1)))
    r = gradcli.check("linear", ONES, forward=forward, backward=backward)
    assert not r.passed and not r.forward.passed, r.verdict()
    assert "refused every point gradcli drew" in r.forward.unresolved, r.forward.unresolved


def test_a_value_dependent_output_is_refused_even_where_the_first_call_imports():
    """np.unique's first call imports numpy.ma: the call at gradcli's values was skipped after
    a first call that imported, and x[x > 0] passed in a fresh process only (t69b F2)."""
    import sys

    def forward(x):
        if "_gradcli_test_module_" not in sys.modules:  # a first call that imports
            sys.modules["_gradcli_test_module_"] = type(sys)("_gradcli_test_module_")
        return x[x > 0] * 2

    def backward(grad_output, x):
        return {"x": np.where(x > 0, 2.0, 0.0)}

    x = np.random.default_rng(3).standard_normal((3, 4))
    try:
        with pytest.raises(UserCodeError, match="at other values of the same shapes"):
            gradcli.check("custom", {"x": x}, forward=forward, backward=backward)
    finally:
        sys.modules.pop("_gradcli_test_module_", None)


def test_an_assert_guarding_the_domain_at_a_step_says_the_step_left_it():
    def forward(x):
        assert (x > 0).all(), "x must be positive"
        return np.sqrt(x)

    def backward(grad_output, x):
        return {"x": grad_output * 0.5 / np.sqrt(x)}

    with pytest.raises(UserCodeError, match="a finite-difference step from them left its domain"):
        gradcli.check("custom", {"x": np.array([1e-9, 0.3, 2.0])}, forward=forward,
                      backward=backward)  # fmt: skip


def test_a_long_warning_is_shown_whole_up_to_640_characters(capsys):
    """torch's 'not writable' warning (419 characters) was cut at 'You may wan...', its advice
    lost (outside test t69b F8); a longer one is cut at a word's end."""
    advice = "word " * 80 + "END-OF-ADVICE"  # 413 characters

    def forward(x):
        warnings.warn(advice, UserWarning, stacklevel=1)
        return np.tanh(x)

    def backward(grad_output, x):
        return {"x": grad_output * (1 - np.tanh(x) ** 2)}

    assert gradcli.check("custom", {"x": P}, forward=forward, backward=backward).passed
    assert "END-OF-ADVICE" in capsys.readouterr().err

    def longer(x):
        warnings.warn("word " * 300, UserWarning, stacklevel=1)
        return np.tanh(x)

    assert gradcli.check("custom", {"x": P}, forward=longer, backward=backward).passed
    err = capsys.readouterr().err
    assert "word word... (1,499 characters)" in err, err[-200:]


def _softmax_loss(column_slip):
    def softmax_loss(x, y):
        n = x.shape[0]
        s = x - x.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        rows = slice(None) if column_slip else np.arange(n)
        loss = -logp[rows, y].mean() if column_slip else -logp[rows, y].sum() / n
        dx = np.exp(logp)
        dx[rows, y] -= 1
        return loss, dx / n

    return softmax_loss


@pytest.mark.parametrize(("slip", "right"), [(False, True), (True, False)])
def test_labels_of_one_class_are_drawn_as_several(slip, right):
    """y = [2, 2, 2, 2]: the labels drawn at the second point came from the spec's own values,
    all 2, and CS231n's x[:, y] slip (where x[np.arange(N), y] belongs) was right at every
    point (outside test t70a F2). Oracle: the slip's loss with mixed labels is another."""
    x = np.random.default_rng(4).standard_normal((4, 5))
    r = gradcli.check("softmax_cross_entropy", {"x": x, "y": np.array([2, 2, 2, 2])},
                      forward=_softmax_loss(slip))  # fmt: skip
    assert r.passed is right, r.verdict()


def test_a_not_writable_warning_says_how_to_copy(capsys):
    """torch.from_numpy on gradcli's read-only arrays warns 'not writable' at every CLI run;
    the line says how to copy (outside test t70b F4)."""

    def forward(x):
        warnings.warn("The given NumPy array is not writable, and PyTorch does not support "
                      "non-writable tensors.", UserWarning, stacklevel=1)  # fmt: skip
        return np.tanh(x)

    def backward(grad_output, x):
        return {"x": grad_output * (1 - np.tanh(x) ** 2)}

    assert gradcli.check("custom", {"x": P}, forward=forward, backward=backward).passed
    assert "torch.from_numpy(x.copy()) copies" in capsys.readouterr().err
