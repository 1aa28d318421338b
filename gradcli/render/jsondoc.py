"""Results as data for scripts: JSON documents, .npz archives, the YAML template. No rich."""

from __future__ import annotations

import dataclasses
import io
import json
import platform
import textwrap
from typing import Any

import numpy as np

from gradcli import __version__
from gradcli.checking.compare import TensorResult
from gradcli.checking.compute import Computation
from gradcli.checking.hint import hint_doc
from gradcli.checking.report import CheckReport
from gradcli.errors import OptionError, mention
from gradcli.inputs.spec import Spec
from gradcli.layers import REGISTRY, Layer, TensorInfo
from gradcli.layers.base import option_table, options_dict
from gradcli.user.options import as_json


def _values(a: np.ndarray) -> Any:
    """Nested lists of Python floats (exact: json writes repr); non-finite values become null.
    Integers (labels, indices) and booleans (masks) stay what they are: a label written 3.0
    is refused when the document is read back as a spec."""
    a = np.asarray(a)
    if a.dtype.kind in "iub":
        return a.tolist()
    a = np.asarray(a, dtype=np.float64)
    if np.isfinite(a).all():
        return a.tolist()
    return np.where(np.isfinite(a), a, None).tolist()


def array_doc(a: np.ndarray) -> dict[str, Any]:
    return {"shape": list(np.shape(a)), "values": _values(a)}


VERSIONS = {
    "gradcli": __version__,
    "numpy": np.__version__,
    "python": platform.python_version(),
}


def header(spec: Spec) -> dict[str, Any]:
    return {
        "layer": spec.layer.name,
        "dtype": spec.dtype,
        "seed": spec.seed,
        "options": as_json(options_dict(spec.options)),  # a custom layer's dates, sets ...
        "versions": VERSIONS,  # same spec, seed and versions: byte-identical JSON
    }


def compute_doc(spec: Spec, comp: Computation) -> dict[str, Any]:
    return {
        **header(spec),
        "tensors": {n: array_doc(a) for n, a in spec.tensors.items()},
        "output": {"name": spec.output_info.name, **array_doc(comp.output)},
        "grad_output": array_doc(spec.grad_output),
        "gradients": {n: array_doc(g) for n, g in comp.gradients.items()},
        "intermediates": {n: array_doc(a) for n, a in comp.intermediates.items()},
    }


def _num(x: float) -> float | None:
    """A float for JSON: NaN and inf (a non-finite gradient, an unresolvable error) are null."""
    return x if np.isfinite(x) else None


def _seconds(x: float) -> float:
    """A predicted time to three significant digits: a model's count, not a measurement."""
    return float(f"{x:.3g}")


def result_doc(r: TensorResult) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "shape": list(r.shape),
        "max_abs_error": _num(r.max_abs_error),
        "max_rel_error": _num(r.max_rel_error),
        "worst_index": list(r.worst_index),
        "analytic": _num(r.analytic),
        "numeric": _num(r.numeric),
        "passed": r.passed,
        "mode": r.mode,
        "checked": r.checked,
        "atol": _num(r.atol),
        "band": r.band,
        "hints": [hint_doc(h) for h in r.hints],
        "worst": [
            {k: _num(v) if isinstance(v, float) else v for k, v in w.items()} for w in r.worst
        ],
        "unresolved": bool(r.unresolved),
        "kinks": r.kinks,
        "refined": r.refined,
    }
    if r.reason:
        doc["reason"] = r.reason
    if r.method is not None:
        doc["method"] = r.method
    if r.largest is not None:
        doc["largest_error"] = {k: _num(v) if isinstance(v, float) else v
                                for k, v in r.largest.items()}  # fmt: skip
    if r.nonfinite:
        doc["nonfinite"] = r.nonfinite
    if r.kinks_unchecked:
        doc["kinks_unchecked"] = r.kinks_unchecked
    if r.kinks_left_out:
        doc["kinks_left_out"] = r.kinks_left_out
    if r.ties_unverified:
        doc["ties_unverified"] = r.ties_unverified
    if r.kinks_chained:
        doc["kinks_chained"] = r.kinks_chained
    if r.refined:
        doc["refined_halvings"] = r.refined_halvings
    if r.held_at:  # below the atol, held to their own round-off (its note says why)
        doc["held_below_atol"] = len(r.held_at)
    # the same keys in every mode: null where no coordinate was differenced (a probe's
    # directions: a script reading .forward_passes broke there only, outside test t34b F5)
    info = r.numerics
    doc.update(
        colors=None if info is None else info.colors,
        forward_passes=None if info is None else info.forward_passes,
        coloring=None if info is None else info.coloring,
        incremental=None if info is None else info.incremental,
    )
    if r.roundoff is not None:
        doc["float32_roundoff"] = r.roundoff
        doc["float32_roundoff_source"] = r.roundoff_source
    if r.intermediate:
        doc["intermediate"] = True
    return doc


