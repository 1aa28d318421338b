"""Every call into the user's code (an --impl module: its import, forward and backward, and the
conversion of what they return) goes through ``call``, so nothing the user's code does can
crash gradcli, end it, or write into its result:

- any exception, ``SystemExit`` (``sys.exit(0)``), ``GeneratorExit``, ``os._exit`` or another
  ``BaseException`` becomes one input-error line naming the user's function and the innermost
  line of their file (exit 2); only ``KeyboardInterrupt`` passes, since a user's raise cannot be
  told from Ctrl-C (exit 130);
- an exception whose ``str`` or ``repr`` raises, or is huge or spans lines, is shown short and
  on one line;
- while it runs, the user's stdout (``print``, and a C extension's writes to fd 1) goes to
  stderr, so stdout carries only the result (JSON stays valid);
- the process state the user's code may change for its own purposes (numpy's error handling,
  warning filters, sys.stdout/sys.stderr, the recursion limit, the working folder, the handlers
  of SIGINT, SIGTERM and SIGPIPE) is restored after every call;
- numpy's own functions, which gradcli computes with too: a module that rebinds one
  (``np.abs = ...``) keeps it in its own calls, while gradcli's code sees numpy's (a rebound
  ``np.abs`` had made a 5x wrong backward pass); names it adds (``np.float = float``) stay;
- the warnings it raises are shown once each (per run, or per API call), one line on stderr
  (numpy's floating-point RuntimeWarnings not where gradcli silenced them around the call,
  as the numerics do); when the call fails the first becomes part of its error line.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import traceback
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from gradcli.errors import GradcliError, UserCodeError, printable

T = TypeVar("T")

NUMPY_DEFAULTS = {"divide": "warn", "over": "warn", "under": "ignore", "invalid": "warn"}
MESSAGE = 200  # characters of the user's exception message kept in the error line
WARNINGS_SHOWN = 5  # distinct warnings shown per run, then one line saying more were hidden


class _Exited(BaseException):
    """``os._exit`` called by the user's code (in gradcli's own process, not a child)."""

    def __init__(self, code: Any) -> None:
        super().__init__(code)
        self.code = code


_shown: dict[tuple[str, ...], None] = {}  # the warnings already shown, in order


# whether the user's code cast complex values to real (numpy's ComplexWarning) since the last
# ``complex_cast()``: under the complex step that discards the imaginary part, a derivative
_cast = [False]
_COMPLEX_WARNING = getattr(getattr(np, "exceptions", np), "ComplexWarning", Warning)


def complex_cast() -> bool:
    """Whether the user's code cast complex values to real since the last call (reset)."""
    seen, _cast[0] = _cast[0], False
    return seen


def forget_warnings() -> None:
    """A new run (one API call) shows its own warnings again, up to WARNINGS_SHOWN, and its
    user code starts from numpy's own functions (it imports the user's modules afresh)."""
    _shown.clear()
    _numpy.forget()
_depth = 0  # nested calls (a conversion inside a call) are covered by the outer one
try:
    _libc: Any = ctypes.CDLL(None)
except OSError:  # pragma: no cover - no C library to flush
    _libc = None


_batch: list[_Guard] = []  # the guard a run of calls shares (``batch``), innermost last


@contextlib.contextmanager
def batch() -> Iterator[None]:
    """The calls inside share one guard, entered once and left once, the process state put
    back after the last (numeric/stacking.py: the engine's run of a forward of yours over its
    perturbed copies, where nothing of gradcli's runs between the calls but their results'
    checks, inside the guard already). Each call still has its own warnings, errors and fork
    check: the guard's setting up and putting back, syscalls among them, was a quarter of
    what a call of a 30 us forward cost."""
    if _depth:  # inside a call: covered by it
        yield
        return
    guard = _Guard()
    _batch.append(guard)
    try:
        yield
    finally:
        _batch.pop()
        guard.close()


