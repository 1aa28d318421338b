"""Rendering the values of arrays: colored by sign and magnitude, one table per 2-D slice,
wide rows split into blocks of columns that fit the console."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gradcli.checking.places import index_text
from gradcli.inputs.spec import Spec
from gradcli.layers import TensorInfo

MAX_SHOWN = 100  # tensors with at most this many elements get their values printed


def natural_index(info: TensorInfo | None, idx: tuple[int, ...]) -> str:
    """``[m=1, n=2, d=0, c=2]`` in the seed's index letters (batch axes as b0, b1, ...)."""
    return index_text(info.index if info else (), idx) if idx else ""


def yours(spec: Spec, name: str, idx: tuple[int, ...]) -> str:
    """Where element ``idx`` of d``name`` is in the user's own array when their code has
    another layout (CS231n's: ``dw[3,2]`` for dW[o=2, i=3]); "" when it is where the report's
    index says."""
    if spec.layer.yours is None:
        return ""
    theirs = spec.layer.yours(name, spec.shapes, tuple(idx))
    return "" if theirs == f"d{name}[{','.join(map(str, idx))}]" else theirs


def letters(info: TensorInfo | None, ndim: int) -> list[str]:
    own = list(info.index) if info else []
    if len(own) > ndim:
        own = []
    return [f"b{k}" for k in range(ndim - len(own))] + own


def unanswered(names: tuple[str, ...] | list[str]) -> str:
    """``not checked (no answer given): dX, db``: the gradients a --grads file left out, as
    the diagnosis and the verdict lines say them."""
    return f"not checked (no answer given): {', '.join('d' + n for n in names)}"


def num(v: float) -> str:
    return f"{v + 0.0:.4g}"  # + 0.0: a negative zero reads 0, not -0 (t23 F13, t24 F9)


def stat_cells(a: np.ndarray) -> list[str]:
    """min, max, mean and norm of ``a`` (any shape) as table cells, ``[]`` for an empty array.
    A NaN made all four read nan, hiding the eleven finite values beside one NaN (t61b F6):
    with values that are not finite, min, max and mean are those of the finite ones and the
    norm cell, the column that stays longest at narrow widths, counts the others (``1 NaN,
    2 inf``: t66b F8; a causal attention's masked scores: ``40 -inf``)."""
    a = np.asarray(a)
    if not a.size:
        return []
    with np.errstate(all="ignore"):  # an overflowing norm shows as inf, no warning
        finite = np.isfinite(a) if a.dtype.kind in "fc" else np.ones(a.shape, dtype=bool)
        if finite.all():
            return [num(float(a.min())), num(float(a.max())), num(_scaled(np.mean, a)),
                    num(_scaled(np.linalg.norm, a))]  # fmt: skip
        rest = a[finite]
        nan = int(np.count_nonzero(np.isnan(a)))
        # -inf apart: a causal attention's masked scores are -inf, not an overflow
        low = int(np.count_nonzero(np.isneginf(a))) if a.dtype.kind == "f" else 0
        inf = int(a.size - rest.size - nan - low)
        counted = ", ".join(f"{k} {what}" for k, what in ((nan, "NaN"), (low, "-inf"),
                                                           (inf, "inf")) if k)  # fmt: skip
        if not rest.size:
            return ["", "", "", counted]
        return [num(float(rest.min())), num(float(rest.max())), num(_scaled(np.mean, rest)),
                counted]


def _scaled(stat: Callable[[np.ndarray], Any], a: np.ndarray) -> float:
    """``stat`` (a mean, a 2-norm) of finite ``a``; where its sum or squares overflow, of
    ``a`` scaled by its largest magnitude, scaled back: an x float64 holds read norm inf
    (values of 1.4e308: outside test t68b F7)."""
    value = float(stat(a.ravel()))
    top = float(np.max(np.abs(a)))
    if np.isfinite(value) or top == 0.0:
        return value
    return top * float(stat((a / top).ravel()))


def apart(a: float, b: float, digits: int = 6) -> tuple[str, str]:
    """``a`` and ``b`` to ``digits`` significant digits, or as many more (up to 17, every
    digit a float64 has) as it takes for two different numbers to read differently: yours
    1.11938, ours 1.11938 said nothing of a difference of 1e-6. A negative zero reads 0."""
    a, b = a + 0.0, b + 0.0
    for d in range(digits, 18):
        x, y = f"{a:.{d}g}", f"{b:.{d}g}"
        if x != y or a == b:
            break
    return x, y


