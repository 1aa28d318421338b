"""Rendering for people: rich tables of shapes, colored values, errors; the console; progress.
Only the render modules import rich; only cli.py and exits.py import typer."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gradcli.checking import intermediates
from gradcli.checking.compare import TensorResult
from gradcli.checking.compute import Computation
from gradcli.checking.contract import random_forward
from gradcli.checking.probe import probe_rtol
from gradcli.checking.report import CheckReport
from gradcli.errors import mention
from gradcli.inputs.spec import Spec
from gradcli.layers import TensorInfo
from gradcli.render.fit import Col, fitted, paragraph
from gradcli.render.values import (
    apart,
    natural_index,
    print_values,
    stat_cells,
    unanswered,
    yours,
)


def _rows(
    spec: Spec, comp: Computation, answers: Mapping[str, np.ndarray] | None = None
) -> list[tuple[str, str, np.ndarray, TensorInfo | None]]:
    """What compute shows; with ``answers`` (--grads) the gradients are the user's, "yours"."""
    out = spec.output_info
    rows: list[tuple[str, str, np.ndarray, TensorInfo | None]] = [
        (n, spec.info(n).role, a, spec.info(n)) for n, a in spec.tensors.items()
    ]
    rows.append((out.name, "output", comp.output, out))
    rows.append(("d" + out.name, "upstream", spec.grad_output, out))
    # a value the forward went through, shown only (Layer.shown), is no checkable intermediate
    rows += [(n, "intermediate" if n.removeprefix("d") in spec.layer.intermediates else "forward",
              a, _intermediate(spec, n)) for n, a in comp.intermediates.items()]  # fmt: skip
    if answers is None:
        rows += [("d" + n, "gradient", g, spec.info(n)) for n, g in comp.gradients.items()]
    else:
        given = getattr(answers, "given", None)  # in the dtype given (inputs/answers.Answers)
        rows += [(f"d{n} (yours)", "yours", g if given is None else given(n), spec.info(n))
                 for n, g in answers.items()]  # fmt: skip
    return rows


def _intermediate(spec: Spec, name: str) -> TensorInfo | None:
    """Index letters for an intermediate ("S") or its gradient ("dS"), when the layer has them."""
    base = name[1:] if name.startswith("d") and name not in spec.layer.intermediates else name
    if spec.layer.tail_info is None or base not in spec.layer.intermediates:
        return None
    return spec.info(base)


# the shapes table's column policy: name and shape always; then role, dtype, norm, the range
SHAPE_COLUMNS = (
    Col("tensor"), Col("role", priority=6, fold=True, min_width=8),
    Col("shape", fold=True, min_width=16),  # a tensor of 32 axes: 96 characters
    Col("dtype", priority=5), Col("min", priority=3, justify="right"),
    Col("max", priority=3, justify="right"), Col("mean", priority=2, justify="right"),
    Col("norm", priority=4, justify="right"),
)  # fmt: skip


def _shapes_table(spec: Spec, rows: list, width: int) -> Table:
    cells = []
    for name, role, a, _ in rows:
        a = np.asarray(a)
        stats = stat_cells(a)
        cells.append([
            Text(name, style="bold"), role, str(list(a.shape)), str(a.dtype),
            *stats, *[""] * (4 - len(stats)),
        ])  # fmt: skip
    title = f"{spec.layer.name}: {spec.layer.summary}"
    return fitted(SHAPE_COLUMNS, cells, width, title=title, title_justify="left")


def render_compute(
    console: Console, spec: Spec, comp: Computation, *, elsewhere: str | None = None
) -> None:
    rows = _rows(spec, comp)
    console.print(_shapes_table(spec, rows, console.width), crop=False)
    console.print()
    print_values(console, rows, elsewhere)


# The check table's column policy (render_fit): name, count and verdict always stay whole; at
# narrower widths the atol goes first, then the abs err, the analytic/numeric pair, the rel
# err, and last the worst element and the reading, which fold onto more lines before going.
CHECK_COLUMNS = (
    Col("gradient"), Col("checked", justify="right"),
    Col("worst element", priority=5, fold=True, min_width=10),
    Col("analytic", priority=3, justify="right"), Col("numeric", priority=3, justify="right"),
    Col("abs err", priority=2, justify="right"), Col("rel err", priority=4, justify="right"),
    Col("atol", priority=1, justify="right"), Col("result"),
    Col("reading", priority=6, fold=True, min_width=10),
)  # fmt: skip


