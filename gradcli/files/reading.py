"""Files: every file gradcli reads is opened here (without blocking, regular files only) and
read for what it declares, no more; safe bounded YAML (gradcli.yamlparse), .npy/.npz without
pickles (gradcli.npyformat); each is noted, so that --output never replaces one (gradcli.emit
writes outputs). No numerics here."""

from __future__ import annotations

import io
import linecache
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from gradcli.errors import (
    GradcliError,
    SpecError,
    TensorFileError,
    brief,
    mention,
    one_line,
    one_of,
)  # fmt: skip
from gradcli.files import note_read, npyformat
from gradcli.files.npyformat import MAX_AXES

if TYPE_CHECKING:
    import zipfile

__all__ = ["MAX_AXES", "load_array", "npz_names", "open_input", "parse_yaml", "read_spec_text"]


SPEC_BYTES = 16 * 2**20  # a spec or YAML answer file: inline YAML is for small arrays
MAX_MEMBERS = 100_000  # members of an .npz (numpy's reader lists them all first)


def parse_yaml(text: str, *, source: str, max_elements: int | None = None) -> Any:
    """gradcli.files.yamlparse's safe, bounded YAML. yaml is imported on the first file read:
    a check of a layer's embedded default reads none."""
    from gradcli.files import yamlparse

    return yamlparse.parse_yaml(text, source=source, max_elements=max_elements)


def shown(path: Path | str, limit: int = 120) -> str:
    """A path as messages show it: a long one keeps its start and its end (the file's name)."""
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit // 2 - 2]}...{text[-(limit // 2 - 2) :]}"


