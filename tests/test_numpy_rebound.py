"""Outside test t15 (NPPATCH): a module of the user's that rebinds a numpy function rewrote
gradcli's own comparison (``np.abs = lambda a: 0 * a`` passed a backward 5x wrong; ``np.max``
rebound was an internal error). The user's code keeps its rebinding in its own calls; gradcli's
code computes with numpy's."""

from __future__ import annotations

import numpy as np
import pytest

import gradcli

PATCHES = {
    "abs": "np.abs = lambda a, *k, **kw: 0 * np.asarray(a)",
    "max": "np.max = lambda a, *k, **kw: 0.0",
    "maximum": "np.maximum = lambda a, b, *k, **kw: np.zeros(np.broadcast(a, b).shape)",
}
MINE = """
import numpy as np
{patch}
np.float = float  # a shim for old code: a name numpy lacks, kept
SEEN = []

def forward(x):
    SEEN.append(np.float is float and getattr(np, {name!r}, None) is not None)
    return np.tanh(x)

def backward(grad_output, x):
    return {{"x": {factor} * grad_output * (1 - np.tanh(x) ** 2)}}
"""


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_a_rebound_numpy_function_stays_the_users(tmp_path, name):
    real = getattr(np, name)
    for factor, passes in ((5, False), (1, True)):
        mine = tmp_path / f"mine_{name}_{factor}.py"
        mine.write_text(MINE.format(patch=PATCHES[name], name=name, factor=factor))
        report = gradcli.check(str(mine), {"x": np.linspace(-2, 2, 6)})
        assert report.passed is passes, report.verdict()
    assert getattr(np, name) is real  # put back after
    del np.float  # the shim stays, as any name a module adds to another
