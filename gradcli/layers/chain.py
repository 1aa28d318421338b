"""A network is a layer too: a chain of layers (with residual blocks) behind the Layer contract.

Its tensors are the network's input and every layer's parameters, namespaced ``<name>.<tensor>``
(``conv1.W``); its forward runs the layers in order and keeps each layer's cache and the
activations between them; its backward runs in reverse, feeding each layer's input gradient to
the layer before. The activations (``<name>.out``) are its intermediates, with tails, so a
hand-derived gradient at any boundary (``dfc.out``) is checked the way attention's dS is.

Leading axes. The network's input declares every axis core, so the engine adds exactly one
probe axis in front of each tensor; inside, a parameter's probe axes are moved in front of the
batch axes its layer sees, so every layer receives what its own contract promises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import field
from typing import Any

import numpy as np

from gradcli.errors import (
    GradcliError,
    InPlaceWriteError,
    OptionError,
    ShapeError,
    SpecError,
    UserCodeError,
    in_layer,
)
from gradcli.layers import REGISTRY
from gradcli.layers.base import Layer, Shapes, TensorInfo
from gradcli.records import record


@record
class Node:
    """One layer at its place in a network."""

    index: int  # 1-based, in the order the layers run (residual blocks' layers included)
    name: str  # its parameters are "<name>.<tensor>", its output "<name>.out"
    layer: Layer
    options: Any  # resolved from the shapes it receives
    input: str  # the layer's tensor that takes the activation
    params: tuple[str, ...]  # its tensors that are network parameters
    fixed: Mapping[str, str] = field(default_factory=dict)  # its tensor -> a network input
    batch: int = 0  # leading axes of its input in front of the layer's core axes
    # per parameter: the batch axes (as ones) its probe axes need behind them; an input-role
    # parameter (an RNN step's prev_h) has its own batch axes
    pads: Mapping[str, int] = field(default_factory=dict)

    @property
    def out(self) -> str:
        return f"{self.name}.out"

    def param(self, tensor: str) -> str:
        return f"{self.name}.{tensor}"


@record
class Block:
    """A residual block: y = x + (its layers applied to x)."""

    name: str
    ops: tuple[Any, ...]  # Node | Block

    @property
    def out(self) -> str:
        return f"{self.name}.out"


def flat(ops: tuple[Any, ...]) -> list[tuple[str, Any]]:
    """The program: ("layer", Node), ("push", Block) at a block's start, ("add", Block) at its
    end, in running order."""
    out: list[tuple[str, Any]] = []
    for op in ops:
        if isinstance(op, Block):
            out += [("push", op), *flat(op.ops), ("add", op)]
        else:
            out.append(("layer", op))
    return out


def nodes(ops: tuple[Any, ...]) -> list[Node]:
    return [n for kind, n in flat(ops) if kind == "layer"]


@record
class Network:
    """The layers of a model, the name of its differentiated input and its fixed inputs
    (targets, labels), with the shapes they were built for."""

    ops: tuple[Any, ...]
    input: str
    shapes: Mapping[str, tuple[int, ...]]  # the network's tensors: input and parameters
    fixed: Mapping[str, np.ndarray]  # network inputs never differentiated (a loss's target)
    source: str | None = None  # the model file, which errors of its layers' code name

    @property
    def nodes(self) -> list[Node]:
        return nodes(self.ops)

    @property
    def program(self) -> list[tuple[str, Any]]:
        return flat(self.ops)

    def tensor_names(self) -> tuple[str, ...]:
        return (self.input, *(n.param(p) for n in self.nodes for p in n.params))

    def boundaries(self) -> list[str]:
        """Every activation's name in running order (the last is the network's output)."""
        return [op.out for kind, op in self.program if kind in ("layer", "add")]

    def _check_fixed(self, op: Node, sh: Shapes) -> None:
        """The values a layer's fixed inputs must hold (a loss's labels: classes of its input),
        checked before anything runs, as a single layer's spec checks them."""
        given = {t: self.fixed[i] for t, i in op.fixed.items() if i in self.fixed}
        if op.layer.check_values is None or not given:
            return
        tensors = {t: given.get(t, np.zeros(sh[t])) for t in sh}
        try:
            op.layer.check_values(tensors, op.options)
        except GradcliError as e:
            i = op.fixed[e.key] if e.key in op.fixed else next(iter(op.fixed.values()))
            raise SpecError(
                f"layer {op.index} {op.layer.name} {op.name!r}: {e.message}", key=f"inputs.{i}"
            ) from None

    def walk(self, shapes: Shapes) -> dict[str, tuple[int, ...]]:
        """Every activation's shape; a layer that cannot take its input's shape is a
        ShapeError naming both layers and both shapes."""
        a, prev, skips = tuple(shapes[self.input]), f"the input {self.input}", {}
        out: dict[str, tuple[int, ...]] = {}
        for kind, op in self.program:
            if kind == "push":
                skips[op.name] = (a, prev)
                continue
            if kind == "add":
                s, where = skips.pop(op.name)
                if s != a:
                    raise ShapeError(
                        f"residual block {op.name!r} adds its input {list(s)} (from {where}) to "
                        f"the output {list(a)} of {prev}; they must have the same shape",
                        key=op.name,
                    )
                out[op.out], prev = a, f"residual block {op.name!r}"
                continue
            sh = self.node_shapes(op, a, shapes)
            self._check_fixed(op, sh)
            try:
                a = tuple(op.layer.output_shape(sh, op.options))
            except (UserCodeError, InPlaceWriteError) as e:  # your forward, run for its shape
                raise in_layer(e, op.index, op.name, self.source) from e.__cause__
            except (ShapeError, OptionError) as e:
                params = ", ".join(f"{t} {list(sh[t])}" for t in op.params)
                raise ShapeError(
                    f"layer {op.index} {op.layer.name} {op.name!r}"
                    + (f" ({params})" if params else "")
                    + f" cannot take the output {list(sh[op.input])} of {prev}: {e.message}",
                    key=op.name,
                ) from None
            out[op.out], prev = a, f"layer {op.index} {op.layer.name} {op.name!r}"
        return out

    def node_shapes(self, node: Node, a: tuple[int, ...], shapes: Shapes) -> dict[str, Any]:
        sh: dict[str, Any] = {node.input: tuple(a)}
        sh |= {p: tuple(shapes[node.param(p)]) for p in node.params}
        sh |= {t: self.fixed[i].shape for t, i in node.fixed.items()}
        return sh

    # ------------------------------------------------------------------ running
    def run(
        self, start: int, a: np.ndarray, params: Mapping[str, np.ndarray],
        skips: dict[str, np.ndarray], cache: dict[str, Any] | None,
    ) -> np.ndarray:  # fmt: skip
        """The program from step ``start`` on, from activation ``a``; ``cache`` (if given)
        keeps each layer's inputs, cache and output."""
        for kind, op in self.program[start:]:
            if kind == "push":
                skips[op.name] = a
            elif kind == "add":
                a = a + skips[op.name]
            else:
                t = {op.input: a} | {p: self._lead(op, p, params) for p in op.params}
                t |= {p: self.fixed[i] for p, i in op.fixed.items()}
                try:
                    a, c = op.layer.forward(t, op.options)
                except (UserCodeError, InPlaceWriteError) as e:
                    raise in_layer(e, op.index, op.name, self.source) from e.__cause__
                a = np.asarray(a)
                if cache is not None:
                    cache["layers"][op.name] = (t, c)
            if cache is not None and kind != "push":
                cache["acts"][op.out] = a
        return a

    def _lead(self, node: Node, p: str, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """A parameter with probe axes gets its layer's batch axes (as ones) behind them."""
        v = params[node.param(p)]
        core = self.shapes[node.param(p)]
        extra = v.ndim - len(core)
        pad = node.pads.get(p, node.batch)
        if extra <= 0 or not pad:
            return v
        return v.reshape(v.shape[:extra] + (1,) * pad + tuple(core))

    def nudged(self, cache: dict[str, Any], fn: Any) -> dict[str, Any]:
        """``cache`` with ``fn`` applied to the caches of the layers without kinks, those
        their backward reads as values; a layer with kinks keeps its own (a backward may read
        its routes off its saved values: a tie nudged apart routes elsewhere)."""
        smooth = {n.name for n in self.nodes if n.layer.kinks is None and n.layer.maxima is None}
        layers = {name: (t, fn(c) if name in smooth else c)
                  for name, (t, c) in cache["layers"].items()}  # fmt: skip
        return {**cache, "layers": layers}

    def forward(self, t: Mapping[str, np.ndarray], options: Any = None) -> tuple[np.ndarray, dict]:
        cache: dict[str, Any] = {"layers": {}, "acts": {}, "skips": {}, "params": dict(t)}
        out = self.run(0, t[self.input], t, cache["skips"], cache)
        return out, cache | dict(cache["acts"])

    def backward(self, g: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
        """Every parameter's and the input's gradient, and the gradient at every boundary
        (keyed by the boundary's name; compute files it as ``d<name>.out``)."""
        grads: dict[str, np.ndarray] = {}
        to_skip: dict[str, np.ndarray] = {}
        for kind, op in reversed(self.program):
            if kind == "add":
                grads[op.out] = g
                to_skip[op.name] = g
            elif kind == "push":
                g = g + to_skip.pop(op.name)
            else:
                grads[op.out] = g
                try:
                    lg = op.layer.backward(g, cache["layers"][op.name][1])
                except (UserCodeError, InPlaceWriteError) as e:
                    raise in_layer(e, op.index, op.name, self.source) from e.__cause__
                grads |= {op.param(p): np.asarray(lg[p]) for p in op.params}
                if op.input not in lg:  # integer indices (embedding's): the chain starts here
                    return grads
                g = np.asarray(lg[op.input])
        grads[self.input] = g
        return grads

    def upstream(self, grads: Mapping[str, np.ndarray], node: Node) -> np.ndarray:
        return grads[node.out]

    def tail(self, name: str, value: np.ndarray, cache: Mapping[str, Any], options: Any) -> Any:
        """The network from boundary ``name`` on, everything upstream held at the cache."""
        start = next(i for i, (k, op) in enumerate(self.program)
                     if k != "push" and op.out == name) + 1  # fmt: skip
        return self.run(start, value, cache["params"], dict(cache["skips"]), None)

    def layer(self, name: str = "net") -> Layer:
        """This network as a Layer."""
        acts = self.walk(self.shapes)
        bounds = self.boundaries()
        inter = tuple(bounds)  # the output too: its gradient is the upstream one, answerable
        x_shape = self.shapes[self.input]
        first = self.nodes[0] if self.nodes else None
        indices = first is not None and not first.layer.tensor(first.input).differentiable
        # the network's input, its output and every boundary take the letters of the layer
        # that reads (or writes) them, as explain and the local checks say them: dX[b0, i, j, d]
        # at a conv, not generic dX[i, j, k, l] with i the batch (t59b F1)
        x_axes, x_index = _axes(x_shape), _letters(x_shape)
        if first is not None:
            own = first.layer.tensor(first.input, self.node_shapes(first, x_shape, self.shapes),
                                     first.options)  # fmt: skip
            x_axes, x_index = _own(own, x_shape)
        tensors = [TensorInfo(self.input, x_axes, x_index, "index" if indices else "input",
                              "the network's input" + (" (integer indices)" if indices else ""))]
        for n in self.nodes:
            sh = self.node_shapes(n, (1,) * len(self.shapes[self.input]), self.shapes)
            infos = {i.name: i for i in n.layer.infos(sh, n.options)}
            for p in n.params:
                i = infos.get(p)
                shape = self.shapes[n.param(p)]
                axes = i.axes if i is not None and len(i.axes) == len(shape) else _axes(shape)
                index = (i.index if i is not None and len(i.index) == len(shape)
                         else () if i is not None and not i.index  # a custom layer's: plain
                         else _letters(shape))  # fmt: skip
                role = i.role if i is not None else "weight"
                doc = f"{n.layer.name} {n.name!r}: " + (i.doc if i is not None else p)
                tensors.append(TensorInfo(n.param(p), axes, index, role, doc))
        def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
            walked = self.walk(s)
            return walked[bounds[-1]] if bounds else tuple(s[self.input])

        def working(s: Shapes, options: Any = None) -> int:
            # every activation is kept for the backward, and each layer's own working arrays
            total = sum(math.prod(v) for v in acts.values())
            for node in self.nodes:
                if node.layer.working is not None:
                    a = acts_in[node.name]
                    total += node.layer.working(self.node_shapes(node, a, self.shapes),
                                                node.options)  # fmt: skip
            return total

        acts_in: dict[str, tuple[int, ...]] = {}
        a = tuple(x_shape)
        for kind, op in self.program:
            if kind == "layer":
                acts_in[op.name] = a
            if kind != "push":
                a = acts[op.out]

        def written(n: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
            """Boundary ``n``'s axes and letters: its layer's output's (an add's are its
            block's last layer's)."""
            shape, writer = acts[n], None
            for kind, op in self.program:
                if kind == "layer":
                    writer = op
                if kind != "push" and op.out == n:
                    break
            if writer is None:
                return _axes(shape), _letters(shape)
            sh = self.node_shapes(writer, acts_in[writer.name], self.shapes)
            return _own(writer.layer.output_info(sh, writer.options), shape)

        def tail_info(n: str, s: Shapes, options: Any = None) -> tuple[TensorInfo, tuple]:
            axes, index = written(n)
            info = TensorInfo(n, axes, index, "intermediate", f"the output of {n[:-4]}")
            return info, (None,) * len(acts[n])

        out_axes, out_index = written(bounds[-1]) if bounds else (x_axes, x_index)
        return Layer(
            name=name,
            summary=" -> ".join(n.layer.name for n in self.nodes) or "identity",
            tensors=tuple(tensors),
            output=TensorInfo("out", out_axes, out_index, "output", "the network's output"),
            forward=self.forward,
            backward=self.backward,
            output_shape=output_shape,
            default_shapes=dict(self.shapes),
            intermediates=inter,
            working=working,
            broadcasts=all(n.layer.broadcasts for n in self.nodes),
            smooth=all(REGISTRY.get(n.layer.name) is n.layer and n.layer.kinks is None
                       and n.layer.maxima is None for n in self.nodes),  # fmt: skip
            builtins_only=all(REGISTRY.get(n.layer.name) is n.layer for n in self.nodes),
            nudged=self.nudged,
            tail=self.tail,
            tail_info=tail_info,
        )


def _axes(shape: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(f"d{k}" for k in range(len(shape)))


def _own(info: TensorInfo, shape: tuple[int, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A layer's axes and letters for one of its tensors at ``shape``, every axis named (the
    network's own tensors have no batch axes of their own: the engine must not read them so):
    the leading batch axes b0, b1 as a layer's own check says them; generic where they do not
    fit."""
    lead = len(shape) - len(info.index)
    if lead < 0 or len(info.axes) != len(info.index):
        return _axes(shape), _letters(shape)
    bs = tuple(f"b{k}" for k in range(lead))
    return ("batch",) * (lead == 1) + bs * (lead > 1) + info.axes, bs + info.index


def _letters(shape: tuple[int, ...]) -> tuple[str, ...]:
    return tuple("ijklmnpqrs"[k % 10] for k in range(len(shape)))
