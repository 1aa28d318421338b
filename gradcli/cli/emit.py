"""Where a command's result goes: stdout, or a file written atomically. Either way the whole
result is rendered to one string first and written once, so a failure leaves no partial output;
an output file is only ever a new path or a regular file that none of the run's inputs is."""

from __future__ import annotations

import codecs
import errno
import io
import os
import re
import select
import stat
import sys
import unicodedata
from pathlib import Path
from typing import Any

from gradcli.cli import interrupt
from gradcli.errors import ClosedPipeError, GradcliError, printable
from gradcli.files import files_read


def same_stream() -> bool:
    """Whether stdout and stderr are one terminal, or one pipe or file (``2>&1 | less``): the
    notes said on stderr as the check went are then not said again in the report (t20 F8: a
    334-character line, then the same note wrapped; t24 F6: twice in ``2>&1``); a separate
    stderr keeps both."""
    try:  # the streams' own descriptors: a test's in-memory streams have none
        one, two = sys.stdout.fileno(), sys.stderr.fileno()
        if os.isatty(one) or os.isatty(two):
            return os.isatty(one) and os.isatty(two) and os.ttyname(one) == os.ttyname(two)
        out, err = os.fstat(one), os.fstat(two)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False
    if stat.S_ISCHR(out.st_mode):  # /dev/null for both: nobody reads either
        return False
    return (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino)


def emit(
    output: Path | None,
    inputs: tuple[Path, ...],
    *,
    text: Any = None,
    npz: Any = None,
) -> None:
    """Write the result: stdout, or FILE atomically. ``text(console)`` renders a table;
    ``text`` may also be a ready string; ``npz()`` gives the bytes of an .npz archive."""
    if output is None:
        _to_stdout(text)
        interrupt.finished()
        return
    target = _target(output, inputs)
    if output.suffix.lower() == ".npz":  # out.NPZ wrote a table
        if npz is None:
            raise GradcliError("this command has no arrays to write as .npz", source="--output")
        data = npz()
    elif callable(text):
        from gradcli.render import text as render

        buf = io.StringIO()
        text(render.console(buf, plain=True))
        data = _terminal_safe(buf.getvalue()).encode()
    else:
        data = _text_safe(text).encode()
    write_atomic(target, data, shown=output)


def ready(output: Path | None, inputs: tuple[Path, ...]) -> None:
    """Refuse now, before the work, what ``emit`` would refuse after it (a closed stdout, an
    output that is a device or one of the inputs); ``emit`` checks again."""
    if output is None:
        if sys.stdout is None:
            raise _closed_stdout()
    else:
        _target(output, inputs)


def wants_json(fmt: str | None, output: Path | None) -> bool:
    """Whether the result is JSON: ``--format json``, or no --format and an --output FILE.json.
    A table in a .json file would break whatever reads it, so ``--format table`` is refused
    there; any other FILE (but .npz, always arrays) gets the --format, a table by default."""
    json_file = output is not None and output.suffix.lower() == ".json"
    if fmt is not None and output is not None and output.suffix.lower() == ".npz":
        raise GradcliError(
            f"{output} ends in .npz, which holds arrays whatever --format says, but --format is "
            f"{getattr(fmt, 'value', fmt)}; drop --format or use another name",
            source="--output",
        )
    if fmt == "table" and json_file:
        raise GradcliError(
            f"{output} ends in .json but --format is table; drop --format or use another name",
            source="--output",
        )
    return fmt == "json" or (fmt is None and json_file)


def input_files(spec: Any, *others: str | None) -> tuple[Path, ...]:
    """Every file the run reads (spec, tensors, --impl, --grads): --output may be none of them.
    Files read through gradcli.io are noted as well (those a --grads YAML names, ...)."""
    own = (Path(spec.source),) if not spec.source.startswith("<") else ()
    if spec.source == "<stdin>":
        own = (Path("/dev/stdin"),)  # `-o /dev/stdin` with `- < spec.yaml` is the spec itself
    extra = tuple(Path(p.rpartition(":")[0] if ".py:" in p else p) for p in others if p)
    return own + spec.files + extra


