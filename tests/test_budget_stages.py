"""The estimate counts every stage that runs, and --budget bounds them: the calls a check
makes before its finite differences (the analytical side, the contract, a user's forward and
backward at the drawn points), the incremental path's verification, and the rechecks the
comparison decides (smaller steps), counted once known. Counted, never timed: these tests
count a user layer's calls, the oracle the estimate is held to."""

import json
import math
import re

import numpy as np
import pytest

import gradcli
from gradcli.layers import REGISTRY
from gradcli.numeric import cost
from gradcli.numeric.engine import Engine
from gradcli.numeric.incremental import VERIFY_PICKS

# the stated factor: the estimate (in calls of a tiny user layer, whose calls cost their guard
# alone) and the calls made agree within it, both ways
FACTOR = 2.0


class Calls:
    """A user's relu or layernorm that counts its forward and backward calls."""

    def __init__(self):
        self.forward_calls = self.backward_calls = 0

    @property
    def total(self):
        return self.forward_calls + self.backward_calls

    def relu(self, scale=1.0):
        def forward(x):
            self.forward_calls += 1
            return np.maximum(x, 0)

        def backward(grad_output, x):
            self.backward_calls += 1
            return {"x": scale * grad_output * (x > 0)}

        return {"forward": forward, "backward": backward}

    def layernorm(self, scale=1.0):
        def forward(x, gamma, beta, eps=1e-5):
            self.forward_calls += 1
            mu, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
            return (x - mu) / np.sqrt(v + eps) * gamma + beta

        def backward(grad_output, x, gamma, beta, eps=1e-5):
            self.backward_calls += 1
            mu, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
            s = np.sqrt(v + eps)
            xh, d, n = (x - mu) / s, grad_output * gamma, x.shape[-1]
            dx = (n * d - d.sum(-1, keepdims=True) - xh * (d * xh).sum(-1, keepdims=True)) / (n * s)
            return {"x": scale * dx, "gamma": (grad_output * xh).sum(0), "beta": grad_output.sum(0)}

        return {"forward": forward, "backward": backward}


def in_calls(seconds, report=None):
    """Predicted seconds in calls of a tiny user layer: its guard is nearly all of a call. At
    the figure the estimate used: the model's, or (``report``'s note says so) the forward's own
    measured time, which a loaded machine can push past 3 times the model's. The check's own
    fixed work (cost.CHECK_SECONDS) is no call."""
    per = cost.SECONDS_PER_CALL
    for note in report.check.notes if report is not None else ():
        said = re.search(r"your forward takes up to ([0-9.e+-]+) s a call", note)
        per = float(said.group(1)) if said else per
    return (seconds - cost.CHECK_SECONDS) / per


def relu_at_zeros():
    x = np.random.default_rng(0).standard_normal((8, 16))
    x[::2, ::3] = 0.0
    return {"x": x}


def layernorm_far_from_zero(rows=4):
    rng = np.random.default_rng(1)
    return {"x": 1000 + rng.standard_normal((rows, 32)), "gamma": rng.standard_normal(32),
            "beta": rng.standard_normal(32)}  # fmt: skip


@pytest.mark.parametrize("case", ["relu smooth", "relu at zeros", "layernorm"])
def test_the_estimate_predicts_a_user_layers_calls(case):
    """Every call of the user's forward and backward, drawn points and contract included, is
    in the estimate made before the first finite difference: within FACTOR of the count. (It
    left out the calls before the differences, 15 of a relu's 21: 3.5x under.)"""
    calls = Calls()
    if case == "layernorm":
        tensors, fns = layernorm_far_from_zero(), calls.layernorm()
    else:
        tensors = relu_at_zeros() if case == "relu at zeros" else {
            "x": np.random.default_rng(2).standard_normal((8, 16))}  # fmt: skip
        fns = calls.relu()
    layer = "layernorm" if case == "layernorm" else "relu"
    report = gradcli.check(layer, tensors, seed=0, **fns)
    assert report.passed
    assert report.check.backward is not None  # the drawn points were taken
    predicted = in_calls(report.check.estimated_seconds, report)
    assert calls.total / FACTOR <= predicted <= calls.total * FACTOR, (predicted, calls.total)


def test_the_smaller_steps_are_counted_once_known():
    """central4 at x = 1000 + N(0, 1): every failing coordinate of dx is confirmed at smaller
    steps, calls the plan could not foresee (the comparison decides them): counted after,
    within FACTOR of the calls made, while the plan alone is well under them."""
    calls = Calls()
    report = gradcli.check("layernorm", layernorm_far_from_zero(), seed=0, method="central4",
                           **calls.layernorm())  # fmt: skip
    assert report.passed and report.check.results["x"].refined > 0
    counted = in_calls(report.check.counted_seconds, report)
    assert calls.total / FACTOR <= counted <= calls.total * FACTOR, (counted, calls.total)
    assert in_calls(report.check.estimated_seconds, report) < calls.total / FACTOR


def test_the_cost_is_in_json_and_byte_identical(cli):
    args = ["check", "layernorm", "--method", "central4", "--format", "json"]
    first, second = cli(*args), cli(*args)
    assert first.stdout == second.stdout
    doc = json.loads(first.stdout)
    assert set(doc["cost"]) == {"estimated_seconds", "counted_seconds"}
    assert 0 < doc["cost"]["estimated_seconds"] <= doc["cost"]["counted_seconds"]


def test_the_incremental_paths_verification_is_in_the_estimate():
    """Attention's incremental path is verified on VERIFY_PICKS coordinates, through the plain
    forward and the path: the estimate of no group at all still counts those copies."""
    layer = REGISTRY["attention"]
    rng = np.random.default_rng(0)
    tensors = {n: rng.standard_normal(s) for n, s in
               (("X", (5, 6)), ("W_Q", (6, 4)), ("W_K", (6, 4)), ("W_V", (6, 4)))}  # fmt: skip
    engine = Counting(layer, tensors, layer.options(), rng.standard_normal((5, 4)))
    assert engine.incremental("X") == "" and engine.copies == VERIFY_PICKS
    assert engine.seconds("X", 0) >= cost.copies_seconds(engine, engine.copies)


class Counting(Engine):
    copies = 0

    def forward_stack(self, name, probes):
        self.copies += len(probes)
        return super().forward_stack(name, probes)


