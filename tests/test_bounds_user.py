"""Outside tests t15 MEM1 and MAXEL1: the bounds hold for what gradcli cannot count from the
shapes alone. A user's forward allocates what it likes: its first call (at the spec's shapes)
is measured (tracemalloc, the oracle test_bounds.py holds the layers' declarations to) and a
check it does not fit is refused before a second call. The output of a built-in
layer follows from the shapes: --max-elements counts it before a tensor is generated or read.

Small sizes and tiny limits: the refusals are the same at any size."""

from __future__ import annotations

import dataclasses
import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradcli.inputs import network as network_module
from gradcli.inputs import sources
from gradcli.inputs import spec as spec_module
from gradcli.user import impl as impl_module

SCRATCH = """
import numpy as np

def forward(x):
    scratch = np.{make}(2**20)  # 8 MB of the forward's own, declared nowhere
    return np.tanh(x) + 0 * scratch.size

def backward(grad_output, x):
    return {{"x": grad_output * (1 - np.tanh(x) ** 2)}}
"""


@pytest.mark.parametrize(
    ("layer", "make"), [("custom", "ones"), ("custom", "empty"), ("tanh", "ones")]
)  # an np.empty's pages are never touched: tracemalloc sees it all the same
def test_a_forward_whose_own_arrays_do_not_fit_is_refused(cli, tmp_path, layer, make):
    (tmp_path / "spec.yaml").write_text("tensors:\n  x: [0.5, -1.5, 2.0]\n")
    (tmp_path / "mine.py").write_text(SCRATCH.format(make=make))
    args = ("check", layer, tmp_path / "spec.yaml", "--impl", tmp_path / "mine.py")
    result = cli(*args, "--max-memory", "4")
    assert (result.exit_code, result.stdout) == (2, ""), result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("gradcli: error: --max-memory: the check needs about 8 MB"), line
    assert "allocated by your forward" in line and "raise --max-memory to " in line
    # the twin: with room for it, the same check runs and passes
    result = cli(*args, "--max-memory", "16", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["passed"] is True


COUNTED = """
import numpy as np

def _log(what):
    with open({log!r}, "a") as f:
        f.write(what + "\\n")

def forward(x):
    _log("forward")
    scratch = np.ones(2**20)  # 8 MB of the forward's own
    return np.tanh(x) + 0 * scratch.size

def backward(grad_output, x):
    _log("backward")
    return {{"x": grad_output * (1 - np.tanh(x) ** 2)}}
"""


def _counted(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "spec.yaml").write_text("tensors:\n  x: [0.5, -1.5, 2.0]\n")
    log = tmp_path / "calls.log"
    (tmp_path / "mine.py").write_text(COUNTED.format(log=str(log)))
    return tmp_path / "mine.py", log


@pytest.mark.parametrize("layer", ["custom", "tanh"])
@pytest.mark.parametrize("sweep", [(), ("--sweep",)])
def test_a_forward_over_budget_is_refused_on_its_first_call(cli, tmp_path, layer, sweep):
    """MEM1: the first call (learning the output's shape) decides; the contract's, the
    analytical side's and the engine's calls never run (they were nine more forwards and
    eight backwards: an (N, N, N) temporary ten times)."""
    mine, log = _counted(tmp_path)
    result = cli("check", layer, tmp_path / "spec.yaml", "--impl", mine, *sweep,
                 "--max-memory", "4")  # fmt: skip
    assert (result.exit_code, result.stdout) == (2, ""), result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("gradcli: error: --max-memory: the check needs about 8 MB"), line
    assert "8 MB of it allocated by your forward in its first call" in line, line
    assert "more than --max-memory 4 MB" in line, line
    assert log.read_text().splitlines() == ["forward"]
    # the twin: under budget, the same forward is checked as before, and passes
    log.unlink()
    result = cli("check", layer, tmp_path / "spec.yaml", "--impl", mine, "--max-memory", "16",
                 "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["passed"] is True
    assert log.read_text().count("forward") > 1


def test_the_twin_a_first_call_unread_runs_the_forward_again(cli, tmp_path, monkeypatch):
    """The bug put back (the first call's reading unused): the engine's call refuses the
    same forward, after the analytical side's, the contract's and the engine's own calls."""
    real = impl_module.user_layer

    def unread(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), first_call=None)

    monkeypatch.setattr(impl_module, "user_layer", unread)
    mine, log = _counted(tmp_path)
    result = cli("check", "tanh", tmp_path / "spec.yaml", "--impl", mine, "--max-memory", "4")
    assert result.exit_code == 2 and "allocated by your forward at the spec's point" in (
        result.stderr), result.stderr
    assert log.read_text().count("forward") > 5


LAZY = """
import sys
import types
import numpy as np

KEPT = types.ModuleType("_gradcli_lazy_heavy")

def forward(x):
    if not hasattr(KEPT, "table"):  # an import on the first call, its module's table kept
        KEPT.table = np.ones(2**20)
        {imports}
    return np.tanh(x)

def backward(grad_output, x):
    return {{"x": grad_output * (1 - np.tanh(x) ** 2)}}
"""


@pytest.mark.parametrize("imports", [True, False])
def test_a_first_call_that_imports_is_not_read_as_the_forwards_arrays(cli, tmp_path, imports):
    """A lazy import (torch's libraries: 250 MB) is no array of the forward's: that call's
    reading is left to the engine's at the spec's point. The twin: the same 8 MB made on
    the first call without an import is the forward's, and refused."""
    line = 'sys.modules["_gradcli_lazy_heavy"] = KEPT' if imports else "pass"
    (tmp_path / "spec.yaml").write_text("tensors:\n  x: [0.5, -1.5, 2.0]\n")
    (tmp_path / "mine.py").write_text(LAZY.format(imports=line))
    try:
        result = cli("check", "custom", tmp_path / "spec.yaml", "--impl", tmp_path / "mine.py",
                     "--max-memory", "4")  # fmt: skip
    finally:
        sys.modules.pop("_gradcli_lazy_heavy", None)
    if imports:
        assert result.exit_code == 0, result.stderr
    else:
        assert result.exit_code == 2 and "in its first call" in result.stderr, result.stderr


# --- MAXEL1: --max-elements counts the output before any tensor exists ------------------------

N = 2_000_000  # elements of x: 16 MB, which fits --max-elements alone, but not with its output
LIMIT = "3000000"
PLAIN = (
    "def forward(x):\n    return x\n\n"
    "def backward(grad_output, x):\n    return {'x': grad_output}\n"
)


def _peak_of(run, monkeypatch, module=spec_module, name="build_spec") -> tuple[Any, int]:
    """(run's result, tracemalloc's peak while the spec's arrays are built: reading a spec
    file of any size allocates its 16 MB limit in passing)."""
    peaks = [0]
    real = getattr(module, name)

    def measured(*args, **kwargs):
        tracemalloc.start()
        try:
            return real(*args, **kwargs)
        finally:
            peaks[0] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()

    monkeypatch.setattr(module, name, measured)
    return run(), peaks[0]


def _source(tmp_path: Path, how: str) -> str:
    if how == "generated":
        return "{shape: [2000, 1000], init: normal}"
    x = np.zeros((2000, 1000))
    if how == "npy":
        np.save(tmp_path / "x.npy", x)
        return "x.npy"
    np.savez(tmp_path / "x.npz", x=x)
    return "x.npz:x"


@pytest.mark.parametrize(
    ("layer", "how"),
    [("relu", "generated"), ("relu", "npy"), ("relu", "npz"), ("custom", "generated")],
)
def test_max_elements_refuses_before_a_tensor_is_generated_or_read(cli, tmp_path, monkeypatch,
                                                                   layer, how):
    """Oracle: tracemalloc's peak over the whole run stays far below x's 16 MB. The custom
    layer's output is its forward's to tell: its tensors and gradients are counted first."""
    (tmp_path / "spec.yaml").write_text(f"tensors:\n  x: {_source(tmp_path, how)}\n")
    (tmp_path / "mine.py").write_text(PLAIN)
    impl = ("--impl", tmp_path / "mine.py") if layer == "custom" else ()
    result, peak = _peak_of(
        lambda: cli("check", layer, tmp_path / "spec.yaml", *impl, "--max-elements", LIMIT),
        monkeypatch,
    )
    assert result.exit_code == 2 and result.stdout == "", result.stderr
    (line,) = result.stderr.splitlines()
    assert "4,000,000 elements" in line and "--max-elements 3,000,000" in line, line
    assert 0 < peak < 8 * N / 4, peak


@pytest.mark.parametrize("first", ["{layer: relu}", "{layer: relu, impl: mine.py}"])
def test_a_network_is_counted_before_its_input_is_made(cli, tmp_path, monkeypatch, first):
    """Your forward of a built-in layer is counted by the built-in's shape rules."""
    (tmp_path / "mine.py").write_text(PLAIN)
    (tmp_path / "net.yaml").write_text(
        f"inputs:\n  X: {{shape: [2000, 1000]}}\nnetwork:\n  - {first}\n  - {{layer: tanh}}\n"
    )
    result, peak = _peak_of(
        lambda: cli("check", "net", tmp_path / "net.yaml", "--max-elements", LIMIT),
        monkeypatch, network_module, "build_network",
    )  # fmt: skip
    assert result.exit_code == 2 and result.stdout == "", result.stderr
    (line,) = result.stderr.splitlines()
    assert "activations" in line and "--max-elements 3,000,000" in line, line
    assert 0 < peak < 8 * N / 4, peak


def test_the_twin_loading_before_counting_is_caught(cli, tmp_path, monkeypatch):
    """The bug put back (no count from the shapes first): the same refusal, after x was made."""
    real = sources.Loader.__init__

    def loads_all(self, *args, shapes_only=False, **kwargs):
        real(self, *args, **kwargs)

    monkeypatch.setattr(sources.Loader, "__init__", loads_all)
    (tmp_path / "spec.yaml").write_text(f"tensors:\n  x: {_source(tmp_path, 'generated')}\n")
    result, peak = _peak_of(
        lambda: cli("check", "relu", tmp_path / "spec.yaml", "--max-elements", LIMIT),
        monkeypatch,
    )
    assert result.exit_code == 2 and "4,000,000 elements" in result.stderr
    assert peak >= 8 * N


def test_a_sweep_measures_the_forward_too(cli, tmp_path):
    """The same refusal (its twin, the check that fits, is the test above's: a sweep that
    fits costs 12 checks)."""
    (tmp_path / "spec.yaml").write_text("tensors:\n  x: [0.5, -1.5, 2.0]\n")
    (tmp_path / "mine.py").write_text(SCRATCH.format(make="ones"))
    args = ("check", "custom", tmp_path / "spec.yaml", "--impl", tmp_path / "mine.py", "--sweep")
    result = cli(*args, "--max-memory", "4")
    assert result.exit_code == 2 and "allocated by your forward" in result.stderr, result.stderr