# --- stdout ---------------------------------------------------------------------------------


def _to_stdout(text: Any) -> None:
    stream = sys.stdout
    if stream is None:  # started with stdout closed (`>&-`)
        raise _closed_stdout()
    encoding = getattr(stream, "encoding", None) or "utf-8"
    if callable(text):
        data, errors = _drawn(text, stream, encoding), "gradcli-table"
    else:
        data, errors = _text_safe(text), "gradcli-json"
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):  # an in-memory stream (tests, embedding)
        fd = None
    try:
        raw = data.encode(encoding, errors)
    except LookupError:
        raw = data.encode("utf-8")
    try:
        if fd is None:
            stream.write(raw.decode(encoding, "replace"))
            stream.flush()
        else:
            stream.flush()
            _write_fd(fd, raw)
    except BrokenPipeError:
        _quiet(fd)
        raise ClosedPipeError("the reader of stdout went away") from None
    except OSError as e:
        _quiet(fd)
        raise GradcliError(
            f"cannot write the result: {e.strerror or e}", source="<stdout>"
        ) from None


def _drawn(draw: Any, stream: Any, encoding: str) -> str:
    """What ``draw`` renders for ``stream``. Where the stream's encoding takes stand-ins for
    some characters (`W^T` for `Wᵀ`, `sqrt(d_k)` for `√d_k`), they widen lines the console
    laid out to its width: drawn again narrower by the widest excess (twice at most), so
    that every line that fitted still fits."""
    from gradcli.render import text as render

    width = None
    for _ in range(3):
        buf = _Rendering(stream)
        console = render.console(buf)
        if width is not None:
            console.width = width
        draw(console)
        data = _terminal_safe(buf.getvalue())
        over = _widening(data, encoding, console.width)
        if over <= 0 or console.width - over < 20:
            return data
        width = console.width - over
    return data


def _widening(data: str, encoding: str, width: int) -> int:
    """How far the stand-ins of ``encoding`` push the lines of ``data`` that fit ``width``
    beyond it (0: none do)."""
    try:
        data.encode(encoding)
        return 0
    except UnicodeEncodeError:
        pass
    except LookupError:
        return 0
    over = 0
    for line in _SGR.sub("", data).split("\n"):
        if len(line) <= width:
            shown = line.encode(encoding, "gradcli-table").decode(encoding, "replace")
            over = max(over, len(shown) - width)
    return over


class _Rendering(io.StringIO):
    """Collects a table drawn for ``stream``: rich sees the stream's terminal and encoding
    (colours, ASCII boxes), stdout sees nothing until the table is complete."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream

    def isatty(self) -> bool:
        try:
            return bool(self._stream.isatty())
        except (OSError, ValueError, AttributeError):
            return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"


def _closed_stdout() -> GradcliError:
    return GradcliError(
        "stdout is closed, so the result has nowhere to go (write it with -o FILE)",
        source="<stdout>",
    )


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:  # a stdout left non-blocking by the caller: wait, go on
            select.select([], [fd], [])
            continue
        view = view[n:]


def _quiet(fd: int | None) -> None:
    """Nothing more reaches the broken stdout, not even the interpreter's last flush (which
    would print "Exception ignored ... BrokenPipeError" as it exits)."""
    if fd is None:
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass


_SGR = re.compile(r"(\x1b\[[0-9;]*m)")  # the colours rich writes on a terminal


def _terminal_safe(text: str) -> str:
    """A rendered table with any control character that came from the input (a key, a file
    name) escaped; the table's own newlines and colour codes stay."""
    if _SGR.sub("", text).replace("\n", "").isprintable():
        return text
    parts = _SGR.split(text)
    return "".join(
        p if i % 2 else "\n".join(printable(line) for line in p.split("\n"))
        for i, p in enumerate(parts)
    )


