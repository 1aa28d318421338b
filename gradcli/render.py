"""Rendering for people: rich tables of shapes, colored values, errors; the console; progress.
Only the render modules import rich; only cli.py and exits.py import typer."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from gradcli import intermediates
from gradcli.check import CheckReport, Computation
from gradcli.layers import TensorInfo
from gradcli.spec import Spec

MAX_SHOWN = 100  # tensors with at most this many elements get their values printed


# ---------------------------------------------------------------- tables
def _num(v: float) -> str:
    return f"{v:.4g}"


def _colored(v: float, scale: float) -> Text:
    """Red for positive, blue for negative; brighter the closer |v| is to the tensor's max."""
    if v == 0 or scale == 0:
        return Text(_num(v), style="dim")
    ratio = abs(v) / scale
    hue = "red" if v > 0 else "blue"
    style = f"bold bright_{hue}" if ratio > 0.5 else hue if ratio > 0.1 else f"dim {hue}"
    return Text(_num(v), style=style)


def natural_index(info: TensorInfo | None, idx: tuple[int, ...]) -> str:
    """``[m=1, n=2, d=0, c=2]`` in the seed's index letters (batch axes as b0, b1, ...)."""
    if not idx:
        return ""
    letters = _letters(info, len(idx))
    return "[" + ", ".join(f"{name}={i}" for name, i in zip(letters, idx, strict=True)) + "]"


def _letters(info: TensorInfo | None, ndim: int) -> list[str]:
    letters = list(info.index) if info else []
    if len(letters) > ndim:
        letters = []
    return [f"b{k}" for k in range(ndim - len(letters))] + letters


def _slices(a: np.ndarray, info: TensorInfo | None) -> Iterator[tuple[dict[int, int], np.ndarray]]:
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


def _values_table(title: str, a: np.ndarray, info: TensorInfo | None) -> Table:
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    table = Table(title=title, title_justify="left", show_header=a.ndim >= 1, box=None)
    if a.ndim == 0:
        table.add_column("")
        table.add_row(_colored(float(a), scale))
        return table
    table.add_column("", style="dim", justify="right")
    for j in range(a.shape[1]):
        table.add_column(str(j), justify="right", style="dim")
    for i, row in enumerate(a):
        table.add_row(str(i) if a.shape[0] > 1 else "", *(_colored(float(v), scale) for v in row))
    return table


def _value_tables(label: str, a: np.ndarray, info: TensorInfo | None) -> list[Table]:
    a = np.asarray(a)
    if a.ndim == 0:
        return [_values_table(f"{label}  (scalar)", a, info)]
    letters = _letters(info, a.ndim)
    tables = []
    for fixed, sl in _slices(a, info):
        title = f"{label}  {list(a.shape)}"
        if fixed:
            parts = (f"{letters[k]}={fixed[k]}" if k in fixed else ":" for k in range(a.ndim))
            title = f"{label}[{', '.join(parts)}]"
        tables.append(_values_table(title, sl, info))
    return tables


def _rows(spec: Spec, comp: Computation) -> list[tuple[str, str, np.ndarray, TensorInfo | None]]:
    out = spec.output_info
    rows: list[tuple[str, str, np.ndarray, TensorInfo | None]] = [
        (n, spec.info(n).role, a, spec.info(n)) for n, a in spec.tensors.items()
    ]
    rows.append((out.name, "output", comp.output, out))
    rows.append(("d" + out.name, "upstream", spec.grad_output, out))
    rows += [(n, "intermediate", a, _intermediate(spec, n)) for n, a in comp.intermediates.items()]
    rows += [("d" + n, "gradient", g, spec.info(n)) for n, g in comp.gradients.items()]
    return rows


def _intermediate(spec: Spec, name: str) -> TensorInfo | None:
    """Index letters for an intermediate ("S") or its gradient ("dS"), when the layer has them."""
    base = name[1:] if name.startswith("d") and name not in spec.layer.intermediates else name
    if spec.layer.tail_info is None or base not in spec.layer.intermediates:
        return None
    return spec.info(base)


def _shapes_table(spec: Spec, rows: list) -> Table:
    table = Table(title=f"{spec.layer.name}: {spec.layer.summary}", title_justify="left")
    for col in ("tensor", "role", "shape", "dtype"):
        table.add_column(col)
    for col in ("min", "max", "mean", "norm"):
        table.add_column(col, justify="right")
    for name, role, a, _ in rows:
        a = np.asarray(a)
        stats = (a.min(), a.max(), a.mean(), np.linalg.norm(a.ravel())) if a.size else ()
        table.add_row(
            Text(name, style="bold"),
            role,
            str(list(a.shape)),
            str(a.dtype),
            *(_num(float(v)) for v in stats),
        )
    return table


def _print_values(console: Console, rows: list) -> None:
    hidden = []
    for name, _, a, info in rows:
        if np.size(a) > MAX_SHOWN:
            hidden.append(f"{name} ({np.size(a)} elements)")
            continue
        console.print(Group(*_value_tables(name, a, info)))
        console.print()
    if hidden:
        console.print(
            Text(
                f"values not shown for {', '.join(hidden)}: more than {MAX_SHOWN} elements; "
                "use --format json or --output FILE.npz",
                style="dim",
            )
        )


