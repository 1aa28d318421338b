"""``python -m gradcli`` and the ``gradcli`` script. Signals are handled before the command-line
modules (typer, click, rich) are imported, so Ctrl-C during start-up is exit 130, not a
traceback."""

import os
import sys

# os._exit as the process started with it: a signal landing while a user's call runs leaves
# that call's guard in place, which raises where it is called (a traceback on SIGTERM:
# outside test t39a N4)
_os_exit = os._exit


def main() -> int:
    single_threaded_blas()
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


def single_threaded_blas() -> None:
    """One BLAS thread unless the user chose (before numpy loads: read once, at its import).
    The stacked copies are many small products that gain little from a second thread, and on
    a shared machine OpenBLAS's threads spin waiting for each other: x @ W.T of linear at
    (8, 8192) x (8192, 100) took 200-340 ms with two threads at a load of 5 on 2 cores, 3 ms
    with one."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _leave_interrupted() -> None:
    try:
        os.write(2, b"gradcli: interrupted\n")
    except OSError:
        pass
    _os_exit(130)


def _leave(code: int) -> None:
    """Exit now, once the result is out: a user's module may have left a non-daemon thread
    (the interpreter would wait for it forever) or an atexit hook that prints after the JSON."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    _os_exit(code)


if __name__ == "__main__":
    raise SystemExit(main())
