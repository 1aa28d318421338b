"""The command line: parse, call the core, render. The one place errors become exit codes.

Heavy modules (numpy, rich, the layers) are imported inside the commands so that
``gradcli --help`` stays fast.
"""

from __future__ import annotations

import ctypes
import errno
import sys
import traceback as tb
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from gradcli.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_MISMATCH,
    EXIT_OK,
    EXIT_USAGE,
    GradcliError,
)


class GradcliGroup(TyperGroup):
    """Runs every command with gradcli's error policy: one line on stderr and an exit code."""

    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        tune_allocator()
        code = _exit_code(
            lambda: super(GradcliGroup, self).main(
                args=argv,
                prog_name=prog_name or "gradcli",
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            ),
            show_traceback="--traceback" in argv,
        )
        if standalone_mode:
            sys.exit(code)
        return code


def tune_allocator() -> None:
    """Keep freed memory in the process (glibc only; a no-op elsewhere). Stacked forward passes
    allocate the same large temporaries again and again; fresh mmap'd pages fault on every
    call, which measured 1.5-2x slower on attention here."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 2**25)  # M_MMAP_THRESHOLD: 32 MB, glibc's maximum
        libc.mallopt(-1, 2**30)  # M_TRIM_THRESHOLD: do not hand the heap back after each call
    except (OSError, AttributeError):
        pass


def _error(message: str) -> None:
    print(f"gradcli: {message}", file=sys.stderr)


def _exit_code(run: Any, *, show_traceback: bool) -> int:
    try:
        rv = run()
        if rv == EXIT_INTERRUPTED:  # typer turns Ctrl-C inside a command into this code
            _error("interrupted")
        return rv if isinstance(rv, int) else EXIT_OK
    except typer.Exit as e:
        if e.exit_code == EXIT_INTERRUPTED:  # typer turns Ctrl-C inside a command into this
            _error("interrupted")
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        _error("interrupted")
        return EXIT_INTERRUPTED
    except GradcliError as e:
        _error(f"error: {e}")
        return e.exit_code
    except OSError as e:
        if e.errno == errno.EPIPE:  # `gradcli ... | head`: the reader left, nothing to say
            return EXIT_OK
        return _internal(e, show_traceback)
    except Exception as e:
        if _is_usage_error(e):
            return _usage(e)
        return _internal(e, show_traceback)  # a bug: say so in one line


def _is_usage_error(e: Exception) -> bool:
    # click's exceptions (typer may vendor its own copy of click, so match by shape)
    return hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)


def _usage(e: Any) -> int:
    ctx = getattr(e, "ctx", None)
    if type(e).__name__ == "NoArgsIsHelpError":
        print(ctx.get_help() if ctx else e.format_message(), file=sys.stderr)
        return EXIT_USAGE
    hint = f" (see '{ctx.command_path} --help')" if ctx else ""
    _error(f"error: {e.format_message()}{hint}")
    return EXIT_USAGE


def _internal(e: BaseException, show_traceback: bool) -> int:
    if show_traceback:
        tb.print_exception(e)
    else:
        _error(
            f"internal error: {type(e).__name__}: {e} "
            "(this is a bug in gradcli; rerun with --traceback for details)"
        )
    return EXIT_INTERNAL


app = typer.Typer(
    cls=GradcliGroup,
    name="gradcli",
    help="Compute and check the gradients of neural-network layers (see 'gradcli layers').",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


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
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table or json.")]
OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="Write the result to FILE (atomically); .npz writes arrays."
    ),
]
DTypeOpt = Annotated[DType | None, typer.Option(help="Override the spec's dtype.")]
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


def _load(
    layer: str,
    spec: str | None,
    dtype: DType | None,
    seed: int | None,
    impl: str | None = None,
    max_elements: int = MAX_ELEMENTS,
) -> Any:
    from gradcli.errors import OptionError
    from gradcli.spec import MAX_SEED, load_spec
    from gradcli.user import load_impl

    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise OptionError(f"expected an integer from 0 to 2**63-1, got {seed}", source="--seed")
    if max_elements < 1:
        raise OptionError(
            f"expected a positive integer, got {max_elements}", source="--max-elements"
        )
    code = load_impl(impl) if impl else None
    return load_spec(
        layer, spec, dtype=dtype.value if dtype else None, seed=seed, impl=code,
        max_elements=max_elements,
    )  # fmt: skip


def _emit(
    output: Path | None,
    inputs: tuple[Path, ...],
    *,
    text: Any = None,
    npz: Any = None,
) -> None:
    """Write the result: stdout, or FILE atomically. ``text(console)`` renders a table;
    ``text`` may also be a ready string; ``npz()`` gives the bytes of an .npz archive."""
    from gradcli import render
    from gradcli.io import write_atomic

    if output is None:
        if callable(text):
            text(render.console(sys.stdout))
        else:
            sys.stdout.write(text)
        return
    target = output.resolve()
    for f in inputs:
        if f.resolve() == target:
            raise GradcliError(
                f"{output} is one of this run's inputs; refusing to overwrite it", source="--output"
            )
    if output.suffix == ".npz":
        if npz is None:
            raise GradcliError("this command has no arrays to write as .npz", source="--output")
        data = npz()
    elif callable(text):
        import io

        buf = io.StringIO()
        text(render.console(buf, plain=True))
        data = buf.getvalue().encode()
    else:
        data = text.encode()
    write_atomic(output, data)


def _inputs(spec: Any, *others: str | None) -> tuple[Path, ...]:
    """Every file the run reads (spec, tensors, --impl, --grads): --output may be none of them."""
    own = (Path(spec.source),) if not spec.source.startswith("<") else ()
    extra = tuple(Path(p.rpartition(":")[0] if ".py:" in p else p) for p in others if p)
    return own + spec.files + extra


@app.command()
def compute(
    layer: LayerArg,
    spec: SpecArg = None,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
    dtype: DTypeOpt = None,
    seed: SeedOpt = None,
    impl: ImplOpt = None,
    max_elements: MaxElementsOpt = MAX_ELEMENTS,
    traceback: TracebackOpt = False,
) -> None:
    """Forward pass and analytical backward pass: shapes, values, gradients."""
    from gradcli import jsondoc, render
    from gradcli.check import compute as run_compute

    s = _load(layer, spec, dtype, seed, impl, max_elements)
    comp = run_compute(s)
    _emit(
        output,
        _inputs(s, impl),
        text=jsondoc.to_json(jsondoc.compute_doc(s, comp))
        if fmt is Format.json
        else lambda c: render.render_compute(c, s, comp),
        npz=lambda: jsondoc.npz_bytes(s, comp),
    )


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


@app.command()
def check(
    layer: LayerArg,
    spec: SpecArg = None,
    method: Annotated[MethodChoice, typer.Option(help="Finite-difference method.")] = (
        MethodChoice.central
    ),
    eps: Annotated[
        str, typer.Option(help="Step relative to max(1, |x|), or 'auto' (per method).")
    ] = "auto",
    atol: Annotated[float | None, typer.Option(help="Absolute tolerance.")] = None,
    rtol: Annotated[float | None, typer.Option(help="Relative tolerance.")] = None,
    mode: Annotated[
        ModeChoice | None,
        typer.Option(help="full (default below --budget, else sample), sample or probe."),
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
        bool, typer.Option("--values", help="JSON: include tensors, gradients, numeric values.")
    ] = False,
    grads: Annotated[
        str | None,
        typer.Option(help="Your gradients to check: .npz keyed by tensor, .npy (--wrt), YAML."),
    ] = None,
    wrt: Annotated[str | None, typer.Option(help="The tensor a .npy --grads file is for.")] = None,
    top: Annotated[int, typer.Option(help="Elements in each tensor's worst-k table.")] = 5,
    impl: ImplOpt = None,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
    dtype: DTypeOpt = None,
    seed: SeedOpt = None,
    max_elements: MaxElementsOpt = MAX_ELEMENTS,
    traceback: TracebackOpt = False,
) -> None:
    """Compare the analytical gradients (or yours: --grads, --impl) with numerical ones.
    Exit 1 on a mismatch."""
    from gradcli import jsondoc, render
    from gradcli.check import CheckOptions
    from gradcli.check import check as run_check
    from gradcli.render_sweep import render_sweep
    from gradcli.sweep import run_sweep

    opts = CheckOptions(
        method=method.value, eps=_eps(eps), atol=atol, rtol=rtol,
        mode=mode.value if mode else "auto", samples=samples, coloring=coloring,
        max_memory=max_memory * 2**20, budget=budget, notify=_error, top=top,
    )  # fmt: skip
    opts.validate()
    s = _load(layer, spec, dtype, seed, impl, max_elements)
    if grads is not None:
        from gradcli import intermediates
        from gradcli.user import load_answers

        opts.grads = load_answers(grads, wrt, s.shapes, intermediates.shapes(s))
    elif wrt is not None:
        raise GradcliError("--wrt goes with a .npy --grads file", source="--wrt")
    if sweep:
        rows, best, wrong = run_sweep(s, opts.method, coloring, opts.grads)
        doc = jsondoc.sweep_doc(s, opts.method, rows, best, wrong)
        _emit(output, _inputs(s, impl, grads), text=jsondoc.to_json(doc) if fmt is Format.json
              else lambda c: render_sweep(c, s, opts.method, rows, best, wrong))  # fmt: skip
        if wrong:
            raise typer.Exit(EXIT_MISMATCH)
        return
    with render.ProgressBar(sys.stderr) as bar:
        opts.progress = bar
        comp, numeric, report = run_check(s, opts)
    if fmt is Format.json:
        doc = (
            jsondoc.check_doc(s, report, comp, numeric) if values else jsondoc.check_doc(s, report)
        )
        text: Any = jsondoc.to_json(doc)
    else:
        text = lambda c: render.render_check(c, s, comp, numeric, report, opts.grads)  # noqa: E731
    inputs = _inputs(s, impl, grads)
    _emit(output, inputs, text=text, npz=lambda: jsondoc.npz_bytes(s, comp, numeric))
    if not report.passed:
        raise typer.Exit(EXIT_MISMATCH)


def _eps(text: str) -> float | None:
    from gradcli.errors import OptionError

    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise OptionError(f"expected 'auto' or a number, got {text!r}", source="--eps") from None


@app.command()
def layers(fmt: FormatOpt = Format.table, traceback: TracebackOpt = False) -> None:
    """List the built-in layers: tensors, shape conventions, output, options."""
    from gradcli import jsondoc, render
    from gradcli.render_docs import render_layers

    if fmt is Format.json:
        sys.stdout.write(jsondoc.to_json(jsondoc.layers_doc()))
    else:
        render_layers(render.console(sys.stdout))


@app.command()
def explain(
    layer: LayerArg,
    spec: SpecArg = None,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
    traceback: TracebackOpt = False,
) -> None:
    """The layer's forward and gradient formulas, with the spec's shapes and options."""
    from gradcli import explain as explain_mod
    from gradcli import jsondoc
    from gradcli.render_docs import render_explain

    s = _load(layer, spec, None, None)
    if fmt is Format.json:
        _emit(output, _inputs(s), text=jsondoc.to_json(explain_mod.explain_doc(s)))
    else:
        _emit(output, _inputs(s), text=lambda c: render_explain(c, explain_mod.explain(s)))


@app.command()
def init(
    layer: LayerArg,
    output: OutputOpt = None,
    impl: Annotated[
        bool, typer.Option("--impl", help="A skeleton module to implement LAYER yourself.")
    ] = False,
    traceback: TracebackOpt = False,
) -> None:
    """Print a commented template spec for LAYER (or write it with -o FILE); with --impl a
    skeleton module with the seed's formulas in comments."""
    from gradcli import jsondoc, skeleton
    from gradcli.layers import get_layer

    text = skeleton.module(layer) if impl else jsondoc.init_template(get_layer(layer))
    _emit(output, (), text=text)


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``gradcli`` and ``python -m gradcli``; returns the exit code."""
    command = typer.main.get_command(app)
    return command.main(args=argv, prog_name="gradcli", standalone_mode=False)
