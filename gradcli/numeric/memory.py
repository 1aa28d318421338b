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
from typing import Any

from gradcli.errors import OptionError, mention
from gradcli.inputs.spec import Spec
from gradcli.layers import REGISTRY
from gradcli.numeric.methods import MIRRORS, get_method
from gradcli.user import allocated

# float64 arrays of a tensor's size the gradient's loop holds beside its chunk of copies: the
# steps, the sums of the differences, their round-off twice, a flat view's copy (the gradient
# and its round-off per element are the results, counted apart: they were counted twice)
GRADIENT_ARRAYS = 5
# float64 (or int64) arrays of the output's size the gradient's loop makes of one perturbed
# pass's differences: the difference, its product with g, its owners (a footprint's check
# too: |y - y0|, the owners): a relu of 60,000 elements exceeded its bound by 2% without them
ATTRIBUTION_ARRAYS = 4
# ... the comparison's temporaries, in chunks of at most COMPARE_CHUNK elements (a dozen;
# measured 8.4 on relu, conv2d and maxpool2d)
COMPARE_ARRAYS = 9
COMPARE_CHUNK = 2**18
# ... the kink map of a layer that declares kinks makes of its largest tensor: the stencil's
# steps, and the layer's own (maxpool2d's padded X, steps and starts, each window's top,
# second and argmax, the mask: measured 6.2 arrays; relu's 3.6)
KINK_ARRAYS = 7
# arrays of every coordinate under test (float64 or int64) the search for ties no coordinate
# sees holds (numeric/pieces.py), for a layer not built in: its values, steps, tensors,
# analytical values and floors, their order and runs (measured 12 on a user's lstm_step and
# embedding)
PIECES_ARRAYS = 13


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


def _forward_working(spec: Spec) -> int | None:
    """The elements one forward call of the layer allocates, where it declares them apart
    from its backward's (conv's windows: its backward's per-tap products, counted in each
    perturbed pass and as the engine's cache, had its check's need at 1.8x its peak)."""
    ours = spec.layer if spec.layer.broadcasts else REGISTRY.get(spec.layer.name)
    if ours is None or ours.forward_working is None:
        return None
    return ours.forward_working(spec.shapes, spec.options)


def fixed_bytes(spec: Spec, method: str = "central") -> int:
    """Bytes a check of ``spec`` by ``method`` holds beside the engine's perturbed copies, at
    its fullest: the most its stages, which run one after another, hold at once (``stages``),
    the one perturbed forward pass the copies take at the least (``copy_bytes``) set apart."""
    loop, others = _stages(spec, method)
    return max(loop, others - copy_bytes(spec, method))


def _stages(spec: Spec, method: str = "central") -> tuple[int, int]:
    """(the bytes a tensor's gradient loop holds beside its copies, the most any other stage
    holds). Held through the check: the tensors and the upstream gradient as loaded (in the
    spec's dtype; labels as int64), the analytical output and gradients. Before the engine
    exists, the backward's contract (three sets of gradients, the second upstream gradient and
    its sum with the first, a forward's output and cache). From the engine on, its float64
    copies where the spec's dtype is not float64, its |g * y| per output and the forward's
    cache (at most the working arrays), and then in turn: the kink map, each tensor's gradient
    loop (the tensors before it holding their numerical gradient and round-off per element),
    the comparison's chunks and the search for ties no coordinate sees, all results held. A
    one-sided method (and the complex step) on a layer that declares no kinks takes the other
    side's gradient too, from an engine of its own beside the first (checking/kinkstage.py
    _mirror): two points' caches and two gradient loops. Central differences on a layer
    whose kinks are not known hold the output at the point too (twice it), and three more
    arrays per coordinate of the tensor differenced (numeric/bends.py's screen)."""
    floating, labels, out, working = _sizes(spec)
    forward = _forward_working(spec)
    t, item, largest = sum(floating), spec.grad_output.dtype.itemsize, max(floating)
    held = item * (t + out) + 8 * labels  # as loaded
    held += 8 * (out + t)  # the analytical output and gradients
    contract = 8 * (3 * t + 3 * out + working)
    cache = working if forward is None else forward
    engine = 8 * (out + cache) + (0 if item == 8 else 8 * (t + out))
    engines = 2 if method in MIRRORS and spec.layer.kinks is None else 1
    screened = (method in ("central", "central4") and spec.layer.kinks is None
                and not spec.layer.smooth and REGISTRY.get(spec.layer.name) is not spec.layer)
    engine += 8 * out * screened
    per = GRADIENT_ARRAYS + 3 * screened
    loop = engines * (engine + 8 * max(2 * (t - f) + per * f for f in floating))
    after = [2 * t + COMPARE_ARRAYS * min(largest, COMPARE_CHUNK)]
    if REGISTRY.get(spec.layer.name) is not spec.layer:  # a built-in's ties are not searched
        after.append(2 * t + PIECES_ARRAYS * t)
    stages = [contract, engine + 8 * max(after)]
    if spec.layer.kinks is not None:
        stages.append(engine + 8 * KINK_ARRAYS * largest)
    return held + loop, held + max(stages)


