"""Rendering the diagnosis of a failed check: worst-k tables, error heatmaps, hints, the
lines about the user's own work (answers not given, built-in beside, forward vs built-in) and
the backward's contract."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gradcli.checking.compare import TensorResult
from gradcli.checking.contract import Finding
from gradcli.checking.report import CheckReport
from gradcli.inputs.spec import Spec
from gradcli.render.fit import Col, fitted, paragraph
from gradcli.render.values import apart, letters, natural_index, slices, unanswered, yours

# error / tolerance -> a character (legible without colour: pipes, NO_COLOR, CI logs) and its
# colour on a terminal; "-" marks a coordinate a sampled check did not evaluate
HEAT = (
    (1.0, ".", "green"), (10.0, "+", "yellow"), (100.0, "*", "dark_orange"), (np.inf, "#", "red"),
)  # fmt: skip
UNSEEN = "-"
HEAT_LEGEND = ". within tolerance, + up to 10x beyond, * up to 100x, # more, - not evaluated"
MAX_SLICES = 8
MAX_CELLS = 64 * 64  # elements of one slice drawn at most


def render_diagnosis(
    console: Console,
    spec: Spec,
    report: CheckReport,
    analytic: Mapping[str, np.ndarray],
    numeric: Mapping[str, np.ndarray],
    ours: str = "built-in",
) -> None:
    """``ours``: what the gradients beside --grads answers are (a network's: its chained
    backward's)."""
    said = _shared_hints(report)
    for name, r in report.results.items():
        if r.passed or r.mode == "probe":
            continue
        if r.unresolved and not r.nonfinite:  # its errors are round-off: say why, show none
            paragraph(console, Text(r.reason, style="yellow"))
            console.print()
            continue
        label = "yours" if report.answers else "analytic"
        console.print(_worst_table(spec, r, label, console.width), crop=False)
        heat = _heatmap(spec, r, analytic[name], numeric[name], report.rtol, console.width)
        for renderable in heat[:-1]:  # the grids: one character an element, never wrapped
            console.print(renderable, soft_wrap=True)
        paragraph(console, heat[-1])  # the legend
        for hint in r.hints:
            shared = said.get((name, hint))
            if shared != "":  # "": said once, after the last tensor it is true of
                paragraph(console, Text(f"hint: {shared or hint}", style="yellow"))
        console.print()
    if report.forward is not None:
        f = report.forward
        verdict = ("PASS", "bold green") if f.passed else (
            ("NOT VERIFIED", "bold yellow") if f.unresolved and f.within else ("FAIL", "bold red"))
        how = f.hints[0] if f.hints else (  # right values, a wrong number of them
            f"max abs error {f.max_abs_error:.3g} at "
            f"{spec.output_info.name}{natural_index(spec.output_info, f.worst_index)}")
        paragraph(console, Text.assemble(
            "your forward vs the built-in forward: ", verdict,
            f" ({how}{forward_where(report, long=True)})",
        ))  # fmt: skip
    b = report.backward
    if b is not None and report.forward is not None and report.forward.passed:
        verdict = ("PASS", "bold green") if b.passed else ("FAIL", "bold red")
        paragraph(console, Text.assemble(
            "your backward vs the built-in backward at the points gradcli drew: ", verdict,
            backward_where(report, long=True, spec=spec),
        ))  # fmt: skip
    for name, b in report.builtin.items():
        verdict = ("matches", "green") if b.passed else (
            # (failing only where the step cannot resolve it: no mismatch to speak of; a
            # failure where it resolves cleared the flag, as for the answer under test)
            ("cannot be resolved", "yellow") if b.unresolved else (
                "does not match", "red"))  # fmt: skip
        # its worst element's own relative error, as the table's: the maximum over elements
        # near 0, noise there, read 'matches (max rel error 1.17)' (outside test t69b F7)
        rel = b.worst[0]["rel_error"] if b.worst else b.max_rel_error
        paragraph(console, Text.assemble(f"{ours} d{name} ", verdict,
                                         f" (rel error {rel:.3g} at its worst element)"))
    if report.not_checked:
        paragraph(console, Text(unanswered(report.not_checked), style="dim"))


def _shared_hints(report: CheckReport) -> dict[tuple[str, str], str]:
    """(name, hint) -> the hint said once for every failing tensor it is true of ("dx, dWx
    and db are exactly what the backward gives with ..."), "" where it is said at a later
    tensor instead: an rnn_step whose da drops a square printed one 4-line hint five times."""
    tensors: dict[str, list[str]] = {}
    for name, r in report.results.items():
        if r.passed or r.mode == "probe" or (r.unresolved and not r.nonfinite):
            continue
        for hint in r.hints:
            head = f"d{name} is "
            if hint.startswith(head):
                tensors.setdefault(hint[len(head):], []).append(name)
    out: dict[tuple[str, str], str] = {}
    for rest, names in tensors.items():
        if len(names) < 2:
            continue
        labels = [f"d{n}" for n in names]
        joined = ", ".join(labels[:-1]) + f" and {labels[-1]}"
        for n in names[:-1]:
            out[(n, f"d{n} is {rest}")] = ""
        out[(names[-1], f"d{names[-1]} is {rest}")] = f"{joined} are {rest}"
    return out


def forward_where(report: CheckReport, long: bool = False) -> str:
    """Where the user's forward disagreed with ours, when not at the spec's tensors."""
    if not report.forward_drawn:
        return ""
    drawn = ", ".join(report.forward_drawn)
    if long:
        return (f" of a point gradcli drew: {drawn} at random from seed {report.seed}; at the "
                "spec's tensors the two agree, so the spec's values hide the difference")
    return f" at {drawn} drawn at random; the spec's tensors hide it"


def backward_where(
    report: CheckReport, names: tuple[str, ...] | None = None, long: bool = False,
    spec: Spec | None = None,
) -> str:
    """How the user's backward disagreed with ours at a drawn point, for its gradients
    ``names`` (None: every failing one); "" when it did not. With ``spec``, the worst element
    in the tables' index letters (``dW[o=137, i=301]``, not ``dW[137, 301]``)."""
    b = report.backward
    if b is None:
        return ""
    if b.passed:
        # beside a failure at kinks: the drawn points have none, which is why they pass (a
        # max-pool giving every tied element the whole gradient read 'FAIL' above and 'PASS'
        # here, a contradiction to a stranger: outside test t68c F4)
        kinked = [n for n, r in report.results.items() if not r.passed and r.kink_at
                  and int(np.ravel_multi_index(r.worst_index, r.shape)) in r.kink_at]
        if long and kinked:
            return (" (those points have no ties or kinks, which is where d"
                    + ", d".join(kinked) + " fails above)")
        return ""
    names = b.failed if names is None else names
    worst = max((b.results[n] for n in names), key=lambda r: r.max_rel_error)
    errs = ", ".join(f"d{n} {b.results[n].max_abs_error:.3g}" for n in names)
    drawn = ", ".join(b.drawn)
    if not long:
        return f" (max abs error {errs}, at {drawn} drawn at random; {_hidden(report, names)})"
    mine, ours = apart(worst.analytic, worst.numeric)
    where = (natural_index(spec.info(worst.name), worst.worst_index) if spec is not None
             else str(list(worst.worst_index)))  # fmt: skip
    text = (f" (max abs error {errs}; worst d{worst.name}{where}: yours "
            f"{mine}, ours {ours}; at {drawn} drawn at random from seed {report.seed}")
    if report.results and all(r.passed for r in report.results.values()):
        if _hidden(report, names) == HIDDEN:
            text += ("; at the spec's tensors your backward matches the numerical gradient, so "
                     "the spec's values hide the difference")  # fmt: skip
        else:
            text += f"; {_hidden(report, names)}"
    return text + ")"


HIDDEN = "the spec's tensors hide it"


def _hidden(report: CheckReport, names: tuple[str, ...]) -> str:
    """Why the check at the spec's tensors passed what a drawn point fails: the spec's values,
    where every coordinate of those gradients was compared; else possibly the sample, which a
    student read as 'change the spec' (outside test t24 F5: one element 1.0001x, sampled out)."""
    if report.backward is not None and report.backward.float32:
        return ("within float32's round-off of ours: your backward rounds to float32 somewhere "
                "(an .astype(np.float32), a float32 array or constant), keep it in float64")
    modes = {report.results[n].mode for n in names if n in report.results}
    if modes <= {"full"}:
        return HIDDEN
    return ("the spec's tensors hide it, or the compared coordinates missed it "
            f"({'/'.join(sorted(modes - {'full'}))} mode): --mode full compares every one")


def _gradient_label(spec: Spec, f: Finding) -> str:
    if f.tensor is None:
        return "all"
    return "d" + f.tensor if f.tensor in (*spec.tensors, *spec.layer.intermediates) else f.tensor


def contract_section(spec: Spec, report: CheckReport, width: int) -> list[Any]:
    """One dim line when the backward keeps its contract; else a table of what it breaks."""
    if not report.contract:
        return []
    broken = [f for f in report.contract if not f.passed]
    if not broken:
        names = ", ".join(dict.fromkeys(f.name for f in report.contract))
        return [Text(f"backward contract kept: {names}", style="dim")]
    groups: dict[str, list[Finding]] = {}
    for f in broken:  # one row per contract: the same slip usually breaks it for every gradient
        groups.setdefault(f.name, []).append(f)
    rows = []
    for name, fs in groups.items():
        worst = max(fs, key=lambda f: (f.error or 0.0) / (f.tolerance or 1.0))
        labels = ", ".join(_gradient_label(spec, f) for f in fs)
        rows.append((Text(name, style="bold red"), labels, worst.detail))
    columns = (
        Col("contract"), Col("gradient", fold=True, min_width=8),
        Col("finding (the worst gradient's)", fold=True, min_width=20),
    )  # fmt: skip
    title = Text("backward contract: broken")
    return [fitted(columns, rows, width, title=title, title_justify="left")]


def broken_contracts(spec: Spec, report: CheckReport) -> str:
    """``the backward breaks its contract: linearity (dW, db), dtype (dx)``: the broken
    contracts, each with its gradients, the forward's own (its output's dtype) apart."""
    parts = []
    for fn, mine in (("forward", True), ("backward", False)):
        broken: dict[str, list[str]] = {}
        for f in report.contract:
            if not f.passed and (f.tensor == spec.output_info.name) == mine:
                broken.setdefault(f.name, []).append(_gradient_label(spec, f))
        if broken:
            found = ", ".join(f"{name} ({', '.join(labels)})" for name, labels in broken.items())
            parts.append(f"the {fn} breaks its contract: {found}")
    return "; ".join(parts)


def _worst_table(spec: Spec, r: TensorResult, label: str, width: int) -> Table:
    """The worst elements (only the failing ones where fewer fail than it holds), each index
    whole (a folded index is hard to read): narrower than the table, the values keep 6, then 4
    digits instead of 8 before err/tol, the ranking, gives way (abs err and rel err first), and
    only then do the indices fold at their commas."""
    info = spec.info(r.name)
    worst = list(r.worst)
    failing = [w for w in worst if (w.get("error_over_tolerance") or 0.0) > 1.0]
    if failing and not r.passed:  # a 'worst' row of no error says nothing (outside test t41a N7)
        worst = failing
    theirs = [yours(spec, r.name, tuple(w["index"])) for w in worst]
    own = next((t.split("[")[0] for t in theirs if t), None)  # their code's layout (CS231n's)
    where = [Col(f"in your {own}")] if own else []
    columns = (
        Col("element"), *where, Col(label, justify="right"), Col("numeric", justify="right"),
        Col("abs err", priority=1, justify="right"), Col("rel err", priority=2, justify="right"),
        Col("err/tol", priority=3, justify="right"),  # what they are ranked by
    )  # fmt: skip
    if worst is failing and len(failing) < len(r.worst):  # every one that fails
        what = "the failing element" if len(worst) == 1 else f"the {len(worst)} failing elements"
    else:
        what = f"the {len(worst)} worst elements"
    title = Text(f"d{r.name}: {what} (by error / tolerance)")
    if own:
        title.append(f", and where each is in your {own} (CS231n's layout)")
    # the values give way to err/tol, the ranking itself: at 50 columns every error column
    # went while the values kept 8 digits (outside test t41a N6)
    first = None
    for digits, fold in ((8, False), (6, False), (4, False), (4, True)):
        rows = [
            ("d" + r.name + natural_index(info, tuple(w["index"])), *([t] if own else []),
             f"{w['analytic'] + 0.0:.{digits}g}", f"{w['numeric'] + 0.0:.{digits}g}",
             f"{w['abs_error']:.3g}", f"{w['rel_error']:.3g}",
             _over(w))
            for w, t in zip(worst, theirs, strict=True)
        ]  # fmt: skip
        if fold:
            columns = tuple(dataclasses.replace(c, fold=True, min_width=0) if k < len(where) + 1
                            else c for k, c in enumerate(columns))  # fmt: skip
        table = fitted(columns, rows, width, title=title, title_justify="left")
        if (table.width or 0) <= width:
            if any(str(c.header) == "err/tol" for c in table.columns):
                return table
            first = first or table
    return first or table


def _over(w: Mapping[str, Any]) -> str:
    """An element's error / tolerance as the table shows it ("inf": not a number, or past any
    tolerance)."""
    over = w.get("error_over_tolerance")
    return "" if over is None else f"{over:.3g}"


def _heatmap(
    spec: Spec, r: TensorResult, a: np.ndarray, n: np.ndarray, rtol: float, width: int
) -> list:
    """|a - n| / tolerance per 2-D slice, one character an element (HEAT), coloured on a
    terminal; a pattern (borders, one channel, a diagonal) shows."""
    a = np.asarray(a, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, shown as such
        err, tol = np.abs(a - n), r.atol + rtol * np.abs(n)
        tol.flat[list(r.held_at)] = rtol * np.abs(n.flat[list(r.held_at)])  # below the atol
        excess = np.divide(err, tol, out=np.where(err > 0, np.inf, 0.0), where=tol > 0)
    excess[np.isnan(excess)] = np.inf  # a NaN in the gradient under test is as far off as it gets
    excess[np.isnan(n)] = np.nan
    seen = excess[~np.isnan(excess)]
    classes = {_heat(float(v))[0] for v in seen} if seen.size else set()
    lo, hi = (float(seen.min()), float(seen.max())) if seen.size else (0.0, 0.0)
    even = "." not in classes and seen.size > 1 and 0 < lo and hi <= 10 * lo
    if (len(classes) == 1 and "." not in classes and seen.size > 1) or even:
        # one character everywhere is no pattern: 90 '#' over 40 lines said what one line says
        # (t62b F5); nor are two beside each other where every element is within 10x of the
        # others (1.00002 x right: '*' and '+' by each element's size, t66b F9)
        level = ({"+": "up to 10x", "*": "10x to 100x", "#": "over 100x"}[classes.pop()]
                 if len(classes) == 1 else f"{lo:.2g}x to {hi:.2g}x")  # fmt: skip
        where = f"all {seen.size} elements"
        if seen.size < excess.size:
            where = f"all {seen.size} compared elements (of {excess.size})"
        return [Text(f"d{r.name}: error / tolerance is {level} at {where}: no pattern to draw",
                     style="bold")]  # fmt: skip
    info = spec.info(r.name)
    names = letters(info, a.ndim)
    out: list = [Text(f"d{r.name}: error / tolerance", style="bold")]
    shown = 0
    for fixed, sl in slices(excess, info):
        sl = np.atleast_2d(sl)
        if fixed and not np.any(sl > 1):
            continue  # slices without failures say nothing
        if shown == MAX_SLICES:
            out.append(Text(f"(heatmap cut short: {MAX_SLICES} slices drawn, the others with "
                            f"failures not)", style="dim"))  # fmt: skip
            break
        if sl.size > MAX_CELLS:
            out.append(Text(f"(heatmap of a {sl.shape[0]} x {sl.shape[1]} slice not drawn: "
                            f"over {MAX_CELLS:,} elements)", style="dim"))  # fmt: skip
            break
        label = ", ".join(f"{names[k]}={v}" for k, v in fixed.items())
        text = Text(f"[{label}]\n" if label else "")
        # each row led by its index where there are several (a 200 x 3 dW's row 150 was
        # found by counting lines: outside test t69b F5), and a slice wider than the terminal
        # in column blocks, as the values are (a linear's W of 10 x 64 at 80 columns drew
        # nothing: outside test t68c F1)
        lead = len(str(sl.shape[0] - 1)) + 1 if sl.shape[0] > 1 else 0
        room = max(2, width - lead)
        per = sl.shape[1] if 2 * sl.shape[1] - 1 <= room else max(1, (room + 1) // 2)
        for start in range(0, sl.shape[1], per):
            if per < sl.shape[1]:
                end = min(start + per, sl.shape[1])
                text.append(f"columns {start} to {end - 1}\n", style="dim")
            for i, row in enumerate(sl[:, start:start + per]):
                if lead:
                    text.append(f"{i:>{lead - 1}} ", style="dim")
                for j, v in enumerate(row):
                    char, style = _heat(float(v))
                    text.append((" " if j else "") + char, style=style)
                text.append("\n")
        out.append(text)
        shown += 1
    out.append(Text(HEAT_LEGEND, style="dim"))
    return out


def _heat(excess: float) -> tuple[str, str]:
    if np.isnan(excess):
        return UNSEEN, "dim"
    return next((char, colour) for limit, char, colour in HEAT if excess <= limit)
