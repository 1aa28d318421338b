"""What people read about a network: the forward and backward flow (compute), the local checks
layer by layer, the end-to-end check and the first wrong backward (check)."""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.console import Console
from rich.text import Text

from gradcli.checking import intermediates
from gradcli.checking.compute import Computation
from gradcli.checking.network import FirstWrong, NetReport, flow, sampled_locally
from gradcli.inputs.network import NetSpec
from gradcli.render.diag import forward_where
from gradcli.render.fit import Col, fitted, paragraph
from gradcli.render.text import kinks_line, refined_line, summary_line
from gradcli.render.values import apart, natural_index, num, stat_cells, unanswered

FLOW_COLUMNS = (
    Col("boundary"), Col("layer", priority=5), Col("shape"),
    Col("min", priority=2, justify="right"), Col("max", priority=2, justify="right"),
    Col("mean", priority=1, justify="right"), Col("norm", justify="right"),
)  # fmt: skip
BACK_COLUMNS = (
    Col("gradient"), Col("shape", priority=2), Col("norm", justify="right"),
    Col("x previous", priority=3, justify="right"),
)
# the columns give way as a layer's check table's do: rel err before the worst element (t66b
# F3); and the layer's kind first, which its default name repeats (softmax_cross_entropy6),
# so that 60 columns hold the table
LOCAL_COLUMNS = (
    Col("#", justify="right"), Col("layer", priority=1), Col("name"),
    Col("gradients", priority=3, fold=True),
    Col("worst element", priority=5, fold=True, min_width=10),
    Col("rel err", priority=4, justify="right"), Col("result"),
)  # fmt: skip
E2E_COLUMNS = (
    Col("gradient"), Col("checked", justify="right"),
    Col("worst element", priority=5, fold=True, min_width=10),
    Col("rel err", priority=4, justify="right"), Col("result"),
    # 'rel err 0 FAIL' beside a tie no piece was read at reads as a mismatch: the reading says
    # 'not verified' (outside test t65b F8), as the layer check's table does
    Col("reading", priority=6, fold=True, min_width=10),
)  # fmt: skip


def _producer(net: NetSpec) -> dict[str, str]:
    out = {n.out: f"{n.index} {n.layer.name}" for n in net.nodes}
    for kind, op in net.net.program:
        if kind == "add":
            out[op.out] = "residual add"
    return out


def _fixed_role(net: NetSpec, name: str) -> str:
    """What a fixed input is to the layer taking it: labels (indices), a mask (a custom
    layer's booleans) or a target."""
    for node in net.nodes:
        for t, i in node.fixed.items():
            if i == name:
                if node.layer.tensor(t).role != "index":
                    return "target"
                return "mask" if net.net.fixed[name].dtype == bool else "labels"
    return "data"


def render_compute(console: Console, net: NetSpec, comp: Computation) -> None:
    spec = net.spec
    f = flow(net, comp)
    by = _producer(net)
    x = spec.tensors[net.net.input]
    role = "input" if spec.info(net.net.input).differentiable else "input (indices)"
    rows = [[Text(net.net.input, style="bold"), role, str(list(x.shape)), *stat_cells(x)]]
    # the data a layer takes beside its input (a loss's labels), never differentiated
    rows += [[Text(n, style="bold"), _fixed_role(net, n), str(list(a.shape)), *stat_cells(a)]
             for n, a in net.net.fixed.items()]  # fmt: skip
    rows += [[Text(n, style="bold"), by[n], str(list(np.shape(a))), *stat_cells(a)]
             for n, a in f["forward"].items()]  # fmt: skip
    title = f"forward: {spec.layer.summary}"
    console.print(fitted(FLOW_COLUMNS, rows, console.width, title=title, title_justify="left"),
                  crop=False)  # fmt: skip
    console.print()
    back = []
    prev = None
    grads = list(reversed(list(f["backward"].items())))
    if net.net.input in comp.gradients:  # integer indices (an embedding's) have none
        grads.append((net.net.input, comp.gradients[net.net.input]))
    for n, g in grads:
        norm = float(np.linalg.norm(np.asarray(g).ravel()))
        ratio = "" if prev in (None, 0.0) else f"{norm / prev:.3g}"
        back.append([Text("d" + n, style="bold"), str(list(np.shape(g))), num(norm), ratio])
        prev = norm
    console.print(fitted(BACK_COLUMNS, back, console.width, title_justify="left",
                         title="backward: the gradient passed back at every boundary"),
                  crop=False)  # fmt: skip
    console.print()
    params = [[Text("d" + n, style="bold"), str(list(np.shape(g))), num(float(
        np.linalg.norm(np.asarray(g).ravel()))), ""]
        for n, g in comp.gradients.items() if n != net.net.input]  # fmt: skip
    if params:
        console.print(fitted(BACK_COLUMNS[:3], params, console.width, title_justify="left",
                             title="parameter gradients"), crop=False)  # fmt: skip


