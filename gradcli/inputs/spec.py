"""Parse and validate a spec mapping into a frozen ``Spec``.

A spec names the layer, dtype, seed, options, every tensor and the upstream gradient.
Each tensor is a source that gradcli.sources turns into an array; the element budget is set here.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from gradcli.errors import GradcliError, OptionError, ShapeError, SpecError, brief, mention
from gradcli.files.reading import parse_yaml, read_spec_text
from gradcli.inputs.sources import Loader, kind, suggest
from gradcli.layers import REGISTRY, Layer, TensorInfo, cs231n, get_layer
from gradcli.records import record

DTYPES = ("float64", "float32")
TOP_KEYS = ("layer", "dtype", "seed", "options", "tensors", "grad_output", "data")
MAX_SEED = 2**63 - 1
# every tensor, the upstream gradient, the output, the gradients and the layer's working arrays
DEFAULT_MAX_ELEMENTS = 50_000_000  # 400 MB
_ARRAYS = "the arrays and the output"


@record
class Spec:
    """Everything a run needs. Arrays are read-only, in ``dtype``, keyed in layer order."""

    layer: Layer
    dtype: str
    seed: int
    options: Any
    tensors: Mapping[str, np.ndarray]
    grad_output: np.ndarray
    source: str
    files: tuple[Path, ...] = ()  # every file read, so an --output can never overwrite one
    elements: int = 0  # counted against --max-elements (answers to check count on from here)
    max_elements: int = DEFAULT_MAX_ELEMENTS
    notes: tuple[str, ...] = ()  # said with the check's result (arrays cast to the dtype)
    drawn_upstream: bool = False  # grad_output drawn from the seed, not given (nor a loss's 1)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: a.shape for n, a in self.tensors.items()}

    def info(self, name: str) -> TensorInfo:
        """The description of tensor (or checkable intermediate) ``name`` for these shapes."""
        if self.layer.tail_info is not None and name in self.layer.intermediates:
            return self.layer.tail_info(name, self.shapes, self.options)[0]
        return self.layer.tensor(name, self.shapes, self.options)

    @property
    def grad_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shapes of the tensors that have a gradient (not labels, indices, targets)."""
        constants = self.layer.constants(self.shapes, self.options)
        return {n: a.shape for n, a in self.tensors.items() if n not in constants}

    @property
    def output_info(self) -> TensorInfo:
        return self.layer.output_info(self.shapes, self.options)


def default_document(layer: Layer) -> dict[str, Any]:
    """The embedded default spec: small random tensors (labels and indices drawn in range),
    seed 0; a loss's upstream gradient is 1, the others' random."""
    index = {t.name for t in layer.tensors if t.role == "index"}
    doc: dict[str, Any] = {
        "layer": layer.name,
        "dtype": "float64",
        "seed": 0,
        "options": {},
        "tensors": {
            n: {"shape": list(s), "init": "labels" if n in index else "normal"}
            for n, s in layer.default_shapes.items()
        },
    }
    if not layer.output_shape(layer.default_shapes, layer.make_options({})) == ():
        doc["grad_output"] = {"init": "normal"}
    return doc


# elements beyond which shapes that do not fit the layer are refused before any is made
EARLY_ELEMENTS = 1_000_000


