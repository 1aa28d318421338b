"""What the API returns: a check's report and a network check's report, as data with the
CLI's own text and JSON."""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradcli.checking.compare import TensorResult
from gradcli.checking.compute import Computation
from gradcli.checking.report import CheckReport
from gradcli.inputs.spec import (
    Spec,
)  # fmt: skip
from gradcli.render import jsondoc
from gradcli.render import text as render


class Report:
    """The result of a check: the same verdict, numbers and text as ``gradcli check``."""

    def __init__(
        self, spec: Spec, computation: Computation, numeric: dict[str, np.ndarray],
        report: CheckReport, grads: Mapping[str, np.ndarray] | None = None,
    ) -> None:  # fmt: skip
        self.spec = spec
        self.computation = computation
        self.numeric = numeric  # numerical gradients, NaN where not evaluated
        self.check = report
        self._grads = grads

    @property
    def passed(self) -> bool:
        """True exactly when ``gradcli check`` would exit 0."""
        return self.check.passed

    @property
    def results(self) -> Mapping[str, TensorResult]:
        """Per tensor (and checked intermediate): errors, worst elements, hints, atol, mode."""
        return self.check.results

    @property
    def notes(self) -> tuple[str, ...]:
        return self.check.notes

    @property
    def forward(self) -> TensorResult | None:
        """Your implementation of a built-in layer: your forward against ours (None otherwise),
        at the spec's tensors, or at the drawn point where they disagree."""
        return self.check.forward

    @property
    def forward_point(self) -> Mapping[str, np.ndarray] | None:
        """The tensors of the drawn point where your forward disagrees with ours (None: it
        agrees everywhere it was compared, or disagrees at the spec's tensors)."""
        return self.check.forward_point

    @property
    def backward(self) -> Any:
        """Your implementation of a built-in layer whose forward agrees with ours: your backward
        against ours at the drawn points (``.passed``, ``.results`` per gradient, ``.drawn``,
        and ``.point``, ``.grad_output`` of a disagreement); None otherwise."""
        return self.check.backward

    def to_json(self, *, values: bool = False) -> str:
        """The document ``gradcli check --format json`` prints (``values``: ``--values``)."""
        r = self.check
        doc = (
            jsondoc.check_doc(self.spec, r, self.computation, self.numeric)
            if values
            else jsondoc.check_doc(self.spec, r)
        )
        return jsondoc.to_json(doc)

    def table(self, *, width: int | None = None, values: bool = False) -> str:
        """The plain-text report ``gradcli check`` writes to a pipe (no ANSI codes): as wide as
        ``COLUMNS``, else 80 columns, unless ``width`` is given."""
        buf = io.StringIO()
        con = render.console(buf, plain=True)
        if width is not None:
            con.width = width
        render.render_check(
            con, self.spec, self.computation, self.numeric, self.check, self._grads,
            values=values, elsewhere="report.to_json(values=True) has them",
        )  # fmt: skip
        return buf.getvalue()

    def verdict(self) -> str:
        """The summary line: PASS or FAIL naming every failure, as the CLI's last line."""
        return render.summary_line(self.spec, self.check).plain

    def __str__(self) -> str:
        return self.table()

    def __reduce__(self) -> tuple[Any, ...]:
        # a report crosses processes (a ProcessPoolExecutor's result) and deep-copies as what
        # it says, not as the layer's functions it was computed with, which need not pickle
        return DetachedReport, ({
            "passed": self.passed, "results": dict(self.results), "notes": self.notes,
            "forward": self.forward, "forward_point": self.forward_point,
            "backward": _picklable(self.backward),
            "_verdict": self.verdict(), "_json": {v: self.to_json(values=v) for v in (False, True)},
            "_table": {v: self.table(values=v) for v in (False, True)}, "_repr": repr(self),
        },)  # fmt: skip

    def __repr__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        # a sample's or a probe's PASS is not every element's: said where a test prints it
        how = f" ({self.check.mode} mode)" if self.check.mode in ("sample", "probe") else ""
        return (f"<gradcli.Report {self.spec.layer.name}: {verdict}{how}, "
                f"{', '.join(self.results)}>")


class NetworkReport:
    """The result of a network's check: the same verdict, JSON and text as ``gradcli check
    net``. ``layers``: each layer's local check (``.node.name``, ``.report.results``);
    ``first_wrong``: (index, name, layer, tensor, wrong) of the first wrong backward (or
    forward) or None; ``also_wrong``: the layers below it whose local checks fail too;
    ``end_to_end``: the whole network's results by tensor (``"fc1.W"``)."""

    def __init__(self, net: Any, report: Any) -> None:
        self.net, self.check = net, report

    @property
    def passed(self) -> bool:
        return self.check.passed

    @property
    def layers(self) -> tuple[Any, ...]:
        return self.check.layers

    @property
    def first_wrong(self) -> Any:
        return self.check.first_wrong

    @property
    def also_wrong(self) -> tuple[Any, ...]:
        return self.check.also_wrong

    @property
    def end_to_end(self) -> Mapping[str, TensorResult]:
        return self.check.end_to_end.results

    @property
    def zeros_only(self) -> tuple[str, ...]:
        """The layers whose local check compared 0 with 0 at every element (JSON's
        ``"zeros_only"``): a dead relu, a dropout keeping nothing."""
        return self.check.vacuous

    def verdict(self) -> str:
        """The summary line, as the CLI's last line."""
        from gradcli.render import network

        return network.verdict_line(self.net, self.check).plain

    def to_json(self) -> str:
        from gradcli.render import netdoc

        return jsondoc.to_json(netdoc.check_doc(self.net, self.check))

    def table(self, *, width: int | None = None) -> str:
        from gradcli.render import network

        buf = io.StringIO()
        con = render.console(buf, plain=True)
        if width is not None:
            con.width = width
        network.render_check(con, self.net, self.check)
        return buf.getvalue()

    def __str__(self) -> str:
        return self.table()

    def __reduce__(self) -> tuple[Any, ...]:
        return DetachedReport, ({
            "passed": self.passed, "first_wrong": self.first_wrong,
            "also_wrong": self.also_wrong, "end_to_end": dict(self.end_to_end),
            "zeros_only": self.zeros_only, "_verdict": self.verdict(),
            "_json": {False: self.to_json()}, "_table": {False: self.table()},
            "_repr": repr(self),
        },)  # fmt: skip

    def __repr__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return f"<gradcli.NetworkReport {len(self.layers)} layers: {verdict}>"


def _picklable(value: Any) -> Any:
    """``value`` where it pickles, else None (a report's parts holding your functions)."""
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001 - what does not pickle is left out, not raised
        return None
    return value


class DetachedReport:
    """A report pickled (a ProcessPoolExecutor's result) or deep-copied: its verdict, results,
    notes, JSON and text as they were, without the layer's functions, which need not pickle.
    ``table()`` is the text at the width it was made at (``COLUMNS``, else 80)."""

    def __init__(self, state: Mapping[str, Any]) -> None:
        self.__dict__.update(state)

    def verdict(self) -> str:
        return self._verdict

    def to_json(self, *, values: bool = False) -> str:
        return self._json[values] if values in self._json else self._json[False]

    def table(self, *, width: int | None = None, values: bool = False) -> str:
        return self._table[values] if values in self._table else self._table[False]

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return self._repr