def _text_safe(text: str) -> str:
    """JSON (or a template): characters a terminal would act on as \\uXXXX escapes, which JSON
    reads back as the same string (json itself escapes only C0)."""
    if text.replace("\n", "").isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\n" else _json_escape(c) for c in text)


def _json_escape(c: str) -> str:
    code = ord(c)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


# Stand-ins for the characters gradcli's tables and formulas use, when stdout's encoding
# (PYTHONIOENCODING=ascii, a latin-1 terminal) cannot show them; rich already draws ASCII boxes.
_ASCII = {
    "∂": "d", "·": "*", "ᵀ": "^T", "Σ": "sum", "δ": "delta", "…": "...", "√": "sqrt",
    "⊙": "(*)", "∈": " in ", "█": "#", "▓": "#", "▒": "+", "░": ".", "⌊": "floor(",
    "⌋": ")", "⋆": "*", "∗": "*", "−": "-", "≤": "<=", "≥": ">=", "∞": "inf", "×": "x",
    "→": "->", "←": "<-", "–": "-", "—": "-", "²": "^2", "±": "+/-", "≈": "~", "≠": "!=",
    "━": "-", "─": "-", "│": "|", "┃": "|",
}  # fmt: skip


def _table_fallback(e: UnicodeError) -> tuple[str, int]:
    assert isinstance(e, UnicodeEncodeError)
    out = []
    for c in e.object[e.start : e.end]:
        sub = _ASCII.get(c)
        if sub is None:
            sub = _stand_in(c)
        # x²³ is x^23, not x^2^3: a superscript continues the exponent before it
        if out and _SUPER.fullmatch(sub) and _SUPER.fullmatch(out[-1]):
            sub = sub[1:]
        out.append(sub)
    if out and e.start and out[0][:1].isdigit() and e.object[e.start - 1].isdigit():
        out[0] = " " + out[0]  # 3½ is 3 1/2, not 31/2
    end = e.end
    # √d_k is sqrt(d_k), not sqrtd_k: the operand (a name or number after it) is enclosed
    operand = _OPERAND.match(e.object, end) if e.object[end - 1] == "√" else None
    if operand:
        out.append(f"({operand.group()})")
        end = operand.end()
    return "".join(out), end


def _stand_in(c: str) -> str:
    """A character outside _ASCII, by what Unicode says it is: a Greek letter by its name
    (μ mu, σ sigma), an accent by its word (x̂ xhat), a superscript as an exponent (x³ x^3),
    a fraction with its slash (½ 1/2); formulas in new layers need no entry of their own."""
    name = unicodedata.name(c, "")
    if name.startswith("GREEK "):
        letter = name.partition(" LETTER ")[2].partition(" WITH ")[0].lower()
        if letter:
            letter = _GREEK.get(letter, letter)
            return letter.capitalize() if " CAPITAL " in name else letter
    if unicodedata.combining(c):
        return next((w for k, w in _ACCENTS.items() if k in name), "")
    parts = unicodedata.normalize("NFD", c)
    if len(parts) > 1:  # ȳ is y with a macron: ybar
        return "".join(p if p.isascii() else _stand_in(p) for p in parts)
    kind, _, codes = unicodedata.decomposition(c).partition(" ")
    if kind in ("<super>", "<sub>", "<fraction>"):
        parts = "".join(_ASCII.get(p, p) for p in (chr(int(h, 16)) for h in codes.split()))
        parts = parts.replace("\u2044", "/")
        plain = parts.encode("ascii", "ignore").decode()
        if plain:
            return {"<super>": "^", "<sub>": "_"}.get(kind, "") + plain
    plain = unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode()
    return plain or "?"


_GREEK = {"epsilon": "eps", "lamda": "lambda", "final sigma": "sigma"}
_ACCENTS = {
    "CIRCUMFLEX": "hat", "MACRON": "bar", "TILDE": "tilde", "DIAERESIS": "ddot", "DOT ABOVE": "dot",
}  # fmt: skip
_SUPER = re.compile(r"\^[-0-9]+")
_OPERAND = re.compile(r"[A-Za-z0-9_.]+")