def open_input(path: Path, *, source: str, key: str | None = None) -> BinaryIO:
    """The one way gradcli opens a file it reads: without blocking (a FIFO swapped in after
    any earlier check would hang a blocking open), then what was opened must be a regular
    file (not a FIFO, device, socket or folder); reads then block as usual."""
    name = shown(path)

    def refuse(message: str) -> TensorFileError:
        return TensorFileError(message, source=source, key=key)

    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    note_read(path)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise refuse(f"file not found: {name}") from None
    except IsADirectoryError:
        raise refuse(f"{name} is a directory, expected a file") from None
    except OSError as e:
        raise refuse(f"cannot read {name}: {e.strerror}") from None
    except ValueError:  # a NUL byte in the path
        raise refuse(f"invalid file name {brief(str(path))}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise refuse(f"{name} is a directory, expected a file")
        if not stat.S_ISREG(mode):
            raise refuse(f"{name} is not a regular file (a FIFO, device or socket)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


_YAML_HINT = "; inline YAML is for small arrays, larger ones belong in .npy files"


def read_bytes(path: Path, *, source: str, limit: int = SPEC_BYTES, hint: str = "") -> bytes:
    """The bytes of ``path``, refused beyond ``limit`` (only ``limit + 1`` bytes are read)."""
    with open_input(path, source=source) as f:
        return _bounded(f, limit, shown(path), source=source, hint=hint)


def _bounded(f: Any, limit: int, name: str, *, source: str, hint: str = "") -> bytes:
    try:
        data = f.read(limit + 1)
    except OSError as e:
        raise TensorFileError(f"cannot read {name}: {e.strerror}", source=source) from None
    if len(data) > limit:
        raise SpecError(f"{name} is larger than {limit // 2**20} MB{hint}", source=source)
    return data


# stdin's spec, once read, with the stream it came from: `gradcli check -` peeks at its
# layer: before the spec is loaded (a new stream, another run in the same process, reads anew)
_STDIN: list = []


def read_spec_text(spec: str) -> tuple[str, str, Path]:
    """(text, source name, folder that relative tensor paths start from) for a spec argument
    (a file or ``-``: stdin, which may be a terminal or a pipe; its bytes are bounded too)."""
    if spec == "-":
        if sys.stdin is None:  # started with stdin closed
            raise SpecError("stdin is closed; give the spec as a file", source="<stdin>")
        if _STDIN and _STDIN[0] is sys.stdin:  # read once, its layer: peeked at (cli/args.py)
            data = _STDIN[1]
        else:
            stdin = getattr(sys.stdin, "buffer", None)
            if stdin is None:  # a text stream without bytes beneath (tests): bound its characters
                stdin = io.BytesIO(
                    sys.stdin.read(SPEC_BYTES + 1).encode("utf-8", "surrogateescape"))
            data = _bounded(stdin, SPEC_BYTES, "stdin", source="<stdin>", hint=_YAML_HINT)
            _STDIN[:] = [sys.stdin, data]
        source, base = "<stdin>", Path.cwd()
    else:
        path = Path(spec)
        data, source, base = read_bytes(path, source=spec, hint=_YAML_HINT), spec, path.parent
    try:
        return data.decode("utf-8"), source, base
    except UnicodeDecodeError:
        raise SpecError("not a UTF-8 text file, expected a YAML spec", source=source) from None


def read_module(path: Path, *, source: str) -> bytes:
    """A Python module's source, read through the one opener; its lines are kept for the
    user's tracebacks (linecache would open the path again, and it may no longer be a file)."""
    data = read_bytes(path, source=source)
    text = data.decode("utf-8", "replace")
    linecache.cache[str(path)] = (len(data), None, text.splitlines(keepends=True), str(path))
    return data


def load_array(
    path: Path,
    npz_key: str | None,
    *,
    source: str,
    key: str,
    reserve: Callable[[int], None] | None = None,
    kinds: str = npyformat.NUMBERS,
    header_only: bool = False,
) -> np.ndarray:
    """An array from .npy (or .npz with ``npz_key``); never unpickles. The header is read and
    checked first (dtype kinds ``kinds``, at most MAX_AXES axes); ``reserve(n)`` is told its
    element count before the data is read (it may refuse); then exactly the declared bytes are
    read, from the file or the zip member's bounded stream. A file or member whose size is not
    the header's (truncated, or data after the array) is refused before the data is read.
    ``header_only``: the data is not read, and a stand-in of the header's shape and dtype that
    holds one element is returned (the count of a whole spec before anything is read)."""
    import zipfile  # LAZY: see ARCHITECTURE.md, "Start-up"

    reserve = reserve or (lambda n: None)

    def fail(msg: str) -> TensorFileError:
        return TensorFileError(_about(path, source, msg), source=source, key=key)

    with open_input(path, source=source, key=key) as f:
        try:
            is_npz = f.read(2) == b"PK"
            f.seek(0)
            if npz_key is None:
                if is_npz:
                    raise fail(
                        f"is an .npz archive: name the array as '{shown(path)}:KEY' or "
                        "{file: ..., key: ...}"
                    )
                return _read_npy(f, os.fstat(f.fileno()).st_size, kinds, reserve, header_only)
            if not is_npz:
                raise fail(f"is not an .npz archive, so it has no array {npz_key!r}")
            with _zip(f) as archive:
                try:
                    info = archive.getinfo(npz_key + ".npy")
                except KeyError:
                    known = one_of((shown(n, 40) for n in _npy_names(archive)), limit=5)
                    what = shown(repr(npz_key), 60)
                    raise fail(f"has no array {what} (arrays: {known})") from None
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise fail(
                        f"compresses {npz_key!r} in a way numpy never writes (only stored or "
                        "deflated members are read)"
                    )
                with archive.open(info) as member:
                    return _read_npy(member, info.file_size, kinds, reserve, header_only)
        except npyformat.NpyError as e:
            raise fail(str(e)) from None
        except GradcliError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as e:
            raise fail(f"is not a valid .npz file ({one_line(str(e))[:80]})") from None
        except Exception as e:  # noqa: BLE001 - zipfile raises all kinds on garbage
            raise fail(f"is not a valid .npy/.npz file ({one_line(str(e))[:80]})") from None


def _read_npy(
    stream: BinaryIO, size: int, kinds: str, reserve: Callable[[int], None],
    header_only: bool = False,
) -> np.ndarray:  # fmt: skip
    """Header, then the check of the stream's ``size`` against it, then exactly its data."""
    header = npyformat.read_header(stream, kinds)
    reserve(header.count)
    if size != header.end:
        what = "is truncated" if size < header.end else "has data after its array"
        raise npyformat.NpyError(f"{what}: its header makes {header.end:,} bytes, it has {size:,}")
    if header_only:
        return np.broadcast_to(np.zeros((), dtype=header.dtype), header.shape)
    return npyformat.read_data(stream, header)


def npz_names(path: Path, *, source: str) -> list[str]:
    """The array names in an .npz (read each with ``load_array``, which guards the contents)."""
    import zipfile  # LAZY

    with open_input(path, source=source) as f:
        if f.read(2) != b"PK":
            raise TensorFileError(
                f"not an .npz archive: for one array name its tensor with {mention('wrt')} NAME",
                source=source,
            )
        try:
            with _zip(f) as archive:
                return _npy_names(archive)
        except npyformat.NpyError as e:
            raise TensorFileError(_about(path, source, str(e)), source=source) from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as e:
            raise TensorFileError(
                f"not a valid .npz file ({one_line(str(e))[:80]})", source=source
            ) from None


def _about(path: Path, source: str, msg: str) -> str:
    """``msg`` about the file ``path``, named unless the message's source already is it (an
    answers file: 'a.npz: a.npz holds ...')."""
    return msg if source in (str(path), shown(path)) else f"{shown(path)} {msg}"


def _zip(f: BinaryIO) -> zipfile.ZipFile:
    """The archive, after its end record says it lists at most MAX_MEMBERS members (zipfile
    builds an object for each before anything else)."""
    import zipfile  # LAZY

    f.seek(0)
    end = zipfile._EndRecData(f)  # type: ignore[attr-defined]
    members = end[zipfile._ECD_ENTRIES_TOTAL] if end else 0  # type: ignore[attr-defined]
    if members > MAX_MEMBERS:
        raise npyformat.NpyError(
            f"is an .npz of {members:,} members; gradcli reads archives of at most {MAX_MEMBERS:,}"
        )
    f.seek(0)
    archive = zipfile.ZipFile(f)
    # a name twice (appended with zip -u, or 'dW' beside 'dW.npy') is two answers to one key:
    # np.load's archive['dW'] reads one, this reader the other (outside test t34b F1)
    seen: set[str] = set()
    for n in archive.namelist():
        key = n[: -len(".npy")] if n.endswith(".npy") else n
        if key in seen:
            archive.close()
            raise npyformat.NpyError(
                f"holds the array {shown(repr(key), 60)} twice, so which one is meant is "
                "ambiguous (np.load reads one of them); write each array once"
            )
        seen.add(key)
    return archive


def _npy_names(archive: zipfile.ZipFile) -> list[str]:
    return [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
