"""Ctrl-C (SIGINT) and SIGTERM. Light on purpose: the entry point imports it before anything
heavy, so a signal during start-up is a quiet exit 130/143 rather than a traceback.

While a command runs, both signals raise (SIGTERM as ``Terminated``, a KeyboardInterrupt, so the
cleanup written for Ctrl-C runs for it too) and the exit policy reports 128 + the signal. Around
the write of an output file they are held: the file is either complete and in place, or its
temporary is removed; a signal after the rename no longer stops a run that has done its work.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be."""


class _State:
    received: int | None = None  # the first signal of this run
    holding = False  # an output file is being written: note the signal, raise it after
    pending: int | None = None
    done = False  # the output is in place: later signals are too late to matter


_state = _State()


def _raise(signum: int) -> None:
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


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
    os._exit(128 + signum)


def _install(handler: Any) -> Callable[[], None]:
    """Set ``handler`` for both signals; returns what puts the previous handlers back. Only
    the main thread may set handlers: elsewhere (an embedding program) this does nothing."""
    try:
        previous = {s: signal.signal(s, handler) for s in SIGNALS}
    except ValueError:
        return lambda: None

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore


def during_startup() -> Callable[[], None]:
    return _install(_at_startup)


def during_run() -> Callable[[], None]:
    """A fresh run: forget earlier signals (in-process callers run several)."""
    global _state
    _state = _State()
    return _install(_on_signal)


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