def _check_table(spec: Spec, report: CheckReport, width: int) -> Table:
    """One row per gradient under test; abs err and rel err are those of the worst element (the
    one furthest beyond its tolerance) shown beside them, not maxima over other elements."""
    label = _label(report)
    columns = [
        dataclasses.replace(c, header=label) if c.header == "analytic" else c
        for c in CHECK_COLUMNS
    ]
    rows = []
    for name, r in report.results.items():
        info = spec.info(name)
        verdict = Text("PASS", style="bold green") if r.passed else Text("FAIL", style="bold red")
        size = int(np.prod(r.shape, dtype=np.int64))
        checked = f"{r.checked:,} probes" if r.mode == "probe" else f"{r.checked:,}/{size:,}"
        where = "d" + name + natural_index(info, r.worst_index) if r.mode != "probe" else "(probe)"
        own = r.worst[0] if r.worst else {"abs_error": r.max_abs_error,
                                          "rel_error": r.max_rel_error}  # a probe's own
        # a failing pair read apart: the same 7 digits would hide the failure
        pair = (f"{r.analytic + 0.0:.7g}", f"{r.numeric + 0.0:.7g}") if r.passed else apart(
            r.analytic, r.numeric, 7)  # fmt: skip
        rows.append((
            Text("d" + name, style="bold"), checked, where, *pair, f"{own['abs_error']:.3g}",
            f"{own['rel_error']:.3g}",
            f"{r.atol:.2g}" if r.mode != "probe" else "", verdict, r.band,  # the title's rule
        ))  # fmt: skip
    # a tensor the automatic step could not resolve, read again by the complex step
    # (checking/complex_recheck.py): said where the method is, not only on stderr
    again = [f"d{n}" for n, r in report.results.items() if r.method]
    by = f"; {', '.join(again)} by the complex step" if again else ""
    title = Text(
        f"gradient check: {label} vs numeric ({report.method} differences, "
        f"eps {report.eps:.3g}{by})\n{_rule(report)}"  # the rule whole on a line of its own
    )
    return fitted(columns, rows, width, title=title, title_justify="left")


def _tiny_relative(report: CheckReport) -> list[str]:
    """A passing row whose rel err would read as a failure (above 1e-2, CS231n's rule of
    thumb): it is a tiny element's, inside its absolute tolerance (t20 F5: 'rel err 0.212 PASS
    good' at a worst element of 7.4e-11 against 5.8e-11)."""
    out = []
    for name, r in report.results.items():
        own = r.worst[0] if r.worst else None
        if not r.passed or r.mode == "probe" or own is None or own["rel_error"] <= 1e-2:
            continue
        if max(abs(own["analytic"]), abs(own["numeric"])) > r.atol:  # no tiny element's
            continue
        out.append(f"d{name}: its rel err {own['rel_error']:.3g} is an element of "
                   f"{abs(own['analytic']):.2g} (numeric {own['numeric'] + 0.0:.2g}), below the "
                   f"absolute tolerance ({r.atol:.2g}): a relative error of values this small "
                   f"says nothing")
    return out


def _rule(report: CheckReport) -> str:
    """The pass rule of the table's rows: element-wise, and a probe's own where a row is one
    (its atol column is not the rule there: a direction is held to rtol * sum |a p|)."""
    probes = [r for r in report.results.values() if r.mode == "probe"]
    atols = {r.atol for r in report.results.values() if r.mode != "probe"}
    atol = f"{atols.pop():.2g}" if len(atols) == 1 else "atol"  # shared: legible without its column
    rule = f"pass if |a-n| <= {atol} + {report.rtol:g}|n|"
    if atol == "atol":  # each one's, as the atol column is the first a narrow table drops
        # (a dw failing at 3.2e-8 read as within dx's 1e-7: outside test t62b F3)
        own = [f"d{n} {r.atol:.2g}" for n, r in report.results.items() if r.mode != "probe"]
        rule += f" (atol: {', '.join(own[:8])}{', ...' if len(own) > 8 else ''})"
    if not probes:
        return rule
    directions = (
        f"probes: pass if a.p and n.p agree within {probe_rtol(report.dtype, report.method):g} "
        "sum|a p| + round-off, for 2 random +-1 directions p"
    )
    return directions if len(probes) == len(report.results) else f"{rule}; {directions}"


