"""A model file (``network:`` and an optional ``loss:``) -> a ``NetSpec``: the network as one
layer's ``Spec`` (its tensors: the input and every parameter, ``conv1.W``), and its layers.

Shapes are walked before anything runs: a layer that cannot take what the one before gives is
one error naming both layers and both shapes. A parameter given by its shape alone is drawn
with He's scale sqrt(2 / fan_in) from the seed; an omitted bias is zeros.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from gradcli.errors import (
    GradcliError,
    ShapeError,
    SpecError,
    TensorFileError,
    brief,
    printable,
)
from gradcli.files.reading import parse_yaml, read_spec_text
from gradcli.inputs.sources import Loader, kind, suggest
from gradcli.inputs.spec import (
    DEFAULT_MAX_ELEMENTS,
    Spec,
    load_grad_output,
    parse_dtype,
    parse_seed,
)
from gradcli.layers import REGISTRY, Layer, get_layer
from gradcli.layers.base import NoOptions, TensorInfo
from gradcli.layers.chain import Block, Network, Node
from gradcli.records import record

NET_KEYS = ("dtype", "seed", "inputs", "network", "loss", "grad_output")
ENTRY_KEYS = ("layer", "name", "tensors", "options", "impl", "input", "target", "data")
# differentiated: a layer's first input takes the activation, its other inputs (an RNN step's
# prev_h) are parameters of the network as its weights are; any other role (a loss's target,
# labels, indices) is fixed, fed from one of the network's inputs
PARAM_ROLES = ("input", "weight", "bias")


@record
class NetSpec:
    """A network ready to run: ``spec`` is the whole network as one layer (end to end),
    ``net`` its layers."""

    spec: Spec
    net: Network

    @property
    def nodes(self) -> list[Node]:
        return self.net.nodes


def load_network(
    path: str, *, dtype: str | None = None, seed: int | None = None, max_elements: int = 0
) -> NetSpec:
    """Read the model file at ``path`` (``-``: stdin)."""
    text, source, base = read_spec_text(path)
    doc = parse_yaml(text, source=source, max_elements=max_elements or DEFAULT_MAX_ELEMENTS)
    try:
        return build_network(doc, base=base, source=source, dtype=dtype, seed=seed,
                             max_elements=max_elements)  # fmt: skip
    except GradcliError as e:
        raise e.at(source=source) from None


def build_network(
    doc: Any, *, base: Path, source: str, dtype: str | None = None, seed: int | None = None,
    max_elements: int = 0,
) -> NetSpec:  # fmt: skip
    # counted from the shapes first (generators' shapes, files' headers, the walk's
    # activations), as a layer's spec is (inputs/spec.py): up to the first custom layer,
    # whose output shape only its forward tells
    try:
        _build(doc, base, source, dtype, seed, max_elements, shapes_only=True)
    except _UsersLayerReachedError:
        pass
    except GradcliError as e:
        if e.param == "max_elements":
            raise
        # anything else is said by the loading itself, in its own order
    return _build(doc, base, source, dtype, seed, max_elements)


class _UsersLayerReachedError(Exception):
    """The count from the shapes alone reached a layer of the user's: it stops there."""


