"""The ``net`` commands' checks: a model file, its answers, the network check and its output."""


import dataclasses
import sys
from pathlib import Path
from typing import Any

import typer

from gradcli.cli.args import DType, Format, load_net
from gradcli.cli.emit import emit, input_files, ready, same_stream, wants_json
from gradcli.errors import EXIT_MISMATCH, GradcliError


def check_net(
    spec: str | None, opts: Any, dtype: DType | None, seed: int | None, max_elements: int,
    grads: str | None, wrt: str | None, fmt: Format | None, output: Path | None, quiet: bool,
    **refused: Any,
) -> None:  # fmt: skip
    from gradcli.checking import intermediates
    from gradcli.checking.network import check_network
    from gradcli.inputs.answers import load_answers
    from gradcli.numeric import memory
    from gradcli.render import jsondoc, netdoc, network
    from gradcli.render import text as render

    net = load_net(spec, dtype, seed, max_elements, **refused)
    memory.require(net.spec, opts.method, opts.max_memory)
    if grads is not None:
        answers = load_answers(
            grads, wrt, net.spec.grad_shapes, intermediates.shapes(net.spec),
            counted=net.spec.elements, max_elements=net.spec.max_elements,
        )  # fmt: skip
        opts = dataclasses.replace(opts, grads=answers)
    elif wrt is not None:
        raise GradcliError("--wrt goes with a .npy --grads file", param="wrt")
    inputs = input_files(net.spec, grads)
    ready(output, inputs)
    with render.ProgressBar(sys.stderr) as bar:
        report = check_network(net, dataclasses.replace(opts, progress=bar))
    as_json = wants_json(fmt, output)
    emit(output, inputs,
         text=jsondoc.to_json(netdoc.check_doc(net, report)) if as_json
         else lambda c: network.render_check(c, net, report, quiet=quiet,
                                             streamed=output is None and same_stream()),
         npz=lambda: jsondoc.npz_bytes(net.spec, report.computation,
                                       dict(report.end_to_end.numeric)))  # fmt: skip
    if not report.passed:
        raise typer.Exit(EXIT_MISMATCH)