def load_spec(
    layer_name: str | None,
    spec: str | None,
    *,
    dtype: str | None = None,
    seed: int | None = None,
    impl: Any = None,
    max_elements: int = 0,
) -> Spec:
    """Load SPEC (a path, ``-`` for stdin, or None for the embedded default) for LAYER. With
    ``impl`` (gradcli.user.Impl) the layer runs the user's forward and backward; LAYER may then
    be ``custom``, whose tensors and options are whatever the spec says. LAYER None: the
    spec's own ``layer`` key (the Python API's ``check_spec``)."""
    if spec is None:
        if layer_name is None or layer_name == "custom":
            if impl is None and layer_name == "custom":
                raise GradcliError(
                    f"the layer 'custom' needs your forward and backward: "
                    f"{mention('impl')} FILE.py"
                )
            raise GradcliError("the layer 'custom' needs a SPEC naming its tensors")
        doc, source, base = default_document(get_layer(layer_name)), "<default>", Path.cwd()
    else:
        if layer_name == "custom" and impl is None:
            raise GradcliError(
                f"the layer 'custom' needs your forward and backward: {mention('impl')} FILE.py"
            )
        text, source, base = read_spec_text(spec)
        doc = parse_yaml(text, source=source, max_elements=max_elements or DEFAULT_MAX_ELEMENTS)
    if layer_name is None:  # check_spec: the spec says which layer it is for
        layer_name = doc.get("layer") if isinstance(doc, dict) else None
        if not isinstance(layer_name, str):
            raise SpecError("expected the name of a layer", key="layer", source=source)
        if layer_name == "custom" and impl is None:
            raise SpecError(
                f"the layer 'custom' needs your forward and backward: {mention('impl')} FILE.py",
                key="layer", source=source,
            )  # fmt: skip
    custom = layer_name == "custom"
    builtin = None if custom else get_layer(layer_name)
    try:
        layer = builtin
        if impl is not None:
            from gradcli.user.impl import user_layer

            raw = doc.get("options") if isinstance(doc, dict) else None
            layer = user_layer(impl, builtin, custom_names(doc) if custom else (),
                               raw if isinstance(raw, dict) else None,
                               data=custom_data(doc) if custom else ())  # fmt: skip
        return build_spec(
            layer, doc, base=base, source=source, dtype=dtype, seed=seed,
            max_elements=max_elements,
        )  # fmt: skip
    except GradcliError as e:
        raise e.at(source=source) from None


def custom_names(doc: Any) -> tuple[str, ...]:
    """A custom layer's tensors: the spec's own names, each a Python identifier (keywords)."""
    tensors = doc.get("tensors") if isinstance(doc, dict) else None
    if not isinstance(tensors, dict) or not tensors:
        raise SpecError("a custom layer's spec needs a mapping of tensors", key="tensors")
    for name in tensors:
        if not isinstance(name, str) or not name.isidentifier():
            raise SpecError(
                f"tensor names must be Python identifiers (they are your function's keywords), "
                f"got {name!r}",
                key=f"tensors.{name}",
            )
        if name == "grad_output" or keyword.iskeyword(name):
            # (backward's own first argument: the tensor never reached it, and the user's
            # right code was blamed for a missing argument: outside test t34b F3)
            why = ("backward's first argument, the upstream gradient, is called so"
                   if name == "grad_output" else "it is a Python keyword")
            raise SpecError(f"a tensor cannot be named {name!r}: {why}; rename it",
                            key=f"tensors.{name}")  # fmt: skip
    return tuple(tensors)


def custom_data(doc: Any) -> tuple[str, ...]:
    """A custom layer's float tensors that are data, never differentiated (a regression
    loss's target): ``data: [target]``, names of the spec's tensors."""
    data = doc.get("data", []) if isinstance(doc, dict) else []
    if isinstance(data, str):
        data = [data]
    names = custom_names(doc)
    if not isinstance(data, (list, tuple)) or not all(isinstance(n, str) for n in data):
        raise SpecError(f"expected a list of tensor names, e.g. [target], got {brief(data)}",
                        key="data")  # fmt: skip
    for n in data:
        if n not in names:
            raise SpecError(f"{brief(n)} is not one of the tensors ({', '.join(names)})"
                            f"{suggest(n, names)}", key="data")  # fmt: skip
    return tuple(dict.fromkeys(data))