def _colored(v: float, scale: float) -> Text:
    """Red for positive, blue for negative; brighter the closer |v| is to the tensor's max."""
    if v == 0 or scale == 0:
        return Text(num(v), style="dim")
    ratio = abs(v) / scale
    hue = "red" if v > 0 else "blue"
    style = f"bold bright_{hue}" if ratio > 0.5 else hue if ratio > 0.1 else f"dim {hue}"
    return Text(num(v), style=style)


def slices(a: np.ndarray, info: TensorInfo | None) -> Iterator[tuple[dict[int, int], np.ndarray]]:
    """2-D slices over the first two core axes (channel-last: H and W), the rest fixed."""
    if a.ndim <= 2:
        yield {}, a.reshape(1, -1) if a.ndim < 2 else a
        return
    core = len(info.index) if info and len(info.index) <= a.ndim else 2
    row = a.ndim - core if core >= 2 else a.ndim - 2
    if info is not None and info.role == "intermediate":
        row = a.ndim - 2  # a T x T score matrix per head (or rows x features)
    others = [k for k in range(a.ndim) if k not in (row, row + 1)]
    for combo in itertools.product(*(range(a.shape[k]) for k in others)):
        fixed = dict(zip(others, combo, strict=True))
        yield fixed, a[tuple(fixed.get(k, slice(None)) for k in range(a.ndim))]


def _value_blocks(a: np.ndarray, width: int) -> list[Table]:
    """The values of a 2-D slice (or a scalar) as tables of at most ``width`` columns of text:
    the columns of a wide slice go into consecutive blocks (numpy style), each headed by its
    column indices, so a narrow pipe shows numbers, never a row of ellipses."""
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    if a.ndim == 0:
        table = Table(show_header=False, box=None)
        table.add_column("")
        table.add_row(_colored(float(a), scale))
        return [table]
    cells = [[_colored(float(v), scale) for v in row] for row in a]
    labels = [str(i) if a.shape[0] > 1 else "" for i in range(a.shape[0])]
    # box=None: one space of padding either side of every column
    label_width = max((len(s) for s in labels), default=0) + 2
    widths = [max(len(str(j)), *(c[j].cell_len for c in cells)) + 2 for j in range(a.shape[1])]
    blocks, start = [], 0
    while start < a.shape[1]:
        stop, used = start + 1, label_width + widths[start]
        while stop < a.shape[1] and used + widths[stop] <= width:
            used += widths[stop]
            stop += 1
        table = Table(box=None, width=used if used > width else None)  # one column too wide
        table.add_column("", style="dim", justify="right", no_wrap=True)
        for j in range(start, stop):
            table.add_column(str(j), justify="right", style="dim", no_wrap=True)
        for label, row in zip(labels, cells, strict=True):
            table.add_row(label, *row[start:stop])
        blocks.append(table)
        start = stop
    return blocks


def _value_tables(label: str, a: np.ndarray, info: TensorInfo | None, width: int) -> list:
    """A title line and the values of every 2-D slice of ``a``; titles are never wrapped, so an
    index such as ``[:, :, d=0, c=0]`` stays on one line."""
    a = np.asarray(a)
    if a.ndim == 0:
        return [Text(f"{label}  (scalar)", style="italic"), *_value_blocks(a, width)]
    names = letters(info, a.ndim)
    out: list = []
    for fixed, sl in slices(a, info):
        title = f"{label}  {list(a.shape)}"
        if fixed:
            parts = (f"{names[k]}={fixed[k]}" if k in fixed else ":" for k in range(a.ndim))
            title = f"{label}[{', '.join(parts)}]"
        out += [Text(title, style="italic", no_wrap=True, overflow="ignore"),
                *_value_blocks(sl, width)]  # fmt: skip
    return out


def print_values(console: Console, rows: list, elsewhere: str | None = None) -> None:
    """Every array's values; arrays too large to read are named instead, with ``elsewhere``:
    where the caller's user finds them whole (the CLI names its flags, the API its methods)."""
    hidden = []
    for name, _, a, info in rows:
        if np.size(a) > MAX_SHOWN:
            hidden.append(f"{name} ({np.size(a)} elements)")
            continue
        for part in _value_tables(name, a, info, console.width):
            console.print(part, soft_wrap=isinstance(part, Text), crop=False)
        console.print()
    if hidden:
        console.print(
            Text(
                f"values not shown for {', '.join(hidden)}: more than {MAX_SHOWN} elements"
                + (f"; {elsewhere}" if elsewhere else ""),
                style="dim",
            )
        )
