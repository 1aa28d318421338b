"""gradcli's error policy, the one place errors become exit codes: a bad input is one line on
stderr and exit 2, an internal error one line that says to rerun with --traceback and exit 3,
Ctrl-C exit 130, SIGTERM 143, and a reader that left the pipe a quiet 141. Every line written
to stderr goes through ``diagnostic``: escaped, capped, and never onto stdout."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
import traceback as tb
from typing import Any

import typer
from typer.core import TyperGroup

from gradcli.cli import interrupt
from gradcli.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PIPE,
    EXIT_USAGE,
    NO_VALUE,
    ClosedPipeError,
    GradcliError,
    printable,
    set_naming,
    shorten,
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
        standard_streams()
        from gradcli.files import forget_reads

        forget_reads()
        restore = None
        named = set_naming(flag)  # messages made below mention flags, not parameter names
        try:  # from the handler's installation on: a signal raised at once is caught below
            restore = interrupt.during_run()
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
        except KeyboardInterrupt:  # a second signal, while the policy itself was running
            code = 128 + (interrupt.received() or signal.SIGINT)
        finally:
            named()
            if restore is not None:
                restore()
        # a signal raised where an exception is ignored (a module lock's weakref callback,
        # run at any moment) after the policy read none: the run still stops with its code
        late = interrupt.received()
        if late is not None and code != 128 + late:
            if code != EXIT_INTERRUPTED:
                diagnostic(interrupt.WORDS[late])
            code = 128 + late
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


def standard_streams() -> None:
    """A closed stdin, stdout or stderr (``2>&-``) gets /dev/null under its number, so no file
    gradcli opens later (an output's temporary) can take it and receive stray writes. A closed
    stderr stays silent; a closed stdout or stdin is refused where it is used."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process


NOTE_MOST = 2000  # characters of a note (its input-made parts are bounded where made)


def diagnostic(message: str) -> None:
    """One line on stderr: control characters from the input escaped (a path holding
    "\\ngradcli: error: ..." cannot forge a second line, ESC cannot clear the terminal), at
    most MAX_MESSAGE characters; never on stdout, whatever state stderr is in."""
    _to_stderr(f"gradcli: {shorten(printable(message))}\n")


def note(message: str) -> None:
    """A note said as the work goes (--notify): as ``diagnostic``, but on a terminal wrapped
    between words at its width, the continuation lines indented two spaces (t23 F7, t24 F6:
    330-character lines that the terminal cut mid-word). A pipe or a file keeps one line a
    note, for the scripts that grep them."""
    # (gradcli's own sentences, longer than an error's line: a precision note was cut inside a
    # word at 500 characters, its last clause the one the table needed: outside test t45a N4)
    line = f"gradcli: {shorten(printable(message), NOTE_MOST)}"
    width = _stderr_width()
    if width is None:
        _to_stderr(line + "\n")
        return
    import textwrap

    lines = textwrap.wrap(line, max(width, 20), subsequent_indent="  ",
                          break_on_hyphens=False)  # fmt: skip
    _to_stderr("\n".join(lines) + "\n")


def _stderr_width() -> int | None:
    """The width of the terminal stderr is, COLUMNS first as for stdout's tables; None when
    stderr is no terminal."""
    stream = sys.stderr
    try:
        if stream is None or not stream.isatty():
            return None
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(fd).columns or 80
    except OSError:
        return 80


def _to_stderr(text: str) -> None:
    stream = sys.stderr
    if stream is None:
        return
    try:
        try:
            stream.write(text)
        except UnicodeEncodeError:  # PYTHONIOENCODING=ascii:strict
            stream.write(text.encode("ascii", "backslashreplace").decode("ascii"))
        stream.flush()
    except (OSError, ValueError):  # a closed or full stderr: nowhere left to say it
        pass


def _exit_code(run: Any, *, show_traceback: bool) -> int:
    code = _outcome(run, show_traceback=show_traceback)
    signum = interrupt.received()
    if signum is not None:  # even where a library or the user's code swallowed the exception
        if code not in (EXIT_INTERRUPTED, 128 + signum):
            diagnostic(interrupt.WORDS[signum])
        return 128 + signum
    return code


def _outcome(run: Any, *, show_traceback: bool) -> int:
    try:
        rv = run()
        if rv == EXIT_INTERRUPTED:  # typer turns Ctrl-C inside a command into this code
            return _interrupted()
        return rv if isinstance(rv, int) else EXIT_OK
    except typer.Exit as e:
        if e.exit_code == EXIT_INTERRUPTED:  # typer turns Ctrl-C inside a command into this
            return _interrupted()
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _interrupted()
    except ClosedPipeError:
        return EXIT_PIPE
    except GradcliError as e:
        diagnostic(f"error: {e.describe(flag)}")
        return e.exit_code
    except OSError as e:
        if e.errno == errno.EPIPE:  # `gradcli ... | head`: the reader left, nothing to say
            return EXIT_PIPE
        if _stdout_failed(e):  # click's help page into a full disk (`--help > /dev/full`)
            diagnostic(f"error: <stdout>: cannot write the result: {e.strerror or e}")
            return EXIT_USAGE
        return _internal(e, show_traceback)
    except Exception as e:
        if _is_usagediagnostic(e):
            return _usage(e)
        if _signalled(e):
            return _interrupted()
        return _internal(e, show_traceback)  # a bug: say so in one line


def _stdout_failed(e: OSError) -> bool:
    """Whether ``e`` came from a write to stdout (click writing a help page into a full disk,
    `--help > /dev/full`), not from a bug: the innermost frame was writing to it."""
    tb_ = e.__traceback__
    while tb_ is not None and tb_.tb_next is not None:
        tb_ = tb_.tb_next
    if tb_ is None:
        return False
    streams = (sys.stdout, sys.__stdout__)
    return any(v is s for v in tb_.tb_frame.f_locals.values() for s in streams if s is not None)


def flag(param: str, value: object = NO_VALUE) -> str:
    """The command-line flag of a library parameter (with a value: as typed, ``--mode full``,
    ``--max-elements 100,000``): the one place the CLI renames them, for errors and, installed
    by ``main`` through errors.set_naming, for every mention in messages and notes."""
    name = "--" + param.replace("_", "-")
    if value is NO_VALUE:
        return name
    shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
    return f"{name} {shown}"


def _signalled(e: BaseException) -> bool:
    """Whether ``e`` wraps Ctrl-C or SIGTERM: Python wraps what a class body's ``__set_name__``
    raises (a dataclass field, while a module imports) in a RuntimeError, and a SIGTERM there
    read 'internal error' instead of 'terminated'."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, KeyboardInterrupt):
            return True
        e = e.__cause__ or e.__context__
    return False


def _interrupted() -> int:
    signum = interrupt.received() or signal.SIGINT
    diagnostic(interrupt.WORDS[signum])
    return 128 + signum


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
    diagnostic(f"error: {shorten(message, 300)}{hint}")
    return EXIT_USAGE


def _internal(e: BaseException, show_traceback: bool) -> int:
    if show_traceback:
        tb.print_exception(e)
    else:
        diagnostic(
            f"internal error: {type(e).__name__}: {shorten(_text(e), 300)} "
            "(this is a bug in gradcli; rerun with --traceback for details)"
        )
    return EXIT_INTERNAL


def _text(e: BaseException) -> str:
    try:
        return str(e)
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises in turn
        return "(its message cannot be shown)"
