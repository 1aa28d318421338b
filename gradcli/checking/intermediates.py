"""Checking the gradient of an intermediate (attention's dQ, dK, dV, dS, dA) against a numerical
one, for a student who derived, say, dS by hand.

The layer declares the "tail" of its forward from each intermediate (everything upstream held
fixed); a one-tensor ``Layer`` whose tensor is the intermediate and whose forward is that tail
goes to the ordinary ``Engine``, so every method, mode, coloring and report works unchanged.
Only answers the user supplies (``--grads``, or keys an ``--impl`` backward returns) are
checked: the default check stays what it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gradcli.checking import diagnose
from gradcli.inputs.spec import Spec
from gradcli.layers import REGISTRY, Layer
from gradcli.layers.base import float64_copies
from gradcli.numeric.engine import Engine


def source(spec: Spec) -> Layer | None:
    """The built-in layer whose tails apply: with --impl a user's forward was already checked
    against the built-in one, so the built-in's cache stands in for the user's upstream. A
    network's own chain (``Network.layer``) is its tails' source whatever its layers are: one
    layer of your own in it refused every boundary answer (``dact.out``), `compute net -o`'s
    archive too (outside test t58b F1)."""
    own = spec.layer.broadcasts or _network(spec.layer)
    layer = spec.layer if own else REGISTRY.get(spec.layer.name)
    return layer if layer is not None and layer.tail is not None else None


def _network(layer: Layer) -> bool:
    """Whether ``layer`` is a network's chain (layers/chain.py): its tail runs its own layers,
    yours included, from a boundary on."""
    from gradcli.layers.chain import Network  # LAZY: only a network's

    return isinstance(getattr(layer.tail, "__self__", None), Network)


def _cache(layer: Layer, spec: Spec) -> dict[str, Any]:
    # float64, like the engine's copies of the tensors: the reference is always float64
    t64 = float64_copies(spec.tensors)
    return layer.forward(t64, spec.options)[1]


def shapes(spec: Spec) -> dict[str, tuple[int, ...]]:
    """The shape of every checkable intermediate of this spec (none for most layers)."""
    layer = source(spec)
    if layer is None:
        return {}
    cache = _cache(layer, spec)
    return {n: tuple(np.shape(cache[n])) for n in layer.intermediates}


def from_impl(spec: Spec, comp: Any) -> dict[str, np.ndarray]:
    """The intermediates' gradients a user's backward returned beside its tensors' ones (their
    shapes were checked against the built-in's when it returned them)."""
    if spec.layer.broadcasts or _network(spec.layer) or source(spec) is None:
        return {}  # the built-in's own, or a network's chain: not under test
    inter = comp.intermediates
    return {n: inter["d" + n] for n in spec.layer.intermediates if "d" + n in inter}


def engines(spec: Spec, names: tuple[str, ...], **engine_kw: Any) -> dict[str, Engine]:
    """An Engine per intermediate in ``names``, on the layer's tail from it."""
    layer = source(spec)
    if layer is None or not names:
        return {}
    cache = _cache(layer, spec)
    return {n: _engine(layer, n, cache, spec, engine_kw) for n in names}


def _engine(
    layer: Layer, name: str, cache: dict[str, Any], spec: Spec, engine_kw: dict[str, Any]
) -> Engine:
    info, fp = layer.tail_info(name, spec.shapes, spec.options)  # type: ignore[misc]
    arrays = {k: v for k, v in cache.items() if isinstance(v, np.ndarray)}  # sizes the chunks
    tail = layer.tail

    def forward(t: Mapping[str, np.ndarray], options: Any = None) -> tuple[np.ndarray, dict]:
        return tail(name, t[name], cache, spec.options), arrays  # type: ignore[misc]

    # a masked score is -inf, and the engine's steps must be finite: any finite stand-in does,
    # since the tail re-applies the mask (the numerical dS is then exactly 0 there)
    start = np.where(np.isfinite(cache[name]), cache[name], 0.0)
    out_shape = np.shape(forward({name: start})[0])
    derived = Layer(
        name=f"{layer.name} from {name}",
        summary=f"the forward of {layer.name} from its intermediate {name} on",
        tensors=(info,),
        output=spec.output_info,
        forward=forward,
        backward=lambda g, c: {},
        output_shape=lambda s, o=None: out_shape,
        default_shapes={},
        footprint=lambda n, s, o=None: fp,
        broadcasts=layer.broadcasts,  # (a network with a layer of yours: copy by copy)
    )
    return Engine(derived, {name: start}, spec.options, spec.grad_output, **engine_kw)


def builtin(comp: Any, name: str) -> np.ndarray:
    """Our analytical gradient of a tensor or an intermediate."""
    return comp.gradients[name] if name in comp.gradients else comp.intermediates["d" + name]


def context(spec: Spec, name: str) -> dict[str, Any]:
    """What the hints may use about intermediate ``name`` (only for a failing one)."""
    ctx: dict[str, Any] = {"scales": diagnose.scales(spec.layer, spec.shapes, spec.options, None)}
    layer = source(spec)
    if layer is not None and name in ("S", "A"):
        # attention's causal mask, as the forward records it: S is -inf at the masked positions
        masked = np.isneginf(_cache(layer, spec)["S"])
        if masked.any():
            ctx["masked"] = masked
    return ctx
