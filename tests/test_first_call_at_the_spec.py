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


@pytest.mark.parametrize(("factor", "right"), [(1.0, True), (0.5, False)])
def test_a_built_ins_forward_of_yours_raising_outside_the_specs_domain(factor, right):
    """tanh of yours that raises unless x < 0, on a spec of negative x."""
    x = -np.random.default_rng(2).uniform(0.5, 2.0, (3, 4))

    def forward(x):
        if np.any(x >= 0):
            raise ValueError("x must be negative")
        return np.tanh(x)

    def backward(grad_output, x):
        return {"x": factor * grad_output * (1 - np.tanh(x) ** 2)}

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
    x = -np.random.default_rng(2).uniform(0.5, 2.0, (3, 4))

    def forward(x):
        if np.any(x >= 0):
            raise ValueError("x must be negative")
        return np.tanh(x)

    def backward(grad_output, x):
        return {"x": grad_output * (1 - np.tanh(x) ** 2)}

    r = gradcli.check("tanh", {"x": x}, forward=forward, backward=backward)
    assert any("your forward refused 2 points gradcli drew" in n
               and "x must be negative" in n and "spec's tensors alone" in n
               for n in r.notes), r.notes  # fmt: skip