def _worst(spec: Any, r: Any) -> str:
    if r.mode == "probe":
        return "(probe)"
    return "d" + r.name + natural_index(spec.info(r.name), r.worst_index)


def _own(r: Any, key: str = "rel_error") -> float:
    """The worst element's own error (the one furthest beyond its tolerance, shown beside it),
    as a layer's table gives it: the tensor's largest rel err was another element's, a bias of
    1e-16 read as -4.7e-10, and 'rel err 1 PASS' stood beside dW[0, 50]'s own 4.7e-10 (outside
    test t51b F3); a probe's, its own."""
    if r.worst:
        return float(r.worst[0][key])
    return float(r.max_rel_error if key == "rel_error" else 0.0)


def _verdict(r: Any) -> Text:
    return Text("PASS", style="bold green") if r.passed else Text("FAIL", style="bold red")


def render_check(console: Console, net: NetSpec, report: NetReport, *, quiet: bool = False,
                 streamed: bool = False) -> None:  # fmt: skip
    from gradcli.render.diag import render_diagnosis

    spec, e2e = net.spec, report.end_to_end
    if not quiet:
        if report.layers:
            rows = []
            for lc in report.layers:
                failing = [r for r in lc.report.results.values() if not r.passed]
                r = max(failing or lc.report.results.values(),
                        key=lambda r: _own(r, "error_over_tolerance"))  # fmt: skip
                checked = " ".join("d" + n for n in lc.report.results)
                rows.append([str(lc.node.index), lc.node.layer.name, lc.node.name, checked,
                             _worst(lc.spec, r), f"{_own(r):.3g}", _verdict(lc)])
            console.print(fitted(LOCAL_COLUMNS, rows, console.width, title_justify="left",
                                 title="local checks: each backward at its input, with its "
                                       "upstream gradient"), crop=False)  # fmt: skip
            console.print()
        rows = []
        for n, r in e2e.results.items():
            size = int(np.prod(r.shape, dtype=np.int64))
            checked = f"{r.checked:,} probes" if r.mode == "probe" else f"{r.checked:,}/{size:,}"
            rows.append([Text("d" + n, style="bold"), checked, _worst(spec, r),
                         f"{_own(r):.3g}", _verdict(r), r.band])  # fmt: skip
        label = "your gradients" if e2e.answers else "the chained backward"
        how = "" if e2e.mode == "full" else f", {e2e.mode} mode"
        console.print(fitted(E2E_COLUMNS, rows, console.width, title_justify="left",
                             title=f"end to end: {label} against differences of the whole "
                                   f"network ({e2e.method}{how})"), crop=False)  # fmt: skip
        console.print()
        if report.first_wrong is None and not e2e.passed:  # no layer to blame (--grads): the
            # end-to-end failure's own diagnosis, as a single layer's
            comp = report.computation
            tested = report.answers or {n: intermediates.builtin(comp, n) for n in e2e.results}
            render_diagnosis(console, spec, e2e, tested, e2e.numeric, "the chained backward's")
        elif e2e.not_checked:
            paragraph(console, Text(unanswered(e2e.not_checked), style="dim"))
        for k, wrong in enumerate(_blamed(report)):
            lc = _check_of(report, wrong.index)
            head = _first(wrong) if not k else (
                "also wrong on its own" if wrong.judged else "not judged either")
            console.print(Text(f"{head}: {_who(wrong)}", style="bold"))
            comp = lc.report.computation
            tested = {n: intermediates.builtin(comp, n) for n in lc.report.results}
            render_diagnosis(console, lc.spec, lc.report, tested, lc.report.numeric)
        for note in () if streamed else e2e.notes:  # said on this terminal as it went
            # the end-to-end check's own said as its, as on stderr (outside test t61b F4)
            own = not note.startswith(("end to end:", "layer "))
            paragraph(console, Text(f"note: {'end to end: ' * own}{note}", style="yellow"))
        for line in _kink_lines(report):
            paragraph(console, Text(line, style="dim"))
    console.print(verdict_line(net, report), soft_wrap=True)


def _blamed(report: NetReport) -> list[FirstWrong]:
    first = report.first_wrong
    return [] if first is None else [first, *report.also_wrong]


def _check_of(report: NetReport, index: int) -> Any:
    return next(lc for lc in report.layers if lc.node.index == index)


def _what(w: FirstWrong) -> str:
    return {("backward",): "backward", ("forward",): "forward"}.get(w.wrong, "layer")


def _first(w: FirstWrong) -> str:
    """How the first failing layer is named: wrong, or not judged (round-off)."""
    if not w.judged:
        return "first layer whose backward its check cannot judge"
    return f"first wrong {_what(w)}"


def _who(w: FirstWrong) -> str:
    return f"layer {w.index}, {w.layer} {w.name!r}"


