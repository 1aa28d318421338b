"""Where a command's result goes: stdout, or a file written atomically that is never one of
the run's own inputs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from gradcli.errors import GradcliError


def emit(
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


def wants_json(fmt: str | None, output: Path | None) -> bool:
    """Whether the result is JSON: ``--format json``, or no --format and an --output FILE.json.
    A table in a .json file would break whatever reads it, so ``--format table`` is refused
    there; any other FILE (but .npz, always arrays) gets the --format, a table by default."""
    json_file = output is not None and output.suffix.lower() == ".json"
    if fmt == "table" and json_file:
        raise GradcliError(
            f"{output} ends in .json but --format is table; drop --format or use another name",
            source="--output",
        )
    return fmt == "json" or (fmt is None and json_file)


def input_files(spec: Any, *others: str | None) -> tuple[Path, ...]:
    """Every file the run reads (spec, tensors, --impl, --grads): --output may be none of them."""
    own = (Path(spec.source),) if not spec.source.startswith("<") else ()
    extra = tuple(Path(p.rpartition(":")[0] if ".py:" in p else p) for p in others if p)
    return own + spec.files + extra