def summary_line(spec: Spec, report: CheckReport) -> Text:
    """PASS or FAIL from ``report.passed`` (what the exit code uses), naming every failure."""
    n = len(report.results)
    how = _how(report)
    if report.not_checked:  # a -q user of a partial --grads file sees nothing else (t58b F5)
        how += f"; {unanswered(report.not_checked)}"
    if report.passed:
        match = _all_match(n)
        if report.not_checked and n == 1:  # which one, beside those not checked
            match = f"d{next(iter(report.results))} matches the numerical one"
        return Text.assemble(
            ("PASS", "bold green"), f"  {report.layer}: {match}{_kinks(report)}{how}"
        )
    # a forward that is not deterministic is the cause of every other finding: first, alone
    # of the contract's
    random = random_forward(report.contract, spec.output_info.name)
    failures = [(k, n) for k, n in report.failures if random is None or k != "contract"]
    reasons = [random.detail] if random is not None else []
    reasons += [_reason(spec, report, kind, names) for kind, names in failures]
    if not any(kind == "gradients" for kind, _ in report.failures) and n:
        reasons.append(_all_match(n))
    return Text.assemble(("FAIL", "bold red"), f"  {report.layer}: {'; '.join(reasons)}{how}")


def kinks_line(r: TensorResult) -> str:
    """What a result's kinks were: the stencil met a point where the forward has no
    derivative, so those coordinates were compared with a one-sided difference."""
    n = r.kinks
    line = (
        f"d{r.name}: {n:,} coordinate{'s' if n != 1 else ''} at a kink (the stencil met a point "
        "where the forward has no derivative): checked one-sidedly, on a side that meets none"
    )
    if r.kinks_left_out:  # on stdout beside the verdict's "sample mode" (outside test t40a N3)
        left = (f"which {mention('budget')} left unexamined, were left out as a sample leaves "
                f"coordinates out ({mention('mode', 'full')} examines every one)")
        # none examined: no "0 coordinates at a kink ... checked" before them
        line = (f"{line}; {r.kinks_left_out:,} more, {left}" if n else
                f"d{r.name}: {r.kinks_left_out:,} coordinates at kinks, {left}")
    if r.kinks_unchecked:
        line += f"; {r.kinks_unchecked} with kinks on both sides kept the stencil's value"
    if r.kinks_chained:
        line += (f"; {r.kinks_chained} {'lie' if r.kinks_chained > 1 else 'lies'} off those "
                 "slopes (or their ties' sums) but equal the chained backward, autodiff's value "
                 "through the built-in layers' own choices at their kinks: accepted")
    if r.ties_unverified:
        line += (f"; {r.ties_unverified} at ties too large to read every piece kept your value "
                 "(not verified: no piece read contradicts it)")
    return line


def refined_line(r: TensorResult) -> str:
    """What the smaller steps confirmed: the discrepancy at the default step was the step's
    (truncation, or a kink it crossed that smaller ones do not: a relu of yours at x = 3e-6 read
    0.75 at the default step and 1 at half of it, no truncation: outside test t38b N1)."""
    n = r.refined
    return (
        f"d{r.name}: {n} coordinate{'s' if n > 1 else ''} confirmed at smaller steps (down to "
        f"h/{2**r.refined_halvings}): the discrepancy at the default step went away as the "
        "step shrank, to within tolerance: that step's error (its truncation, or a bend it "
        "straddled), not the gradient's"
    )


def _kinks(report: CheckReport) -> str:
    n = sum(r.kinks for r in report.results.values())
    line = f"; {n:,} coordinate{'s' if n > 1 else ''} at kinks checked one-sidedly" if n else ""
    # in the verdict line itself, beside the kinks they are among: a -q user sees nothing else
    # (outside test t42a N2)
    u = sum(r.ties_unverified for r in report.results.values())
    line += (f" ({u:,} of them at ties too large to read every piece: not verified, your "
             f"values kept)" if u and n else "")
    if report.rules_unchecked:  # a -q user sees nothing else (outside test t53a F1)
        k = report.rules_unchecked
        line += (f"; not checked: one tie rule for every tensor at {k:,} set{'s' if k > 1 else ''} "
                 f"of ties across tensors (past {mention('budget')}, or more than 1,024 "
                 f"coordinates)")
    m = sum(r.refined for r in report.results.values())
    return line + (f"; {m:,} confirmed at smaller steps" if m else "")


