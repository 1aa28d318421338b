"""``python -m gradcli`` and the ``gradcli`` script. Signals are handled before the command-line
modules (typer, click, rich) are imported, so Ctrl-C during start-up is exit 130, not a
traceback."""

from __future__ import annotations


def main() -> int:
    from gradcli import interrupt

    interrupt.during_startup()
    from gradcli.cli import main as run

    return run()


if __name__ == "__main__":
    raise SystemExit(main())
