"""gradcli's error policy, the one place errors become exit codes: a bad input is one line on
stderr and exit 2, an internal error one line that says to rerun with --traceback and exit 3,
Ctrl-C exit 130, and a reader that left the pipe a quiet exit 0."""

from __future__ import annotations

import ctypes
import errno
import sys
import traceback as tb
from typing import Any

import typer
from typer.core import TyperGroup

from gradcli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, GradcliError


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


def diagnostic(message: str) -> None:
    print(f"gradcli: {message}", file=sys.stderr)


def _exit_code(run: Any, *, show_traceback: bool) -> int:
    try:
        rv = run()
        if rv == EXIT_INTERRUPTED:  # typer turns Ctrl-C inside a command into this code
            diagnostic("interrupted")
        return rv if isinstance(rv, int) else EXIT_OK
    except typer.Exit as e:
        if e.exit_code == EXIT_INTERRUPTED:  # typer turns Ctrl-C inside a command into this
            diagnostic("interrupted")
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        diagnostic("interrupted")
        return EXIT_INTERRUPTED
    except GradcliError as e:
        diagnostic(f"error: {e}")
        return e.exit_code
    except OSError as e:
        if e.errno == errno.EPIPE:  # `gradcli ... | head`: the reader left, nothing to say
            return EXIT_OK
        return _internal(e, show_traceback)
    except Exception as e:
        if _is_usagediagnostic(e):
            return _usage(e)
        return _internal(e, show_traceback)  # a bug: say so in one line


def _is_usagediagnostic(e: Exception) -> bool:
    # click's exceptions (typer may vendor its own copy of click, so match by shape)
    return hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)


def _usage(e: Any) -> int:
    ctx = getattr(e, "ctx", None)
    if type(e).__name__ == "NoArgsIsHelpError":
        print(ctx.get_help() if ctx else e.format_message(), file=sys.stderr)
        return EXIT_USAGE
    hint = f" (see '{ctx.command_path} --help')" if ctx else ""
    # typer validates choices through pydantic, whose messages start "Value error, "
    message = e.format_message().replace(": Value error, ", ": ")
    diagnostic(f"error: {message}{hint}")
    return EXIT_USAGE


def _internal(e: BaseException, show_traceback: bool) -> int:
    if show_traceback:
        tb.print_exception(e)
    else:
        diagnostic(
            f"internal error: {type(e).__name__}: {e} "
            "(this is a bug in gradcli; rerun with --traceback for details)"
        )
    return EXIT_INTERNAL