def call(path: Path, what: str, fn: Callable[[], T], *, quiet: bool = False) -> T:
    """``fn()`` (which runs the user's code) under the guard described in the module doc;
    ``what`` names the user's function in messages ("forward", "Mine.backward", "import");
    ``quiet``: its warnings are not shown (a call on gradcli's own probe values)."""
    global _depth
    if _depth:
        return fn()
    shared = _batch[-1] if _batch else None
    guard = shared if shared is not None else _Guard()
    start = len(guard.caught)  # this call's warnings follow (a batch's earlier ones: shown)
    _depth += 1
    pid = os.getpid()
    try:
        result = fn()
    except UserCodeError as e:  # a result refused: the call's first warning often says why
        if len(guard.caught) <= start:
            raise
        first = _warning_text(guard.caught[start])
        raise UserCodeError(
            f"{e.message}; it warned: {first}", source=e.source, param=e.param
        ) from None
    except (GradcliError, KeyboardInterrupt):  # gradcli's own checks inside fn; Ctrl-C
        raise
    except BaseException as e:  # noqa: BLE001 - whatever the user's code raises, even exits
        # described inside the guard: the exception's __str__ is the user's code too
        raise UserCodeError(describe(e, path, what, guard.caught[start:]),
                            source=str(path)) from None  # fmt: skip
    finally:
        if shared is None:
            guard.close()
        else:  # what a Ctrl-C needs back at once (a SIG_IGN set at one call lost it for the
            guard.settle()  # rest of the run: outside test t49a F5)
        _depth -= 1
        caught = guard.caught[start:]
        if shared is not None:
            del guard.caught[start:]  # a run of 100,000 calls warning at each keeps none
        if any(issubclass(w.category, _COMPLEX_WARNING) for w in caught):
            _cast[0] = True
        if os.getpid() != pid:  # a child the user's code forked came back here: it must not
            os._exit(0)  # run the rest of gradcli (a second verdict on stdout); no flush
    if not quiet:  # where gradcli silenced numpy (the numerics' perturbed inputs overflow on
        # purpose), the floating-point warnings say nothing; the user's own warnings still do
        _show([w for w in caught if not (guard.silenced and _numeric(w))], path, what)
    return result


def _numeric(w: warnings.WarningMessage) -> bool:
    return issubclass(w.category, RuntimeWarning)


def describe(e: BaseException, path: Path, what: str, warned: list | None = None) -> str:
    """One line: what raised which exception, its message (short), where in the user's file,
    and the first warning the call gave (often the cause: a log of a negative number ...)."""
    name = type(e).__name__
    if isinstance(e, _Exited):
        head = f"{what} called os._exit({_text(lambda: repr(e.code), 40)})"
    elif isinstance(e, SystemExit):
        head = f"{what} raised SystemExit({_text(lambda: repr(e.code), 40)}) (sys.exit?)"
    else:
        message = _text(lambda: str(e), MESSAGE)
        head = f"{what} raised {name}" + (f": {message}" if message else "")
    if isinstance(e, (SystemExit, _Exited)):
        fn = what.rsplit(".", 1)[-1]
        head += (
            "; a module must not end the process when imported"
            if what == "import"
            else f"; {fn} must return, not end the process"
        )
    where = _where(e, path)
    first = _warning_text(warned[0]) if warned else ""
    return head + (f" ({where})" if where else "") + (f"; it warned: {first}" if first else "")


def describe_value(value: Any) -> str:
    """A short, one-line repr of a value the user's code made (its ``__repr__`` may raise)."""
    return _text(lambda: repr(value), 40)


def _text(get: Callable[[], str], limit: int) -> str:
    """``get()`` on one line of at most ``limit`` characters; a ``__str__``/``__repr__`` that
    raises (anything) is said, not propagated."""
    try:
        text = get()
        if not isinstance(text, str):
            raise TypeError("not a string")
    except BaseException as err:  # noqa: BLE001 - the user's __str__ may raise anything
        if isinstance(err, KeyboardInterrupt):
            raise
        return f"<its message cannot be shown: {type(err).__name__}>"
    # one line all the same: a newline of the message is shown escaped, as the README says
    text = printable(text.strip())
    if len(text) > limit:
        cut = text[: limit - 30]
        space = cut.rfind(" ")
        cut = cut[:space] if space > len(cut) - 40 else cut  # at a word's end where near
        text = f"{cut}... ({len(text):,} characters)"
    return text


def _where(e: BaseException, path: Path) -> str:
    """The innermost line of the user's file in the traceback, and how many of its frames
    there were (a runaway recursion shows one line, not a thousand)."""
    try:
        target = path.resolve()
        frames = [
            f
            for f in traceback.extract_tb(e.__traceback__)
            if f.filename == str(path) or Path(f.filename).resolve() == target
        ]
    except Exception:  # noqa: BLE001 - an odd traceback: no location rather than a crash
        return ""
    if not frames:
        return ""
    f = frames[-1]
    line = _text(lambda: f.line or "", 80)
    text = f"at {path.name}:{f.lineno} in {f.name}" + (f": {line}" if line else "")
    if len(frames) > 20:
        text += f"; {len(frames):,} frames of {path.name} deep"
    return text


def _warning_text(w: warnings.WarningMessage, limit: int = 0) -> str:
    where = f"{Path(str(w.filename)).name}:{w.lineno}"
    text = _text(lambda: str(w.message), limit or MESSAGE)
    return f"{w.category.__name__}: {text} ({where})"


