"""A user's forward is timed in its thread's own time: wall time less the time the thread stood
in the run queue (numeric/clock.py). A forward that waits (a GPU's sync, I/O, a sleep) was
timed in CPU time at about nothing: --budget 2 ran 13 s unsampled, and the full/sample decision
(so the verdict: a sampled run passed a wrong dW) flipped between identical runs (outside tests
t14 B1, t15 BUDGET1). The clock is faked here: no test asserts on how long anything took."""

import json
import re
import time
import types
from pathlib import Path

import numpy as np
import pytest

import gradcli
from gradcli.numeric import clock, cost
from gradcli.numeric.engine import Engine
from gradcli.user import impl


def test_own_time_is_wall_time_less_the_run_queue(monkeypatch):
    """Blocked time (a sleep, a sync) counts; time spent waiting for a CPU does not."""
    wall, queued = iter([10.0, 10.5]), iter([1.0, 1.0, 1.3, 1.3])
    monkeypatch.setattr(clock, "time", types.SimpleNamespace(perf_counter=lambda: next(wall)))
    monkeypatch.setattr(clock, "_queued", lambda: next(queued))
    start = clock._own()
    assert clock._own() - start == pytest.approx(0.2)


def test_a_wait_between_the_wall_reading_and_its_count_is_read_again(monkeypatch):
    """The thread waited 0.1 s in the run queue after its wall reading: the count read after
    it moved, so the wall is read again (the twin below, one read, loses the wait twice)."""
    wall, queued = iter([10.0, 10.2, 10.5]), iter([1.0, 1.0, 1.0, 1.1, 1.1])
    monkeypatch.setattr(clock, "time", types.SimpleNamespace(perf_counter=lambda: next(wall)))
    monkeypatch.setattr(clock, "_queued", lambda: next(queued))
    start = clock._own()  # 10.0 - 1.0
    assert clock._own() - start == pytest.approx(10.5 - 1.1 - 9.0)


def test_the_twin_one_read_loses_the_wait(monkeypatch):
    wall, queued = iter([10.0, 10.2, 10.5]), iter([1.0, 1.0, 1.0, 1.1, 1.1])
    monkeypatch.setattr(clock, "time", types.SimpleNamespace(perf_counter=lambda: next(wall)))
    monkeypatch.setattr(clock, "_queued", lambda: next(queued))

    def one_read():  # the bug: the wall reading and its count taken once, in that order
        return clock.time.perf_counter() - clock._queued()

    start = one_read()
    assert one_read() - start != pytest.approx(0.4)


def test_without_the_kernel_count_the_clock_is_wall_time(monkeypatch, tmp_path):
    monkeypatch.setattr(clock, "_SCHEDSTAT", str(tmp_path / "missing"))
    assert clock._chosen() is time.perf_counter
    (tmp_path / "odd").write_text("garbage\n")  # a file of another form: no count either
    monkeypatch.setattr(clock, "_SCHEDSTAT", str(tmp_path / "odd"))
    assert clock._chosen() is time.perf_counter


def _waiting(seconds):
    """A user layer whose forward takes ``seconds`` of a fake clock a call, and no CPU."""
    now = [0.0]

    def forward(x):
        now[0] += seconds
        return np.tanh(x)

    def backward(grad_output, x):
        return {"x": grad_output * (1 - np.tanh(x) ** 2)}

    return now, forward, backward


def _engine(forward):
    def backward(grad_output, x):
        return {"x": grad_output}

    layer = impl.user_layer(impl.Impl(Path("mine.py"), forward, backward), None, ("x",))
    return Engine(layer, {"x": np.ones((2, 3))}, {}, np.ones((2, 3)))


def test_a_forward_that_sleeps_is_timed_at_its_sleep():
    """A real sleep: the thread is blocked at least that long, whatever the machine's load
    (a lower bound only). The twin: the CPU clock it was timed with reads it at about 0."""

    def forward(x):
        time.sleep(0.01)
        return np.tanh(x)

    engine = _engine(forward)
    assert engine.call_seconds >= 0.01
    assert cost.user_call_seconds(engine) >= 0.01


def test_the_twin_a_cpu_clock_misses_the_sleep(monkeypatch):
    monkeypatch.setattr(clock, "own_time", time.thread_time)  # the bug: CPU time alone

    def forward(x):
        time.sleep(0.01)
        return np.tanh(x)

    engine = _engine(forward)
    assert engine.call_seconds < 0.01


def _check(monkeypatch, seconds, budget=2.0):
    now, forward, backward = _waiting(seconds)
    monkeypatch.setattr(clock, "own_time", lambda: now[0])
    x = np.random.default_rng(0).normal(size=(10, 10))
    return json.loads(gradcli.check(forward=forward, backward=backward, tensors={"x": x},
                                    budget=budget).to_json())  # fmt: skip


def test_a_waiting_forward_is_sampled_within_the_budget_and_said(monkeypatch):
    """50 ms a call, 100 coordinates under --budget 2: sampled, with the measured time and the
    decision said; the same command with the wait measured a little differently (within its
    power of 2) gives the same decision and the same JSON, byte for byte."""
    doc = _check(monkeypatch, 0.05)
    assert doc["mode"] == "sample"
    notes = " ".join(doc["notes"])
    assert "your forward takes up to 0.0625 s a call" in notes
    assert "a full check would take about" in notes and "(budget 2 s)" in notes
    assert doc["cost"]["estimated_seconds"] > 64 * 0.0625  # every sampled call at its time
    for other in (0.04, 0.06):
        assert _check(monkeypatch, other) == doc


def test_the_twin_a_forward_timed_at_nothing_is_checked_in_full(monkeypatch):
    doc = _check(monkeypatch, 0.0)
    assert doc["mode"] == "full"
    assert not any("your forward takes up to" in n for n in doc["notes"])


def test_a_sample_still_over_the_budget_says_how_many_would_fit(monkeypatch):
    """Outside test t20 F3: a naive-loop forward of 0.5 s a call sampled 64 coordinates under
    --budget 5 and ran 77 s, saying nothing of --samples. The twin: a sample within the
    budget says nothing of it."""
    # (3 s: the calls made whatever is sampled, the precision's lines among them, take 2)
    notes = " ".join(_check(monkeypatch, 0.05, budget=3.0)["notes"])  # 64 x 2 x 0.0625 s
    said = re.search(r"each sampled coordinate costs about ([0-9.e-]+) s beyond ([0-9.]+) s "
                     r"of calls made whatever is sampled \(fewer samples, (\d+) or less", notes)
    assert said, notes
    each, fixed, k = float(said.group(1)), float(said.group(2)), int(said.group(3))
    assert 1 <= k < 64 and fixed + k * each <= 3.0 * 1.1  # a straight line, rounded
    within = " ".join(_check(monkeypatch, 0.05, budget=30.0)["notes"])
    assert "still" not in within