def check_doc(
    spec: Spec,
    report: CheckReport,
    comp: Computation | None = None,
    numeric: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The check document; with ``comp`` and ``numeric`` (``--values``) the compute keys too."""
    doc = {
        **header(spec),
        "passed": report.passed,
        "method": report.method,
        "eps": report.eps,
        "atol": report.atol,
        "rtol": report.rtol,
        "mode": report.mode,
        "notes": list(report.notes),
        "results": {n: result_doc(r) for n, r in report.results.items()},
        "contract": [dataclasses.asdict(f) for f in report.contract],
        "cost": {"estimated_seconds": _seconds(report.estimated_seconds),
                 "counted_seconds": _seconds(report.counted_seconds)},
    }  # fmt: skip
    if report.not_checked:
        doc["not_checked"] = list(report.not_checked)
    if report.rules_unchecked:
        doc["tie_rules_unchecked"] = report.rules_unchecked
    if report.builtin:
        doc["builtin"] = {
            n: {"max_abs_error": _num(r.max_abs_error), "max_rel_error": _num(r.max_rel_error),
                "passed": r.passed}
            for n, r in report.builtin.items()
        }  # fmt: skip
    if report.forward is not None:
        doc["forward"] = result_doc(report.forward)
        # its "analytic" and "numeric" are the two forwards' outputs (no finite difference is
        # involved): named for what they are too (t18 N2)
        doc["forward"]["yours"] = doc["forward"]["analytic"]
        doc["forward"]["builtin"] = doc["forward"]["numeric"]
        doc["forward"]["at"] = "drawn" if report.forward_drawn else "spec"
        if report.forward_drawn:
            doc["forward"]["drawn"] = list(report.forward_drawn)
    if report.backward is not None:
        doc["backward"] = {
            "at": "drawn", "drawn": list(report.backward.drawn), "passed": report.backward.passed,
            "results": {
                n: {"max_abs_error": _num(r.max_abs_error), "max_rel_error": _num(r.max_rel_error),
                    "worst_index": list(r.worst_index), "passed": r.passed}
                for n, r in report.backward.results.items()
            },
        }  # fmt: skip
    if comp is not None and numeric is not None:
        doc.update({k: v for k, v in compute_doc(spec, comp).items() if k not in doc})
        doc["numeric"] = {n: array_doc(g) for n, g in numeric.items()}
    return doc


def sweep_doc(
    spec: Spec, method: str, rows: list[dict[str, Any]], best: float, wrong: list[str],
    report: CheckReport,
) -> dict[str, Any]:
    """The sweep, and the check at the default step beside it: ``passed`` needs both."""
    passed = report.passed and not wrong
    return {**header(spec), "passed": passed, "method": method, "best_eps": best,
            "wrong_at_every_step": wrong, "check": check_doc(spec, report),
            "sweep": [_finite_row(r) for r in rows]}  # fmt: skip


def _finite_row(row: dict[str, Any]) -> dict[str, Any]:
    """A sweep row for JSON: an infinite error (a NaN or inf gradient) is null."""
    errors = {n: _num(e) for n, e in row["errors"].items()}
    return {**row, "error": _num(row["error"]), "errors": errors}


def layers_doc() -> dict[str, Any]:
    def tensor(t: TensorInfo) -> dict[str, Any]:
        omitted = "zeros" if t.optional else "left out" if t.absent_ok else None
        return {"name": t.name, "shape": list(t.axes), "role": t.role, "doc": t.doc,
                "omitted": omitted}  # fmt: skip

    return {
        name: {
            "formula": layer.summary,
            "tensors": [tensor(t) for t in layer.tensors],
            "output": tensor(layer.output),
            "options": {n: {"default": d, "help": h} for n, d, h in option_table(layer.options)},
            "intermediates": list(layer.intermediates),
        }
        for name, layer in REGISTRY.items()
    }


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def npz_bytes(spec: Spec, comp: Computation, numeric: dict[str, np.ndarray] | None = None) -> bytes:
    """output, grad_output, every input tensor, d<name> per gradient, the intermediates and
    theirs (attention's Q ... A, dQ ... dA), numeric_d<name> for check."""
    entries = [("output", comp.output, "the layer's output"),
               ("grad_output", spec.grad_output, "the upstream gradient"),
               *((n, a, f"the tensor {n}") for n, a in spec.tensors.items()),
               *(("d" + n, g, f"the gradient of {n}") for n, g in comp.gradients.items()),
               # the values compute only shows (Layer.shown: batchnorm's mu) are no answers:
               # an answer file holding them would be refused by check --grads
               *((n, a, f"the intermediate {n}") for n, a in comp.intermediates.items()
                 if n.removeprefix("d") in spec.layer.intermediates),
               *(("numeric_d" + n, g, f"the numerical gradient of {n}")
                 for n, g in (numeric or {}).items())]  # fmt: skip
    arrays: dict[str, Any] = {}
    what: dict[str, str] = {}
    for name, array, said in entries:
        if name in arrays:  # a custom layer's tensor dx beside x: one would replace the other
            raise OptionError(
                f"the archive would hold two arrays named {name} ({what[name]} and {said}); "
                f"rename the tensor, or write {mention('format', 'json')}",
                param="output",
            )
        arrays[name], what[name] = array, said
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def init_template(layer: Layer) -> str:
    """A commented YAML spec for ``layer``, equal to its embedded default; every option is
    listed (commented out) with its default and meaning."""
    lines = [
        f"# gradcli spec for {layer.name}: {layer.summary}",
        f"# run: gradcli check {layer.name} THIS_FILE.yaml",
        f"layer: {layer.name}",
        "dtype: float64          # float64 or float32",
        "seed: 0                 # seeds generated tensors and the default grad_output",
    ]
    table = option_table(layer.options)
    if table:
        lines.append("options:                # layer hyper-parameters; the defaults are shown")
        for n, d, h in table:
            lines += _commented(f"{n}: {_yaml(d)}", n, h)
    else:
        lines.append("options: {}             # this layer has no hyper-parameters")
    lines += [
        "tensors:",
        "  # each tensor: a .npy path (relative to this file), file.npz:key, a number,",
        "  # a nested list, or a generated one:",
        "  # {shape: [...], init: normal|uniform|zeros|ones|arange, scale: 1}",
    ]
    if any(t.role == "index" for t in layer.tensors):
        lines.append("  # labels and indices (integers, no gradient): {shape: [...], init: labels}")
    for t in layer.tensors:
        # (indices name no axes of their own: all of theirs are the batch's, any shape)
        shape = t.shape_str if t.axes or t.role != "index" else "(any shape)"
        if t.axes and t.name in layer.default_shapes:  # the batch axes the default gives it
            shape = _batched(t.axes, len(layer.default_shapes[t.name]) - len(t.axes), shape)
        note = f"{shape} {t.doc}" + ("; may be omitted (zeros)" if t.optional else "")
        note += "; no gradient" if not t.differentiable else ""
        init = "labels" if t.role == "index" else "normal"
        if t.name in layer.default_shapes:
            shape = list(layer.default_shapes[t.name])
            lines.append(f"  {t.name}: {{shape: {shape}, init: {init}}}  # {note}")
        else:
            lines += _commented(f"{t.name}: {{shape: {_example_shape(layer, t)}, init: {init}}}",
                                t.name, note)  # fmt: skip
    if layer.output_shape(layer.default_shapes, layer.make_options({})) == ():
        lines += [
            f"# upstream gradient dL/d{layer.output.name}: the output is a loss (a scalar),",
            "# so it is 1 unless given",
            "grad_output: 1.0",
        ]
        return "\n".join(lines) + "\n"
    o = layer.output
    shape = _batched(o.axes, len(layer.output_shape(layer.default_shapes,
                                                    layer.make_options({}))) - len(o.axes),
                     o.shape_str)  # fmt: skip
    lines += [
        f"# upstream gradient dL/d{o.name}, shape {shape};",
        "# without a shape it takes the output's",
        "grad_output: {init: normal}",
    ]
    return "\n".join(lines) + "\n"


def _batched(axes: tuple[str, ...], lead: int, plain: str) -> str:
    """A shape comment with the leading batch axes the default spec gives (``(N, D)`` beside
    ``shape: [3, 4]``, where ``(D,)`` alone, one example's, read as a contradiction, and a
    grad_output shaped as the comment said was refused: outside test t68c F2); ``plain``
    where there are none."""
    if lead <= 0 or not axes:
        return plain
    batch = ["N"] if lead == 1 else [f"N{k + 1}" for k in range(lead)]
    return "(" + ", ".join((*batch, *axes)) + ")"


def _example_shape(layer: Layer, t: Any) -> str:
    """A shape for an optional tensor the default spec omits that runs once uncommented: each
    axis as long as the default tensors' axis of its name, a free one (an output projection's
    d_out) 3 long ('[...]' was no shape: outside test t39a N2); '[...]' for a tensor whose
    axes depend on the shapes given (none named)."""
    if not t.axes:
        return "[...]"
    sizes: dict[str, int] = {}
    for other in layer.tensors:
        shape = layer.default_shapes.get(other.name)
        if shape is not None and len(shape) == len(other.axes):
            sizes.update({a: int(n) for a, n in zip(other.axes, shape, strict=True)})
    return str([sizes.get(a, 3) for a in t.axes])


def _commented(entry: str, name: str, meaning: str) -> list[str]:
    """A commented-out YAML ``entry`` with its ``meaning`` beside it, continued on comment
    lines of its own where the two pass 80 columns: uncommenting the entry's line leaves valid
    YAML (a folded tail read '# # step between windows'), and it is the one line that starts
    with the key (a meaning above it, '# padding: zeros around X', was uncommented first and
    was no YAML: outside test t38a N8)."""
    del name  # the entry names it
    return textwrap.wrap(meaning, 80, initial_indent=f"  # {entry}  # ",
                         subsequent_indent="  #     ", break_on_hyphens=False)  # fmt: skip


def _yaml(value: Any) -> str:
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )
