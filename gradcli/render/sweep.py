"""Rendering ``check --sweep``: the error-vs-step table and a log-log terminal plot."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rich.console import Console
from rich.text import Text

from gradcli.checking.report import CheckReport
from gradcli.inputs.spec import Spec
from gradcli.render.fit import EDGE, PER_COLUMN, Col, fitted, paragraph
from gradcli.render.text import summary_line


def render_sweep(
    console: Console,
    spec: Spec,
    method: str,
    rows: list[dict[str, Any]],
    best: float,
    wrong: list[str],
    report: CheckReport,
    *,
    quiet: bool = False,
) -> None:
    """The error-vs-step table, a log-log terminal plot with the regimes marked, the tensors
    no step reconciles, and the summary line of the check at the default step (the verdict);
    ``quiet``: the summary line alone."""
    if not quiet:
        _sweep_body(console, spec, method, rows, best, wrong)
    if report.passed and wrong:  # every element passed at the default step, yet no step fits
        off = ", ".join("d" + n for n in wrong)
        console.print(Text.assemble(("FAIL", "bold red"), f"  {report.layer}: {off} off at "
                                    "every step of the sweep"), soft_wrap=True)  # fmt: skip
    else:
        console.print(summary_line(spec, report), soft_wrap=True)


def _sweep_body(
    console: Console,
    spec: Spec,
    method: str,
    rows: list[dict[str, Any]],
    best: float,
    wrong: list[str],
) -> None:
    names = list(rows[0]["errors"])
    cells = {
        "eps": [f"{row['eps']:.0e}" for row in rows],
        **{"d" + n: [f"{row['errors'][n]:.2e}" for row in rows] for n in names},
        "regime": [Text(row["regime"], style="bold green" if row["regime"] == "best" else "")
                   for row in rows],
    }  # fmt: skip
    title = Text(f"{spec.layer.name}: {method} differences, error = max|a-n| / max|a|")
    # every column stays whole (render_fit); a table wider than the console is split into
    # blocks of gradient columns, each beside the steps, numpy style (lstm_step's six
    # gradients took 88 columns, and the terminal wrapped every row)
    for k, block in enumerate(_blocks(cells, ["d" + n for n in names], console.width)):
        columns = [Col(h, justify="left" if h == "regime" else "right") for h in block]
        table = fitted(columns, [list(r) for r in zip(*(cells[h] for h in block), strict=True)],
                       console.width, title=title if k == 0 else None, title_justify="left")
        console.print(table, crop=False)
    if all(r["regime"] == "off" for r in rows):
        paragraph(console, Text("no step brings any gradient within the check's tolerance: "
                                "the error is the gradient's, not the step's, and the curve "
                                "says nothing of truncation or round-off"))
    elif all(r["regime"] == "exact" for r in rows):
        paragraph(console, Text("exact at every step: the layer is linear between its kinks "
                                "here, so any step works"))
    elif all(r["regime"] == "flat" for r in rows):
        paragraph(console, Text(f"the same error at every step ({rows[0]['error']:.2e}): the "
                                "differences read the same whatever the step (a layer linear "
                                "between its kinks, or a loss whose terms are differenced on "
                                "their own), what is left is round-off; any step works"))
    else:
        console.print(Text(_plot(rows)))
        exact = [r["eps"] for r in rows if r["regime"] == "exact"]
        said = (f"best step: any of {max(exact):.0e} ... {min(exact):.0e} (exact there)"
                if len(exact) > 1 else f"best step: {best:.0e}")  # fmt: skip
        console.print(Text(said, style="bold"))
    for n in wrong:
        low = min(r["errors"][n] for r in rows)
        paragraph(console, Text(
            f"d{n}: no step brings the error within the check's tolerance (at best {low:.1e}): "
            "the gradient is off, not the step; 'gradcli check' without --sweep shows where",
            style="bold red",
        ))  # fmt: skip


def _blocks(cells: dict[str, list[Any]], grads: list[str], width: int) -> list[list[str]]:
    """The columns of each block: the steps, an even share of the gradients, and the regime in
    the last block; one block when the whole table fits, as few as fit otherwise (a block
    wider than the width, one gradient's at most, is wrapped by the terminal)."""
    size = {h: max([len(h)] + [Text(c).cell_len if isinstance(c, str) else c.cell_len
                               for c in col]) + PER_COLUMN for h, col in cells.items()}
    for k in range(1, len(grads) + 1):
        share = -(-len(grads) // k)
        blocks = [["eps", *grads[i:i + share]] for i in range(0, len(grads), share)]
        blocks[-1].append("regime")
        if all(EDGE + sum(size[h] for h in block) <= width for block in blocks):
            return blocks
    return [["eps", g] for g in grads[:-1]] + [["eps", *grads[-1:], "regime"]]


def _plot(rows: list[dict[str, Any]], height: int = 12) -> str:
    """log10(error) against log10(eps), one column per step, big steps on the left."""
    # inf: off the top; an exact 0 a decade below the smallest error, on the bottom row
    seen = [r["error"] for r in rows if 0 < r["error"] < math.inf]
    floor = min(seen, default=1.0) / (10 if len(seen) < len(rows) else 1)
    # a step that read nothing (inf: it left the forward's domain) sits a decade above the
    # others, marked so, not at 1e300 squeezing the curve into one row
    top = max(seen, default=1.0) * 10
    logs = [np.log10(min(max(r["error"], floor), top)) for r in rows]
    lo, hi = min(logs), max(logs)
    span = (hi - lo) or 1.0
    grid = [[" "] * len(rows) for _ in range(height)]
    for j, (v, r) in enumerate(zip(logs, rows, strict=True)):
        mark = {"best": "*", "truncation": "t", "round-off": "r", "exact": "0",
                "no reading": "^"}.get(r["regime"], "^")  # fmt: skip
        grid[int(round((hi - v) / span * (height - 1)))][j] = mark
    lines = []
    for i, row in enumerate(grid):
        value = 10 ** (hi - i * span / (height - 1))
        # under a decade from top to bottom, one digit labels every row alike (1e+00 x 4)
        shown = f"{value:8.1e}" if hi - lo < 1 else f"{value:8.0e}"
        label = f"{shown} |" if i % 3 == 0 else " " * 9 + "|"
        lines.append(label + "".join(f" {c} " for c in row))
    lines.append(" " * 9 + "+" + "---" * len(rows))
    exps = "".join(f"{-round(np.log10(r['eps'])):^3d}" for r in rows)
    lines.append(" eps 1e-  " + exps)
    exact = any(r["regime"] == "exact" for r in rows)  # the legend fits 80 columns either way
    off = any(r["error"] == math.inf for r in rows)
    legend = ("t: truncation, r: round-off, *: best step" + (", 0: exact" if exact else "")
              + (", ^: read nothing" if off else "")) if exact or off else (
        "t: truncation-dominated, r: round-off-dominated, *: best step")  # fmt: skip
    lines.append(" " * 10 + legend)
    return "\n".join(lines)