def build_spec(
    layer: Layer,
    doc: Any,
    *,
    base: Path,
    source: str,
    dtype: str | None = None,
    seed: int | None = None,
    max_elements: int = 0,
) -> Spec:
    if doc is None:
        raise SpecError("the spec is empty; expected a mapping with a 'tensors' key")
    if not isinstance(doc, dict):
        raise SpecError(f"expected a mapping at the top level, got {kind(doc)}")
    for k in doc:
        if k not in TOP_KEYS:
            raise SpecError(
                f"unknown key{suggest(str(k), TOP_KEYS)}; expected one of {', '.join(TOP_KEYS)}",
                key=str(k),
            )
    if "data" in doc and layer.given is None:
        raise SpecError(
            f"it lists a custom layer's tensors that are never differentiated; "
            f"{layer.name}'s are its own (labels, targets: see gradcli layers)",
            key="data",
        )
    if "layer" in doc and doc["layer"] != layer.name:
        raise SpecError(
            f"the spec is for layer {brief(doc['layer'])}, not {layer.name!r}",
            key="layer",
        )
    overridden = dtype is not None  # said as such: the spec may say nothing (t38b N3)
    dtype = parse_dtype(doc.get("dtype", "float64") if dtype is None else dtype)
    seed = parse_seed(doc.get("seed", 0) if seed is None else seed)
    raw_options = doc.get("options")
    if raw_options is not None and not isinstance(raw_options, dict):
        raise SpecError(f"expected a mapping of options, got {kind(raw_options)}", key="options")
    options = layer.make_options(raw_options)

    tensors_doc = doc.get("tensors")
    if not isinstance(tensors_doc, dict):
        what = "missing" if tensors_doc is None else f"got {kind(tensors_doc)}"
        raise SpecError(
            f"expected a mapping of tensors {', '.join(layer.tensor_names)} ({what})",
            key="tensors",
        )
    for name in tensors_doc:
        if name not in layer.all_tensor_names:
            known = layer.all_tensor_names
            raise SpecError(
                f"{layer.name} has no tensor {brief(name)}{suggest(str(name), known)}; "
                f"its tensors are {', '.join(known)}",
                key=f"tensors.{name}",
            )
    limit = max_elements or DEFAULT_MAX_ELEMENTS
    # counted from the shapes first (generators' shapes, files' headers, and the output's and
    # working arrays' that follow from them): a spec whose tensors fit but not with the output
    # was generated and read in full before the refusal (outside test t15 MAXEL1: 650 MB)
    dry = Loader(base, source, seed, dtype, limit, shapes_only=True)
    try:
        _load(layer, doc, tensors_doc, options, raw_options, dry)
    except (ShapeError, OptionError):
        # shapes that do not fit the layer are said before large tensors are made: a linear of
        # x [45e6] beside W [2, 3] took 0.8 GB to be refused (outside test t65c F2); small
        # ones are loaded first, whose values' own errors (an empty axis, float labels) come
        # first
        if dry.used > EARLY_ELEMENTS:
            raise
    except GradcliError as e:
        if e.param == "max_elements":
            raise
        # anything else is said by the loading itself, in its own order
    loader = Loader(base, source, seed, dtype, limit)
    layer, arrays, options, out_shape, grad_output = _load(
        layer, doc, tensors_doc, options, raw_options, loader
    )
    for a in (*arrays.values(), grad_output):
        a.flags.writeable = False
    return Spec(
        layer=layer,
        dtype=dtype,
        seed=seed,
        options=options,
        tensors=MappingProxyType(arrays),
        grad_output=grad_output,
        source=source,
        files=tuple(loader.files),
        elements=loader.used,
        max_elements=loader.max_elements,
        drawn_upstream=isinstance(doc, dict) and "grad_output" not in doc and grad_output.ndim > 0,
        notes=_cast_notes(loader.cast, dtype, mention("dtype", dtype) if overridden
                          else "the spec's dtype"),
    )


def _layout(layer: Layer) -> str:
    """A layer's tensors in gradcli's layout: ``X (..., H, W, C_in), W (kh, kw, C_in, C_out)``."""
    return ", ".join(
        f"{i.name} (..., {', '.join(i.axes)})" if i.role == "input" else f"{i.name} {i.shape_str}"
        for i in layer.tensors
    )


def _theirs(ours: Layer | None, shapes: Mapping[str, tuple[int, ...]], options: Any) -> str:
    """The tail of a shape error where the spec's tensors are CS231n's shapes (a student's
    X (N, C, H, W)): what they are, gradcli's layout and the calls that give it ("" else)."""
    theirs = None if ours is None else cs231n.spec_layout(ours, shapes, options)
    if theirs is None:
        return ""
    return (f"; these are CS231n's shapes ({theirs[0]}), where gradcli's layout is {theirs[1]} "
            f"and gradcli converts nothing: give {theirs[2]}")


