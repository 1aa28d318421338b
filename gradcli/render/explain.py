"""``gradcli explain``: a layer's forward and gradient formulas as plain text sections.

Each layer writes its own formulas (``Layer.explain``, in the layer's file: the seed notes'
formulas in unicode math, in their notation, the variants the options select, the shapes
substituted, one line of intuition per gradient); this module adds what every layer shares:
the batch sums and the shapes. Pure data: no rich and no printing here, so the same sections
serve the terminal and JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gradcli.inputs.spec import Spec
from gradcli.layers.base import options_dict
from gradcli.layers.words import Shown
from gradcli.layers.words import shape as _s

BATCH_SUM = "parameter gradients are summed over the batch"


@dataclass(frozen=True)
class Section:
    """One titled block of explanation: ``forward``, ``dL/d<tensor>`` or ``shapes``."""

    title: str
    lines: list[str]


def _batch(spec: Spec) -> tuple[int, ...]:
    """The input's leading axes beyond its core axes: the batch."""
    for info in spec.layer.infos(spec.shapes, spec.options):
        if info.role == "input" and info.name in spec.shapes:
            shape = spec.shapes[info.name]
            return tuple(shape[: len(shape) - len(info.axes)])
    return ()


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
        secs.append(Section(f"dL/d{name}", [*lines, f"intuition: {why}"]))
    shapes = ["  ".join(f"{n}: {_s(s)}" for n, s in {**spec.shapes, out: out_shape}.items())]
    for info in spec.layer.infos(spec.shapes, spec.options):
        if info.name in spec.shapes and info.axes:  # a user's layer names no axes
            axes = ("batch",) * (len(spec.shapes[info.name]) - len(info.axes)) + info.axes
            shapes.append(f"{info.name} {_s(spec.shapes[info.name])} = ({', '.join(axes)})")
    if out_axes:
        shapes.append(f"{out} {_s(out_shape)} = ({', '.join(('batch',) * len(batch) + out_axes)})")
    shapes.append(f"∂L/∂{out} {_s(out_shape)} is the upstream gradient; each ∂L/∂T has T's shape")
    if batch:
        shapes.append(f"batch axes {_s(batch)}, the leading axes of the input: every formula "
                      f"holds per example and {BATCH_SUM}")  # fmt: skip
    return [*secs, Section("shapes", shapes + extra)]


def _generic(spec: Spec) -> list[Section]:
    """A layer the notes do not cover (e.g. a user's): its summary and each gradient's shape."""
    grads = {n: ([f"∂L/∂{n} {_s(s)}"], "no formula in the notes") for n, s in spec.shapes.items()}
    return _assemble(spec, [spec.layer.summary], grads, spec.output_info.axes, [])


def explain(spec: Spec) -> list[Section]:
    """The forward, one section per gradient and the shapes of ``spec``'s layer, as text."""
    if spec.layer.explain is None:
        sections = _generic(spec)
    else:
        shown = Shown(spec.shapes, spec.options, tuple(spec.grad_output.shape), _batch(spec))
        f = spec.layer.explain(shown)
        sections = _assemble(spec, f.forward, f.grads, f.out_axes, f.extra)
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
