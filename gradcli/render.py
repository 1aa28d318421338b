"""Rendering: JSON documents, rich tables, .npz archives. No numerics beyond summaries."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from gradcli.check import CheckReport, Computation, TensorResult, options_dict
from gradcli.layers import REGISTRY, Layer, TensorInfo
from gradcli.spec import Spec

MAX_SHOWN = 100  # tensors with at most this many elements get their values printed


# ---------------------------------------------------------------- JSON
def _values(a: np.ndarray) -> Any:
    """Nested lists of Python floats (exact: json writes repr); non-finite values become null."""
    a = np.asarray(a, dtype=np.float64)
    if np.isfinite(a).all():
        return a.tolist()
    return np.where(np.isfinite(a), a, None).tolist()


def _array(a: np.ndarray) -> dict[str, Any]:
    return {"shape": list(np.shape(a)), "values": _values(a)}


def _header(spec: Spec) -> dict[str, Any]:
    return {
        "layer": spec.layer.name,
        "dtype": spec.dtype,
        "seed": spec.seed,
        "options": options_dict(spec.options),
    }


def compute_doc(spec: Spec, comp: Computation) -> dict[str, Any]:
    return {
        **_header(spec),
        "tensors": {n: _array(a) for n, a in spec.tensors.items()},
        "output": {"name": spec.layer.output.name, **_array(comp.output)},
        "grad_output": _array(spec.grad_output),
        "gradients": {n: _array(g) for n, g in comp.gradients.items()},
        "intermediates": {n: _array(a) for n, a in comp.intermediates.items()},
    }


def _result_doc(r: TensorResult) -> dict[str, Any]:
    return {
        "shape": list(r.shape),
        "max_abs_error": r.max_abs_error,
        "max_rel_error": r.max_rel_error,
        "worst_index": list(r.worst_index),
        "analytic": r.analytic,
        "numeric": r.numeric,
        "passed": r.passed,
    }


def check_doc(
    spec: Spec,
    report: CheckReport,
    comp: Computation | None = None,
    numeric: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The check document; with ``comp`` and ``numeric`` (``--values``) the compute keys too."""
    doc = {
        **_header(spec),
        "passed": report.passed,
        "method": report.method,
        "eps": report.eps,
        "atol": report.atol,
        "rtol": report.rtol,
        "results": {n: _result_doc(r) for n, r in report.results.items()},
    }
    if comp is not None and numeric is not None:
        doc.update({k: v for k, v in compute_doc(spec, comp).items() if k not in doc})
        doc["numeric"] = {n: _array(g) for n, g in numeric.items()}
    return doc


def layers_doc() -> dict[str, Any]:
    def tensor(t: TensorInfo) -> dict[str, Any]:
        return {"name": t.name, "shape": list(t.axes), "role": t.role, "doc": t.doc}

    return {
        name: {
            "formula": layer.summary,
            "tensors": [tensor(t) for t in layer.tensors],
            "output": tensor(layer.output),
            "options": options_dict(layer.options()),
            "intermediates": list(layer.intermediates),
        }
        for name, layer in REGISTRY.items()
    }


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def npz_bytes(spec: Spec, comp: Computation, numeric: dict[str, np.ndarray] | None = None) -> bytes:
    """output, grad_output, every input tensor, d<name> per gradient, numeric_d<name> for check."""
    arrays = {"output": comp.output, "grad_output": spec.grad_output, **spec.tensors}
    arrays.update({"d" + n: g for n, g in comp.gradients.items()})
    arrays.update({"numeric_d" + n: g for n, g in (numeric or {}).items()})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


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
    layer = spec.layer
    out = layer.output
    rows: list[tuple[str, str, np.ndarray, TensorInfo | None]] = [
        (t.name, t.role, spec.tensors[t.name], t) for t in layer.tensors
    ]
    rows.append((out.name, "output", comp.output, out))
    rows.append(("d" + out.name, "upstream", spec.grad_output, out))
    rows += [(n, "intermediate", a, None) for n, a in comp.intermediates.items()]
    rows += [("d" + t.name, "gradient", comp.gradients[t.name], t) for t in layer.tensors]
    return rows


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
        title=f"gradient check: analytic vs numeric ({report.method} differences, "
        f"eps {report.eps:.3g}; pass if |a-n| <= {report.atol:g} + {report.rtol:g}|n|)",
        title_justify="left",
    )
    table.add_column("gradient")
    table.add_column("shape")
    for col in ("max abs err", "max rel err"):
        table.add_column(col, justify="right")
    table.add_column("worst element", no_wrap=True)
    for col in ("analytic", "numeric"):
        table.add_column(col, justify="right")
    table.add_column("result")
    for name, r in report.results.items():
        info = spec.layer.tensor(name)
        verdict = Text("PASS", style="bold green") if r.passed else Text("FAIL", style="bold red")
        table.add_row(
            Text("d" + name, style="bold"),
            str(list(r.shape)),
            f"{r.max_abs_error:.3g}",
            f"{r.max_rel_error:.3g}",
            "d" + name + natural_index(info, r.worst_index),
            f"{r.analytic:.10g}",
            f"{r.numeric:.10g}",
            verdict,
        )
    return table