def render_compute(console: Console, spec: Spec, comp: Computation) -> None:
    rows = _rows(spec, comp)
    console.print(_shapes_table(spec, rows))
    console.print()
    _print_values(console, rows)


def _check_table(spec: Spec, report: CheckReport) -> Table:
    table = Table(
        title=Text(
            f"gradient check: analytic vs numeric ({report.method} differences, "
            f"eps {report.eps:.3g}; pass if |a-n| <= atol + {report.rtol:g}|n|)"
        ),
        title_justify="left",
    )
    table.add_column("gradient")
    table.add_column("checked", justify="right")
    for col in ("abs err", "rel err"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("worst element", no_wrap=True)
    for col in ("analytic", "numeric"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("atol", justify="right")
    table.add_column("result")
    table.add_column("reading", no_wrap=True)
    for name, r in report.results.items():
        info = spec.info(name)
        verdict = Text("PASS", style="bold green") if r.passed else Text("FAIL", style="bold red")
        size = int(np.prod(r.shape, dtype=np.int64))
        checked = f"{r.checked} probes" if r.mode == "probe" else f"{r.checked}/{size}"
        where = "d" + name + natural_index(info, r.worst_index) if r.mode != "probe" else "(probe)"
        table.add_row(
            Text("d" + name, style="bold"), checked, f"{r.max_abs_error:.3g}",
            f"{r.max_rel_error:.3g}", where, f"{r.analytic:.7g}", f"{r.numeric:.7g}",
            f"{r.atol:.2g}", verdict, r.band,
        )  # fmt: skip
    return table


def summary_line(spec: Spec, report: CheckReport) -> Text:
    n = len(report.results)
    failed = [r for r in report.results.values() if not r.passed]
    how = "" if report.mode == "full" else f" ({report.mode} mode)"
    if not failed:
        return Text.assemble(
            ("PASS", "bold green"),
            f"  {report.layer}: all {n} gradients match the numerical ones{how}",
        )
    worst = max(failed, key=lambda r: r.max_rel_error)
    where = "d" + worst.name + natural_index(spec.info(worst.name), worst.worst_index)
    names = ", ".join("d" + r.name for r in failed)
    return Text.assemble(
        ("FAIL", "bold red"),
        f"  {report.layer}: {len(failed)} of {n} gradients do not match ({names}); "
        f"worst {where}: analytic {worst.analytic:.6g}, numeric {worst.numeric:.6g}{how}",
    )


def _notes(report: CheckReport) -> list[Text]:
    lines = [Text(f"note: {n}", style="yellow") for n in report.notes]
    for r in report.results.values():
        if r.roundoff is not None:
            lines.append(
                Text(
                    f"d{r.name}: float32 round-off of the analytical gradient is "
                    f"{r.roundoff:.2g} of its largest entry (float64 backward on the same inputs)",
                    style="dim",
                )
            )
    return lines


def render_check(
    console: Console,
    spec: Spec,
    comp: Computation,
    numeric: dict[str, np.ndarray],
    report: CheckReport,
    analytic: Any = None,
) -> None:
    """Everything compute shows, the numerical gradients, the check table, the diagnosis of
    any failure, notes and the summary line. ``analytic``: the gradients under test (the
    user's answers with --grads; the layer's own by default)."""
    from gradcli.render_diag import render_diagnosis

    rows = _rows(spec, comp)
    rows += [(f"d{n} (numeric)", "numeric", g, spec.info(n)) for n, g in numeric.items()]
    console.print(_shapes_table(spec, rows))
    console.print()
    _print_values(console, rows)
    console.print()
    console.print(_check_table(spec, report))
    console.print()
    tested = {n: intermediates.builtin(comp, n) for n in report.results}  # --impl: the user's
    render_diagnosis(console, spec, report, analytic or tested, numeric)
    for line in _notes(report):
        console.print(line, soft_wrap=True)
    console.print(summary_line(spec, report), soft_wrap=True)  # one line, for grep and tail


def console(file: Any, plain: bool = False) -> Console:
    """A console for ``file``: styled on a terminal, with no ANSI codes at all when writing to
    a file, a pipe, or with NO_COLOR set; markup off, since indices like [m=1] are data."""
    if plain or not file.isatty() or os.environ.get("NO_COLOR"):
        return Console(
            file=file, width=140, color_system=None, force_terminal=False, highlight=False,
            markup=False,
        )  # fmt: skip
    return Console(file=file, highlight=False, markup=False)


class ProgressBar:
    """A transient rich progress bar on stderr, only when stderr is a terminal.
    ``with ProgressBar() as bar: run(progress=bar)``; ``bar(total)`` returns ``advance(n)``."""

    def __init__(self, file: Any):
        self.enabled = file.isatty()
        self.file = file
        self._progress: Any = None

    def __enter__(self) -> ProgressBar:
        return self

    def __call__(self, total: int) -> Any:
        if not self.enabled:
            return None
        from rich.progress import BarColumn, Progress, TimeRemainingColumn

        self._progress = Progress(
            "[progress.description]{task.description}", BarColumn(), TimeRemainingColumn(),
            console=Console(file=self.file), transient=True,
        )  # fmt: skip
        self._progress.start()
        task = self._progress.add_task("numerical gradients", total=total)
        return lambda n: self._progress.advance(task, n)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
