"""Ctrl-C (SIGINT) and SIGTERM. Light on purpose: the entry point imports it before anything
heavy, so a signal during start-up is a quiet exit 130/143 rather than a traceback.

While a command runs, both signals raise (SIGTERM as ``Terminated``, a KeyboardInterrupt, so the
cleanup written for Ctrl-C runs for it too) and the exit policy reports 128 + the signal. Around
the write of an output file they are held: the file is either complete and in place, or its
temporary is removed; a signal after the rename no longer stops a run that has done its work.

A signal always ends the run: once raised, the process leaves by itself GRACE_SECONDS later
if the cleanup has not finished (a user's ``with Pool(...)`` whose ``__exit__`` waits for
workers that never come back held a SIGTERM for ever). A child the user's code forks (a
multiprocessing worker) starts with Python's own handlers, not gradcli's: ``Pool.terminate``
SIGTERMs its workers, and each printed a traceback of ``Terminated``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
# seconds the cleanup after a signal may take before the process leaves without it
GRACE_SECONDS = 2.0
# os._exit as the process started with it: a user's call swaps its own in (gradcli/user/call.py)
_exit = os._exit


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be."""


class _State:
    received: int | None = None  # the first signal of this run
    holding = False  # an output file is being written: note the signal, raise it after
    pending: int | None = None
    done = False  # the output is in place: later signals are too late to matter
    deadline: threading.Timer | None = None  # leaves the process if the cleanup hangs


_state = _State()


def _raise(signum: int) -> None:
    if _state.deadline is None:  # a thread only now: the run's timings count threads
        _state.deadline = threading.Timer(GRACE_SECONDS, _leave, (signum,))
        _state.deadline.daemon = True
        _state.deadline.start()
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _leave(signum: int) -> None:
    """The cleanup after ``signum`` did not finish: say so and exit, nothing run further."""
    try:
        os.write(2, f"gradcli: {WORDS.get(signum, 'stopped')}\n".encode())
    except OSError:
        pass
    _exit(128 + signum)


def _on_signal(signum: int, frame: Any) -> None:
    if _state.done:
        return
    _state.received = _state.received or signum
    if _state.holding:
        _state.pending = signum
        return
    _raise(signum)


def _at_startup(signum: int, frame: Any) -> None:
    # nothing to clean up yet, and an exception here would surface inside some module's
    # import as a traceback (or be swallowed by a library): leave at once. The same handler
    # is back after a run, while the interpreter shuts down.
    if _state.done:
        return
    try:
        os.write(2, f"gradcli: {WORDS.get(signum, 'stopped')}\n".encode())
    except OSError:
        pass
    _exit(128 + signum)


def _install(handler: Any) -> Callable[[], None]:
    """Set ``handler`` for both signals; returns what puts the previous handlers back (and
    stops a pending deadline: the run is over). Only the main thread may set handlers:
    elsewhere (an embedding program) this does nothing."""
    _watch_forks()
    try:
        previous = {s: signal.signal(s, handler) for s in SIGNALS}
    except ValueError:
        return lambda: None

    def restore() -> None:
        if _state.deadline is not None:
            _state.deadline.cancel()
        for s, h in previous.items():
            signal.signal(s, h)

    return restore


_OURS = (_on_signal, _at_startup)
_forks_watched = False


def _watch_forks() -> None:
    global _forks_watched
    if not _forks_watched and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_python_handlers)
        _forks_watched = True


def _python_handlers() -> None:
    """In a forked child, Python's own handlers where gradcli's are: the child is the user's
    (a multiprocessing worker), not a gradcli run."""
    global _state
    _state = _State()  # a parent's pending deadline is no thread of the child
    default = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    for s in SIGNALS:
        try:
            if signal.getsignal(s) in _OURS:
                signal.signal(s, default[s])
        except (ValueError, OSError):  # forked from a thread Python will not let set them
            pass


def during_startup() -> Callable[[], None]:
    return _install(_at_startup)


def during_run() -> Callable[[], None]:
    """A fresh run: forget earlier signals (in-process callers run several)."""
    global _state
    _state = _State()
    _quiet_unraisable()
    return _install(_on_signal)


def _quiet_unraisable() -> None:
    """A signal raised where Python cannot raise (a module lock's weakref callback, run at any
    moment) is 'ignored' with a traceback on stderr; the run still stops by the exit policy,
    which reads the signal received (cli/exits.py), so it is ignored quietly (a SIGTERM at
    that moment, under load, printed 'Exception ignored in ... Traceback': test_output)."""
    previous = sys.unraisablehook
    if getattr(previous, "_gradcli", False):
        return

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _state.received is not None:
            return
        previous(unraisable)

    hook._gradcli = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def ignore() -> None:
    """From now on both signals are ignored: for the process's last moments."""
    _install(signal.SIG_IGN)  # type: ignore[arg-type]


def received() -> int | None:
    """The signal that stopped this run, unless it came after the output was in place."""
    return None if _state.done else _state.received


@contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM for the block; one that came meanwhile is raised at ``check()`` or
    at the end of the block, unless ``finished()`` was called first."""
    _state.holding = True
    try:
        yield
    finally:
        _state.holding = False
        check()


def check() -> None:
    """Raise a held signal now."""
    signum, _state.pending = _state.pending, None
    if signum is not None and not _state.done:
        _raise(signum)


def finished() -> None:
    """The result is in place: a signal from now on is noted by nobody."""
    _state.done = True
    _state.pending = None