def summary_line(spec: Spec, report: CheckReport) -> Text:
    n = len(report.results)
    failed = [r for r in report.results.values() if not r.passed]
    if not failed:
        return Text.assemble(
            ("PASS", "bold green"), f"  {report.layer}: all {n} gradients match the numerical ones"
        )
    worst = max(failed, key=lambda r: r.max_rel_error)
    where = "d" + worst.name + natural_index(spec.layer.tensor(worst.name), worst.worst_index)
    names = ", ".join("d" + r.name for r in failed)
    return Text.assemble(
        ("FAIL", "bold red"),
        f"  {report.layer}: {len(failed)} of {n} gradients do not match ({names}); "
        f"worst {where}: analytic {worst.analytic:.6g}, numeric {worst.numeric:.6g}",
    )


def render_check(
    console: Console,
    spec: Spec,
    comp: Computation,
    numeric: dict[str, np.ndarray],
    report: CheckReport,
) -> None:
    rows = _rows(spec, comp)
    rows += [(f"d{n} (numeric)", "numeric", g, spec.layer.tensor(n)) for n, g in numeric.items()]
    console.print(_shapes_table(spec, rows))
    console.print()
    _print_values(console, rows)
    console.print()
    console.print(_check_table(spec, report))
    console.print(summary_line(spec, report))


def render_layers(console: Console) -> None:
    for name, layer in REGISTRY.items():
        table = Table(title=f"{name}: {layer.summary}", title_justify="left")
        for col in ("tensor", "shape", "role", "meaning"):
            table.add_column(col)
        for t in (*layer.tensors, layer.output):
            role = t.role + (" (optional: zeros)" if t.optional else "")
            table.add_row(Text(t.name, style="bold"), t.shape_str, role, t.doc)
        console.print(table)
        opts = options_dict(layer.options()) or "none"
        extra = f"; intermediates: {', '.join(layer.intermediates)}" if layer.intermediates else ""
        console.print(Text(f"options: {opts}{extra}", style="dim"))
        console.print()


def init_template(layer: Layer) -> str:
    """A commented YAML spec for ``layer``, equal to its embedded default."""
    lines = [
        f"# gradcli spec for {layer.name}: {layer.summary}",
        f"# run: gradcli check {layer.name} THIS_FILE.yaml",
        f"layer: {layer.name}",
        "dtype: float64          # float64 or float32",
        "seed: 0                 # seeds every generated tensor and the default grad_output",
        "options: {}             # layer hyper-parameters (none for this layer)",
        "tensors:",
        "  # each tensor: a .npy path (relative to this file), file.npz:key, an inline number",
        "  # or nested list, or {shape: [...], init: normal|uniform|zeros|ones|arange, scale: 1}",
    ]
    for t in layer.tensors:
        shape = list(layer.default_shapes[t.name])
        note = f"{t.shape_str} {t.doc}" + ("; may be omitted (zeros)" if t.optional else "")
        lines.append(f"  {t.name}: {{shape: {shape}, init: normal}}  # {note}")
    lines += [
        f"# upstream gradient dL/d{layer.output.name}, shape {layer.output.shape_str};",
        "# without a shape it takes the output's",
        "grad_output: {init: normal}",
    ]
    return "\n".join(lines) + "\n"
