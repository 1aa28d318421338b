"""``gradcli --help`` without importing Typer: the top-level help page, as Typer renders it at
80 columns or more (tests/test_startup.py holds the two equal). Typer and click alone take
longer to import than the whole page takes to read; every other command line goes to them."""

from __future__ import annotations

import os
import sys

TOP_HELP = """\
Usage: gradcli [OPTIONS] COMMAND [ARGS]...

  Compute and check the gradients of neural-network layers (see 'gradcli
  layers').

Options:
  --version   Print the version.
  -h, --help  Show this message and exit.

Commands:
  compute  Forward and backward pass: shapes, values, gradients.
  check    Gradients against numerical ones; exit 1 on a mismatch.
  layers   The built-in layers: tensors, shapes, options.
  explain  A layer's forward and gradient formulas.
  init     A template spec (LAYER, net, custom); --impl: a skeleton.
"""


def wide_enough() -> bool:
    """Typer wraps the page to the terminal below 80 columns: there, it renders it."""
    try:
        columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(1).columns
    except (ValueError, OSError):
        columns = 80  # not a terminal: click's own default width
    return columns >= 80


def answer(argv: list[str]) -> bool:
    """Print the top-level help if that is all ``argv`` asks; whether it did."""
    if argv not in (["--help"], ["-h"]) or not wide_enough():
        return False
    try:
        sys.stdout.write(TOP_HELP)
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError):  # closed or full: the full path reports it
        return False
    return True
