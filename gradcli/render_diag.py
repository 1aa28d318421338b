"""Rendering the diagnosis of a failed check: worst-k tables, error heatmaps, hints, and the
lines about the user's own work (answers not given, built-in beside, forward vs built-in)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gradcli.check import CheckReport
from gradcli.compare import TensorResult
from gradcli.render import _letters, _slices, natural_index
from gradcli.spec import Spec

HEAT = ((1.0, "green"), (10.0, "yellow"), (100.0, "dark_orange"), (np.inf, "red"))
MAX_SLICES, MAX_COLUMNS = 8, 64


def render_diagnosis(
    console: Console,
    spec: Spec,
    report: CheckReport,
    analytic: Mapping[str, np.ndarray],
    numeric: Mapping[str, np.ndarray],
) -> None:
    for name, r in report.results.items():
        if r.passed or r.mode == "probe":
            continue
        console.print(_worst_table(spec, r))
        for renderable in _heatmap(spec, r, analytic[name], numeric[name], report.rtol):
            console.print(renderable)
        for hint in r.hints:
            console.print(Text(f"hint: {hint}", style="yellow"), soft_wrap=True)
        console.print()
    if report.forward is not None:
        f = report.forward
        verdict = ("PASS", "bold green") if f.passed else ("FAIL", "bold red")
        console.print(
            Text.assemble(
                "your forward vs the built-in forward: ",
                verdict,
                f" (max abs error {f.max_abs_error:.3g} at {list(f.worst_index)})",
            ),  # fmt: skip
            soft_wrap=True,
        )
    for name, b in report.builtin.items():
        verdict = ("matches", "green") if b.passed else ("does not match", "red")
        console.print(
            Text.assemble(f"built-in d{name} ", verdict, f" (max rel error {b.max_rel_error:.3g})"),
            soft_wrap=True,
        )
    if report.not_checked:
        names = ", ".join("d" + n for n in report.not_checked)
        console.print(Text(f"not checked (no answer given): {names}", style="dim"), soft_wrap=True)


def _worst_table(spec: Spec, r: TensorResult) -> Table:
    info = spec.info(r.name)
    table = Table(title=Text(f"d{r.name}: the {len(r.worst)} worst elements"), title_justify="left")
    table.add_column("element", no_wrap=True)
    for col in ("analytic", "numeric", "abs err", "rel err"):
        table.add_column(col, justify="right")
    for w in r.worst:
        table.add_row(
            "d" + r.name + natural_index(info, tuple(w["index"])), f"{w['analytic']:.8g}",
            f"{w['numeric']:.8g}", f"{w['abs_error']:.3g}", f"{w['rel_error']:.3g}",
        )  # fmt: skip
    return table


def _heatmap(spec: Spec, r: TensorResult, a: np.ndarray, n: np.ndarray, rtol: float) -> list:
    """|a - n| / tolerance as colored blocks per 2-D slice: green within tolerance, then yellow,
    orange, red by decade beyond it; a pattern (borders, one channel, a diagonal) shows."""
    a = np.asarray(a, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    err, tol = np.abs(a - n), r.atol + rtol * np.abs(n)
    excess = np.divide(err, tol, out=np.where(err > 0, np.inf, 0.0), where=tol > 0)
    excess[np.isnan(n)] = np.nan
    info = spec.info(r.name)
    letters = _letters(info, a.ndim)
    out: list = [Text(f"d{r.name}: error / tolerance", style="bold")]
    shown = 0
    for fixed, sl in _slices(excess, info):
        if sl.shape[1] > MAX_COLUMNS or shown == MAX_SLICES:
            out.append(Text("(heatmap cut short: too large to draw)", style="dim"))
            break
        if fixed and not np.any(sl > 1):
            continue  # slices without failures say nothing
        label = ", ".join(f"{letters[k]}={v}" for k, v in fixed.items())
        text = Text(f"[{label}]\n" if label else "")
        for row in np.atleast_2d(sl):
            for v in row:
                style = "dim" if np.isnan(v) else next(c for lim, c in HEAT if v <= lim)
                text.append("··" if np.isnan(v) else "██", style=style)
            text.append("\n")
        out.append(text)
        shown += 1
    out.append(
        Text("green: within tolerance; yellow, orange, red: 1, 10, 100x beyond", style="dim")
    )
    return out
