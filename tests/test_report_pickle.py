"""A report crosses processes and deep-copies (outside test t44b F2).

An engineer speeds a CI job up by checking layers in a ProcessPoolExecutor; the report held the
layer's lambdas and a user's wrapped functions, and the pool crashed returning it. Now a pickled
or deep-copied report is what it says: verdict, results, notes, JSON and text as they were.
Twin: the copy of a failing check fails too, with the same verdict line."""

from __future__ import annotations

import copy
import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np

import gradcli


def _check(name: str):
    return gradcli.check(name)


def test_reports_come_back_from_worker_processes():
    with ProcessPoolExecutor(2) as pool:
        reports = list(pool.map(_check, ["linear", "relu"]))
    assert [r.passed for r in reports] == [True, True]
    assert reports[0].verdict() == gradcli.check("linear").verdict()
    assert set(reports[0].results) == {"x", "W", "b"}
    assert '"passed": true' in reports[0].to_json()


def test_a_user_layer_s_failing_report_deep_copies_and_pickles_as_it_was():
    def forward(x):
        return np.maximum(x, 0)

    def backward(grad_output, x):
        return {"x": 2 * grad_output * (x > 0)}

    r = gradcli.check("relu", forward=forward, backward=backward)
    for twin in (copy.deepcopy(r), pickle.loads(pickle.dumps(r))):
        assert not twin.passed and twin.verdict() == r.verdict()
        assert twin.results["x"].worst_index == r.results["x"].worst_index
        assert twin.to_json() == r.to_json() and str(twin) == str(r)


def test_a_network_report_pickles():
    rng = np.random.default_rng(0)
    r = gradcli.check_network({
        "inputs": {"X": rng.standard_normal((4, 5))},
        "network": [{"layer": "linear", "name": "fc1",
                     "tensors": {"W": rng.standard_normal((3, 5)), "b": np.zeros(3)}}],
    })  # fmt: skip
    twin = pickle.loads(pickle.dumps(r))
    assert twin.passed == r.passed and twin.verdict() == r.verdict()
    assert twin.to_json() == r.to_json() and set(twin.end_to_end) == set(r.end_to_end)


def test_a_pickled_report_keeps_your_backward_against_ours():
    """report.backward was lost in the copy (outside test t45a N3)."""
    def forward(x, W, b):
        return W @ x + b

    def backward(grad_output, x, W, b):
        return {"x": W.T @ grad_output, "W": np.outer(grad_output, x), "b": grad_output}

    r = gradcli.check("linear", forward=forward, backward=backward)
    twin = pickle.loads(pickle.dumps(r))
    assert r.backward is not None and twin.backward.passed == r.backward.passed