def _build(
    doc: Any, base: Path, source: str, dtype: str | None, seed: int | None, max_elements: int,
    shapes_only: bool = False,
) -> NetSpec:  # fmt: skip
    if not isinstance(doc, dict):
        raise SpecError(f"expected a mapping with 'inputs' and 'network', got {kind(doc)}")
    if "layer" in doc and "network" not in doc:  # a layer's spec given as a model (t65c F9)
        named = doc["layer"] if isinstance(doc["layer"], str) else "LAYER"
        raise SpecError(f"this is a layer's spec (layer: {printable(named)}), not a model "
                        f"(network: [...]): give its layer, {printable(named)}, in place of "
                        f"net", key="layer")  # fmt: skip
    for k in doc:
        if k not in NET_KEYS:
            raise SpecError(
                f"unknown key{suggest(str(k), NET_KEYS)}; expected one of {', '.join(NET_KEYS)}",
                key=str(k),
            )
    dtype = parse_dtype(doc.get("dtype", "float64") if dtype is None else dtype)
    seed = parse_seed(doc.get("seed", 0) if seed is None else seed)
    loader = Loader(base, source, seed, dtype, max_elements or DEFAULT_MAX_ELEMENTS, shapes_only)
    inputs = doc.get("inputs")
    if not isinstance(inputs, dict) or not inputs:
        raise SpecError("expected a mapping of the network's inputs, e.g. X: {shape: [8, 4]}",
                        key="inputs")  # fmt: skip
    for n in inputs:  # "<name>.<tensor>" names the parameters and boundaries
        if not isinstance(n, str) or not n.isidentifier():
            raise SpecError(
                f"an input's name must be an identifier without dots (parameters are named "
                f"<layer>.<tensor>), got {brief(n)}",
                key=f"inputs.{printable(str(n))[:40]}",
            )
    entries = doc.get("network")
    if not isinstance(entries, list) or not entries:
        got = "an empty list" if isinstance(entries, list) else kind(entries)
        raise SpecError(f"expected a list of at least one layer, e.g. - {{layer: linear, ...}}; "
                        f"got {got}", key="network")  # fmt: skip
    loss = doc.get("loss")
    if loss is not None and not isinstance(loss, dict):
        raise SpecError(f"expected a mapping {{layer: ..., target: ...}}, got {kind(loss)}",
                        key="loss")  # fmt: skip
    for k in loss or {}:  # a mistyped key is said first: 'targt: y' read as an inputs
        if k not in ENTRY_KEYS:  # problem, 'exactly one input ..., got X, y' (t66b F5)
            raise SpecError(f"unknown key{suggest(str(k), ENTRY_KEYS)}; expected one of "
                            f"{', '.join(ENTRY_KEYS)}", key=f"loss.{k}")  # fmt: skip
    targets, labels = _targets(entries, loss)
    # a target naming no input is said as such, before the inputs are counted without it:
    # 'target: Y' read "expected exactly one input ..., got X, y" (outside test t65c F4)
    for where, n in targets.items():
        if not isinstance(n, str) or n not in inputs:
            names = ", ".join(map(str, inputs))
            near = "" if not isinstance(n, str) else next(
                (f" (did you mean {i!r}?)" for i in map(str, inputs) if i.lower() == n.lower()),
                suggest(n, [str(i) for i in inputs]))  # fmt: skip
            raise SpecError(f"expected the name of one of the inputs ({names}) holding the "
                            f"labels or targets, got {brief(n)}{near}",
                            key=f"{where}.target")  # fmt: skip
    free = [n for n in inputs if n not in targets.values()]
    if len(free) != 1:
        raise SpecError(
            "expected exactly one input the network is differentiated at (the others are "
            f"targets a loss names), got {', '.join(map(str, free)) or 'none'}",
            key="inputs",
        )
    x_name = str(free[0])
    if _drawn_labels(inputs[x_name]):
        # the labels left as the input differentiated at: a target names the data (t66b F5)
        where, named = next(((w, n) for w, n in targets.items()
                             if not _drawn_labels(inputs[n])), ("loss", None))  # fmt: skip
        raise SpecError(f"names {named!r}, which leaves {x_name}, drawn as labels, as the "
                        f"input the network is differentiated at; name {x_name} here",
                        key=f"{where}.target")  # fmt: skip
    arrays: dict[str, np.ndarray] = {}
    # a first layer taking integer indices (embedding): the input is data, loaded once the
    # layer's table says how many rows there are
    indices = _takes_indices(entries[0])
    if indices is None:
        arrays[x_name] = loader.load(inputs[x_name], f"inputs.{x_name}", x_name)
    fixed = {str(n): _fixed(loader, inputs[n], f"inputs.{n}", str(n), n in labels)
             for n in dict.fromkeys(targets.values())}  # fmt: skip
    b = _Builder(loader, arrays, fixed, base, x_name, inputs[x_name] if indices else None)
    ops = b.entries(entries, "network")
    if loss is not None:
        ops.append(b.entry(loss, "loss"))
    net = Network(tuple(ops), x_name, MappingProxyType({n: a.shape for n, a in arrays.items()}),
                  MappingProxyType(fixed), source)  # fmt: skip
    try:
        acts = net.walk(net.shapes)
    except ShapeError as e:
        raise SpecError(e.message, key=b.where.get(e.key or "", "network")) from None
    out_shape = acts[net.boundaries()[-1]]
    for n, a in acts.items():
        loader.reserve(2 * math.prod(a), b.where.get(n[:-4], "network"),
                       "the network's activations and their gradients")  # fmt: skip
    layer = net.layer()
    if layer.working is not None:
        loader.reserve(layer.working(net.shapes, None), "network", "the layers' working arrays")
    loader.reserve(sum(a.size for a in arrays.values()), "network", "the gradients")
    if loss is not None:
        if "grad_output" in doc:
            raise SpecError("a network with a loss has no grad_output: the loss is the output",
                            key="grad_output")  # fmt: skip
        if out_shape != ():
            # (why: a 3-D prediction's leading axes are separate losses, which a student
            # reading 'mse is a mean over everything' did not see: outside test t44a N10)
            prev = acts[net.boundaries()[-2]] if len(net.boundaries()) > 1 else ()
            why = (f": the loss layer takes its input {list(prev)}'s axes in front of its own "
                   f"as separate losses; reshape it to (N, D) first (a flatten layer) for one"
                   if len(prev) > 2 else "")
            raise SpecError(f"the loss must give a scalar, got shape {list(out_shape)}{why}",
                            key="loss")  # fmt: skip
        grad_output = np.ones((), dtype=dtype)
    else:
        g_doc = doc.get("grad_output", {"init": "normal"})
        grad_output = load_grad_output(loader, g_doc, out_shape, "the network output's")
    for a in (*arrays.values(), *fixed.values(), grad_output):
        a.flags.writeable = False
    spec = Spec(
        layer=layer, dtype=dtype, seed=seed, options=NoOptions(),
        tensors=MappingProxyType(dict(arrays)), grad_output=grad_output, source=source,
        files=tuple(loader.files), elements=loader.used, max_elements=loader.max_elements,
    )  # fmt: skip
    return NetSpec(spec, net)