def copy_bytes(spec: Spec, method: str) -> int:
    """Bytes of one perturbed forward pass at the least, in the method's dtype (complex128
    for the complex step: twice the bytes): the forward's working arrays (the engine's point,
    kept, is a fixed array), and for each row of the stencil (the unmoved point's too, where it
    has one) an output and two copies of the largest tensor: a tensor of one color (relu's x)
    is moved whole in every row; and what the gradient's loop makes of the pass's differences
    per output (ATTRIBUTION_ARRAYS: the difference, its product with g, the owners)."""
    floating, _, out, working = _sizes(spec)
    forward = _forward_working(spec)
    m = get_method(method)
    item = 16 if m.name == "complex" else 8
    rows = len(m.offsets)
    # each row's copy runs its own forward (a stacked call: its arrays per copy), where the
    # layer declares its forward's arrays; never less than its working arrays once
    forwards = working if forward is None else max(working, rows * forward)
    pass_ = item * (forwards + rows * (out + 2 * max(floating)))
    return pass_ + 8 * ATTRIBUTION_ARRAYS * out


def copies(spec: Spec, max_memory: int, method: str = "central") -> int:
    """What is left of ``max_memory`` for the engine's perturbed copies (at least 1 byte: a
    check that fits nothing was refused by ``require``)."""
    return max(1, max_memory - fixed_bytes(spec, method))


def require(spec: Spec, method: str, max_memory: int, one: int | None = None,
            yours: int = 0) -> None:  # fmt: skip
    """Refuse, before the check's first forward, a check whose fixed arrays and one perturbed
    forward pass would not fit ``max_memory``; ``one``: that pass's bytes as the engine
    measured them at the point (its first forward), else counted from the shapes
    (``copy_bytes``) and, for a user's forward, from what its first call allocated (learning
    its output's shape: ``Layer.first_call``), which then decides before a second call;
    ``yours``: what a user's forward allocated in the call measured, said when it is most of
    the pass."""
    fixed = fixed_bytes(spec, method)
    theirs = (f", {_mb(yours)} MB of it allocated by your forward at the spec's point"
              if one is not None and 2 * yours >= one else "")  # fmt: skip
    if one is None:
        one = copy_bytes(spec, method)
        reading = spec.layer.first_call() if spec.layer.first_call else None
        seen, held = reading or (0, 0)
        # StackedForward's smallest_bytes, from the first call's reading: the refusal the
        # engine's call would make is made before a second call
        first = allocated.pass_bytes(seen, held) + 2 * 8 * max(_sizes(spec)[0])
        if reading is not None and first > one:
            one = first
            theirs = (f", {_mb(seen)} MB of it allocated by your forward in its first call "
                      "(at the spec's shapes)")  # fmt: skip
            if 2 * seen < one:  # most of the pass is three times what it keeps
                theirs += f", which kept {_mb(held)} MB in its output and cache"
    need = fixed + one
    if need > max_memory:
        raise OptionError(
            f"the check needs about {_mb(need)} MB ({_mb(fixed)} MB of arrays beside the "
            f"perturbed copies, {_mb(one)} MB for one perturbed forward pass{theirs}, "
            f"{method} step), "
            f"more than {mention('max_memory', round(max_memory / 2**20))} MB: raise "
            f"{mention('max_memory')} to {math.ceil(need / 2**20)} or more",
            param="max_memory",
        )


def require_measured(spec: Spec, method: str, max_memory: int, engine: Any) -> None:
    """``require`` again once the engine's forward at the point has run, for a forward of the
    user's, which declares no working arrays: one perturbed copy as that call measured it, what
    the forward allocated in it among them (``engine``: a StackedForward), must fit too (a
    built-in's were counted, and the budget the refusal named must be enough)."""
    if spec.layer.broadcasts:
        return
    counted = copy_bytes(spec, method) if declared(spec) else 0
    one = max(engine.smallest_bytes, counted)
    require(spec, method, max_memory, one=one, yours=engine.user_bytes)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f}"