def _kinks(report: NetReport) -> str:
    """The summary's count of coordinates at kinks, local checks and end to end apart (the
    same coordinate may meet a kink in both)."""
    local = sum(r.kinks for lc in report.layers for r in lc.report.results.values())
    e2e = sum(r.kinks for r in report.end_to_end.results.values())
    parts = [f"{n:,} {where}" for n, where in ((local, "locally"), (e2e, "end to end")) if n]
    return f"; coordinates at kinks checked one-sidedly: {', '.join(parts)}" if parts else ""


def _kink_lines(report: NetReport) -> list[str]:
    """Each result's kinks and coordinates confirmed at smaller steps, as a single layer's
    check says them, prefixed by its layer."""
    lines = []
    for line, count in ((kinks_line, "kinks"), (refined_line, "refined")):
        lines += [f"layer {lc.node.index} {lc.node.name!r}: {line(r)}" for lc in report.layers
                  for r in lc.report.results.values() if getattr(r, count)]  # fmt: skip
        lines += [f"end to end: {line(r)}" for r in report.end_to_end.results.values()
                  if getattr(r, count)]  # fmt: skip
    return lines


def _blame(report: NetReport, w: FirstWrong) -> str:
    """What is wrong with one failing layer: its worst gradient (a wrong backward), or what
    its local check's summary says (a wrong forward, a broken contract)."""
    lc = _check_of(report, w.index)
    r = lc.report.results.get(w.tensor) if w.tensor is not None else None
    if w.wrong == ("backward",) and r is not None and r.unresolved and not r.nonfinite:
        return f"{_who(w)}, {r.unresolved}"  # its errors are round-off: no worst element
    if w.wrong == ("backward",) and r is not None and not r.passed:
        mine, numeric = apart(r.analytic, r.numeric)
        return (f"{_who(w)}, d{w.tensor} (worst element {_worst(lc.spec, r)}: analytic "
                f"{mine}, numeric {numeric})")  # fmt: skip
    said = summary_line(lc.spec, lc.report).plain.split(": ", 1)[-1]
    f = lc.report.forward
    if w.wrong == ("forward",) and f is not None and not f.passed:
        said = (f"your forward does not match the built-in forward (max abs error "
                f"{f.max_abs_error:.3g} in {f.name}{forward_where(lc.report)})")  # fmt: skip
        failed = [n for n, x in lc.report.results.items() if not x.passed]
        grads = ", ".join("d" + n for n in failed)
        said += (f"; your backward is the built-in {w.layer}'s, so {grads} cannot match the "
                 "differences of your forward" if failed else
                 "; your backward matches the differences of your forward")  # fmt: skip
    return f"{_who(w)} ({said})"


def verdict_line(net: NetSpec, report: NetReport) -> Text:
    e2e, n = report.end_to_end, len(report.layers)
    # said beside the end-to-end verdict it qualifies: trailing the kinks' count, "(sample
    # mode)" read as if only the kinks were sampled (outside test t55b F6)
    how = "" if e2e.mode == "full" else (
        " (on a sample of coordinates)" if e2e.mode == "sample" else f" ({e2e.mode} mode)")
    at_kinks = _kinks(report)
    if report.passed:
        sampled = sampled_locally(list(report.layers))
        local = ("the layer's backward matches locally" if n == 1 else
                 f"all {n} layers' backwards match locally" if n else "")  # fmt: skip
        local += f" (sampled: {sampled}); " if n and sampled else "; " if n else ""
        m = len(e2e.results)
        if e2e.answers:
            e2e_says = ("your gradient matches" if m == 1 else "both of your gradients match"
                        if m == 2 else f"all {m} of your gradients match")  # fmt: skip
        else:
            e2e_says = ("the gradient matches" if m == 1 else "both gradients match" if m == 2
                        else f"all {m} gradients match")  # fmt: skip
        tail = ""
        if report.vacuous:  # a PASS that says nothing of those layers says so
            names = ", ".join(repr(n) for n in report.vacuous)
            tail = f"; {names} compared only zeros (see the note)"
        if e2e.answers and e2e.not_checked:  # a -q user of a partial answer file sees only
            tail += f"; {unanswered(e2e.not_checked)}"  # this line (outside test t59a F4)
        said = f"  net: {local}end to end {e2e_says}{how}{at_kinks}{tail}"
        return Text.assemble(("PASS", "bold green"), said)
    wrong = report.first_wrong
    if wrong is None:
        line = summary_line(net.spec, e2e)
        return Text.assemble(("FAIL", "bold red"), "  net: end to end" + line.plain[9:])
    head = _first(wrong)
    also = ""
    wrong_too = [w for w in report.also_wrong if w.judged]
    unjudged = [w for w in report.also_wrong if not w.judged]
    if wrong_too:
        also = "; also wrong on " + ("its own: " if len(wrong_too) == 1 else
                                     "their own: ") + "; ".join(
            _blame(report, w) for w in wrong_too)  # fmt: skip
    if unjudged:
        also += "; not judged either: " + "; ".join(_blame(report, w) for w in unjudged)
    return Text.assemble(("FAIL", "bold red"),
                         f"  net: {head}: {_blame(report, wrong)}{also}{at_kinks}")
