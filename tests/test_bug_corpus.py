"""Issue 16: the diagnosis measured on a corpus of classic bugs written as outsiders write them
(tests/bugcorpus). Every bug is caught on exactly its wrong tensors, no hint names a wrong cause
(on a bug, on a bug outside the hypotheses, on a correct twin), and the correct twins pass."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import diagnosis  # noqa: E402
from bugcorpus import BUGS, TWINS  # noqa: E402


def test_the_corpus_is_large_and_covers_every_seed_layer():
    assert len(BUGS) >= 40
    assert {b.layer for b in BUGS} >= {"linear", "conv1d", "conv2d", "attention"}
    assert sum(b.cause is None for b in BUGS) >= 4  # bugs outside the hypotheses


@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.id)
@pytest.mark.parametrize("answers", [False, True], ids=["impl", "grads"])
def test_caught_on_exactly_the_wrong_tensors_and_no_wrong_hint(bug, answers):
    o = diagnosis.run(bug, answers)
    assert o.failed == bug.wrong, (o.failed, o.texts)
    assert not o.wrong_hints, (o.wrong_hints, o.texts)


@pytest.mark.parametrize("bug", TWINS, ids=lambda b: b.id)
def test_correct_twins_pass_without_a_hint(bug):
    o = diagnosis.run(bug)
    assert not o.failed and not o.texts
