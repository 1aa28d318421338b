"""The command line's vocabulary: its option types and choices, and the loading of what they
name (a spec, a model file), with the checks only the command line needs."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from gradcli.errors import GradcliError


class Format(str, Enum):
    table = "table"
    json = "json"


class DType(str, Enum):
    float64 = "float64"
    float32 = "float32"


LayerArg = Annotated[str, typer.Argument(help="Layer name (see 'gradcli layers').")]
SpecArg = Annotated[
    str | None,
    typer.Argument(help="YAML spec file; '-' reads stdin; omitted: the layer's default spec."),
]
FormatOpt = Annotated[
    Format | None,
    typer.Option(
        "--format",
        "-f",
        case_sensitive=False,
        help="table or json; default: json for an --output FILE.json, else table.",
    ),
]


def _output_path(value: str) -> Path:
    """-o FILE as a path; a trailing slash names a folder, which is no file to write (it wrote
    a file named after the folder: outside test t65c F7)."""
    if value.endswith(("/", os.sep)):
        raise typer.BadParameter(f"{value} ends in '/', a folder's name; name the file to "
                                 f"write ({value}FILE)")  # fmt: skip
    return Path(value)


OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="Write the result to FILE (atomically); .npz writes arrays.",
        parser=_output_path, metavar="FILE",
    ),
]
# commands whose result is text only: their -o refuses .npz, and their help says so (t23 F2)
TextOutputOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", parser=_output_path, metavar="FILE",
                 help="Write the result to FILE (atomically); FILE.json writes JSON; no .npz."),
]  # fmt: skip
TemplateOutputOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", parser=_output_path, metavar="FILE",
                 help="Write it to FILE (atomically) instead of printing it."),
]
PrintFormatOpt = Annotated[
    Format | None,
    typer.Option("--format", "-f", case_sensitive=False, help="table or json; default: table."),
]
DTypeOpt = Annotated[
    DType | None, typer.Option(case_sensitive=False, help="Override the spec's dtype.")
]
SeedOpt = Annotated[int | None, typer.Option(help="Override the spec's seed.")]
ImplOpt = Annotated[
    str | None,
    typer.Option(
        "--impl",
        help="Your implementation: FILE.py (or FILE.py:NAME) with forward() and backward().",
    ),
]
# spec.DEFAULT_MAX_ELEMENTS, repeated here so that `gradcli --help` imports no numpy
MAX_ELEMENTS = 50_000_000
MaxElementsOpt = Annotated[
    int,
    typer.Option(help="Refuse a spec whose arrays and output exceed this many elements."),
]
TracebackOpt = Annotated[
    bool, typer.Option("--traceback", help="Show the traceback of an internal error.")
]


class MethodChoice(str, Enum):
    central = "central"
    forward = "forward"
    backward = "backward"
    central4 = "central4"
    complex = "complex"


class ModeChoice(str, Enum):
    full = "full"
    sample = "sample"
    probe = "probe"


def load(
    layer: str,
    spec: str | None,
    dtype: DType | None,
    seed: int | None,
    impl: str | None = None,
    max_elements: int = MAX_ELEMENTS,
    *,
    command: str = "check",
    answers: dict[str, Any] | None = None,
) -> Any:
    """The spec; ``answers`` (a custom layer checked on --grads): the dict its gradients are
    read from once the file is read, --impl giving its forward alone."""
    from gradcli.inputs import arguments
    from gradcli.inputs.spec import MAX_SEED, load_spec

    if seed is not None:  # the library's own checks and messages
        arguments.integer(seed, "seed", 0, MAX_SEED)
    arguments.integer(max_elements, "max_elements", 1)
    layer, spec = _named_by_file(layer, spec, command)
    if answers is not None and layer != "custom":
        raise GradcliError(
            "goes without --grads for a built-in layer: --grads checks your gradients for our "
            "layer, --impl your own forward and backward; give one of them (a custom layer "
            "takes both: its forward from --impl, the gradients checked from --grads)",
            param="impl",
        )
    code = None
    if impl:
        from gradcli.user.impl import load_impl

        # explain needs no backward: a custom layer's forward alone (written for --grads)
        described = command == "explain" and layer == "custom"
        code = load_impl(impl, forward_only=answers is not None or described)
        if answers is not None:
            from gradcli.user.impl import for_answers

            code = for_answers(code, answers)
        elif described:
            from gradcli.user.impl import forward_alone

            code = forward_alone(code)
    return load_spec(
        layer, spec, dtype=dtype.value if dtype else None, seed=seed, impl=code,
        max_elements=max_elements,
    )  # fmt: skip


def model_first(layer: str, spec: str | None) -> tuple[str, str | None]:
    """(layer, spec): a model file given alone (``gradcli check model.yaml``) is read as
    ``gradcli check net model.yaml``, as a spec file alone is read as the layer it names
    (outside test t54a F6: the refusal named the command it would have run)."""
    from gradcli.layers import REGISTRY

    if spec is not None or layer in REGISTRY or layer in ("custom", "net"):
        return layer, spec
    if layer != "-" and (Path(layer).suffix.lower() not in (".yaml", ".yml", ".json")
                         or not Path(layer).is_file()):  # fmt: skip
        return layer, spec
    from gradcli.api.network import is_model

    return ("net", layer) if is_model(layer, None) else (layer, spec)


def _named_by_file(layer: str, spec: str | None, command: str) -> tuple[str, str | None]:
    """(layer, spec): a spec file given alone (``gradcli check spec.yaml``) whose ``layer:``
    names a layer is read as ``gradcli check LAYER spec.yaml`` (outside test t52a F4: every
    CI call repeated the name the file holds). A model file, or one naming no layer: say the
    command that reads it, rather than "unknown layer 'model.yaml'"."""
    from gradcli.layers import REGISTRY

    if layer in REGISTRY or layer == "custom" or spec is not None:
        return layer, spec
    from gradcli.api.network import is_model

    if layer == "-":  # a spec on stdin naming its layer (outside test t56b F3)
        named = _spec_layer(layer)
        if named in REGISTRY or named == "custom":
            return str(named), layer
        raise GradcliError("<stdin>: expected a spec naming its layer (layer: NAME), or a "
                           f"model (network:): or give the layer, gradcli {command} LAYER -")
    pathlike = "/" in layer or Path(layer).suffix.lower() in (".yaml", ".yml", ".json")
    if not pathlike and not Path(layer).is_file():
        return layer, spec
    if not Path(layer).exists():  # a mistyped path is no layer either (outside tests t55a F6,
        # t57a F11: 'nonexist/' read as an unknown layer)
        raise GradcliError(f"{layer}: file not found (expected a spec file, or a layer's name: "
                           f"gradcli layers lists them)")  # fmt: skip
    if Path(layer).is_file() and is_model(layer, None):
        raise GradcliError(f"{layer} is a model file (network:): gradcli {command} net {layer}")
    named = _spec_layer(layer) if Path(layer).is_file() else None
    if named in REGISTRY or named == "custom":
        return str(named), layer
    if named is not None:
        from gradcli.layers import LAYER_ALIASES
        from gradcli.layers.base import did_you_mean

        near = did_you_mean(named, list(REGISTRY), LAYER_ALIASES)
        raise GradcliError(f"{layer}: layer: unknown layer {named!r}{near} (gradcli layers "
                           "lists them)")  # fmt: skip
    raise GradcliError(f"expected a layer's name first, got the file {layer}: gradcli {command} "
                       f"LAYER {layer} (gradcli layers lists them)")  # fmt: skip


def _spec_layer(path: str) -> str | None:
    """The ``layer:`` a spec file names, or None. A YAML or JSON file (or stdin) that does not
    parse says why, as it would with its layer given: 'expected a layer's name first' sent
    the user to fix a `layer: linear` that was right, beside a key given twice (outside test
    t65c F1); another file (./x.npy) is no spec, and that is said instead."""
    from gradcli.files.reading import parse_yaml, read_spec_text
    from gradcli.inputs.spec import DEFAULT_MAX_ELEMENTS

    try:
        text, source, _ = read_spec_text(path)
        doc = parse_yaml(text, source=source, max_elements=DEFAULT_MAX_ELEMENTS)
    except GradcliError:
        if path == "-" or Path(path).suffix.lower() in (".yaml", ".yml", ".json"):
            raise
        return None
    named = doc.get("layer") if isinstance(doc, dict) else None
    return named if isinstance(named, str) else None


def load_net(
    spec: str | None, dtype: DType | None, seed: int | None, max_elements: int, **refused: Any
) -> Any:
    """A model file for the ``net`` commands; options that apply to one layer are refused."""
    from gradcli.errors import OptionError
    from gradcli.inputs import arguments
    from gradcli.inputs.network import load_network
    from gradcli.inputs.spec import MAX_SEED

    for param, given in refused.items():
        if given:
            where = "entries of the model file (impl: FILE.py)" if param == "impl" else "one layer"
            raise OptionError(f"goes with {where}, not with a network", param=param)
    if spec is None:
        raise GradcliError("a network needs its model file: gradcli init net -o model.yaml "
                           "writes one")  # fmt: skip
    if seed is not None:
        arguments.integer(seed, "seed", 0, MAX_SEED)
    arguments.integer(max_elements, "max_elements", 1)
    return load_network(spec, dtype=dtype.value if dtype else None, seed=seed,
                        max_elements=max_elements)  # fmt: skip


def parse_eps(text: str) -> float | None:
    from gradcli.errors import OptionError

    if text.lower() == "auto":  # a name, not a spelling, as --method's choices are
        return None
    try:
        return float(text)
    except ValueError:
        raise OptionError(f"expected 'auto' or a number, got {text!r}", param="eps") from None
