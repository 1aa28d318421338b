"""Rendering the reference commands: ``gradcli layers`` and ``gradcli explain``."""

from __future__ import annotations

import textwrap

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gradcli.layers import REGISTRY, TensorInfo
from gradcli.layers.base import option_table
from gradcli.render.fit import EDGE, PER_COLUMN, Col, fitted

BATCHES = ("Shapes are one example's. Any leading batch axes (N, ...) may come first on the "
           "inputs, and the output keeps them, as several default specs do (rnn_step's x "
           "(D,) is (N, D) there). Layers that mix a batch (batchnorm, the losses) show N.")


def render_layers(console: Console) -> None:
    # (a student wrote 1-D code from x (D,) and met the default spec's (N, D): outside test
    # t52b F7)
    console.print(Text(BATCHES, style="dim"))
    console.print()
    for name, layer in REGISTRY.items():
        rows = [(Text(t.name, style="bold"), t.shape_str, t.role + _optional(t), t.doc)
                for t in (*layer.tensors, layer.output)]  # fmt: skip
        # a shape broken between its axes reads as two shapes: it stays whole while the prose
        # columns keep 12 columns beside it, and only then wraps at its commas
        widest = max(len(r[1]) for r in rows)
        names = max(len("tensor"), *(len(r[0]) for r in rows))
        whole = EDGE + 4 * PER_COLUMN + names + widest + 2 * 12 <= console.width
        prose = (Col("role", fold=True, min_width=0), Col("meaning", fold=True, min_width=0))
        cols = (Col("tensor"), Col("shape", fold=True, min_width=widest if whole else 0), *prose)
        title = f"{name}: {layer.summary}"
        table = fitted(cols, rows, console.width, title=title, title_justify="left")
        console.print(table, crop=False)
        options = option_table(layer.options)
        if options:
            opts = Table(box=None, show_header=True, padding=(0, 2))
            for col in ("option", "default", "meaning"):
                opts.add_column(col, style="dim")
            for n, d, h in options:
                # as a spec writes it (YAML): true, false, null (causal False read as Python:
                # outside test t56b F8)
                said = "null" if d is None else str(d).lower() if isinstance(d, bool) else str(d)
                opts.add_row(n, said, h)
            console.print(opts)
        else:
            console.print(Text("options: none", style="dim"))
        if layer.intermediates:
            console.print(Text(f"intermediates: {', '.join(layer.intermediates)}", style="dim"))
        console.print()


def _optional(t: TensorInfo) -> str:
    return " (optional: zeros)" if t.optional else " (optional)" if t.absent_ok else ""


def render_explain(console: Console, sections: list) -> None:
    """`gradcli explain`: each section's title, its formulas, its intuition in italics. A line
    wider than the console wraps between terms, its continuation indented under it (the
    terminal's own wrap would cut a formula anywhere, flush left)."""
    width = max(console.width - 2, 40)
    for section in sections:
        console.print(Text(section.title, style="bold"), soft_wrap=True)
        for line in section.lines:
            style = "italic dim" if line.startswith("intuition: ") else ""
            parts = textwrap.wrap(line, width, subsequent_indent="    ", break_long_words=False,
                                  break_on_hyphens=False) or [""]  # fmt: skip
            for part in parts:
                console.print(Text("  " + part, style=style), soft_wrap=True)
        console.print()
