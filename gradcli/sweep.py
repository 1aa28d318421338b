"""`check --sweep`: the numerical error against the step, to see the truncation and round-off
regimes and the best step for a spec."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcli.check import compute
from gradcli.numeric import Engine
from gradcli.sampling import SWEEP_STEPS
from gradcli.spec import Spec


def run_sweep(
    spec: Spec, method: str = "central", coloring: bool = True
) -> tuple[list[dict[str, Any]], float]:
    """Error against step: [{"eps", "error", "errors": {name: err}, "regime"}], best step.
    error = max over tensors of max |a - n| / max |a| (a normalized error, robust to zeros)."""
    comp = compute(spec)
    rows = []
    for eps in SWEEP_STEPS:
        engine = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output, method=method,
                        eps=eps)  # fmt: skip
        errors = {}
        for name in spec.tensors:
            a = np.asarray(comp.gradients[name], dtype=np.float64)
            n = engine.gradient(name, coloring=coloring)[0]
            errors[name] = float(np.max(np.abs(a - n))) / (float(np.max(np.abs(a))) or 1.0)
        rows.append({"eps": eps, "error": max(errors.values()), "errors": errors})
    best = min(range(len(rows)), key=lambda i: rows[i]["error"])
    for i, row in enumerate(rows):
        row["regime"] = "best" if i == best else "truncation" if i < best else "round-off"
    return rows, rows[best]["eps"]
