"""What a network's verdict blames: the first wrong backward from the output, every layer below
it that is wrong on its own, a wrong forward as a forward; and the kinks met on the way.
Each case has its twin: the same network without the injected bug blames nothing there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradcli.checking.check import CheckOptions
from gradcli.checking.network import check_network
from gradcli.inputs.network import load_network
from gradcli.render.netdoc import check_doc
from gradcli.render.network import verdict_line

QUICK = CheckOptions(budget=5.0)

LINEAR = """import numpy as np
def forward(x, W, b):
    return x @ W.T + b
def backward(grad_output, x, W, b):
    g = grad_output
    dW = g.T @ x
    dW[0, 0] += DW_BUG
    return {"x": g @ W * DX_BUG, "W": dW, "b": g.sum(0)}
"""

RELU = """import numpy as np
def forward(x):
    return np.where(x > 0, x, FWD_SLOPE * x)
def backward(grad_output, x):
    return {"x": grad_output * np.where(x > 0, 1.0, BACK_SLOPE) * GAIN}
"""


def _impl(tmp_path: Path, name: str, text: str, **values: Any) -> str:
    for k, v in values.items():
        text = text.replace(k, repr(v))
    (tmp_path / name).write_text(text)
    return name


def _run(tmp_path: Path, entries: str, options: CheckOptions = QUICK) -> Any:
    model = tmp_path / "model.yaml"
    model.write_text(f"seed: 1\ninputs:\n  X: {{shape: [4, 5]}}\nnetwork:\n{entries}")
    net = load_network(str(model))
    return net, check_network(net, options)


def _two(tmp_path: Path, low_bug: float) -> tuple[Any, Any]:
    low = _impl(tmp_path, "low.py", LINEAR, DW_BUG=0.0, DX_BUG=low_bug)
    top = _impl(tmp_path, "top.py", LINEAR, DW_BUG=0.01, DX_BUG=1.3)
    return _run(tmp_path, f"""\
  - {{layer: linear, name: fc1, impl: {low}, tensors: {{W: {{shape: [5, 5]}}}}}}
  - {{layer: linear, name: fc2, impl: {top}, tensors: {{W: {{shape: [3, 5]}}}}}}
""", CheckOptions(budget=1.0))  # the failing coordinates' rechecks: half the time of 5


@pytest.mark.parametrize("low_bug", [1.5, 1.0])
def test_a_second_wrong_layer_below_the_first_is_named_too(tmp_path: Path, low_bug: float) -> None:
    """fc2's backward is wrong (the culprit, first from the output); fc1's dx is wrong on its
    own: named too. Its twin: fc1 right, receiving fc2's wrong upstream gradient, is not."""
    net, report = _two(tmp_path, low_bug)
    first = report.first_wrong
    assert (first.name, first.tensor, first.wrong) == ("fc2", "x", ("backward",))
    also = [(w.name, w.tensor) for w in report.also_wrong]
    doc = check_doc(net, report)
    line = verdict_line(net, report).plain
    assert doc["first_wrong"]["name"] == "fc2"
    if low_bug != 1.0:
        assert also == [("fc1", "x")]
        assert [w["name"] for w in doc["also_wrong"]] == ["fc1"]
        assert "also wrong on its own: layer 1, linear 'fc1', dx" in line, line
    else:
        assert also == [] and doc["also_wrong"] == [] and "also wrong" not in line, line


