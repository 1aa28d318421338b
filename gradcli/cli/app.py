"""The command line: parse, call the core, render (exits.py turns errors into exit codes).

Heavy modules (numpy, rich, the layers) are imported inside the commands so that
``gradcli --help`` stays fast.
"""


import copy
import dataclasses
import sys
import warnings
from typing import Annotated, Any

import typer

from gradcli.cli.args import (
    MAX_ELEMENTS,
    DTypeOpt,
    Format,
    FormatOpt,
    ImplOpt,
    LayerArg,
    MaxElementsOpt,
    MethodChoice,
    ModeChoice,
    OutputOpt,
    PrintFormatOpt,
    SeedOpt,
    SpecArg,
    TemplateOutputOpt,
    TextOutputOpt,
    TracebackOpt,
    load,
    load_net,
    model_first,
    parse_eps,
)
from gradcli.cli.emit import emit, input_files, ready, same_stream, wants_json
from gradcli.cli.exits import GradcliGroup, note
from gradcli.cli.network import check_net
from gradcli.errors import EXIT_MISMATCH, GradcliError

app = typer.Typer(
    cls=GradcliGroup,
    name="gradcli",
    help="Compute and check the gradients of neural-network layers (see 'gradcli layers').",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from gradcli import __version__

        emit(None, (), text=f"gradcli {__version__}\n")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    pass


@app.command(short_help="Forward and backward pass: shapes, values, gradients.")
def compute(
    layer: LayerArg,
    spec: SpecArg = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    dtype: DTypeOpt = None,
    seed: SeedOpt = None,
    impl: ImplOpt = None,
    max_elements: MaxElementsOpt = MAX_ELEMENTS,
    traceback: TracebackOpt = False,
) -> None:
    """Forward pass and analytical backward pass: shapes, values, gradients."""
    from gradcli.checking.compute import compute as run_compute
    from gradcli.render import jsondoc
    from gradcli.render import text as render

    as_json = wants_json(fmt, output)
    ready(output, ())  # (a missing folder before an --impl module's imports: t59a F6)
    layer, spec = model_first(layer, spec)
    if layer == "net":
        from gradcli.render import netdoc, network

        net = load_net(spec, dtype, seed, max_elements, impl=impl)
        ready(output, input_files(net.spec))
        comp = run_compute(net.spec)
        emit(
            output, input_files(net.spec),
            text=jsondoc.to_json(netdoc.compute_doc(net, comp)) if as_json
            else lambda c: network.render_compute(c, net, comp),
            npz=lambda: jsondoc.npz_bytes(net.spec, comp),
        )  # fmt: skip
        return
    s = load(layer, spec, dtype, seed, impl, max_elements, command="compute")
    ready(output, input_files(s, impl))
    for said in s.notes:  # arrays cast to the dtype computed in, as check says (t65c F6)
        note(said.replace(", checked in ", ", computed in ").replace(" checks in ",
                                                                       " computes in "))
    comp = run_compute(s)
    emit(
        output,
        input_files(s, impl),
        text=jsondoc.to_json(jsondoc.compute_doc(s, comp))
        if as_json
        else lambda c: render.render_compute(
            c, s, comp, elsewhere="use --format json or --output FILE.npz"
        ),
        npz=lambda: jsondoc.npz_bytes(s, comp),
    )


@app.command(short_help="Gradients against numerical ones; exit 1 on a mismatch.")
def check(
    layer: LayerArg,
    spec: SpecArg = None,
    method: Annotated[
        MethodChoice, typer.Option(case_sensitive=False, help="Finite-difference method.")
    ] = (MethodChoice.central),
    eps: Annotated[
        str, typer.Option(help="Step relative to max(1, |x|), or 'auto' (per method).")
    ] = "auto",
    atol: Annotated[float | None, typer.Option(help="Absolute tolerance.")] = None,
    rtol: Annotated[float | None, typer.Option(help="Relative tolerance.")] = None,
    mode: Annotated[
        ModeChoice | None,
        typer.Option(
            case_sensitive=False,
            help="full (default below --budget, else sample), sample or probe.",
        ),
    ] = None,
    samples: Annotated[int, typer.Option(help="Coordinates per tensor in sample mode.")] = 64,
    coloring: Annotated[
        bool,
        typer.Option(
            "--coloring/--no-coloring",
            help="Perturb disjoint footprints together and evaluate dense tensors "
            "incrementally; off: one forward pass per coordinate.",
        ),
    ] = True,
    max_memory: Annotated[int, typer.Option(help="Memory budget of the numerics, in MB.")] = 512,
    budget: Annotated[
        float, typer.Option(help="Seconds a full check may take before sampling instead.")
    ] = 60.0,
    sweep: Annotated[
        bool, typer.Option("--sweep", help="Error against step for steps 1e-1 ... 1e-12.")
    ] = False,
    values: Annotated[
        bool,
        typer.Option("--values", help="Also show every array's values (analytic and numeric)."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Tables: print the summary line alone.")
    ] = False,
    grads: Annotated[
        str | None,
        typer.Option(help="Your gradients to check: .npz keyed by tensor, .npy (--wrt), YAML."),
    ] = None,
    wrt: Annotated[str | None, typer.Option(help="The tensor a .npy --grads file is for.")] = None,
    top: Annotated[int, typer.Option(help="Elements in each tensor's worst-k table.")] = 5,
    impl: ImplOpt = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    dtype: DTypeOpt = None,
    seed: SeedOpt = None,
    max_elements: MaxElementsOpt = MAX_ELEMENTS,
    traceback: TracebackOpt = False,
) -> None:
    """Compare the analytical gradients (or yours: --grads, --impl) with numerical ones.
    Exit 1 on a mismatch."""
    from gradcli.checking.check import CheckOptions
    from gradcli.checking.check import check as run_check
    from gradcli.checking.soundness import refuse_zero_upstream
    from gradcli.numeric import memory
    from gradcli.render import text as render

    opts = CheckOptions(
        method=method.value, eps=parse_eps(eps), atol=atol, rtol=rtol,
        mode=mode.value if mode else "auto", samples=samples, coloring=coloring,
        max_memory=max_memory * 2**20, budget=budget, notify=note, top=top,
    )  # fmt: skip
    as_json = wants_json(fmt, output)
    ready(output, ())  # (a missing folder before an --impl module's imports: t59a F6)
    layer, spec = model_first(layer, spec)
    if layer == "net":
        check_net(spec, opts, dtype, seed, max_elements, grads, wrt, fmt, output, quiet,
                   impl=impl, sweep=sweep, values=values)  # fmt: skip
        return
    # a custom layer's saved answers: its forward from --impl, its gradients from --grads (a
    # forward alone could not be checked against a hand-computed file: outside test t59b F5)
    held: dict[str, Any] | None = {} if grads is not None and impl is not None else None
    s = load(layer, spec, dtype, seed, impl, max_elements, command="check", answers=held)
    refuse_zero_upstream(s)
    memory.require(s, opts.method, opts.max_memory)  # before the first forward
    if grads is not None:
        from gradcli.checking import intermediates
        from gradcli.inputs.answers import load_answers

        answers = load_answers(
            grads, wrt, s.grad_shapes, intermediates.shapes(s), counted=s.elements,
            max_elements=s.max_elements, constants=s.layer.constants(s.shapes, s.options),
            layer=s.layer, options=s.options,
        )  # fmt: skip
        opts = dataclasses.replace(opts, grads=answers)
        if held is not None:
            held.update(answers)
            if s.drawn_upstream:  # answers are for one upstream gradient: the user's must be
                # this one, which they could not see (outside test t63b F6)
                note(f"grad_output is not in the spec: drawn from its seed ({s.seed}); your "
                     f"answers must be for that upstream gradient (-o run.npz writes it), or "
                     f"give the one they are for as grad_output in the spec")
    elif wrt is not None:
        raise GradcliError("--wrt goes with a .npy --grads file", param="wrt")
    ready(output, input_files(s, impl, grads))
    if sweep:
        # the verdict is the check's own (every element, the contract) and the sweep's: the
        # sweep's normalized error alone would drown one wrong element in the largest one;
        # the coordinates the check found at kinks read no derivative at any step
        from gradcli.checking.sweep import run_sweep
        from gradcli.render import jsondoc
        from gradcli.render.sweep import render_sweep

        report = run_check(s, opts)
        rows, best, wrong = run_sweep(
            s, opts.method, coloring, opts.grads, opts.max_memory,
            budget=opts.budget, samples=opts.samples, notify=note,
            skip={n: r.kink_at for n, r in report.results.items()},
        )  # fmt: skip
        passed = report.passed and not wrong
        doc = jsondoc.sweep_doc(s, opts.method, rows, best, wrong, report)
        emit(output, input_files(s, impl, grads), text=jsondoc.to_json(doc) if as_json
              else lambda c: render_sweep(c, s, opts.method, rows, best, wrong, report,
                                          quiet=quiet))  # fmt: skip
        if not passed:
            raise typer.Exit(EXIT_MISMATCH)
        return
    with render.ProgressBar(sys.stderr) as bar:
        report = run_check(s, dataclasses.replace(opts, progress=bar))
    comp, numeric = report.computation, report.numeric
    if as_json:
        from gradcli.render import jsondoc

        doc = (
            jsondoc.check_doc(s, report, comp, numeric) if values else jsondoc.check_doc(s, report)
        )
        text: Any = jsondoc.to_json(doc)
    else:
        text = lambda c: render.render_check(  # noqa: E731
            c, s, comp, numeric, report, opts.grads, values=values, quiet=quiet,
            elsewhere="use --format json --values or --output FILE.npz",
            streamed=output is None and same_stream(),
        )  # fmt: skip
    inputs = input_files(s, impl, grads)
    emit(output, inputs, text=text, npz=lambda: _npz(s, comp, numeric))
    if not report.passed:
        raise typer.Exit(EXIT_MISMATCH)


def _npz(*args: Any) -> bytes:
    from gradcli.render import jsondoc  # only when --output is an .npz

    return jsondoc.npz_bytes(*args)


@app.command(short_help="The built-in layers: tensors, shapes, options.")
def layers(fmt: PrintFormatOpt = None, traceback: TracebackOpt = False) -> None:
    """List the built-in layers: tensors, shape conventions, output, options."""
    from gradcli.render import jsondoc
    from gradcli.render.docs import render_layers

    if fmt is Format.json:
        emit(None, (), text=jsondoc.to_json(jsondoc.layers_doc()))
    else:
        emit(None, (), text=render_layers)


@app.command(short_help="A layer's forward and gradient formulas.")
def explain(
    layer: LayerArg,
    spec: SpecArg = None,
    fmt: FormatOpt = None,
    output: TextOutputOpt = None,
    impl: ImplOpt = None,
    traceback: TracebackOpt = False,
) -> None:
    """The layer's forward and gradient formulas, with the spec's shapes and options; for
    `custom` without --impl, how a layer of your own is written and checked."""
    from gradcli.render import explain as explain_mod
    from gradcli.render import jsondoc
    from gradcli.render.docs import render_explain

    as_json = wants_json(fmt, output)
    layer, spec = model_first(layer, spec)
    if layer == "net":
        net = load_net(spec, None, None, MAX_ELEMENTS, impl=impl)
        inputs = input_files(net.spec)
        emit(output, inputs, text=jsondoc.to_json(explain_mod.explain_net_doc(net)) if as_json
             else lambda c: render_explain(c, explain_mod.explain_net(net)))  # fmt: skip
        return
    if layer == "custom" and impl is None and spec is None:
        doc, sections, inputs = explain_mod.custom_doc(), explain_mod.custom(), ()
    else:
        s = load(layer, spec, None, None, impl, command="explain")
        doc, sections, inputs = None, None, input_files(s, impl)
    if as_json:
        emit(output, inputs, text=jsondoc.to_json(doc or explain_mod.explain_doc(s)))
    else:
        emit(output, inputs, text=lambda c: render_explain(c, sections or explain_mod.explain(s)))


@app.command(short_help="A template spec (LAYER, net, custom); --impl: a skeleton.")
def init(
    layer: LayerArg,
    output: TemplateOutputOpt = None,
    impl: Annotated[
        bool, typer.Option("--impl", help="A skeleton module to implement LAYER yourself.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing -o FILE.")] = False,
    traceback: TracebackOpt = False,
) -> None:
    """Print a commented template spec for LAYER (or write it with -o FILE): a built-in
    layer, `net` (a model file) or `custom` (your own layer); with --impl a skeleton module with
    the layer's formulas (the notes gradcli started from) in comments."""
    from gradcli.layers import get_layer
    from gradcli.render import jsondoc, skeleton

    if layer == "net":
        from gradcli.render.netdoc import NET_TEMPLATE

        if impl:
            raise GradcliError("goes with one layer: a network's own layers are entries of its "
                               "model file (impl: FILE.py)", source="--impl")  # fmt: skip
        text = NET_TEMPLATE
    elif impl:
        text = skeleton.module(layer, None if output is None else str(output))
    elif layer == "custom":  # no built-in to describe: a spec that runs with the custom skeleton
        text = skeleton.CUSTOM_SPEC
    else:
        text = jsondoc.init_template(get_layer(layer))
    from gradcli.render.comments import fit_comments

    # an 80-column terminal shows it whole; the run line then names the file written, whole
    text = fit_comments(text, inline=not impl)
    if output is not None and not impl:  # the template's own run line names the file written
        text = text.replace("THIS_FILE.yaml", skeleton.command_word(str(output)))
    # compute's and check's -o FILE.json writes JSON: a commented YAML template there would be
    # neither (outside test t50b F5)
    if output is not None and not impl and output.suffix.lower() == ".json":
        raise GradcliError(f"{output}: a template is commented YAML; name it .yaml",
                           param="output")  # fmt: skip
    # a device or a folder is refused by emit, for what it is: --force would not help
    if output is not None and not force and (output.is_file() or output.is_symlink()):
        raise GradcliError(f"{output} already exists; --force overwrites it", param="output")
    emit(output, (), text=text)


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``gradcli`` and ``python -m gradcli``; returns the exit code."""
    # numpy's warnings raised in gradcli's own arithmetic (an inf over an inf in a heat map)
    # are no line of stderr for the user: they said '/.../gradcli/render/diag.py:252:
    # RuntimeWarning' (outside test t34b F2). The user's own code keeps its warnings
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"gradcli(\.|$)")
    command = typer.main.get_command(_invoked(sys.argv[1:] if argv is None else argv))
    return command.main(args=argv, prog_name="gradcli", standalone_mode=False)


def _invoked(argv: list[str]) -> typer.Typer:
    """The app with only the command ``argv`` names, when it names one: typer builds every
    registered command's click parameters from its signature, 12 million instructions for the
    five, of which a run uses one. Anything else (no command, --version, a typo to suggest a
    name for) gets the whole app."""
    chosen = [c for c in app.registered_commands if argv and _name(c) == argv[0]]
    if not chosen:
        return app
    one = copy.copy(app)
    one.registered_commands = chosen
    return one


def _name(command: Any) -> str:
    return command.name or typer.main.get_command_name(command.callback.__name__)
