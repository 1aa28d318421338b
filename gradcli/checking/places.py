"""Where a failing gradient's errors lie: one slice, the borders, where windows overlap, an
element named in the report's letters. Said of the compared elements only (in a sample, only
when the failures are too many to have fallen there by chance)."""

from __future__ import annotations

from typing import Any

import numpy as np


def only(subject: str, place: str, sampled: int) -> str:
    """"dW is wrong only <place>", or in a sample what the compared elements show."""
    if sampled:
        return f"{subject}: among the {sampled} compared elements, the failing ones are all {place}"
    return f"{subject} is wrong only {place}"


def element(name: str, letters: list[str], idx: tuple) -> str:
    """d``name``[b0=0, i=3]: an element in the report's letters."""
    return f"d{name}{index_text(letters, idx)}"


def index_text(letters: list[str] | tuple[str, ...], idx: tuple) -> str:
    """``[o=1, i=0]`` in the seed's letters (leading batch axes b0, b1, ...), as tables show;
    ``[1, 0]`` for a tensor that names no axes (a custom layer's: every axis a batch axis
    read as if it were one, ``dW[b0=1, b1=2]``: outside test t31a L1)."""
    if not letters:
        return "[" + ", ".join(str(int(i)) for i in idx) + "]"
    names = list(letters) if len(letters) <= len(idx) else []
    names = [f"b{k}" for k in range(len(idx) - len(names))] + names
    return "[" + ", ".join(f"{c}={int(i)}" for c, i in zip(names, idx, strict=True)) + "]"


def confined(fail: np.ndarray, region: np.ndarray, ok: np.ndarray, choices: int = 1) -> bool:
    """Whether the failures lying in ``region`` shows the errors are confined there: some
    compared element outside it is right, and in a sample the failures are too many to have all
    fallen in it by chance (were the errors anywhere, each failure lands in the region with the
    region's share p of the compared elements: ``choices`` regions that could have been named
    times p to the number of failures under 1%). In a full check too: 2 failures in the one
    example of 5 whose gradient was tiny read as 'the last along n: look at the loop bounds'
    (outside test t24 F2); a loop bound's slip fails its whole slice."""
    if not fail.any() or fail[~region].any() or not (~region & ok).any():
        return False
    share = float((region & ok).sum()) / float(ok.sum())
    return choices * share ** int(fail.sum()) < 0.01


def place(
    fail: np.ndarray, ok: np.ndarray, letters: list[str], sampled: int, context: dict[str, Any]
) -> str:
    """Where the failures are confined, as the patterns below read it ("at i=6 (one slice
    along i)", "on the borders"), or "": said of the compared elements in a sample."""
    among = " (of the compared elements)" if sampled else ""
    at, axis, index = slice_at(fail, ok, letters)
    if at:  # one slice says more than the borders (a stride's map marks every other row)
        end = {0: "the first", fail.shape[axis] - 1: "the last"}.get(index)
        letter = at.split("=")[0].removeprefix("at ")
        return f"{at}{among}" + (f", {end} along {letter}" if end else f" (one slice along "
                                                                         f"{letter})")
    border = context.get("border")
    if border is not None and border.shape == fail.shape and confined(fail, border, ok):
        return f"on the borders{among}"
    return ""


def slice_at(fail: np.ndarray, ok: np.ndarray, letters: list[str]) -> tuple[str, int, int]:
    """("at i=6", axis, index) when every failure lies in that one row / column / channel (in
    a sample: too many failures there to be chance), else ("", -1, -1)."""
    if fail.ndim < 2 or fail.sum() < 2:
        return "", -1, -1
    where = np.argwhere(fail)
    if len(letters) <= fail.ndim:  # the layer's letters name the last axes; batch axes lead
        letters = [f"b{k}" for k in range(fail.ndim - len(letters))] + list(letters)
    for axis in range(fail.ndim):
        values = np.unique(where[:, axis])
        if len(values) == 1 and fail.shape[axis] > 1:
            at = along(fail.shape, axis, int(values[0]))
            if not confined(fail, at, ok, fail.shape[axis]):
                continue
            letter = letters[axis] if axis < len(letters) else f"axis {axis}"
            return f"at {letter}={int(values[0])}", axis, int(values[0])
    return "", -1, -1


def one_slice(
    subject: str, fail: np.ndarray, ok: np.ndarray, letters: list[str], sampled: int
) -> list[str]:
    """All the errors in one row / column / channel (in a sample: too many failures there to
    be chance, and said of the compared elements only)."""
    place = slice_at(fail, ok, letters)[0]
    return [f"{only(subject, place, sampled)} (one slice along that axis)"] if place else []


def along(shape: tuple[int, ...], axis: int, index: int) -> np.ndarray:
    """The elements at ``index`` along ``axis``, as a mask of ``shape``."""
    mask = np.zeros(shape, dtype=bool)
    mask[(slice(None),) * axis + (index,)] = True
    return mask


def edges(lo: np.ndarray, width: np.ndarray) -> np.ndarray:
    """The positions along an axis fewer windows read than read the others of their phase:
    the borders. With a stride the count alternates inside too (stride 2, a 3-wide window:
    1, 2, 1, 2, ...), so each position is held against those a stride away, the stride read
    off the first window each position meets (it moves by one every stride positions)."""
    runs = np.diff(np.flatnonzero(np.r_[True, np.diff(lo) != 0, True]))
    stride = int(np.bincount(runs).argmax()) if runs.size else 1
    edge = np.zeros(width.shape, dtype=bool)
    for phase in range(max(stride, 1)):
        w = width[phase::stride]
        edge[phase::stride] = w < w.max()
    return edge