def _drawn_labels(value: Any) -> bool:
    return isinstance(value, dict) and (value.get("init") == "labels" or "classes" in value)


def _targets(entries: Any, loss: Any) -> tuple[dict[str, Any], set[Any]]:
    """Every ``target:`` of the model (residual blocks' entries included), by its entry's key,
    and the targets that feed a built-in layer's labels or indices (role index)."""
    out: dict[str, Any] = {}
    labels: set[Any] = set()

    def visit(e: Any, key: str) -> None:
        if isinstance(e, dict) and isinstance(e.get("residual"), list):
            for i, inner in enumerate(e["residual"]):
                visit(inner, f"{key}.residual[{i}]")
        elif isinstance(e, dict) and "target" in e:
            out[key] = e["target"]
            layer = REGISTRY.get(e.get("layer")) if isinstance(e.get("layer"), str) else None
            if layer is not None and any(i.role == "index" for i in layer.tensors):
                labels.add(e["target"] if isinstance(e["target"], str) else None)

    for i, e in enumerate(entries if isinstance(entries, list) else []):
        visit(e, f"network[{i}]")
    visit(loss, "loss")
    return out, labels


def _fixed(loader: Loader, value: Any, key: str, name: str, labels: bool) -> np.ndarray:
    """A target: loaded as any tensor; ``{shape, init: labels, classes: K}`` draws integer
    labels in [0, K). Labels given as values (``labels``: the input feeds a loss's labels) may
    be integers, or whole numbers in floats, which the loss indexes by; a float target (mse's)
    is floats only, as a spec's."""
    if isinstance(value, dict) and (value.get("init") == "labels" or "classes" in value):
        k = value.get("classes")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise SpecError(f"expected the number of classes, an integer >= 1, got {brief(k)}",
                            key=f"{key}.classes")  # fmt: skip
        return loader.load(value, key, name, classes=k)
    a = loader.load(value, key, name, labels=labels)
    if (labels and a.dtype.kind == "f" and np.array_equal(a, np.round(a))
            and np.all(np.abs(a) < 2.0**53)):  # beyond: no class, said so where it is checked
        # labels are integers whatever runs the loss: a user's loss (impl:) indexes by them
        # as the built-in does (inline YAML labels loaded in the network's dtype crashed a
        # CS231n svm_loss with 'arrays used as indices must be of integer type')
        a = a.astype(np.int64)
    return a