@pytest.mark.parametrize(
    ("slope", "back_slope", "gain", "wrong", "said"),
    [  # a leaky forward whose backward matches it; a leaky forward with relu's own backward;
        # both wrong; the twin: relu right
        (0.1, 0.1, 1.0, ("forward",), "your backward matches the differences of your forward"),
        (0.1, 0.0, 1.0, ("forward",), "your backward is the built-in relu's"),
        (0.1, 0.1, 2.0, ("forward", "backward"), "the gradient does not match (dx)"),
        (0.0, 0.0, 1.0, None, ""),
    ],
)  # fmt: skip
def test_a_wrong_forward_is_blamed_as_a_forward(
    tmp_path: Path, slope: float, back_slope: float, gain: float, wrong: Any, said: str
) -> None:
    """A user's relu whose forward is leaky was reported as a wrong backward of 'dy'."""
    relu = _impl(tmp_path, "r.py", RELU, FWD_SLOPE=slope, BACK_SLOPE=back_slope, GAIN=gain)
    net, report = _run(tmp_path, f"""\
  - {{layer: linear, name: fc1, tensors: {{W: {{shape: [5, 5]}}}}}}
  - {{layer: relu, name: act, impl: {relu}}}
  - {{layer: linear, name: fc2, tensors: {{W: {{shape: [3, 5]}}}}}}
""", CheckOptions(budget=1.0))
    line = verdict_line(net, report).plain
    if wrong is None:
        assert report.passed and report.first_wrong is None, line
        return
    first = report.first_wrong
    assert (first.name, first.wrong) == ("act", wrong), line
    assert first.tensor == ("x" if "backward" in wrong else None)
    what = "forward" if wrong == ("forward",) else "layer"
    assert f"first wrong {what}: layer 2, relu 'act'" in line and said in line, line
    assert "dy" not in line and "your forward does not match the built-in forward" in line
    assert json.loads(json.dumps(check_doc(net, report)))["first_wrong"]["wrong"] == list(wrong)


