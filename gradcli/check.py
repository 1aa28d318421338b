"""Compute the analytical gradients and compare them with numerical ones.

The report is data (dataclasses), never printed here; a mismatch is a result, not an exception.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcli.errors import OptionError
from gradcli.numeric import DEFAULT_MAX_MEMORY, default_eps, numerical_gradients
from gradcli.spec import Spec

# (atol, rtol) per dtype of the analytical computation; the numerical side is float64.
# float64: central differences with the default step agree to ~1e-9 relative, so one element
# off by 1e-4 relative fails. float32: the analytical side itself is only good to ~1e-6.
DEFAULT_TOLERANCES = {"float64": (1e-7, 1e-6), "float32": (1e-4, 1e-3)}


@dataclass(frozen=True)
class Computation:
    """Forward and analytical backward of one spec.

    output: the layer output; gradients: {tensor name: dL/dname}, each of that tensor's shape;
    intermediates: {name: array}, e.g. attention's Q, K, V, S, A and their gradients dQ ... dA.
    """

    output: np.ndarray
    gradients: Mapping[str, np.ndarray]
    intermediates: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class TensorResult:
    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float  # max |a - n| / max(|a|, |n|), the CS231n relative error
    worst_index: tuple[int, ...]  # the element furthest beyond its tolerance
    analytic: float
    numeric: float
    passed: bool


@dataclass(frozen=True)
class CheckReport:
    layer: str
    dtype: str
    seed: int
    method: str
    eps: float
    atol: float
    rtol: float
    results: Mapping[str, TensorResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results.values())


def compute(spec: Spec) -> Computation:
    layer = spec.layer
    output, cache = layer.forward(spec.tensors, spec.options)
    grads = layer.backward(spec.grad_output, cache)
    inter = {name: cache[name] for name in layer.intermediates}
    inter.update({"d" + n: grads[n] for n in layer.intermediates if n in grads})
    gradients = {n: np.asarray(grads[n]) for n in layer.tensor_names}
    return Computation(output=output, gradients=gradients, intermediates=inter)


def compare(
    name: str, analytic: np.ndarray, numeric: np.ndarray, atol: float, rtol: float
) -> TensorResult:
    """Element-wise pass rule |a - n| <= atol + rtol * |n|."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    err = np.abs(a - n)
    denom = np.maximum(np.abs(a), np.abs(n))
    rel = np.divide(err, denom, out=np.zeros_like(err), where=denom > 0)
    excess = err / (atol + rtol * np.abs(n))
    worst = np.unravel_index(int(np.argmax(excess)), a.shape) if a.size else ()
    return TensorResult(
        name=name,
        shape=tuple(a.shape),
        max_abs_error=float(err.max(initial=0.0)),
        max_rel_error=float(rel.max(initial=0.0)),
        worst_index=tuple(int(i) for i in worst),
        analytic=float(a[worst]),
        numeric=float(n[worst]),
        passed=bool(np.all(err <= atol + rtol * np.abs(n))),
    )


def check(
    spec: Spec,
    *,
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> tuple[Computation, dict[str, np.ndarray], CheckReport]:
    """(analytical computation, numerical gradients, report) for every tensor of the spec."""
    d_atol, d_rtol = DEFAULT_TOLERANCES[spec.dtype]
    atol = d_atol if atol is None else atol
    rtol = d_rtol if rtol is None else rtol
    eps = default_eps() if eps is None else eps
    for opt, value in (("--eps", eps), ("--atol", atol), ("--rtol", rtol)):
        if not math.isfinite(value) or value < 0 or (opt == "--eps" and value == 0):
            sign = "positive" if opt == "--eps" else "non-negative"
            raise OptionError(f"expected a finite {sign} number, got {value}", source=opt)
    comp = compute(spec)
    numeric = numerical_gradients(
        spec.layer, spec.tensors, spec.options, spec.grad_output, eps=eps, max_memory=max_memory
    )
    results = {
        name: compare(name, comp.gradients[name], numeric[name], atol, rtol)
        for name in spec.layer.tensor_names
    }
    report = CheckReport(
        layer=spec.layer.name,
        dtype=spec.dtype,
        seed=spec.seed,
        method="central",
        eps=eps,
        atol=atol,
        rtol=rtol,
        results=results,
    )
    return comp, numeric, report


def options_dict(options: Any) -> dict[str, Any]:
    return dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {}