def _how(report: CheckReport) -> str:
    """What a check that was not full compared, by tensor: "all 3 gradients match" alone
    reads as every element's claim, which a sample or a probe does not make (a probe's
    direction sums every element, so one element a little off is drowned in it)."""
    if report.mode == "full":
        return ""
    parts: dict[str, list[str]] = {}
    for r in report.results.values():
        size = int(np.prod(r.shape, dtype=np.int64))
        if r.mode == "probe":
            what = f"along {r.checked} random direction{'s' if r.checked != 1 else ''}"
        elif r.mode == "sample" and r.checked < size:
            what = "sampled"  # counted together below
        else:
            what = "at every coordinate"
        parts.setdefault(what, []).append(r.name)
    sampled = [r for r in report.results.values() if r.name in parts.get("sampled", ())]
    words = []
    for what, names in parts.items():
        if what == "sampled":
            of = sum(int(np.prod(r.shape, dtype=np.int64)) for r in sampled)
            what = f"at {sum(r.checked for r in sampled):,} of {of:,} coordinates"
        words.append(f"{', '.join('d' + m for m in names)} {what}")
    return f" ({report.mode} mode: {'; '.join(words)})"


def _all_match(n: int) -> str:
    if n == 1:
        return "the gradient matches the numerical one"
    return f"{'both' if n == 2 else f'all {n}'} gradients match the numerical ones"


def _reason(spec: Spec, report: CheckReport, kind: str, names: tuple[str, ...]) -> str:
    """One failure of the summary line; a kind this does not know is still named."""
    if kind == "gradients":
        failed = [report.results[name] for name in names]
        # a tensor that fails for a reason other than its error (not finite, not resolvable,
        # not fully compared) says so instead of "does not match"
        parts = [_short(r.name, r.reason) for r in failed if r.reason]
        off = [r for r in failed if not r.reason]
        if off:
            worst = max(off, key=lambda r: r.max_rel_error)
            where = "d" + worst.name + natural_index(spec.info(worst.name), worst.worst_index)
            theirs = yours(spec, worst.name, worst.worst_index)
            where += f" (your {theirs})" if theirs else ""
            n = len(report.results)
            count = (
                "the gradient does not" if n == 1
                else f"{len(off)} of {n} gradients {'does' if len(off) == 1 else 'do'} not"
            )  # fmt: skip
            mine, numeric = apart(worst.analytic, worst.numeric)
            big = ""
            if worst.largest is not None:  # (by error / tolerance a tail element may lead)
                at = worst.largest
                big_mine, big_numeric = apart(at["analytic"], at["numeric"])
                big = (f" (by error / tolerance; the largest error: d{worst.name}"
                       f"{natural_index(spec.info(worst.name), tuple(at['index']))}: "
                       f"{_label(report).lower()} {big_mine}, numeric {big_numeric})")
            parts.insert(0, (
                f"{count} match ({', '.join('d' + r.name for r in off)}); worst {where}: "
                f"{_label(report).lower()} {mine}, numeric {numeric}{big}"
            ))  # fmt: skip
        return "; ".join(parts)
    if kind == "forward" and report.forward is not None:
        from gradcli.render.diag import forward_where

        f = report.forward
        if f.unresolved and f.within:  # compared nowhere but at the spec's tensors
            return f"your forward is not verified against the built-in forward ({f.unresolved})"
        how = f"max abs error {f.max_abs_error:.3g} in {', '.join(names)}"
        how = f.hints[0] if f.hints else how  # right values, a wrong number of them
        return f"your forward does not match the built-in forward ({how}{forward_where(report)})"
    if kind == "backward":
        from gradcli.render.diag import backward_where

        return (
            f"your backward does not match the built-in backward{backward_where(report, names)}"
        )
    if kind == "contract":
        from gradcli.render.diag import broken_contracts

        return broken_contracts(spec, report)
    return f"{kind}: {', '.join(names)}"


def _short(name: str, reason: str) -> str:
    """The first clause of a result's reason, naming its tensor: the details are above."""
    short = reason.split(":")[0].split(" (")[0]
    return short if f"d{name}" in short else f"d{name}: {short}"


def _label(report: CheckReport) -> str:
    """What the gradients under test are called: the user's answers (--grads) are "yours"."""
    return "yours" if report.answers else "analytic"


ROUNDOFF_SOURCES = {
    "measured": "float64 backward on the same inputs; each element is allowed 4x its own",
    "built-in": "the built-in backward's, float64 against float32 on the same inputs and "
    "with their last bits moved: the gradient under test has no float64 run; each element is "
    "allowed 16x its own",
    "estimated": "estimated, 256 float32 ulps: no float64 run of this backward exists",
}


def _roundoff_line(r: TensorResult) -> str:
    why = ROUNDOFF_SOURCES.get(r.roundoff_source, ROUNDOFF_SOURCES["measured"])
    return (
        f"d{r.name}: float32 round-off of the analytical gradient is {r.roundoff:.2g} of its "
        f"largest entry ({why})"
    )


def _notes(report: CheckReport, streamed: bool = False) -> list[Text]:
    lines = [] if streamed else [Text(f"note: {n}", style="yellow") for n in report.notes]
    for r in report.results.values():
        if r.kinks or r.kinks_left_out:
            lines.append(Text(kinks_line(r), style="dim"))
        if r.refined:
            lines.append(Text(refined_line(r), style="dim"))
        if r.roundoff is not None:
            lines.append(Text(_roundoff_line(r), style="dim"))
    return lines


def render_check(
    console: Console,
    spec: Spec,
    comp: Computation,
    numeric: dict[str, np.ndarray],
    report: CheckReport,
    analytic: Any = None,
    *,
    values: bool = False,
    quiet: bool = False,
    elsewhere: str | None = None,
    streamed: bool = False,
) -> None:
    """The verdict: the shapes table, the check table, the diagnosis of any failure, notes and
    the summary line; ``values``: also every array's values, analytic and numeric; ``quiet``:
    the summary line alone. ``analytic``: the user's answers with --grads, else None.
    ``elsewhere``: where arrays too large to show are found whole. ``streamed``: the notes
    were said on the same terminal as the check went."""
    from gradcli.render.diag import contract_section, render_diagnosis

    if not quiet:
        rows = _rows(spec, comp, analytic)
        if values:
            rows += [(f"d{n} (numeric)", "numeric", g, spec.info(n)) for n, g in numeric.items()]
        console.print(_shapes_table(spec, rows, console.width), crop=False)
        console.print()
        if values:
            print_values(console, rows, elsewhere)
            console.print()
        console.print(_check_table(spec, report, console.width), crop=False)
        for line in _tiny_relative(report):
            paragraph(console, Text(line, style="dim"))
        for renderable in contract_section(spec, report, console.width):
            console.print(renderable, crop=False)  # a fitted table: whole columns
        console.print()
        tested = {n: intermediates.builtin(comp, n) for n in report.results}  # --impl: the user's
        render_diagnosis(console, spec, report, analytic or tested, numeric)
        for line in _notes(report, streamed):
            paragraph(console, line)
    console.print(summary_line(spec, report), soft_wrap=True)  # one line, for grep and tail


MAX_WIDTH = 10_000  # columns: COLUMNS beyond it is read as this many
# and below this many as this many: at COLUMNS=1 the title took 263 lines, a letter each
MIN_WIDTH = 20
PLAIN_WIDTH = 80  # a pipe, a file or a CI log without COLUMNS: what any viewer shows unwrapped


def console(file: Any, plain: bool = False) -> Console:
    """A console for ``file``: styled on a terminal, with no ANSI codes at all when writing to
    a file, a pipe, or with NO_COLOR set; markup and emoji codes off, since indices like
    [m=1] and names like :x: are data. A pipe or file is COLUMNS wide when set, else 80."""
    columns = os.environ.get("COLUMNS", "")
    # rich reads COLUMNS too: one past an index-sized integer was an internal error
    wide = MAX_WIDTH if columns.isdigit() and int(columns) > MAX_WIDTH else None
    if plain or not file.isatty() or os.environ.get("NO_COLOR"):
        given = columns.isdigit() and int(columns) > 0
        width = min(max(int(columns), MIN_WIDTH), MAX_WIDTH) if given else PLAIN_WIDTH
        tty = not plain and file.isatty()
        out = Console(
            file=file if tty else Trimmed(file), width=wide if tty else width,
            color_system=None, force_terminal=False, highlight=False, markup=False, emoji=False,
        )  # fmt: skip
    else:
        out = Console(file=file, width=wide, highlight=False, markup=False, emoji=False)
    if out.width < MIN_WIDTH:  # a terminal (or its COLUMNS) narrower than any table
        out.width = MIN_WIDTH
    return out


class Trimmed:
    """A file that drops the spaces ending each line: rich pads a left-justified title (and a
    table's) to the console's width, which in a pipe or a file is trailing whitespace (a diff,
    an editor and `grep ' $'` all see it). Spaces at the end of a write are held until the
    line goes on or ends."""

    def __init__(self, file: Any) -> None:
        self.file, self.held = file, ""

    def write(self, text: str) -> int:
        lines = (self.held + text).split("\n")
        last = lines.pop()
        body = "".join(line.rstrip(" ") + "\n" for line in lines)
        kept = last.rstrip(" ")
        self.held = last[len(kept) :]
        if body or kept:
            self.file.write(body + kept)
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding ...
        return getattr(self.file, name)


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
