"""The one error family of gradcli, and the process exit codes.

Exceptions are for broken preconditions only (bad input, bad usage). A gradient that
does not match is a *result* (see :mod:`gradcli.check`), never an exception.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from contextvars import ContextVar

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away, as Unix tools report it
EXIT_TERMINATED = 143  # 128 + SIGTERM

MAX_MESSAGE = 500  # characters of one message line; inputs can make a message any length


def brief(value: object, limit: int = 60) -> str:
    """A short description of a value for an error message: never the repr of a huge (or
    alias-bombed) structure, never more than ``limit`` characters."""
    scalar = (int, float, str, bool, type(None))
    if isinstance(value, (list, tuple)):
        if len(value) <= 8 and all(isinstance(v, scalar) for v in value):
            text = "[" + ", ".join(brief(v, 16) for v in value) + "]"
            if len(text) <= limit:
                return text
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} keys"
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int) and abs(value) > 10**15:
        return "a very large integer"
    if isinstance(value, (datetime.date, datetime.time)):  # YAML reads 2020-01-01 as a date
        return f"the date {value.isoformat()}" if isinstance(value, datetime.date) else (
            f"the time {value.isoformat()}")  # (t65c F9: 'datetime.date(2020, 1, 1)')
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def a_or_an(word: str) -> str:
    """``word`` after its indefinite article, for names that vary (a dtype, a Python type):
    "an int64", "a uint8" (said you-int), "an ndarray"."""
    return f"an {word}" if word[:1].lower() in "aeio" or word.startswith("nd") else f"a {word}"


def one_line(text: str) -> str:
    """``text`` with its newlines, tabs and runs of spaces as single spaces."""
    return " ".join(text.split())


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on shown as an escape (``\\n``,
    ``\\x1b``, ``\\u202e``): a path or key from the input can then neither start a new line
    that looks like gradcli's own, nor move the cursor, clear the screen or reverse the text."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """At most ``limit`` characters, saying how many were cut."""
    if len(text) <= limit:
        return text
    keep = limit - 40
    return f"{text[:keep]}... ({len(text) - keep:,} more characters)"


def short_key(key: str, limit: int = 100) -> str:
    """A key path of at most ``limit`` characters, its start and its end kept: a deeply nested
    key must leave room in the one line for what is wrong there."""
    if len(key) <= limit:
        return key
    half = (limit - 5) // 2
    return f"{key[:half]} ... {key[-half:]}"


def one_of(names: Iterable[object], limit: int = 8) -> str:
    """``a, b, c`` for an "expected one of" list: a few names, then how many more, so a file
    with 20,000 members does not make a 1 MB message."""
    shown: list[str] = []
    more = 0
    for name in names:
        if len(shown) < limit:
            text = str(name)
            shown.append(text if len(text) <= 40 else text[:37] + "...")
        else:
            more += 1
    if not shown:
        return "none"
    return ", ".join(shown) + (f" and {more:,} more" if more else "")


NO_VALUE = object()  # mention(param) without a value


def _as_parameter(param: str, value: object = NO_VALUE) -> str:
    if value is NO_VALUE:
        return param
    return f"{param}={value!r}" if isinstance(value, str) else f"{param}={value}"


_naming: ContextVar[Callable[[str, object], str]] = ContextVar(
    "gradcli_naming", default=_as_parameter
)


def mention(param: str, value: object = NO_VALUE) -> str:
    """A message's words for one of the library's parameters (and a value it may take): the
    Python API reads ``max_memory`` / ``mode='full'``; the CLI, once its entry point has
    installed its flags with :func:`set_naming`, ``--max-memory`` / ``--mode full``. Code below
    the CLI never writes a flag itself: it mentions the parameter."""
    return _naming.get()(param, value)


def set_naming(naming: Callable[[str, object], str]) -> Callable[[], None]:
    """Install how :func:`mention` names parameters (in this context: a thread running the API
    beside the CLI keeps parameter names); returns the function that puts the last one back."""
    token = _naming.set(naming)
    return lambda: _naming.reset(token)


class GradcliError(Exception):
    """Bad input or bad usage; becomes one line on stderr and exit code 2.

    ``source`` is the file (or ``<stdin>``, ``<default>``) and ``key`` the dotted key inside
    it, so the message reads ``spec.yaml: tensors.W: expected ...``. ``param`` names the
    library's parameter at fault (``max_memory``, ``method``); the CLI shows its flag instead.
    """

    exit_code = EXIT_USAGE

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        key: str | None = None,
        param: str | None = None,
    ):
        # a key or path from the input (a tensor file named "a\nb", an option key holding ESC)
        # reaches every message through these three: escaped here once, whoever shows it
        message = printable(message)
        super().__init__(message)
        self.message = message
        self.source = None if source is None else printable(source)
        self.key = None if key is None else printable(key)
        self.param = None if param is None else printable(param)

    def at(
        self, *, source: str | None = None, key: str | None = None, param: str | None = None
    ) -> GradcliError:
        """The same error with a source/key/param filled in where it had none."""
        err = type(self)(
            self.message, source=self.source or source, key=self.key or key,
            param=self.param or param,
        )  # fmt: skip
        err.__cause__ = self.__cause__
        return err

    def under(self, prefix: str) -> GradcliError:
        """The same error with its key read from ``prefix`` (a layer's own ``options.size``
        becomes ``network[1].options.size``); no key: ``prefix`` itself."""
        err = type(self)(
            self.message, source=self.source,
            key=f"{prefix}.{self.key}" if self.key else prefix, param=self.param,
        )  # fmt: skip
        err.__cause__ = self.__cause__
        return err

    def describe(self, param_name: Callable[[str], str] = str) -> str:
        """``source: key: message``, the parameter (if any) shown as ``param_name`` names it
        (not where the key already starts with it: ``options.stride: ...``)."""
        param = param_name(self.param) if self.param else None
        if param and self.key and self.key.split(".")[0].split("[")[0] == self.param:
            param = None
        key = self.key and short_key(self.key)
        return ": ".join(str(p) for p in (self.source or param, key, self.message) if p)

    def __str__(self) -> str:
        return self.describe()


def in_layer(err: GradcliError, index: int, name: str, source: str | None = None
             ) -> GradcliError:  # fmt: skip
    """``err``, raised by the code of a network's layer ``index`` (``name``), said of that
    layer and the model file ``source``: ``model.yaml: layer 4 'act2' (myrelu.py): backward
    raised ...`` (two layers sharing one impl file were told apart by nothing: outside tests
    t55b F4, t55a F2). Said once: an error already said of a layer is kept as it is."""
    if getattr(err, "layer", None) is not None:
        return err
    where = f"layer {index} {name!r}" + (f" ({err.source})" if err.source else "")
    new = type(err)(f"{where}: {err.message}", source=source, key=err.key, param=err.param)
    new.layer = index  # type: ignore[attr-defined]
    new.__cause__ = err.__cause__
    return new


class SpecError(GradcliError):
    """The spec document is malformed (YAML, keys, types, values)."""


class TensorFileError(GradcliError):
    """A tensor file cannot be read safely (.npy/.npz/YAML)."""


class ShapeError(GradcliError):
    """Tensor shapes do not fit the layer."""


class OptionError(GradcliError):
    """A layer option or a command-line option is invalid."""


class UserCodeError(GradcliError):
    """The user's code failed (raised, exited, returned the wrong thing); the message names
    the function and the user's own line."""


class InPlaceWriteError(GradcliError):
    """User code wrote into an array gradcli passed it (read-only: tensors, grad_output)."""


class ClosedPipeError(GradcliError):
    """The reader of stdout went away (``gradcli check ... | head -1``): not an error of the
    input, nothing to say; the exit status tells a closed pipe, as Unix tools do."""

    exit_code = EXIT_PIPE


class SampledWarning(UserWarning):
    """``assert_gradients`` passed on a sample of coordinates that the budget chose, not on
    every one: a gradient wrong at a single element may have passed (``mode="full"`` checks
    every coordinate). A warning, not an error: pytest lists it, and
    ``-W error::gradcli.SampledWarning`` makes it fail."""