def _load(
    layer: Layer, doc: dict, tensors_doc: dict, options: Any, raw_options: Any, loader: Loader
) -> tuple[Layer, dict[str, np.ndarray], Any, tuple[int, ...], np.ndarray]:
    """(the layer for these arrays, the tensors, the resolved options, the output's shape, the
    upstream gradient), each counted on ``loader`` before it is allocated. A loader of shapes
    only gives stand-ins that hold no data, and runs no code of the user's: a layer of yours
    is counted up to its gradients (its output's shape is its forward's to tell)."""
    dry = loader.shapes_only
    arrays: dict[str, np.ndarray] = {}
    # labels and indices last: the range they are drawn in is the size of another tensor's axis
    for info in sorted(layer.tensors, key=lambda i: i.role == "index"):
        if info.name in tensors_doc:
            arrays[info.name] = loader.load(
                tensors_doc[info.name], f"tensors.{info.name}", info.name,
                classes=_classes(layer, info, arrays, options), given=layer.given is not None,
            )  # fmt: skip
        elif not info.optional and not info.absent_ok:
            raise SpecError(
                f"missing tensor {info.name} {info.shape_str} ({info.doc})", key="tensors"
            )
    given = {n: a.shape for n, a in arrays.items()}
    if layer.given is not None and dry:  # a custom layer's roles are read from its values
        _reserve_working(loader, layer, given, options, raw_options)
        return layer, arrays, options, (), np.zeros(())
    if layer.given is not None:  # a custom layer: its integer arrays are its labels, indices
        layer = layer.given(MappingProxyType(arrays))
    # an omitted bias is zeros, sized from the other tensors
    for info in layer.infos(given, options):
        if info.name not in arrays and info.optional:
            shape = _infer_shape(layer, info.axes, arrays, options)
            loader.reserve(math.prod(shape), f"tensors.{info.name}")
            arrays[info.name] = loader.zeros(shape)
    arrays = {i.name: arrays[i.name] for i in layer.tensors if i.name in arrays}  # layer order
    shapes = {n: a.shape for n, a in arrays.items()}
    unresolved, options = options, layer.resolve_options(options, shapes)
    # a user's layer runs the user's forward to learn its output's shape: the built-in's shape
    # rules and working arrays are counted first (ours runs beside it)
    ours = layer if layer.broadcasts else REGISTRY.get(layer.name)
    shaped = False  # the shapes fit the layer (what fails later is values, the user's code)
    try:
        if ours is not None and ours is not layer:
            out_shape = ours.output_shape(shapes, options)
            loader.reserve(math.prod(out_shape), "tensors", _ARRAYS)
            shaped = True
            _reserve_working(loader, ours, shapes, options, raw_options)
        if dry:  # no values to check, and the user's forward is held to ours's shape
            out_shape = out_shape if ours is not layer else layer.output_shape(shapes, options)
        else:
            # a user's forward (run by output_shape) never sees a label or index out of range
            if ours is not layer and layer.check_values is not None:
                layer.check_values(arrays, options)
            out_shape = layer.output_shape(shapes, options)
            if ours is layer and layer.check_values is not None:
                layer.check_values(arrays, options)
    except ShapeError as e:
        message = e.message
        if layer.called_as and not shaped:  # tensors in the layout of the user's code?
            message += (f"; the tensors must be in gradcli's layout ({_layout(ours)}) whatever "
                        f"your code takes: gradcli passes them to {layer.called_as}")  # fmt: skip
        elif not shaped:
            message += _theirs(ours, shapes, unresolved)
        raise ShapeError(message, key=f"tensors.{e.key}" if e.key else "tensors") from None
    except OptionError as e:  # an option the shapes contradict (groupnorm's groups vs C)
        tail = "" if shaped or layer.called_as else _theirs(ours, shapes, unresolved)
        if not tail:
            raise
        raise OptionError(e.message + tail, source=e.source, key=e.key, param=e.param) from None
    if ours is layer or ours is None:
        loader.reserve(math.prod(out_shape), "tensors", _ARRAYS)
        _reserve_working(loader, layer, shapes, options, raw_options)

    # a loss (a scalar output) ends the chain: its upstream gradient is dL/dL = 1
    g_doc = doc.get("grad_output", 1.0 if out_shape == () else {"init": "normal"})
    # a layer of yours: the shape is what its forward returned (a tuple of 3 arrays stacked,
    # a scalar), which the message says rather than blaming the spec alone (outside test
    # t63b F7)
    about = ("" if REGISTRY.get(layer.name) is layer else
             " (what your forward returns: an array, or a tuple or list of arrays of one "
             "shape, stacked)")  # fmt: skip
    grad_output = load_grad_output(loader, g_doc, out_shape, "the output's", about)
    return layer, arrays, options, out_shape, grad_output


