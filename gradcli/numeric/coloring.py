"""Curtis-Powell-Reid coloring from a layer's declared footprints.

A footprint (``layers.base.Footprint``) says, per axis of a tensor, which outputs an index along
it can move. Coordinates whose footprints never overlap get one color: the numerical engine moves
all of them in one forward pass and attributes each output difference to the coordinate that owns
it. Along an axis whose windows slide monotonically, index t and t + k*p never overlap once p is
the window's period, so the colors are the residues modulo the periods of all axes.
"""

from __future__ import annotations

import math
from dataclasses import field

import numpy as np

from gradcli.layers.base import Footprint
from gradcli.records import record

LINES_KEPT = 2**20  # elements of built lines a coloring keeps for its next colors


@record
class Coloring:
    """The colors of one tensor of shape ``shape`` against an output of shape ``out_shape``."""

    shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    periods: tuple[int, ...]  # per axis: indices t and t + k*period share a color
    # per axis: the clipped windows (lo, hi) of its indices, or None (dense); a residue's
    # owning line is built when asked for: a (period, out_len) table of every line can be
    # gigabytes (a dilated conv1d of 20,000 samples: 760 MB)
    windows: tuple[tuple[np.ndarray, np.ndarray] | None, ...]
    out_axes: tuple[int | None, ...]  # per axis: the output axis it maps onto (None: dense)
    # lines already built, (axis, residue) -> line, while they stay small: a color's owners
    # are built once per color and pass, and most colors share their lines (svm's x: every
    # color has the one line of its N axis)
    _lines: dict[tuple[int, int], np.ndarray] = field(
        default_factory=dict, repr=False, compare=False
    )
    _kept: list[int] = field(default_factory=lambda: [0], repr=False, compare=False)  # elements

    def coords(self, residues: tuple[int, ...]) -> np.ndarray:
        """Flat indices of the coordinates of one color."""
        if not self.shape:
            return np.array([0])
        axes = [
            np.arange(r, n, p) for r, n, p in zip(residues, self.shape, self.periods, strict=True)
        ]
        return np.ravel_multi_index(np.ix_(*axes), self.shape).ravel()

    def owner(self, residues: tuple[int, ...]) -> np.ndarray:
        """For one color: each output's owning coordinate (flat index), or -1 (out_size,)."""
        owner = np.zeros(self.out_shape, dtype=np.int64)
        valid = np.ones(self.out_shape, dtype=bool)
        for a, r in enumerate(residues):
            stride = math.prod(self.shape[a + 1 :])
            if self.windows[a] is None:
                owner += stride * r
                continue
            line = self._line(a, r)
            view = [1] * len(self.out_shape)
            view[self.out_axes[a]] = -1
            owner = owner + stride * line.reshape(view)
            valid = valid & (line >= 0).reshape(view)
        return np.where(valid, owner, -1).ravel()

    def _line(self, a: int, r: int) -> np.ndarray:
        """Along axis a, for residue r: each output index's owning index t = r (mod period),
        or -1. Its windows are disjoint (that is what the period means)."""
        if (a, r) in self._lines:
            return self._lines[a, r]
        lo, hi = self.windows[a]  # type: ignore[misc]
        ts = np.arange(r, len(lo), self.periods[a])
        m = np.maximum(hi[ts] - lo[ts], 0)
        line = np.full(self.out_shape[self.out_axes[a]], -1, dtype=np.int64)  # type: ignore[index]
        starts = lo[ts] - (np.cumsum(m) - m)  # window i's first position, less its offset
        line[np.repeat(starts, m) + np.arange(int(m.sum()))] = np.repeat(ts, m)
        if self._kept[0] + line.size <= LINES_KEPT:
            self._lines[a, r] = line
            self._kept[0] += line.size
        return line


