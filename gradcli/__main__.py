"""``python -m gradcli`` and the ``gradcli`` script. Signals are handled before the command-line
modules (typer, click, rich) are imported, so Ctrl-C during start-up is exit 130, not a
traceback."""

from __future__ import annotations


def main() -> int:
    from gradcli import interrupt

    interrupt.during_startup()
    from gradcli.cli import main as run

    code = run()
    # the outcome is decided: a late signal must not kill the exit, or its code would say
    # "terminated" over a finished result (Python's shutdown puts the default handlers back)
    interrupt.ignore()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
