"""--max-memory, checked from the shapes and the layer's declared working arrays before the
first forward of a check (the engine's own measurement comes only after one has run)."""

from __future__ import annotations

from gradcli.errors import OptionError, mention
from gradcli.inputs.spec import Spec
from gradcli.layers import REGISTRY


def numeric_bytes(spec: Spec, method: str) -> int:
    """Bytes the numerical side needs at the least, one perturbed copy at a time: its float64
    copies of the tensors and the upstream gradient, and in the method's dtype (complex128 for
    the complex step: twice the bytes) the forward's working arrays and output twice (the
    engine's point, kept, and one probe copy) and two copies of the largest tensor."""
    ours = spec.layer if spec.layer.broadcasts else REGISTRY.get(spec.layer.name)
    working = ours.working(spec.shapes, spec.options) if ours and ours.working else 0
    sizes = [a.size for a in spec.tensors.values()]
    out = spec.grad_output.size
    item = 16 if method == "complex" else 8
    return 8 * (sum(sizes) + out) + item * (2 * (working + out) + 2 * max(sizes))


def require(spec: Spec, method: str, max_memory: int) -> None:
    """Refuse, before anything runs, a check whose single perturbed forward would not fit."""
    need = numeric_bytes(spec, method)
    if need > max_memory:
        raise OptionError(
            f"the numerical check needs about {need / 2**20:,.0f} MB for one perturbed forward "
            f"pass ({method} step), more than {mention('max_memory', round(max_memory / 2**20))} "
            "MB",
            param="max_memory",
        )