# a warning said on its own line keeps more of itself than one quoted in an error: torch's
# 'not writable' warning, 419 characters, lost its advice at 'You may wan...' (t69b F8)
SHOWN_WARNING = 640


def _show(caught: list[warnings.WarningMessage], path: Path, what: str) -> None:
    """Each distinct warning once, one line on stderr; after WARNINGS_SHOWN, one last line."""
    for w in caught:
        key = (str(path), what, w.category.__name__, str(w.message), str(w.filename), str(w.lineno))
        if key in _shown:
            continue
        _shown[key] = None
        if len(_shown) <= WARNINGS_SHOWN:
            line = f"{path.name}: {what} warned: {_warning_text(w, SHOWN_WARNING)}"
            if "not writable" in str(w.message) or "non-writable" in str(w.message):
                # torch.from_numpy on gradcli's read-only arrays (outside test t70b F4)
                line += ("; gradcli passes read-only arrays: torch.tensor(x) or "
                         "torch.from_numpy(x.copy()) copies, and the warning goes")
        elif len(_shown) == WARNINGS_SHOWN + 1:
            line = f"{path.name}: {what} warned more; further warnings are not shown"
        else:
            continue
        if sys.stderr is not None:
            with contextlib.suppress(Exception):
                print(f"gradcli: warning: {line}", file=sys.stderr)


_MISSING = object()


class _Watched(types.ModuleType):
    """numpy's modules while user code may run: an assignment to or deletion of one of their
    names is noted (``np.abs = ...`` in a module of the user's; reading costs nothing more)."""

    def __setattr__(self, name: str, value: Any) -> None:
        types.ModuleType.__setattr__(self, name, value)
        _numpy.touched(self, name)

    def __delattr__(self, name: str) -> None:
        types.ModuleType.__delattr__(self, name)
        _numpy.touched(self, name)


class _Numpy:
    """numpy's modules as gradcli computes with them, and as the user's code left them: the
    user's rebinding of a name numpy has is put in place for each of its calls and taken out
    after (a rebound ``np.abs`` had made a 5x wrong backward pass). Names it adds stay. Set up
    at the first call into user code, never at import."""

    def __init__(self) -> None:
        self.ours: dict[types.ModuleType, dict[str, Any]] = {}
        self.theirs: dict[tuple[types.ModuleType, str], Any] = {}  # the user's rebinding
        self.dirty: set[tuple[types.ModuleType, str]] = set()

    def watch(self) -> None:
        if self.ours:
            return
        import numpy.linalg
        import numpy.random

        for m in (np, numpy.linalg, numpy.random):
            if type(m) is types.ModuleType:
                self.ours[m] = dict(vars(m))
                m.__class__ = _Watched

    def touched(self, m: types.ModuleType, name: str) -> None:
        if name in self.ours.get(m, ()):
            self.dirty.add((m, name))

    def forget(self) -> None:
        self.theirs.clear()
        self.dirty.clear()

    def enter(self) -> None:
        for (m, name), value in self.theirs.items():
            _put(m, name, value)

    def leave(self) -> None:
        if self.dirty:
            for m, name in self.dirty:
                self.theirs[(m, name)] = vars(m).get(name, _MISSING)
            self.dirty.clear()
        for m, name in self.theirs:
            _put(m, name, self.ours[m][name])


def _put(m: types.ModuleType, name: str, value: Any) -> None:
    if value is _MISSING:
        vars(m).pop(name, None)
    else:
        types.ModuleType.__setattr__(m, name, value)


_numpy = _Numpy()