class _Builder:
    """Entries -> Nodes and Blocks, loading each parameter as it goes."""

    def __init__(
        self, loader: Loader, arrays: dict[str, np.ndarray], fixed: dict[str, np.ndarray],
        base: Path, x_name: str, x_doc: Any = None,
    ) -> None:  # fmt: skip
        self.loader, self.arrays, self.fixed, self.base = loader, arrays, fixed, base
        self.index = 0  # layers seen: the 1-based index of a layer and its default name
        self.blocks = 0  # residual blocks seen
        self.names: set[str] = set()
        self.where: dict[str, str] = {}  # a layer's or block's name -> its key in the file
        # the activation so far (an index input's: once loaded)
        self.shape: tuple[int, ...] = arrays[x_name].shape if x_name in arrays else ()
        self.x_name, self.x_doc = x_name, x_doc  # x_doc: an index input, still to load

    def entries(self, entries: Any, key: str) -> list[Any]:
        if not isinstance(entries, list) or not entries:
            got = "an empty list" if isinstance(entries, list) else kind(entries)
            raise SpecError(f"expected a list of at least one layer; got {got}", key=key)
        return [self.entry(e, f"{key}[{i}]") for i, e in enumerate(entries)]

    def _name(self, given: Any, default: str, key: str) -> str:
        if default == "residual":
            self.blocks += 1
            name = f"res{self.blocks}" if given is None else given
        else:
            self.index += 1
            name = f"{default}{self.index}" if given is None else given
        if not isinstance(name, str) or not name or not all(c.isalnum() or c == "_" for c in name):
            raise SpecError(f"expected a name of letters, digits and _, got {brief(name)}",
                            key=f"{key}.name")  # fmt: skip
        if name == self.x_name:
            raise SpecError(f"the name {name!r} is the network input's; expected another name",
                            key=f"{key}.name")  # fmt: skip
        if name in self.names:
            raise SpecError(f"the name {name!r} is already the name of {self.where[name]}; "
                            "expected a name used once", key=f"{key}.name")  # fmt: skip
        self.names.add(name)
        self.where[name] = key
        return name

    def entry(self, e: Any, key: str) -> Any:
        """One entry; an error about it names its key from the file's top (a layer's own
        ``options.size`` reads ``network[1].options.size``)."""
        try:
            return self._entry(e, key)
        except GradcliError as err:
            if err.source is not None or (err.key or "").startswith(("network", "loss",
                                                                     "inputs")):  # fmt: skip
                raise
            raise err.under(key) from None

    def _entry(self, e: Any, key: str) -> Any:
        if isinstance(e, dict) and "residual" in e:
            extra = sorted(str(k) for k in set(e) - {"residual", "name"})
            if extra:
                raise SpecError(f"unknown key {extra[0]!r}; a residual block has residual, name",
                                key=f"{key}.{extra[0]}")  # fmt: skip
            name = self._name(e.get("name"), "residual", key)
            start = self.shape
            block = Block(name, tuple(self.entries(e["residual"], f"{key}.residual")))
            self.shape = start  # the walk checks the sum; the block's output is its input's
            return block
        if not isinstance(e, dict):
            raise SpecError(f"expected a mapping {{layer: ..., ...}} or {{residual: [...]}}, "
                            f"got {kind(e)}", key=key)  # fmt: skip
        if "layer" not in e:
            raise SpecError("missing: expected the layer's name (a built-in layer, or custom "
                            "with impl: FILE.py)", key=f"{key}.layer")  # fmt: skip
        for k in e:
            if k not in ENTRY_KEYS:
                raise SpecError(f"unknown key{suggest(str(k), ENTRY_KEYS)}; expected one of "
                                f"{', '.join(ENTRY_KEYS)}", key=f"{key}.{k}")  # fmt: skip
        kind_ = e["layer"]
        if not isinstance(kind_, str):
            raise SpecError(f"expected a layer name, got {brief(kind_)}", key=f"{key}.layer")
        tensors = e.get("tensors") or {}
        if not isinstance(tensors, dict):
            raise SpecError(f"expected a mapping of tensors, got {kind(tensors)}",
                            key=f"{key}.tensors")  # fmt: skip
        listed = _data(e, kind_, tensors, key)
        layer, input_name = self._layer(e, kind_, key, listed)
        name = self._name(e.get("name"), kind_, key)
        roles = {i.name: i for i in layer.tensors}
        if input_name not in roles and kind_ != "custom":
            raise SpecError(f"{kind_} has no input tensor", key=f"{key}.layer")
        fixed_names = [n for n, i in roles.items() if n != input_name
                       and i.role not in PARAM_ROLES and kind_ != "custom"]  # fmt: skip
        target = e.get("target")
        fixed: dict[str, str] = {}
        if fixed_names:
            if target is None:
                raise SpecError(f"missing: expected the name of the input holding {kind_}'s "
                                f"{fixed_names[0]}", key=f"{key}.target")  # fmt: skip
            fixed = {fixed_names[0]: str(target)}
        elif target is not None:
            raise SpecError(f"{kind_} takes no target", key=f"{key}.target")
        params = [n for n in (tensors if kind_ == "custom" else roles)
                  if n != input_name and n not in fixed]  # fmt: skip
        for t in tensors:
            if t not in params:
                known = ", ".join(params) or "none"
                raise SpecError(
                    f"{kind_} has no parameter {brief(t)}{suggest(str(t), params)}; its "
                    f"parameters are {known}",
                    key=f"{key}.tensors.{t}",
                )
        loaded: dict[str, np.ndarray] = {}
        for t in params:
            pkey = f"{key}.tensors.{t}"
            if t in tensors:
                value = tensors[t]
                if t in roles and _shape_only(value):  # as if omitted, its shape given
                    value = self._drawn(roles[t], value["shape"])
                # a custom layer's tensors given as integers (booleans) are its labels, indices
                # (masks), as in a custom layer's spec: kept so, never differentiated
                loaded[t] = self.loader.load(self._he(value), pkey, f"{name}.{t}",
                                             given=kind_ == "custom")  # fmt: skip
        if kind_ == "custom":
            layer, params = self._split_data(layer, input_name, name, loaded, listed, fixed, params)
        if self.x_doc is not None and self.x_name not in self.arrays:
            self._load_indices(layer, input_name, loaded, e.get("options"), name)
        sh = {input_name: self.shape} | {t: a.shape for t, a in loaded.items()}
        sh |= {t: self.fixed[i].shape for t, i in fixed.items() if i in self.fixed}
        # an omitted parameter whose axes the other tensors size is drawn (_drawn); one they
        # cannot size must be given
        for info in layer.infos(sh):
            if info.name in loaded or info.name not in params or info.absent_ok:
                continue
            # an input's (an RNN step's prev_h) batch axes are nobody else's to size
            shape = _infer(layer, info.axes, sh) if info.axes and info.role != "input" else ()
            if not shape and not info.optional:
                raise SpecError(f"give the shape of {kind_}'s {info.name} {info.shape_str}, "
                                f"e.g. {info.name}: {{shape: [...]}}",
                                key=f"{key}.tensors")  # fmt: skip
            if not shape:
                continue
            pkey = f"{key}.tensors.{info.name}"
            value = self._he(self._drawn(info, list(shape)))
            loaded[info.name] = self.loader.load(value, pkey, f"{name}.{info.name}")
            sh[info.name] = shape
        for t in params:
            if t not in loaded and t not in roles:  # a custom layer's: nothing to size it by
                raise SpecError(f"give the shape of {kind_}'s {t}, e.g. {t}: {{shape: [...]}}",
                                key=f"{key}.tensors")  # fmt: skip
        params = [t for t in params if t in loaded]
        raw_options = e.get("options")
        if raw_options is not None and not isinstance(raw_options, dict):
            raise SpecError(f"expected a mapping of options, got {kind(raw_options)}",
                            key=f"{key}.options")  # fmt: skip
        try:
            options = layer.make_options(raw_options)
            options = layer.resolve_options(options, sh)
            infos = layer.infos(sh, options)
            in_core = len(next((i.axes for i in infos if i.name == input_name), ()))
        except GradcliError as err:  # a parameter's key is the entry's tensors.W; the input's
            t = (err.key or "").split(".")[0]  # is the entry's: the layer before gives it
            if t in params:
                raise err.under(f"{key}.tensors") from None
            raise (err.under(key) if t == "options" else SpecError(err.message, key=key)) from None
        # integer indices (embedding's idx) have no core axes: every axis of theirs is a batch
        indices = input_name in roles and roles[input_name].role == "index"
        batch = max(0, len(self.shape) - in_core) if in_core or indices else 0
        own = {i.name: len(sh[i.name]) - len(i.axes) for i in infos
               if i.name in params and i.axes and i.name in sh}  # fmt: skip
        pads = {p: max(0, batch - own.get(p, 0)) for p in params}
        node = Node(self.index, name, layer, options, input_name, tuple(params),
                    MappingProxyType(fixed), batch, MappingProxyType(pads))
        for t, a in loaded.items():
            self.arrays[f"{name}.{t}"] = a
        try:  # the shape this layer gives, for the next one's bias and batch axes
            self.shape = tuple(layer.output_shape(sh, options))
        except GradcliError:
            pass  # the walk says it with both layers' names
        return node

    def _split_data(
        self, layer: Layer, input_name: str, name: str, loaded: dict[str, np.ndarray],
        listed: tuple[str, ...], fixed: dict[str, str], params: list[str],
    ) -> tuple[Layer, list[str]]:  # fmt: skip
        """A custom layer's data (its integer and boolean tensors, and the float ones its entry
        lists under ``data:``) leave its parameters for the network's fixed inputs, named
        ``<name>.<tensor>``; its roles are settled from the values, as a spec's custom layer's
        are (user/labels.py). Returns the layer with its roles and its parameters."""
        if layer.given is None:  # shapes only: the count stopped before this layer
            return layer, params
        # the activation, known by its dtype alone: a float that is no whole number (whole
        # floats beside a failing index are read as labels given as floats)
        stand_in = np.array(0.5, dtype=self.loader.dtype)
        layer = layer.given(MappingProxyType({input_name: stand_in, **loaded}))
        for info in layer.tensors:
            if info.name in loaded and not info.differentiable:
                where = f"{name}.{info.name}"
                self.fixed[where] = loaded.pop(info.name)
                fixed[info.name] = where
        return layer, [t for t in params if t not in fixed]

    def _layer(self, e: dict, kind_: str, key: str,
               data: tuple[str, ...] = ()) -> tuple[Layer, str]:  # fmt: skip
        try:
            builtin = None if kind_ == "custom" else get_layer(kind_)
        except GradcliError as err:
            raise err.at(key=f"{key}.layer") from None
        impl = e.get("impl")
        if kind_ == "custom" and impl is None:
            raise SpecError("a custom layer needs impl: FILE.py (your forward and backward)",
                            key=f"{key}.impl")  # fmt: skip
        input_name = e.get("input")
        if builtin is not None:
            if input_name is not None:
                raise SpecError("input: names a custom layer's input; a built-in layer's is "
                                "known", key=f"{key}.input")  # fmt: skip
            input_name = next((i.name for i in builtin.tensors if i.role == "input"), "")
            if not input_name:  # a layer taking integer indices: the network's input only
                index = _takes_indices(e)
                if index is None:
                    raise SpecError(f"{kind_} takes no input a layer can pass it",
                                    key=f"{key}.layer")  # fmt: skip
                if key != "network[0]":
                    raise SpecError(
                        f"{kind_} takes integer indices ({index.name}), not the output of a "
                        f"layer: it can only be the first layer, taking the network's input "
                        f"{self.x_name}", key=f"{key}.layer")  # fmt: skip
                input_name = index.name
        elif input_name is None:
            input_name = "x"
        if not isinstance(input_name, str) or not input_name.isidentifier():
            raise SpecError(f"expected a Python identifier, got {brief(input_name)}",
                            key=f"{key}.input")  # fmt: skip
        if impl is None:
            return builtin, input_name  # type: ignore[return-value]
        if self.loader.shapes_only:  # not imported twice: a built-in's shape rules count it
            if builtin is None:
                raise _UsersLayerReachedError()
            return builtin, input_name
        from gradcli.user.impl import Impl, load_impl, user_layer

        if isinstance(impl, Impl):  # the Python API's: a module or object in code
            code = impl
        elif not isinstance(impl, str):
            raise SpecError(f"expected a path FILE.py, got {brief(impl)}", key=f"{key}.impl")
        else:
            target = impl if Path(impl.split(":")[0]).is_absolute() else str(self.base / impl)
            try:
                code = load_impl(target)
            except TensorFileError as err:  # the file cannot be opened: the model names it
                raise SpecError(f"{err.message} (a path relative to the model file)",
                                key=f"{key}.impl") from None
            except GradcliError as err:  # its code has no backward, or fails on import
                raise err.at(key=f"{key}.impl") from None
        names: tuple[str, ...] = ()
        if builtin is None:
            tensors = e.get("tensors") or {}
            names = (input_name, *(str(t) for t in tensors if t != input_name))
            options = e.get("options")
            _takes(code, names, tuple(options) if isinstance(options, dict) else (), key)
        raw = e.get("options")
        layer = user_layer(code, builtin, names, raw if isinstance(raw, dict) else None,
                           data=data)  # fmt: skip
        return layer, input_name

    def _load_indices(self, layer: Layer, input_name: str, loaded: dict[str, np.ndarray],
                      raw_options: Any, name: str) -> None:  # fmt: skip
        """The network's input as the first layer's integer indices, in [0, rows of its
        table): drawn from the seed (a shape alone) or given, then checked as the layer
        checks its own (every index a row)."""
        info = layer.tensor(input_name)
        rows = _infer(layer, (info.classes,), {t: a.shape for t, a in loaded.items()}) \
            if info.classes else ()  # fmt: skip
        if not rows:
            table = next(i for i in layer.tensors if info.classes in i.axes)
            raise SpecError(f"give the shape of {layer.name}'s {table.name} "
                            f"{table.shape_str} (its {info.classes} rows bound the indices), "
                            f"e.g. {table.name}: {{shape: [...]}}", key="tensors")  # fmt: skip
        key = f"inputs.{self.x_name}"
        x = self.loader.load(self.x_doc, key, self.x_name, classes=rows[0])
        if layer.check_values is not None and not self.loader.shapes_only:
            try:
                options = layer.make_options(raw_options if isinstance(raw_options, dict) else {})
                layer.check_values({input_name: x, **loaded}, options)
            except GradcliError as e:  # said in the model's names: tok[0, 3], emb.W
                said = e.message.replace(f"{input_name}[", f"{self.x_name}[")
                for t in loaded:
                    for end in " :":
                        said = said.replace(f" {t}{end}", f" {name}.{t}{end}")
                raise SpecError(f"layer 1 {layer.name} {name!r}: {said}", key=key) from None
        self.arrays[self.x_name] = x
        self.shape = x.shape

    @staticmethod
    def _drawn(info: TensorInfo, shape: list[int]) -> Any:
        """A parameter known by its shape alone, drawn as a framework initializes it: a scale
        (a norm's gamma) ones, a bias zeros, an input standard normal, a weight He's."""
        init = info.init or ("zeros" if info.optional or info.role == "bias" else "")
        return {"shape": shape, "init": init} if init else {"shape": shape}

    def _he(self, value: Any) -> Any:
        """A shape alone: He's initialization, sqrt(2 / fan_in), fan_in = all but the last
        axis for a 2-D+ weight in (kh, kw, C_in, C_out) order, the second axis for (out, in)."""
        if isinstance(value, dict) and "shape" in value and "init" not in value \
                and "scale" not in value and isinstance(value["shape"], list) \
                and len(value["shape"]) >= 2:  # fmt: skip
            shape = value["shape"]
            if not all(isinstance(s, int) and s > 0 for s in shape):
                return value
            fan_in = shape[1] if len(shape) == 2 else math.prod(shape[:-1])
            return {**value, "scale": math.sqrt(2.0 / max(1, fan_in))}
        return value


