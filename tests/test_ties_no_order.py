"""Equal values that are no order tie: ``sum relu(x @ W) + sum_n max_j x[n, j]`` over x in
halves and integer W puts many x and W coordinates at 0 (or 1) at once, and the pieces stage
(numeric/crowds.py) read their group as one large tie. Its kinks are the hyperplanes z = 0, not
orders of the tied values, so the pieces a few directions enter are not all there are:
- the right backward (relu's 0 at 0, each row's first maximum) failed at --budget 1 with
  ``numeric 0`` where it gave 1, one piece read standing for every piece (outside test t42a F2);
- and at the default budget, x[0, 1] of the first case, given the max's g and the relu units
  its own move turns off, lay beyond every rank read (each turned one of them on) and failed.
The wrong rules still fail: CS231n's ``x == x.max()`` mask at a row's tied maxima and relu's
slope 2 at 0, where no mix of the pieces read hides them (README, "Large ties": a gradient no
piece read contradicts is kept, as "ties_unverified").

Oracle: the loss is convex and piecewise linear; the right rule is the gradient of the piece
where every unit at 0 is off and each row's first maximum wins (torch's), so it is a valid
subgradient; the ``all`` mask gives a row of k tied maxima k times the slope of moving them
together, beyond both one-sided slopes of that move."""

import numpy as np
import pytest

import gradcli

_CASES = {  # x in halves, W integers: many z = 0 and tied row maxima
    "a": ([[1, 2, 2, 1, 2, 2], [2, -1, 0, 1, 0, 0], [1, 2, 1, -1, 1, 2], [-1, 1, 0, 2, -1, 0],
           [2, 0, -1, 2, 2, 2], [2, 0, 1, 2, 1, 2], [1, -1, 0, 1, 0, 1], [0, 2, -1, 1, -1, -1]],
          [[0, 0, 0, 0], [2, 0, -1, 2], [2, -1, -1, -1], [-2, 0, 0, 1], [2, 2, 0, 0],
           [-2, -1, 2, 2]]),
    "b": ([[1, 2, -1, 2, 0, 1], [1, 0, 2, -1, 0, 0], [1, 0, -1, -1, -1, -1], [-1, 2, -1, 1, 2, -1],
           [0, 0, 0, 2, -1, 2], [2, 2, -1, 0, 1, 0], [1, 1, 1, -1, 2, 1], [2, 0, 0, 2, -1, -1]],
          [[-1, 1, -2, 2], [-1, -1, 0, 2], [2, 2, -1, -2], [1, 1, 1, -2], [-2, 0, -1, 0],
           [2, -1, 0, -1]]),
}


def _check(case: str, rule: str, **kw):
    x2, W = _CASES[case]
    x, W = np.array(x2, dtype=np.float64) / 2, np.array(W, dtype=np.float64)

    def forward(x, W):
        return np.maximum(x @ W, 0).sum() + x.max(1).sum()

    def backward(grad_output, x, W):
        z = x @ W
        gz = (z > 0) + (2.0 * (z == 0) if rule == "slope2" else 0.0)
        if rule == "all":  # CS231n's mask: every tied maximum gets g
            m = (x == x.max(1, keepdims=True)).astype(float)
        else:
            m = np.zeros_like(x)
            m[np.arange(x.shape[0]), x.argmax(1)] = 1
        return {"x": grad_output * (gz @ W.T + m), "W": grad_output * (x.T @ gz)}

    return gradcli.check(forward=forward, backward=backward, tensors={"x": x, "W": W},
                         grad_output=1.0, **kw)  # fmt: skip


@pytest.mark.parametrize(("case", "budget"), [("a", 60.0), ("b", 1.0)])
def test_the_right_rule_passes_where_zeros_feed_relu_kinks(case: str, budget: float) -> None:
    r = _check(case, "right", budget=budget)
    assert r.passed, str(r)
    assert not any(v.ties_unverified for v in r.results.values()), str(r)


@pytest.mark.parametrize(("case", "rule"), [("b", "slope2"), ("a", "all")])
def test_the_twins_wrong_rules_fail(case: str, rule: str) -> None:
    r = _check(case, rule)
    assert not r.passed, str(r)
    # off every piece: a mismatch, not a doubt
    assert not r.results["x"].passed and not r.results["x"].unresolved, str(r)