@pytest.mark.parametrize("row", ["[2.0], [2.0], [1.0], [0.5]", "[2.0], [3.0], [1.0], [0.5]"])
def test_kinks_are_said_in_a_network_s_verdict(tmp_path: Path, row: str, cli: Any) -> None:
    """A max-pool tie (a kink) was counted in JSON but never shown; the twin has no tie."""
    model = tmp_path / "model.yaml"
    model.write_text(f"inputs:\n  X: [[[{row}]]]\nnetwork:\n"
                     "  - {layer: maxpool2d, name: pool, options: {size: [1, 2]}}\n")  # fmt: skip
    result = cli("check", "net", model, env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    tie = "[2.0], [2.0]" in row
    assert ("at kinks checked one-sidedly" in result.stdout.splitlines()[-1]) == tie, result.stdout
    assert ("layer 1 'pool': dX: " in result.stdout) == tie, result.stdout


@pytest.mark.parametrize("bug", [None, "fc1.W", "fc2.out"])
def test_grads_on_a_network_are_diagnosed_as_a_layer_s(
    cli: Any, tmp_path: Path, bug: str | None
) -> None:
    """A failing --grads on a network showed no worst elements and left the unanswered
    unnamed; the output's gradient (the last boundary, dfc2.out) was refused and not written."""
    model = tmp_path / "model.yaml"
    model.write_text("seed: 0\ninputs: {X: {shape: [3, 4]}}\nnetwork:\n"
                     "  - {layer: linear, name: fc1, tensors: {W: {shape: [5, 4]}}}\n"
                     "  - {layer: linear, name: fc2, tensors: {W: {shape: [2, 5]}}}\n")  # fmt: skip
    assert cli("compute", "net", model, "-o", tmp_path / "c.npz").exit_code == 0
    arrays = dict(np.load(tmp_path / "c.npz"))
    answers = {"fc1.W": arrays["dfc1.W"], "dfc2.out": arrays["dfc2.out"]}
    if bug is not None:
        answers[next(k for k in answers if bug in k)][0, 1] += 0.5
    np.savez(tmp_path / "g.npz", **answers)
    result = cli("check", "net", model, "--grads", tmp_path / "g.npz", env={"COLUMNS": "100"})
    assert result.exit_code == (0 if bug is None else 1), result.output
    assert "not checked (no answer given): dX, dfc1.b, dfc2.W, dfc2.b" in result.stdout
    # one element wrong: that one, not four that pass beside it (outside test t41a N7)
    worst = [line.strip() for line in result.stdout.splitlines() if "failing element" in line]
    title = f"d{bug}: the failing element (by error / tolerance)"
    assert worst == ([] if bug is None else [title]), result.stdout
    last = result.stdout.splitlines()[-1]
    assert ("both of your gradients match" in last) == (bug is None), last
    # the summary line alone (-q) names what was not answered, passing or failing (t59a F4)
    assert last.endswith("not checked (no answer given): dX, dfc1.b, dfc2.W, dfc2.b"), last


def test_a_sampled_local_check_is_said_and_never_claimed_full(tmp_path: Path) -> None:
    """Under a budget too small for fc's local check, the verdict and the end-to-end note say
    that fc was sampled and how much (they claimed every coordinate was checked locally);
    twin: with room, no such words."""
    model = tmp_path / "model.yaml"
    fc = "  - {layer: linear, name: fc, tensors: {W: {shape: [20, 30]}}}\n"
    model.write_text("seed: 1\ninputs:\n  X: {shape: [4, 30]}\nnetwork:\n" + fc)
    net = load_network(str(model))
    tight = check_network(net, CheckOptions(budget=0.0, samples=4))
    assert any(r.mode == "sample" for r in tight.layers[0].report.results.values())
    line = str(verdict_line(net, tight))
    assert "sampled: 'fc' (" in line and "12 of 740 coordinates" in line, line
    notes = " ".join(tight.end_to_end.notes)
    assert "every coordinate is checked" not in notes and "'fc' (" in notes, notes
    roomy = check_network(net, QUICK)
    assert "sampled" not in str(verdict_line(net, roomy))


NET_INT = Path(__file__).parent / "fixtures" / "net_int"  # integer-valued X and conv W
ALL_TIES = '''import numpy as np
def forward(X, size=2, stride=None, padding=0):
    N, H, W, C = X.shape
    return X.reshape(N, H // 2, 2, W // 2, 2, C).max(axis=(2, 4))
def backward(grad_output, X, size=2, stride=None, padding=0):
    N, H, W, C = X.shape
    win = X.reshape(N, H // 2, 2, W // 2, 2, C)
    top = win == win.max(axis=(2, 4), keepdims=True)  # every tied element gets it all
    return {"X": (top * grad_output[:, :, None, :, None, :]).reshape(X.shape)}
'''


@pytest.mark.parametrize("pool", ["", ", impl: all_ties.py"], ids=["builtin", "all-ties"])
def test_kinks_of_several_layers_meeting_end_to_end_are_not_a_failure(
    tmp_path: Path, pool: str, cli: Any
) -> None:
    """relu at exactly 0 feeding tied pool windows: the chained backward (autodiff's value) is
    not between the whole network's one-sided slopes there, and the layers' local checks
    decide (FAILed 'end to end' with every layer passing); the twin: a pool giving every tied
    element the whole gradient is still named."""
    for f in NET_INT.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "all_ties.py").write_text(ALL_TIES)
    (tmp_path / "m.yaml").write_text(
        "inputs:\n  X: netX_int.npy\n  y: [3, 7]\nnetwork:\n"
        "  - {layer: conv2d, name: conv1, tensors: {W: netW_int.npy}, options: {padding: 1}}\n"
        "  - {layer: relu}\n"
        f"  - {{layer: maxpool2d, name: pool1, options: {{size: 2}}{pool}}}\n"
        "  - {layer: flatten}\n"
        "  - {layer: linear, name: fc, tensors: {W: netfcW.npy}}\n"
        "loss: {layer: softmax_cross_entropy, target: y}\n"
    )
    # the twin under --budget 2: its pool's local check fails as under 60 (the same worst
    # element and hint), and the end to end reads fewer of its other kinks
    budget = ("--budget", "2") if pool else ()
    result = cli("check", "net", tmp_path / "m.yaml", "--format", "json", *budget)
    doc = json.loads(result.stdout)
    if not pool:
        assert (result.exit_code, doc["passed"], doc["first_wrong"]) == (0, True, None)
        assert sum(r["kinks"] for r in doc["end_to_end"]["results"].values()) > 0
    else:
        assert result.exit_code == 1
        assert doc["first_wrong"]["name"] == "pool1" and doc["first_wrong"]["tensor"] == "X"
        # the verdict is decided: the end to end's large ties are not read (it took 2.5x as long)
        notes = " ".join(doc["end_to_end"]["notes"])
        assert "not read end to end, as a layer's local check fails already" in notes, notes
        # and that equal values need not be ties: a smooth network's zero biases and unit
        # gammas drew the same note (outside test t51b F2)
        assert "equal values, as zero biases and unit gammas are, are a tie only" in notes