def _data(e: dict, kind_: str, tensors: dict, key: str) -> tuple[str, ...]:
    """A custom layer's ``data: [target]``: the float tensors of its entry never
    differentiated (a loss's target), as in a custom layer's spec."""
    if "data" not in e:
        return ()
    if kind_ != "custom":
        raise SpecError(f"data: lists a custom layer's tensors that are never differentiated; "
                        f"{kind_}'s are its own (a loss's labels or target: target: names the "
                        "input holding them)", key=f"{key}.data")  # fmt: skip
    data = e["data"]
    if isinstance(data, str):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(n, str) for n in data):
        raise SpecError(f"expected a list of the entry's tensor names, e.g. [target], got "
                        f"{brief(data)}", key=f"{key}.data")  # fmt: skip
    names = [str(t) for t in tensors]
    for n in data:
        if n not in names:
            if n == e.get("input", "x"):
                said = "is the layer's input, the activation the layer before gives"
            else:
                said = f"is not one of the entry's tensors ({', '.join(names) or 'none'})"
            raise SpecError(f"{brief(n)} {said}{suggest(n, names)}; data: lists tensors under "
                            "tensors: that are never differentiated", key=f"{key}.data")
    return tuple(dict.fromkeys(data))


def _takes(code: Any, names: tuple[str, ...], options: tuple[str, ...], key: str) -> None:
    """A custom layer's forward takes its input and its tensors by name: a required argument
    the entry does not give, or a given one it does not take, is said at the entry's key
    (rather than as the TypeError of the first call)."""
    import inspect

    try:
        params = inspect.signature(code.forward).parameters.values()
    except (TypeError, ValueError):  # a builtin or an object inspect cannot read
        return
    if any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params):
        return
    taken = [p.name for p in params]
    required = [p.name for p in params if p.default is p.empty]
    if names[0] not in taken:
        raise SpecError(f"expected the name of the input your forward takes (one of "
                        f"{', '.join(taken)}), got {names[0]!r}", key=f"{key}.input")  # fmt: skip
    missing = [n for n in required if n not in names and n not in options]
    if missing:
        raise SpecError(f"your forward takes {missing[0]}: give it, e.g. {missing[0]}: "
                        "{shape: [...]}", key=f"{key}.tensors")  # fmt: skip
    extra = [n for n in names[1:] if n not in taken]
    if extra:
        raise SpecError(f"your forward takes no {extra[0]} (it takes {', '.join(taken)})",
                        key=f"{key}.tensors.{extra[0]}")  # fmt: skip


def _takes_indices(entry: Any) -> TensorInfo | None:
    """The index tensor of a built-in layer that takes integer indices where another layer
    takes an activation (embedding's idx), or None."""
    kind_ = entry.get("layer") if isinstance(entry, dict) else None
    if not isinstance(kind_, str) or kind_ not in REGISTRY:
        return None
    tensors = REGISTRY[kind_].tensors
    if any(i.role == "input" for i in tensors):
        return None
    return next((i for i in tensors if i.role == "index"), None)


def _shape_only(value: Any) -> bool:
    if not isinstance(value, dict) or set(value) != {"shape"}:
        return False
    shape = value["shape"]
    return isinstance(shape, list) and all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)


def _infer(layer: Layer, axes: tuple[str, ...], sh: Mapping[str, Any]) -> tuple[int, ...]:
    sizes: dict[str, int] = {}
    for info in layer.infos(sh):
        s = sh.get(info.name)
        if s is not None and info.axes and len(s) >= len(info.axes):
            sizes.update(zip(info.axes, s[len(s) - len(info.axes):], strict=True))
    if any(a not in sizes for a in axes):
        return ()
    return tuple(sizes[a] for a in axes)


__all__ = ["NetSpec", "build_network", "load_network"]
