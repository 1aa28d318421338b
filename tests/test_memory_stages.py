"""--max-memory counts each stage of a check that holds arrays beside its copies, from the
shapes (numeric/memory.py): the kink map, the footprint's check, the search for ties no
coordinate sees. Oracle: tracemalloc's peak of the stage itself, on arrays large enough that
Python's own objects are noise; each is held between its count and a part of it (a count far
above refuses checks that fit: the fixed count was 5 arrays high)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from gradcli.layers import get_layer
from gradcli.numeric import kinks, memory, pieces
from gradcli.numeric.engine import Engine

RNG = np.random.default_rng(0)


def _peak(run) -> int:
    """Bytes ``run()`` allocated at its peak, beyond what was held when it started."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _engine(layer: str, tensors: dict, **kw) -> Engine:
    lay = get_layer(layer)
    out = lay.forward(tensors, lay.options())[0]
    return Engine(lay, tensors, lay.options(), RNG.standard_normal(out.shape), **kw)


@pytest.mark.parametrize(("layer", "tensors", "name"), [
    ("maxpool2d", {"X": RNG.standard_normal((64, 64, 16))}, "X"),
    ("relu", {"x": RNG.standard_normal(2**18)}, "x"),
])  # fmt: skip
def test_the_kink_map_holds_what_is_counted(layer, tensors, name):
    engine = _engine(layer, tensors)
    largest = 8 * tensors[name].size
    used = _peak(lambda: kinks.met(engine, name))
    assert used <= memory.KINK_ARRAYS * largest, used / largest
    assert used >= memory.KINK_ARRAYS * largest / 3, used / largest


def test_the_search_for_ties_holds_what_is_counted():
    """Every coordinate silent, each value shared by 2,048 (more than are searched: the
    arrays of every coordinate alone)."""
    x = RNG.integers(0, 64, 2**17).astype(float)
    engine = _engine("relu", {"x": x})
    t = 8 * x.size
    silent = {"x": np.arange(x.size)}

    def run():
        pieces.verify(engine, {"x": np.zeros(0, np.int64)}, silent, {"x": np.zeros(x.size)},
                      {"x": np.zeros(x.size)}, 0.0, budget=0.0)  # fmt: skip

    used = _peak(run)
    assert memory.PIECES_ARRAYS * t / 2 <= used <= memory.PIECES_ARRAYS * t, used / t


def test_a_search_with_no_tie_makes_none_of_its_arrays():
    x = RNG.standard_normal(2**17)
    engine = _engine("relu", {"x": x})
    silent = {"x": np.arange(x.size)}

    def run():
        found = pieces.verify(engine, {"x": np.zeros(0, np.int64)}, silent,
                              {"x": np.zeros(x.size)}, {"x": np.zeros(x.size)}, 0.0)  # fmt: skip
        assert found == pieces.Pieces()

    assert _peak(run) <= 5 * 8 * x.size  # its values sorted; a search holds 13 such arrays


@pytest.mark.parametrize("share", [1, 100])
def test_the_footprints_check_stacks_within_the_copies_share(share):
    """Four copies stacked at once, with their forward's arrays (conv's windows), were a
    check's peak, counted nowhere: now as many as the copies' share holds, two at the least
    (one central pass, counted). The twin: a share that holds them all stacks all four."""
    X = RNG.standard_normal((16, 16, 8))
    W = RNG.standard_normal((3, 3, 8, 8))
    probe = _engine("conv2d", {"X": X, "W": W, "b": np.zeros(8)})
    engine = _engine("conv2d", {"X": X, "W": W, "b": np.zeros(8)},
                     max_memory=share * probe.copy_bytes("X"))  # fmt: skip
    stacked = []
    forward = engine.forward_stack

    def counted(name, probes):
        stacked.append(len(probes))
        return forward(name, probes)

    engine.forward_stack = counted
    col = engine._coloring("X")
    assert engine.verify_footprint("X", col, np.random.default_rng(0)) == ""
    assert stacked == ([2, 2] if share == 1 else [4]), stacked