def near_ties(seed=0):
    """A 3x3 max-pool at stride 2 (overlapping windows) on small integers, half of them moved
    down by 2^-14 ... 2^-39: ties at maxima with runner-ups within the step at many scales,
    so the declared kinks' recheck halves its step again and again."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, (2, 9, 9, 3)).astype(np.float64)
    near = rng.random(X.shape) < 0.5
    X[near] -= 2.0 ** -rng.integers(14, 40, near.sum())
    layer = REGISTRY["maxpool2d"]
    options = layer.options(size=3, stride=2)
    g = rng.standard_normal(layer.forward({"X": X}, options)[0].shape)
    return layer, {"X": X}, options, g


def test_the_halvings_at_ties_are_in_the_estimate():
    """The declared kinks' rechecks, each halving of the step its own grouping, and the tie
    groups' copies: the estimate (the schedule replayed on the kink map) against the copies
    kinks.declared ran, within FACTOR (once counted as one grouping: 36 predicted, 169 ran)."""
    from gradcli.numeric import kinkplan, kinks

    layer, tensors, options, g = near_ties()
    engine = Counting(layer, tensors, options, g)
    engine.colored("X")  # the footprint's verification: counted with the check, not here
    seconds, count = kinkplan.recheck_seconds(engine, "X")
    predicted = seconds / cost.copies_seconds(engine, 1, real=True)
    engine.copies = 0
    analytic = layer.backward(g, layer.forward(tensors, options)[1])["X"]
    fix = kinks.declared(engine, "X", analytic, None)
    assert fix.coords.size == count > 100 and len(list(kinkplan.schedule(
        engine, "X", np.flatnonzero(kinks.met(engine, "X"))))) > 3  # fmt: skip
    assert engine.copies / FACTOR <= predicted <= engine.copies * FACTOR, (predicted, engine.copies)


@pytest.mark.parametrize("scale", [1.0, 1 + 1e-6])
def test_a_budget_too_small_for_the_smaller_steps_never_passes(monkeypatch, scale):
    """central4 at x = 1000 + N(0, 1): a correct layernorm passes only once its failing
    coordinates are confirmed at smaller steps. A budget that covers the plan but not them
    leaves them failing as computed, with a note: a FAIL, never a PASS on coordinates that
    were not verified; its twin, dx scaled by 1 + 1e-6 (beyond central4's rtol), fails with
    any budget. The calls made stay within FACTOR of the count, roomy or tight."""
    from gradcli.numeric import kinks, refine

    monkeypatch.setattr(refine, "FLOOR", 4)  # small sizes, a fast test
    monkeypatch.setattr(kinks, "DETECTOR_FLOOR", 4)
    # calls costed at the model's figure in both runs: a loaded machine timing the roomy run's
    # forward past 3 model calls (and the tight one's not) left the tight run its budget 4x over
    monkeypatch.setattr(cost, "SLOW_CALL_FACTOR", math.inf)
    tensors = layernorm_far_from_zero(rows=2)
    runs = {}
    for budget in (60.0, None):
        calls = Calls()
        if budget is None:  # the plan and a hundredth of it
            budget = 1.01 * runs[60.0][0].check.estimated_seconds
        report = gradcli.check("layernorm", tensors, seed=0, method="central4", budget=budget,
                               **calls.layernorm(scale))  # fmt: skip
        runs[budget] = (report, calls.total)
        counted = in_calls(report.check.counted_seconds, report)
        assert calls.total / FACTOR <= counted <= calls.total * FACTOR, (counted, calls.total)
    (roomy, roomy_calls), (tight, tight_calls) = runs.values()
    assert roomy.passed is (scale == 1.0)
    assert not tight.passed and tight.check.results["x"].mode == "full"
    assert tight.check.results["x"].refined <= 4 and tight_calls < roomy_calls
    assert any("not differenced at smaller steps" in n for n in tight.check.notes)


def test_a_losss_ties_told_apart_are_counted():
    """A user's svm (a loss: its ties at the margin share its one output) whose forward agrees
    with ours: the declared kinks' rechecks, its ties' groups (by svm's rows) and their links,
    each read through the user's forward in copies of its own, are counted within FACTOR of
    the calls."""
    calls = Calls()
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    rows = np.arange(6)
    x[rows, (y + 1) % 5] = x[rows, y] - 1  # every row has a score exactly at its margin

    def forward(x, y):
        calls.forward_calls += 1
        m = np.maximum(0.0, x - np.take_along_axis(x, y[:, None], -1) + 1)
        np.put_along_axis(m, y[:, None], 0.0, -1)
        return m.sum() / x.shape[0]

    def backward(grad_output, x, y):
        calls.backward_calls += 1
        active = (x - np.take_along_axis(x, y[:, None], -1) + 1 > 0).astype(float)
        np.put_along_axis(active, y[:, None], 0.0, -1)
        d = active.copy()
        np.put_along_axis(d, y[:, None], -active.sum(-1, keepdims=True), -1)
        return {"x": grad_output * d / x.shape[0]}

    report = gradcli.check("svm", {"x": x, "y": y}, seed=0, forward=forward, backward=backward)
    assert report.check.results["x"].kinks > 6
    doc = json.loads(report.to_json())
    assert doc["cost"]["counted_seconds"] == doc["cost"]["estimated_seconds"]  # all planned
    counted = in_calls(report.check.counted_seconds, report)
    assert calls.total / FACTOR <= counted <= calls.total * FACTOR, (counted, calls.total)


BUSY = """
import time

def forward(x):
    start = time.process_time()  # a student's loops: CPU time, as the measurement counts it
    while time.process_time() - start < SECONDS:
        pass
    return np.maximum(x, 0.0)

def backward(grad_output, x):
    return {"x": grad_output * (x > 0)}
"""


@pytest.mark.parametrize(("seconds", "slow"), [(0.02, 2.0**-5), (6e-4, 2.0**-10), (0.0, None)])
def test_a_user_forward_far_slower_than_the_model_is_costed_as_measured(tmp_path, monkeypatch,
                                                                         seconds, slow):
    """Loop code ran 0.66 s a call against the model's 2e-4 s, and a check estimated within
    --budget ran 260 s in silence (the outside tester's T5); a loop max-pool of 0.5 ms a call
    (3.3 times the model's) was counted at the model's, 10 s of CPU as 2.7. The twin: a fast
    forward keeps the model's figure (and the JSON stays the same between runs). A call under
    10 ms is counted as measured without a note: a millisecond is the clock's grain, and
    loop-free numpy was told it looked like a loop (outside test t38a N3)."""
    mine = tmp_path / "mine.py"
    mine.write_text("import numpy as np\n" + BUSY.replace("SECONDS", repr(seconds)))
    x = np.array([[0.5, -1.0, 2.0], [1.5, -0.3, 0.7]])
    doc = json.loads(gradcli.check(str(mine), {"x": x}).to_json())
    calls = 2 * x.size  # central differences: two calls a coordinate, at least
    said = [n for n in doc["notes"] if "your forward takes up to" in n]
    assert bool(said) == (slow is not None and slow >= 0.01), said
    if said:
        # rounded up to a power of 2: a loaded machine may read the next one
        assert any(f"takes up to {s:.3g} s a call" in said[0] for s in (slow, 2 * slow)), said
    if slow is not None:
        assert doc["cost"]["estimated_seconds"] > calls * slow
    else:
        assert doc["cost"]["estimated_seconds"] - cost.CHECK_SECONDS < calls * 1e-3


def test_another_thread_of_the_process_does_not_make_a_fast_forward_slow(tmp_path):
    """The forward was timed in the process's CPU time: four busy threads of the caller's made
    a 10 us forward read 0.03-0.125 s, and a check of a wrong dw went from FAIL (full) to PASS
    (sampled) depending on them (the outside tester's A1). The twin above: a slow forward of
    its own still counts."""
    import threading

    mine = tmp_path / "mine.py"
    mine.write_text("import numpy as np\n" + BUSY.replace("SECONDS", "0.0"))
    x = np.array([[0.5, -1.0, 2.0], [1.5, -0.3, 0.7]])
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            sum(range(10_000))

    threads = [threading.Thread(target=busy) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        doc = json.loads(gradcli.check(str(mine), {"x": x}).to_json())
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not any("your forward takes up to" in n for n in doc["notes"]), doc["notes"]
    assert doc["mode"] == "full"


SLOW_BACKWARD = """
import time

def forward(x):
    return np.maximum(x, 0.0)

def backward(grad_output, x):
    start = time.process_time()  # a student's four nested loops
    while time.process_time() - start < SECONDS:
        pass
    return {"x": grad_output * (x > 0)}
"""


@pytest.mark.parametrize(("seconds", "slow"), [(0.02, 2.0**-5), (0.0, None)])
def test_a_user_backward_far_slower_than_the_model_is_costed_as_measured(tmp_path, seconds,
                                                                          slow):
    """CS231n's loop max-pool backward of X (16, 32, 32, 16) took 0.7 s a call, and its 8 calls
    (the analytical side, the contract, the drawn points) ran 7 s of CPU under an estimate of
    0.22 s (outside test t16 B1). Its call at the analytical side is timed, and every call is
    counted at that; the twin: a fast backward keeps the model's figure and says nothing."""
    mine = tmp_path / "mine.py"
    mine.write_text("import numpy as np\n" + SLOW_BACKWARD.replace("SECONDS", repr(seconds)))
    x = np.array([[0.5, -1.0, 2.0], [1.5, -0.3, 0.7]])
    doc = json.loads(gradcli.check(str(mine), {"x": x}).to_json())
    said = [n for n in doc["notes"] if "your backward takes up to" in n]
    assert bool(said) == (slow is not None), said
    if slow is not None:
        assert any(f"takes up to {s:.3g} s a call" in said[0] for s in (slow, 2 * slow)), said
        # the analytical side's and the contract's five backward calls, at least
        assert doc["cost"]["estimated_seconds"] >= 6 * slow
    else:
        assert doc["cost"]["estimated_seconds"] - cost.CHECK_SECONDS < 0.02