MEAN_DB = """import numpy as np
def forward(x, W, b): return x @ W.T + b
def backward(grad_output, x, W, b):
    g = grad_output.reshape(-1, W.shape[0]); xx = x.reshape(-1, W.shape[1])
    return {"x": grad_output @ W, "W": g.T @ xx, "b": g.%s(0)}
"""


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_end_to_end_notes_are_its_own_and_crowds_stay_off_stderr(cli: Any, tmp_path: Path,
                                                                   reduce: str) -> None:
    """A wrong db (a mean where the sum belongs) beside fc2's zero biases: stderr said '5
    failing coordinates are tied with more than 4 interacting equal values', blaming ties for
    the db a layer's check had already found, and the table's 'note:' did not say it was the
    end-to-end check's (outside test t61b F3, F4). The note stays in the JSON; the twin: the
    right db passes with no such note."""
    (tmp_path / "lin.py").write_text(MEAN_DB % reduce)
    model = tmp_path / "m.yaml"
    model.write_text("seed: 3\ninputs:\n  x: {shape: [2, 3, 6]}\nnetwork:\n"
                     "  - {layer: linear, name: fc1, tensors: {W: {shape: [8, 6]}}}\n"
                     "  - {layer: relu}\n"
                     "  - {layer: linear, name: fc2, impl: lin.py, tensors: {W: {shape: [5, 8]}}}\n"
                     "  - {layer: tanh}\ngrad_output: {shape: [2, 3, 5]}\n")  # fmt: skip
    r = cli("check", "net", model)
    assert r.exit_code == (1 if reduce == "mean" else 0), r.stderr
    assert "interacting equal values" not in r.stderr, r.stderr
    if reduce == "sum":
        return
    notes = [line for line in r.stdout.splitlines() if line.startswith("note:")]
    assert notes and all(n.startswith(("note: end to end:", "note: layer ")) for n in notes), notes
    doc = json.loads(cli("check", "net", model, "-f", "json").stdout)
    assert any("interacting equal values" in n for n in doc["end_to_end"]["notes"])


def test_the_end_to_end_table_says_each_reading(tmp_path: Path, cli: Any) -> None:
    """'rel err 0 FAIL' stood in the end-to-end table for a tie no piece was read at (outside
    test t65b F8): it has the reading column of a layer's check table ('good' when right)."""
    model = tmp_path / "model.yaml"
    model.write_text("inputs:\n  X: [[[[2.0], [3.0], [1.0], [0.5]]]]\nnetwork:\n"
                     "  - {layer: maxpool2d, name: pool, options: {size: [1, 2]}}\n")  # fmt: skip
    out = cli("check", "net", model, env={"COLUMNS": "120", "NO_COLOR": "1"}).stdout
    table = out.split("end to end:")[1]
    header = next(x for x in table.splitlines() if x.startswith("┃ gradient"))
    assert "reading" in header, header
    assert any(x.startswith("│ dX") and "│ good" in x for x in table.splitlines()), table


def test_network_tables_fit_and_give_way_as_a_layers_does(tmp_path: Path, cli: Any) -> None:
    """At 60 columns the local checks' table stayed 63 wide, and the end-to-end table dropped
    the worst element before rel err, the other way round from a layer's check table (outside
    test t66b F3)."""
    model = tmp_path / "model.yaml"
    assert cli("init", "net", "-o", model).exit_code == 0
    for width in (50, 60, 80, 100):
        out = cli("check", "net", model, env={"COLUMNS": str(width), "NO_COLOR": "1"}).stdout
        tables = [x for x in out.splitlines() if x[:1] in "┏┃┡│└"]
        assert all(len(x) <= width for x in tables), (width, max(map(len, tables)))
        for header in (x for x in tables if x.startswith(("┃ #", "┃ gradient"))):
            # (at 50 no worst element fits at all, and a column that wraps blocks none)
            assert width == 50 or "rel err" not in header or "element" in header, (
                width, header)
