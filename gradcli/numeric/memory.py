"""--max-memory, a bound on the check, counted from the shapes before its first forward (the
engine's own measurement comes only after one has run).

A check holds two kinds of arrays: its fixed ones, whose sizes follow from the shapes alone
(the tensors as loaded, the analytical side, the backward's contract, each tensor's numerical
gradient and its round-off, the comparison), and the engine's perturbed copies, stacked in
chunks of any size. The fixed ones are counted here; the copies get what is left of the
budget (``copies``), and a check where even one perturbed forward pass does not fit beside
them is refused before anything runs (``require``).
"""

from __future__ import annotations

import math

from gradcli.errors import OptionError, mention
from gradcli.inputs.spec import Spec
from gradcli.layers import REGISTRY
from gradcli.numeric.methods import get_method

# float64 arrays of a tensor's size that the numerical side holds for its largest tensor at
# once beside the copies: the steps, the sums of the differences, their round-off twice, the
# gradient, its round-off and the noise per element, a flat view's copy
GRADIENT_ARRAYS = 8


def declared(spec: Spec) -> bool:
    """Whether the shapes tell a perturbed forward pass's bytes (the layer declares its working
    arrays); else only the engine's forward at the point measures them."""
    ours = spec.layer if spec.layer.broadcasts else REGISTRY.get(spec.layer.name)
    return bool(ours and ours.working)


def _sizes(spec: Spec) -> tuple[list[int], int, int, int]:
    """(the floating tensors' sizes, the other tensors' (labels, indices), the output's, the
    layer's declared working elements)."""
    ours = spec.layer if spec.layer.broadcasts else REGISTRY.get(spec.layer.name)
    working = ours.working(spec.shapes, spec.options) if ours and ours.working else 0
    floating = [a.size for a in spec.tensors.values() if a.dtype.kind in "fc"]
    others = sum(a.size for a in spec.tensors.values() if a.dtype.kind not in "fc")
    return floating or [0], others, spec.grad_output.size, working


def fixed_bytes(spec: Spec) -> int:
    """Bytes a check of ``spec`` holds beside the engine's perturbed copies, at its fullest.

    Held through the check: the tensors and the upstream gradient as loaded (in the spec's
    dtype; labels as int64), the analytical output and gradients, and per tensor its numerical
    gradient and round-off. On top, the larger of the backward's contract (three sets of
    gradients, the second upstream gradient and its sum with the first, a forward's output and
    cache), which runs before the engine exists, and the engine (its float64 copies where the
    spec's dtype is not float64, its |g * y| per output, the forward's cache: at most the
    working arrays) with one tensor's numerical gradient (GRADIENT_ARRAYS of the largest)."""
    floating, others, out, working = _sizes(spec)
    t, item = sum(floating), spec.grad_output.dtype.itemsize
    held = item * (t + out) + 8 * others  # as loaded
    held += 8 * (out + t)  # the analytical output and gradients
    held += 16 * t  # each tensor's numerical gradient and its round-off per element
    contract = 8 * (3 * t + 3 * out + working)  # before the engine exists
    engine = 8 * (out + working) + (0 if item == 8 else 8 * (t + out))
    return held + max(contract, engine + 8 * GRADIENT_ARRAYS * max(floating))


def copy_bytes(spec: Spec, method: str) -> int:
    """Bytes of one perturbed forward pass at the least, in the method's dtype (complex128
    for the complex step: twice the bytes): the forward's working arrays (the engine's point,
    kept, is a fixed array), and for each row of the stencil (the unmoved point's too, where it
    has one) an output and two copies of the largest tensor: a tensor of one color (relu's x)
    is moved whole in every row."""
    floating, _, out, working = _sizes(spec)
    m = get_method(method)
    item = 16 if m.name == "complex" else 8
    return item * (working + len(m.offsets) * (out + 2 * max(floating)))


def copies(spec: Spec, max_memory: int) -> int:
    """What is left of ``max_memory`` for the engine's perturbed copies (at least 1 byte: a
    check that fits nothing was refused by ``require``)."""
    return max(1, max_memory - fixed_bytes(spec))


def require(spec: Spec, method: str, max_memory: int, one: int | None = None) -> None:
    """Refuse, before anything runs, a check whose fixed arrays and one perturbed forward pass
    would not fit ``max_memory``; ``one``: that pass's bytes as the engine measured them at the
    point (its first forward), else counted from the shapes (``copy_bytes``)."""
    fixed = fixed_bytes(spec)
    one = copy_bytes(spec, method) if one is None else one
    need = fixed + one
    if need > max_memory:
        raise OptionError(
            f"the check needs about {_mb(need)} MB ({_mb(fixed)} MB of arrays beside the "
            f"perturbed copies, {_mb(one)} MB for one perturbed forward pass, {method} step), "
            f"more than {mention('max_memory', round(max_memory / 2**20))} MB: raise "
            f"{mention('max_memory')} to {math.ceil(need / 2**20)} or more",
            param="max_memory",
        )


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f}"