def build_coloring(
    fp: Footprint, shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> Coloring | None:
    """The coloring a footprint allows, or None when it does not fit the tensor."""
    if len(fp) != len(shape):
        return None
    periods, windows, out_axes = [], [], []
    for n, amap in zip(shape, fp, strict=True):
        if amap is None:
            periods.append(n)
            windows.append(None)
            out_axes.append(None)
            continue
        o, lo, hi = amap
        out_len = out_shape[o]
        lo, hi = np.clip(lo, 0, out_len), np.clip(hi, 0, out_len)
        periods.append(_period(lo, hi))
        windows.append((lo, hi))
        out_axes.append(o)
    return Coloring(tuple(shape), tuple(out_shape), tuple(periods), tuple(windows), tuple(out_axes))


def _period(lo: np.ndarray, hi: np.ndarray) -> int:
    """Smallest shift p such that the windows of t and t + k*p never overlap (k >= 1)."""
    n = len(lo)
    monotone = n < 2 or (np.all(np.diff(lo) >= 0) and np.all(np.diff(hi) >= 0))
    if not monotone:
        return _period_any(lo, hi)
    # with monotone windows, once t and t + p never overlap neither do t and t + p + 1:
    # bisect (a linear scan took 14 s for a dilated conv1d of 20,000 samples)
    low, high = 1, max(n, 1)  # the answer lies in [low, high]; p = n always works
    while low < high:
        p = (low + high) // 2
        if np.all(hi[:-p] <= lo[p:]):
            high = p
        else:
            low = p + 1
    return high


def color_groups(
    periods: tuple[int, ...], shape: tuple[int, ...], idx: np.ndarray
) -> list[np.ndarray]:
    """Positions into ``idx`` (flat indices of a tensor of ``shape``) grouped by color, in the
    colors' order: the coordinates of one group move together in one perturbed copy."""
    if not len(idx):
        return []
    t = np.unravel_index(np.asarray(idx, dtype=np.int64), shape)
    color = np.ravel_multi_index(tuple(ti % p for ti, p in zip(t, periods, strict=True)), periods)
    order = np.argsort(color, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(color[order])) + 1)


def _period_any(lo: np.ndarray, hi: np.ndarray, tries: int = 64) -> int:
    """The period of windows in no order (an LSTM's gate column j moves unit j mod H): the
    smallest p, from the deepest overlap up, whose residue classes hold disjoint windows; n
    (one color per index) when none of ``tries`` candidates does."""
    n = len(lo)
    t = np.flatnonzero(hi > lo)  # an empty window overlaps nothing
    lo, hi = lo[t], hi[t]
    cover = np.zeros(int(hi.max(initial=0)) + 1, dtype=np.int64)
    np.add.at(cover, lo, 1)
    np.add.at(cover, hi, -1)
    depth = max(1, int(np.cumsum(cover).max(initial=1)))  # no period can be smaller
    for p in range(depth, min(n, depth + tries)):
        order = np.lexsort((lo, t % p))
        same_class = (t % p)[order[:-1]] == (t % p)[order[1:]]
        if np.all((hi[order[:-1]] <= lo[order[1:]]) | ~same_class):
            return p
    return n


@record
class SourceColoring:
    """One color for a tensor of which each output element reads one coordinate at most
    (``Layer.sources``: a lookup, a reshape): every coordinate moves in the same pass, and
    each output difference belongs to its source. Same interface as ``Coloring``."""

    shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    source: np.ndarray  # (out_size,): each output's flat coordinate, -1 for none

    @property
    def periods(self) -> tuple[int, ...]:
        return (1,) * len(self.shape)

    def coords(self, residues: tuple[int, ...]) -> np.ndarray:
        return np.arange(math.prod(self.shape))

    def owner(self, residues: tuple[int, ...]) -> np.ndarray:
        return self.source


def source_coloring(
    source: np.ndarray | None, shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> SourceColoring | None:
    """The one color a source map allows, or None when it does not fit the tensor."""
    if source is None or tuple(np.shape(source)) != tuple(out_shape):
        return None
    src = np.asarray(source).ravel()
    if src.dtype.kind not in "iu" or src.size and (src.min() < -1 or src.max() >= math.prod(shape)):
        return None
    return SourceColoring(tuple(shape), tuple(out_shape), src.astype(np.int64))
