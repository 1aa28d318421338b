"""Outside tests t15 MEM1 and MAXEL1: the bounds hold for what gradcli cannot count from the
shapes alone. A user's forward allocates what it likes: its call at the spec's point is
measured (tracemalloc, the oracle test_bounds.py holds the layers' declarations to) and a
check it does not fit is refused before any numerical gradient. The output of a built-in
layer follows from the shapes: --max-elements counts it before a tensor is generated or read.

Small sizes and tiny limits: the refusals are the same at any size."""

from __future__ import annotations

import json

import pytest

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
