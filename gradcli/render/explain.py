"""``gradcli explain``: a layer's forward and gradient formulas as plain text sections.

Each layer writes its own formulas (``Layer.explain``, in the layer's file: the seed notes'
formulas in unicode math, in their notation, the variants the options select, the shapes
substituted, one line of intuition per gradient); this module adds what every layer shares:
the batch sums and the shapes. Pure data: no rich and no printing here, so the same sections
serve the terminal and JSON.
"""

from __future__ import annotations

from typing import Any

from gradcli.inputs.spec import Spec
from gradcli.layers import REGISTRY
from gradcli.layers.base import options_dict
from gradcli.layers.words import Shown
from gradcli.layers.words import shape as _s
from gradcli.records import record

BATCH_SUM = "parameter gradients are summed over the batch"


@record
class Section:
    """One titled block of explanation: ``forward``, ``dL/d<tensor>`` or ``shapes``."""

    title: str
    lines: list[str]


def _batch(spec: Spec) -> tuple[int, ...]:
    """The input's leading axes beyond its core axes: the batch. None for a layer that names
    no core axes of its input (a custom layer's): its axes may be anything, and an MLP's
    features were called 'batch axes (4, 3), the leading axes of the input' (outside test
    t31a L1)."""
    for info in spec.layer.infos(spec.shapes, spec.options):
        if info.role == "input" and info.name in spec.shapes:
            if not info.axes:
                return ()
            shape = spec.shapes[info.name]
            return tuple(shape[: len(shape) - len(info.axes)])
    return ()


def _bs(count: int) -> list[str]:
    """The tables' letters of ``count`` leading batch axes: b0, b1, ..."""
    return [f"b{k}" for k in range(count)]


def _leading(count: int) -> tuple[str, ...]:
    """The names of ``count`` leading batch axes: ``batch`` alone, else the tables' letters
    (a relu at (2, 8, 8, 4) read ``(batch, batch, batch, n)``: outside test t56b F6)."""
    return ("batch",) if count == 1 else tuple(_bs(count))


def _indexed(lead: int, index: tuple[str, ...], axes: tuple[str, ...]) -> str:
    """``, indexed [b0, k]``: the letters the tables and hints index a tensor by (lstm_step's
    prev_h[b0=1, k=0] and prev_c[b0=1, u=1] on one H axis were never said: outside test t56b
    F6); "" where its letters do not name every core axis."""
    if len(index) != len(axes) or lead < 0:
        return ""
    return f", indexed [{', '.join(_bs(lead) + list(index))}]"


def _assemble(
    spec: Spec,
    fwd: list[str],
    grads: dict[str, tuple[list[str], str]],
    out_axes: tuple,
    extra: list[str],
) -> list[Section]:
    """forward, one ``dL/dT`` section per gradient (lines, intuition), then the shapes."""
    batch, out, out_shape = _batch(spec), spec.output_info.name, spec.grad_output.shape
    secs = [Section("forward", fwd)]
    for name, (lines, why) in grads.items():
        if batch and name in spec.shapes and spec.info(name).role != "input":
            lines = [*lines, f"summed over the batch axes {_s(batch)}: {BATCH_SUM}"]
        elif batch and name in spec.shapes and spec.info(name).axes and (
                len(spec.shapes[name]) - len(spec.info(name).axes) < len(batch)):
            # an input given once for the whole batch (lstm_step's prev_h (H,) beside x
            # (3, D)): 'dL/dprev_h (5,) = dL/da Whᵀ' is (3, 5) as written (outside test t65c F5)
            lines = [*lines, f"summed over the batch axes {_s(batch)}: {name} is shared by "
                             f"every example, so its gradient is their sum"]
        secs.append(Section(f"dL/d{name}", [*lines, f"intuition: {why}"]))
    shapes = ["  ".join(f"{n}: {_s(s)}" for n, s in {**spec.shapes, out: out_shape}.items())]
    # indices whose every axis is a position (an embedding's idx): the output has them too
    positions = 0
    for info in spec.layer.infos(spec.shapes, spec.options):
        if info.role == "index" and not info.axes and not batch and spec.shapes.get(info.name):
            positions = len(spec.shapes[info.name])
            shapes.append(f"{info.name} {_s(spec.shapes[info.name])} = "
                          f"{_named(('positions',) * positions)}")  # fmt: skip
        if info.name in spec.shapes and info.axes:  # a user's layer names no axes
            lead = len(spec.shapes[info.name]) - len(info.axes)
            axes = _leading(lead) + info.axes
            # the letters the tables and hints index it by (lstm_step's prev_h[b0=1, k=0] and
            # prev_c[b0=1, u=1] on one H axis were never said: outside test t56b F6)
            letters = _indexed(lead, info.index, info.axes)
            shapes.append(f"{info.name} {_s(spec.shapes[info.name])} = {_named(axes)}{letters}")
    if out_axes:
        lead = _leading(len(batch)) + ("positions",) * positions
        letters = ""
        if tuple(out_axes) == tuple(spec.output_info.axes):  # (attention's d_out: no letter)
            letters = _indexed(len(out_shape) - len(out_axes), spec.output_info.index, out_axes)
        shapes.append(f"{out} {_s(out_shape)} = {_named(lead + out_axes)}{letters}")
    shapes.append(f"∂L/∂{out} {_s(out_shape)} is the upstream gradient; every gradient has its "
                  f"tensor's shape")  # fmt: skip
    if batch:
        letters = ", ".join(_bs(len(batch)))
        shapes.append(f"batch axes {_s(batch)}, the leading axes of the input ({letters} in "
                      f"the tables' indices): every formula holds per example and "
                      f"{BATCH_SUM}")  # fmt: skip
    return [*secs, Section("shapes", shapes + extra)]


def _generic(spec: Spec) -> list[Section]:
    """A layer the notes do not cover (e.g. a user's): its summary and each gradient's shape."""
    grads = {
        n: ([f"∂L/∂{n} {_s(s)}"], "no formula known: a layer of your own")
        for n, s in spec.grad_shapes.items()
    }
    return _assemble(spec, [spec.layer.summary], grads, spec.output_info.axes, [])


def explain(spec: Spec) -> list[Section]:
    """The forward, one section per gradient and the shapes of ``spec``'s layer, as text.
    Your implementation of a built-in layer gets the built-in's formulas, which it is checked
    against (they read 'no formula known: a layer of your own': outside test t44a N11)."""
    own = spec.layer.explain
    if own is None and not spec.layer.broadcasts and spec.layer.name in REGISTRY:
        own = REGISTRY[spec.layer.name].explain
    sections = None
    if own is not None:
        shown = Shown(spec.shapes, spec.options, tuple(spec.grad_output.shape), _batch(spec))
        try:
            f = own(shown)
            sections = _assemble(spec, f.forward, f.grads, f.out_axes, f.extra)
        except Exception:  # noqa: BLE001 - yours in another layout (CS231n's N, C, H, W)
            if own is spec.layer.explain:
                raise
    if sections is None:
        sections = _generic(spec)
    inter, name = spec.layer.intermediates, spec.layer.name
    if inter:  # a student's derivation goes through them: say they can be checked one by one
        d = ", ".join("d" + n for n in inter)
        sections.append(Section("checking your intermediates", [
            f"your {d} can be checked too, each against finite differences of the forward "
            "from that intermediate on (upstream held fixed)",
            f"gradcli compute {name} -o mine.npz   writes ours, with the tensors' gradients, "
            "to start an answer file from",
            f"gradcli check {name} --grads mine.npz   (.npz or YAML keyed {d}; one .npy with "
            f"--wrt {inter[-2]}); an --impl backward may return them too",
        ]))  # fmt: skip
    return sections


def custom() -> list[Section]:
    """``explain custom`` with no module yet: what a layer of your own is and how it is checked."""
    return [
        Section("a layer of your own", [
            "a module with forward(**tensors, **options) -> output and "
            "backward(grad_output, **tensors, **options) -> {tensor name: gradient}",
            "the tensors and options are the ones your spec names under tensors: and options:",
            "intuition: gradcli differentiates your forward numerically and holds your backward "
            "to it, element by element, plus the backward's contract (zero upstream, "
            "determinism, linearity, dtype, no writes)",
        ]),
        Section("start", [
            "gradcli init custom -o my.yaml            a spec that runs with the skeleton below",
            "gradcli init custom --impl -o my_custom.py   a skeleton module to fill in",
            "gradcli check custom my.yaml --impl my_custom.py",
            "gradcli explain custom my.yaml --impl my_custom.py   your layer's tensors and "
            "gradient shapes",
        ]),
    ]  # fmt: skip


def custom_doc() -> dict[str, Any]:
    return {
        "layer": "custom",
        "options": {},
        "sections": [{"title": s.title, "lines": list(s.lines)} for s in custom()],
    }


def explain_doc(spec: Spec) -> dict[str, Any]:
    """``explain`` as a JSON-ready mapping: layer, non-default options and the sections."""
    return {
        "layer": spec.layer.name,
        "options": options_dict(spec.options),
        "sections": [{"title": s.title, "lines": list(s.lines)} for s in explain(spec)],
    }


def explain_net(net: Any) -> list[Section]:
    """``explain net``: the chain (shapes at every boundary) and the chain rule that runs it
    backwards, then each layer's own sections with the shapes at its place."""
    from gradcli.checking.network import local_specs

    acts = net.net.walk(net.net.shapes)
    x = net.net.input
    info = net.spec.layer.tensor(x)
    shape = net.net.shapes[x]
    flow = [f"{x} {_s(shape)}{_indexed(len(shape) - len(info.index), info.index, info.axes)}"]
    for kind, op in net.net.program:
        if kind == "push":
            flow.append(f"residual block {op.name!r} begins: keep its input")
        elif kind == "add":
            flow.append(f"+ the block's input = {op.out} {_s(acts[op.out])}")
        else:
            flow.append(f"layer {op.index} {op.layer.name} {op.name!r} -> {op.out} "
                        f"{_s(acts[op.out])}")  # fmt: skip
    out = net.net.boundaries()[-1]
    rule = [
        f"∂L/∂{out} {_s(acts[out])} is the upstream gradient"
        + (" (a loss: 1)" if acts[out] == () else ""),
        "backwards, each layer's backward turns ∂L/∂(its output) into ∂L/∂(its input), which "
        "is ∂L/∂(the output of the layer before)",
        "a parameter's gradient is its layer's, at its input and with its upstream gradient: "
        "∂L/∂<name>.W comes from ∂L/∂<name>.out",
        "a residual block y = x + f(x): ∂L/∂x = ∂L/∂y + f's backward of ∂L/∂y",
        "intuition: one wrong backward corrupts every gradient below it, so gradcli checks "
        "each layer at its place and blames the first one (from the output) that fails",
    ]
    secs = [Section("network", flow), Section("backward (chain rule)", rule)]
    for node, spec in local_specs(net):
        for s in explain(spec):
            if s.title != "checking your intermediates":
                secs.append(Section(f"layer {node.index} {node.layer.name} {node.name!r}: "
                                    f"{s.title}", s.lines))  # fmt: skip
    names = ", ".join([*list(net.spec.tensors)[1:3], f"d{net.net.boundaries()[0]}"])
    secs.append(Section("checking your own gradients", [
        "gradcli compute net MODEL -o mine.npz   writes every gradient, at every boundary too",
        f"gradcli check net MODEL --grads mine.npz   (.npz or YAML keyed {names} ...)",
    ]))  # fmt: skip
    return secs


def explain_net_doc(net: Any) -> dict[str, Any]:
    return {
        "layer": "net",
        "layers": [{"index": n.index, "name": n.name, "layer": n.layer.name} for n in net.nodes],
        "sections": [{"title": s.title, "lines": list(s.lines)} for s in explain_net(net)],
    }


def _named(axes: tuple[str, ...]) -> str:
    """Axis names as the shape beside them is written: (N, C), and (N,) for one axis."""
    return f"({', '.join(axes)}{',' if len(axes) == 1 else ''})"
