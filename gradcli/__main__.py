"""``python -m gradcli`` and the ``gradcli`` script. Signals are handled before the command-line
modules (typer, click, rich) are imported, so Ctrl-C during start-up is exit 130, not a
traceback."""

from __future__ import annotations

import os
import sys


def main() -> int:
    try:
        from gradcli.cli import interrupt

        interrupt.during_startup()
    except KeyboardInterrupt:  # Ctrl-C while the module that handles it was still loading
        _leave_interrupted()
    from gradcli.cli import quickhelp

    if quickhelp.answer(sys.argv[1:]):
        return 0
    from gradcli.cli.app import main as run

    code = run()
    # the outcome is decided: a late signal must not kill the exit, or its code would say
    # "terminated" over a finished result (Python's shutdown puts the default handlers back)
    interrupt.ignore()
    impl = sys.modules.get("gradcli.user.impl")  # imported only where user code was asked for
    if impl is not None and impl.loads:
        _leave(code)
    return code


def _leave_interrupted() -> None:
    try:
        os.write(2, b"gradcli: interrupted\n")
    except OSError:
        pass
    os._exit(130)


def _leave(code: int) -> None:
    """Exit now, once the result is out: a user's module may have left a non-daemon thread
    (the interpreter would wait for it forever) or an atexit hook that prints after the JSON."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


if __name__ == "__main__":
    raise SystemExit(main())
