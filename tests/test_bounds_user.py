"""Outside tests t15 MEM1 and MAXEL1: the bounds hold for what gradcli cannot count from the
shapes alone. A user's forward allocates what it likes: its call at the spec's point is
measured (tracemalloc, the oracle test_bounds.py holds the layers' declarations to) and a
check it does not fit is refused before any numerical gradient. The output of a built-in
layer follows from the shapes: --max-elements counts it before a tensor is generated or read.

Small sizes and tiny limits: the refusals are the same at any size."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradcli.inputs import network as network_module
from gradcli.inputs import sources
from gradcli.inputs import spec as spec_module

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