def _json_fallback(e: UnicodeError) -> tuple[str, int]:
    assert isinstance(e, UnicodeEncodeError)
    return "".join(_json_escape(c) for c in e.object[e.start : e.end]), e.end


codecs.register_error("gradcli-table", _table_fallback)
codecs.register_error("gradcli-json", _json_fallback)


# --- output files ---------------------------------------------------------------------------


_KINDS = {
    stat.S_IFDIR: "a directory", stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
}  # fmt: skip


def _target(output: Path, inputs: tuple[Path, ...]) -> Path:
    """The file ``-o OUTPUT`` will replace (through symlinks), once it is sure to be a new path
    or a regular file that this run did not read."""
    try:
        st: os.stat_result | None = os.stat(output)
    except (FileNotFoundError, NotADirectoryError):
        st = None  # a new file (or a symlink to one): its folder is checked when writing
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) else "invalid file name"
        raise GradcliError(f"cannot write {output}: {why}", source="--output") from None
    if st is None:
        # its folder before the work, not after it: a typo in a CI artifact's path cost a
        # whole check, then exit 2 (outside test t58b F4)
        folder = os.path.dirname(os.path.realpath(output)) or "."
        if not os.path.isdir(folder):
            why = "no such directory" if not os.path.exists(folder) else "not a directory"
            raise GradcliError(f"cannot write to {folder}: {why}", source="--output")
        if not os.access(folder, os.W_OK | os.X_OK):
            why = "permission denied"
            try:  # (a read-only mount was called 'permission denied': outside test t65c F9)
                if os.statvfs(folder).f_flag & os.ST_RDONLY:
                    why = "read-only file system"
            except (OSError, AttributeError):
                pass
            raise GradcliError(f"cannot write to {folder}: {why}", source="--output")
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise GradcliError(
            f"{output} is {kind}; gradcli writes only a new file or over a regular file",
            source="--output",
        )
    if st is not None:
        for f in (*inputs, *files_read()):
            try:
                same = os.path.samefile(f, output)
            except (OSError, ValueError):
                continue
            if same:
                what = "" if f == output else f" ({f})"
                raise GradcliError(
                    f"{output} is one of this run's inputs{what}; refusing to overwrite it",
                    source="--output",
                )
    return Path(os.path.realpath(output))


def write_atomic(path: Path, data: bytes, *, shown: Path | None = None) -> None:
    """Write all of ``data`` or nothing: a temporary file in the same folder, then a rename.
    The temporary's name is short (a 255-byte file name still works) and it is removed
    whatever stops the run, Ctrl-C and SIGTERM included (they wait for the rename or removal)."""
    import tempfile  # only for an --output file

    shown = shown or path
    folder = path.parent if str(path.parent) else Path(".")
    with interrupt.held():
        try:
            fd, tmp = tempfile.mkstemp(prefix=".gradcli-", suffix=".tmp", dir=folder)
        except OSError as e:
            raise GradcliError(
                f"cannot write to {folder}: {e.strerror}", source="--output"
            ) from None
        try:
            os.fchmod(fd, _mode_for(path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                _sync(f.fileno())
            interrupt.check()  # stopped while writing: the target stays as it was
            os.replace(tmp, path)
            interrupt.finished()
        except BaseException as e:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise GradcliError(
                    f"cannot write {shown}: {e.strerror}", source="--output"
                ) from None
            raise


def _sync(fd: int) -> None:
    """On disk before the rename, so a crash cannot leave an empty file in the target's place."""
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EROFS):  # cannot sync there
            raise


def _mode_for(path: Path) -> int:
    """An existing file keeps its permissions; a new one gets the usual 0o666 minus umask
    (mkstemp would leave 0o600)."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