class _Guard:
    """Entered on creation, left by ``close`` (idempotent): the process state the user's code
    may change for itself put back, its stdout sent to stderr, its warnings recorded. Plain
    attribute swaps, no context managers: the forward runs once per perturbed copy, so the
    guard's own cost is every copy's (170 us of a 20 us forward, before the signals were read
    raw and numpy's error state restored by its context variable's token: 60 us)."""

    def __init__(self) -> None:
        # the user's code warns as numpy does by default, whatever gradcli silenced for itself
        # (check ignores its own overflows): a refused result then names the warning; the
        # warnings of a call that succeeded are shown only where gradcli shows its own
        self.silenced = np.geterr() != NUMPY_DEFAULTS
        # restores the state before, whatever np.seterr the user's code called meanwhile
        self.errstate = np.errstate(**NUMPY_DEFAULTS)
        self.errstate.__enter__()
        self.limit = sys.getrecursionlimit()
        self.cwd = _cwd()
        self.handlers = {n: _handler(n) for n in _SIGNALS}
        self.stdout, self.stderr = sys.stdout, sys.stderr
        self.exit, self.pid = os._exit, os.getpid()
        os._exit = self._exit  # type: ignore[assignment]
        self.fd = _fd1_to_stderr()
        # their print goes to stderr; neither stream can be closed from their code (a
        # forward's sys.stdout.close() closed the caller's stderr: exit 3 with nothing said)
        err = _kept(sys.stderr) if sys.stderr is not None else _NULL
        sys.stdout, sys.stderr = err, err if sys.stderr is not None else None
        # and the interpreter's own (sys.__stdout__.close() closed the caller's too)
        self.originals = sys.__stdout__, sys.__stderr__
        sys.__stdout__ = _kept(sys.__stdout__) if sys.__stdout__ is not None else None
        sys.__stderr__ = _kept(sys.__stderr__) if sys.__stderr__ is not None else None
        self.log = warnings.catch_warnings(record=True)
        self.caught: list[warnings.WarningMessage] = self.log.__enter__()
        warnings.simplefilter("always")
        _numpy.watch()
        _numpy.enter()
        self.open = True

    def _exit(self, code: int = 0) -> None:
        if os.getpid() != self.pid:  # a child the user's code forked (multiprocessing)
            self.exit(code)
        raise _Exited(code)

    def settle(self) -> None:
        """Between the calls of a run (``batch``): the signal handlers put back, a few C
        calls (the rest waits for the run's end)."""
        for n, handler in self.handlers.items():
            if _handler(n) is not handler and handler is not None:
                with contextlib.suppress(ValueError, OSError):  # not the main thread
                    signal.signal(n, handler)

    def close(self) -> None:
        if not self.open:
            return
        self.open = False
        _numpy.leave()
        self.log.__exit__(None, None, None)
        if self.fd is not None:  # C code's buffered writes go to stderr before fd 1 is back
            if _libc is not None:
                with contextlib.suppress(Exception):
                    _libc.fflush(None)
            with contextlib.suppress(OSError):
                os.dup2(self.fd, 1)
                os.close(self.fd)
        os._exit = self.exit
        sys.stdout, sys.stderr = self.stdout, self.stderr
        sys.__stdout__, sys.__stderr__ = self.originals
        if sys.getrecursionlimit() != self.limit:
            sys.setrecursionlimit(self.limit)
        self.errstate.__exit__(None, None, None)
        if self.cwd is not None and _cwd() != self.cwd:  # relative paths (-o, the spec) hold
            with contextlib.suppress(OSError):
                os.chdir(self.cwd)
        self.settle()  # Ctrl-C, SIGTERM, a closed pipe: gradcli's


_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGPIPE") if hasattr(signal, n))
try:  # the C function: signal.getsignal turns its result into an enum, 14 us a signal a call
    from _signal import getsignal as _handler
except ImportError:  # pragma: no cover - an interpreter without it
    _handler = signal.getsignal


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the folder was removed
        return None


def _fd1_to_stderr() -> int | None:
    """Point file descriptor 1 at stderr (or nowhere, without one) for the user's C code;
    returns a copy of the real stdout to put back, or None when there is none to protect."""
    try:
        saved = os.dup(1)
    except OSError:  # fd 1 closed: nothing to protect
        return None
    try:
        os.dup2(2, 1)
    except OSError:  # no stderr: the user's output goes nowhere rather than to stdout
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    return saved


class _Kept:
    """A stream as the user's code sees it: everything it does, but closing (a no-op) and
    detaching (its buffer, kept open: the 'force UTF-8' rewrap, TextIOWrapper(sys.stdout.
    detach()), detached the caller's stderr)."""

    __slots__ = ("_stream",)

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def close(self) -> None:
        pass

    def detach(self) -> Any:
        return _Kept(self._stream.buffer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_KEPT: dict[int, _Kept] = {}  # by id of the stream each wraps (and keeps alive)


def _kept(stream: Any) -> _Kept:
    """The one _Kept of ``stream``, made once and never freed: CPython 3.11's print holds
    sys.stdout by a borrowed reference, and a wrapper made per call and dropped when the
    caller's stream was put back was freed under another thread's print in flight, which
    wrote to whatever took its memory (AttributeError: 'cell' object has no attribute
    'write': 2 in 150 checks)."""
    got = _KEPT.get(id(stream))
    if got is None or got._stream is not stream:
        if len(_KEPT) >= 256:  # streams made and dropped by the caller: keep the newest
            _KEPT.pop(next(iter(_KEPT)))
        got = _KEPT[id(stream)] = _Kept(stream)
    return got


class _Null:
    """Where the user's print goes when there is no stderr at all."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


_NULL = _Null()
