"""The error heatmap of a slice wider than the terminal is drawn in column blocks, as the
values are: a linear's W of 10 x 64 at 80 columns (the `fc` of `init net`) drew nothing, only
'(heatmap cut short: too large to draw)', where the README promises a heatmap of every 2-D
slice with a failure (outside test t68c F1). Oracle: the wrong dW by construction (columns 3
and up scaled by 1.001), read back from the drawn characters."""

import numpy as np
import pytest

import gradcli
from gradcli.layers import REGISTRY


def _wrong_dW(columns):
    rng = np.random.default_rng(0)
    t = {"x": rng.standard_normal((6, columns)), "W": rng.standard_normal((10, columns)),
         "b": rng.standard_normal(10)}  # fmt: skip
    layer = REGISTRY["linear"]
    out, cache = layer.forward(t, None)
    g = rng.standard_normal(out.shape)
    grads = layer.backward(g, cache)
    grads["W"] = grads["W"].copy()
    grads["W"][:, 3:] *= 1.001
    return t, g, grads


def _heat_rows(text):
    """The heatmap's rows of characters, block after block."""
    lines = text.splitlines()
    start = lines.index("dW: error / tolerance") + 1
    rows = []
    for line in lines[start:]:
        if line.startswith(". within tolerance"):
            break
        if line and not line.startswith("columns"):
            index, *chars = line.split()  # each row led by its index
            assert int(index) == len(rows) % 10, line
            rows.append(chars)
    return rows


@pytest.mark.parametrize(("columns", "width"), [(64, 80), (41, 80), (64, 200), (30, 80)])
def test_a_wide_slice_is_drawn_in_blocks_and_every_column_shows(columns, width):
    t, g, grads = _wrong_dW(columns)
    r = gradcli.check("linear", t, grad_output=g, grads=grads)
    assert not r.passed
    text = r.table(width=width)
    assert "too large" not in text and "not drawn" not in text
    rows = _heat_rows(text)
    assert all(len(" ".join(row)) + 2 <= width for row in rows)
    blocks = len(rows) // 10
    assert len(rows) == 10 * blocks and blocks == (1 if 2 * columns - 1 <= width else
                                                   -(-columns // ((width + 1) // 2)))
    # the columns put back together: three within tolerance, then every one far beyond
    whole = [sum((rows[b * 10 + i] for b in range(blocks)), []) for i in range(10)]
    assert all(len(w) == columns for w in whole)
    assert all(w[:3] == [".", ".", "."] and set(w[3:]) <= {"#", "*", "+"} for w in whole)
