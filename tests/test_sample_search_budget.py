"""A sample's search for its ties' members, and the detector's reading of those found, share
one --budget (checking/across.py ``_left``, numeric/partners.find_by_tie ``after``).

The search counted its seconds, then the detector had the whole budget again for the members
it found: a sampled ``relu(x) @ W`` of yours on 200x300 inputs, a third of them zero columns,
counted 173 s under --budget 60 and ran 100 s for a check estimated at 0.23 s (outside test
t45a N3). Now a tie is searched only where its members' examination fits too, and the
detector has what the search left. Oracle for the verdicts: relu is separable, so relu'(0) =
0 at every zero is a valid gradient and 2 is not (2 c lies outside [0, c])."""

import json

import numpy as np

import gradcli


def _case():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 150))
    x[:, 50:] = 0.0  # 6,000 zeros: every row a tie of 100 members
    return {"x": x, "W": 0.1 * rng.standard_normal((150, 10))}


def _forward(x, W):
    return np.maximum(x, 0) @ W


def _backward(at_zero):
    def backward(grad_output, x, W):
        piece = np.where(x > 0, 1.0, np.where(x == 0, at_zero, 0.0))
        return {"x": (grad_output @ W.T) * piece, "W": np.maximum(x, 0).T @ grad_output}

    return backward


def test_a_samples_search_and_its_examination_keep_to_the_budget():
    r = gradcli.check("custom", _case(), forward=_forward, backward=_backward(0.0), budget=2.0)
    assert r.passed and r.results["x"].mode == "sample", r.verdict()
    counted = json.loads(r.to_json())["cost"]["counted_seconds"]
    assert counted <= 1.5 * 2.0, counted  # 6.4 before


def test_twin_a_slope_of_2_at_the_zeros_still_fails_there():
    r = gradcli.check("custom", _case(), forward=_forward, backward=_backward(2.0), budget=2.0)
    assert "does not match (dx)" in r.verdict(), r.verdict()