def _cast_notes(cast: dict[str, str], dtype: str, whose: str) -> tuple[str, ...]:
    """One note per dtype the arrays were given in that is not the one checked in (``whose``:
    the spec's, or --dtype's)."""
    by_dtype: dict[str, list[str]] = {}
    for name, given in cast.items():
        by_dtype.setdefault(given, []).append(name)
    return tuple(
        f"{', '.join(names)} given as {given}, checked in {dtype} ({whose}; "
        f"{mention('dtype', given)} checks in {given})"
        if given in DTYPES
        else f"{', '.join(names)} given as {given}, checked in {dtype} ({whose})"
        for given, names in by_dtype.items()
    )


def _reserve_working(
    loader: Loader, layer: Layer, shapes: dict[str, tuple[int, ...]], options: Any, raw: Any
) -> None:
    """The gradients (one per tensor) and the layer's declared working arrays, counted against
    the budget before the first forward: a 4-element conv1d with stride 1e10 or a T = 6000
    attention is refused here, naming the options that make it large."""
    working = layer.working(shapes, options) if layer.working is not None else 0
    grads = sum(math.prod(s) for s in shapes.values())
    given = ", ".join(f"{k}: {brief(v, 24)}" for k, v in list((raw or {}).items())[:4])
    what = f"{layer.name}'s working arrays and gradients" + (f" with {given}" if given else "")
    loader.reserve(grads + working, "options" if given else "tensors", what)


def _classes(
    layer: Layer, info: TensorInfo, arrays: dict[str, np.ndarray], options: Any
) -> int | None:
    """For a tensor of role index: the bound of its values, from the axis it indexes (a
    tensor of the wrong rank leaves it open: the layer's shape check then says so)."""
    if info.role != "index":
        return None
    bound = _infer_shape(layer, (info.classes,), arrays, options) if info.classes else ()
    return bound[0] if bound else 2**62


def _infer_shape(
    layer: Layer, axes: tuple[str, ...], arrays: dict[str, np.ndarray], options: Any
) -> tuple:
    sizes: dict[str, int] = {}
    for info in layer.infos({n: a.shape for n, a in arrays.items()}, options):
        if info.name in arrays and info.axes and arrays[info.name].ndim >= len(info.axes):
            core = arrays[info.name].shape[-len(info.axes) :]
            sizes.update(zip(info.axes, core, strict=True))
    missing = [a for a in axes if a not in sizes]
    if missing:  # a tensor of the wrong rank: let the layer's shape check say so
        return ()
    return tuple(sizes[a] for a in axes)


def parse_dtype(value: Any) -> str:
    if isinstance(value, str) and value.lower() in DTYPES:  # as --dtype FLOAT32 is (t65c F9)
        return value.lower()
    if value not in DTYPES:
        raise SpecError(f"expected one of {', '.join(DTYPES)}, got {brief(value)}", key="dtype")
    return value


def parse_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise SpecError(f"expected an integer from 0 to 2**63-1, got {brief(value)}", key="seed")
    return value


def load_grad_output(
    loader: Loader, g_doc: Any, out_shape: tuple[int, ...], whose: str, about: str = ""
) -> np.ndarray:
    """The upstream gradient: drawn with the output's shape unless the spec gives one, which
    must have that shape."""
    if isinstance(g_doc, dict) and "shape" not in g_doc and "file" not in g_doc:
        g_doc = {**g_doc, "shape": list(out_shape)}
    grad_output = loader.load(g_doc, "grad_output", "grad_output")
    if grad_output.shape != out_shape:
        raise SpecError(
            f"the upstream gradient must have {whose} shape {list(out_shape)}{about}, "
            f"got {list(grad_output.shape)}",
            key="grad_output",
        )
    return grad_output


def load_source(
    value: Any, key: str, *, base: Path, source: str, budget: Loader | None = None
) -> np.ndarray:
    """One tensor source (inline, .npy, file.npz:key, {file, key}) outside a spec, in float64:
    how YAML answer files name their arrays; counted on ``budget`` (a Loader) when given."""
    limit = DEFAULT_MAX_ELEMENTS if budget is None else budget.max_elements
    loader = Loader(base, source, 0, "float64", limit)
    if budget is not None:
        loader.used, loader.what = budget.used, budget.what
    try:
        arr = loader.load(value, key, key)
    except GradcliError as e:
        raise e.at(source=source) from None
    if budget is not None:
        budget.used = loader.used
    return arr
