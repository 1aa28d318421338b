"""A wrong backward's failing coordinates are rechecked (smaller steps, the kink detector) on a
screen first: when none of the screen's is explained, the others fail as computed, with a note.
A custom batchnorm without its eps in the backward failed at 6,091 coordinates, each rechecked:
estimated 4.9 s, counted 33 s, run 55-72 s (outside test t14 B2). Counted in calls of the
user's forward, never timed."""

import json

import numpy as np
import pytest

import gradcli
from gradcli.numeric import refine
from gradcli.numeric.kinks import DETECTOR_POINTS
from gradcli.numeric.stacking import RETIMES

X = np.random.default_rng(0).normal(size=(5, 5))
SCREEN = 6  # of 25 coordinates: more than two screens (the default, 64, of 144 is as slow)


@pytest.fixture(autouse=True)
def _small_screen(monkeypatch):
    monkeypatch.setattr(refine, "SCREEN", SCREEN)


def _check(k, scale=1.0, wrong=(), mode=None):
    """sin(k x), its backward scaled by ``scale`` and 1.5 times off at the flat ``wrong``:
    (the report, its JSON, the forward's calls)."""
    calls = [0]

    def forward(x):
        calls[0] += 1
        return np.sin(k * x)

    def backward(grad_output, x):
        g = grad_output * k * np.cos(k * x) * scale
        g.flat[list(wrong)] *= 1.5
        return {"x": g}

    report = gradcli.check("custom", {"x": X}, forward=forward, backward=backward, mode=mode)
    return report, json.loads(report.to_json()), calls[0]


def test_a_wrong_backward_rechecks_a_screen_of_its_failing_coordinates():
    """Off by 1% everywhere: the verdict, the worst element and its values are those of the
    check that rechecks every one (the twin, --mode full, whose calls show the work saved)."""
    report, doc, calls = _check(1.0, scale=1.01)
    full, full_doc, full_calls = _check(1.0, scale=1.01, mode="full")
    assert not report.passed and not full.passed
    for key in ("worst_index", "analytic", "numeric", "max_rel_error"):
        assert doc["results"]["x"][key] == full_doc["results"]["x"][key], key
    said = [n for n in doc["notes"] if "failing coordinates were rechecked" in n]
    assert len(said) == 1 and said[0].startswith("dx: 7 of its 25 failing"), said
    assert ("the other 18 fail as computed (every coordinate was compared; mode='full' given "
            "explicitly rechecks every failing one too)") in said[0], said
    assert not any("fail as computed" in n for n in full_doc["notes"])
    # the twin examined each of the 25 for kinks; the screen at most 7 (6, and the worst)
    assert full_calls >= X.size * DETECTOR_POINTS
    # (a first call slow enough under load is timed RETIMES more times, in either run)
    assert calls <= full_calls - (X.size - 7) * DETECTOR_POINTS + RETIMES, (calls, full_calls)
    assert doc["cost"]["counted_seconds"] < full_doc["cost"]["counted_seconds"]


def test_a_screen_that_explains_one_rechecks_every_one():
    """sin(1000 x): the default step's truncation fails every coordinate, and the screen's
    confirm at smaller steps: every one is refined and a correct backward passes; three
    elements off by 1.5x fail, they alone (their twins in the screen's absence, above)."""
    good, doc, _ = _check(1000.0)
    assert good.passed and doc["results"]["x"]["refined"] == X.size, str(good)
    wrong = (3, 12, 21)
    bad, doc, _ = _check(1000.0, wrong=wrong)
    assert not bad.passed and doc["results"]["x"]["refined"] == X.size - len(wrong)
    worst = {tuple(w["index"]) for w in doc["results"]["x"]["worst"][: len(wrong)]}
    assert worst == {np.unravel_index(i, X.shape) for i in wrong}
    assert not any("not rechecked" in n for n in doc["notes"])


def test_rechecks_counted_far_beyond_the_estimate_are_said(monkeypatch):
    """sin(1000 x) at 25 coordinates: refining every one counts more than the check's estimate;
    the note says by how much. The twin: a check whose rechecks stay within it says nothing."""
    monkeypatch.setattr("gradcli.numeric.cost.SECONDS_PER_CALL", 0.05)  # every call costs 50 ms
    _, doc, _ = _check(1000.0)
    beyond = doc["cost"]["counted_seconds"] - doc["cost"]["estimated_seconds"]
    said = [n for n in doc["notes"] if "beyond the estimate" in n]
    assert beyond > doc["cost"]["estimated_seconds"] and len(said) == 1, doc["notes"]
    assert "from what was left of" in said[0]
    assert "not timed" in said[0]  # outside retest t22 N15: model seconds, said so
    _, doc, _ = _check(1.0)
    assert not any("beyond the estimate" in n for n in doc["notes"])
