"""Checks that only a user's implementation needs: its forward against ours, and whether its
forward survives the complex step."""

from __future__ import annotations

import numpy as np

from gradcli.checking.compare import TensorResult, compare
from gradcli.checking.compute import Computation
from gradcli.errors import OptionError, mention
from gradcli.inputs.spec import Spec
from gradcli.layers import REGISTRY
from gradcli.numeric.engine import Engine


def forward_against_builtin(spec: Spec, comp: Computation) -> TensorResult | None:
    """--impl of a built-in layer: the user's forward against ours on the same tensors."""
    builtin = REGISTRY.get(spec.layer.name)
    if spec.layer.broadcasts or builtin is None:
        return None
    if spec.layer.reference is not None:  # theirs draws its own mask: its expected output
        ours = spec.layer.reference(spec.tensors, spec.options, np.asarray(comp.output))
    else:
        ours, _ = builtin.forward(spec.tensors, spec.options)
    if np.shape(ours) != np.shape(comp.output):
        raise OptionError(
            f"your forward returns shape {list(np.shape(comp.output))}, the built-in "
            f"{builtin.name} returns {list(np.shape(ours))}",
            param="impl",
        )
    scale = float(np.max(np.abs(ours), initial=0.0)) or 1.0
    eps = float(np.finfo(spec.dtype).eps)  # a numpy float32 would not serialize to JSON
    return compare(spec.output_info.name, comp.output, ours, 64 * eps * scale, 64 * eps)


def complex_safe(spec: Spec, method: str, engine: Engine | None = None) -> None:
    """A user's forward may drop or mangle the imaginary part (abs, max, real casts): before
    the complex step is trusted on one, compare it with central differences on a few
    coordinates (``engine``: a complex-step engine already built, else one is). Built-in
    layers and other methods pass."""
    if spec.layer.broadcasts or method != "complex":
        return
    if engine is None:
        engine = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output, method=method)
    central = Engine(spec.layer, spec.tensors, spec.options, spec.grad_output)
    rng = np.random.default_rng(0)
    for name, a in spec.tensors.items():
        if name in spec.layer.constants(engine.shapes, spec.options):
            continue
        picks = rng.choice(a.size, size=min(3, a.size), replace=False)
        c = engine.gradient(name, coords=picks)[0].ravel()[picks]
        r = central.gradient(name, coords=picks)[0].ravel()[picks]
        bad = np.abs(c - r) > 1e-5 * np.maximum(np.abs(r), 1.0)
        if bad.any():  # a central difference across a kink (relu at 0) is no evidence
            bad &= ~_at_kink(spec, name, picks, c)
        if np.any(bad):
            j = int(np.argmax(np.where(bad, np.abs(c - r), -1.0)))
            raise OptionError(
                f"your forward is not complex-safe: the complex step and central differences "
                f"disagree on d{name} (flat index {int(picks[j])}: {c[j]:.6g} vs {r[j]:.6g}); "
                f"use another {mention('method')}",
                param="method",
            )


def _at_kink(spec: Spec, name: str, picks: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Which ``picks`` sit at a kink, with the complex step's ``c`` one of the slopes there:
    the forward and backward differences disagree and ``c`` lies between them (relu's x = 0
    reads 0.5 centrally, 1 or 0 on each side). A forward that drops the imaginary part reads
    0 away from kinks, where the two sides agree."""
    side = {
        m: Engine(spec.layer, spec.tensors, spec.options, spec.grad_output, method=m)
        .gradient(name, coords=picks)[0].ravel()[picks]
        for m in ("forward", "backward")
    }  # fmt: skip
    lo = np.minimum(side["forward"], side["backward"])
    hi = np.maximum(side["forward"], side["backward"])
    tol = 1e-5 * np.maximum(np.abs(hi), 1.0)
    return (hi - lo > tol) & (c >= lo - tol) & (c <= hi + tol)
