"""Files: safe YAML, .npy/.npz without pickles, atomic writes. No numerics here."""

from __future__ import annotations

import io
import math
import os
import re
import stat
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from gradcli.errors import GradcliError, SpecError, TensorFileError, brief


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML that also reads YAML 1.2 floats such as 1e-3 (YAML 1.1 wants 1.0e-3)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_bytes(path: Path, *, source: str, key: str | None = None) -> bytes:
    """The bytes of ``path``; a missing, directory, special or unreadable file is a
    TensorFileError (a FIFO or /dev/zero would block or never end)."""
    try:
        if path.exists() and not path.is_dir() and not stat.S_ISREG(path.stat().st_mode):
            raise TensorFileError(f"{path} is not a regular file", source=source, key=key)
        return path.read_bytes()
    except FileNotFoundError:
        raise TensorFileError(f"file not found: {path}", source=source, key=key) from None
    except IsADirectoryError:
        raise TensorFileError(
            f"{path} is a directory, expected a file", source=source, key=key
        ) from None
    except OSError as e:
        raise TensorFileError(f"cannot read {path}: {e.strerror}", source=source, key=key) from None
    except ValueError:  # a NUL byte in the path
        raise TensorFileError(
            f"invalid file name {brief(str(path))}", source=source, key=key
        ) from None


def read_spec_text(spec: str) -> tuple[str, str, Path]:
    """(text, source name, folder that relative tensor paths start from) for a spec argument."""
    if spec == "-":
        return sys.stdin.read(), "<stdin>", Path.cwd()
    path = Path(spec)
    data = read_bytes(path, source=spec)
    try:
        return data.decode("utf-8"), spec, path.parent
    except UnicodeDecodeError:
        raise SpecError("not a UTF-8 text file, expected a YAML spec", source=spec) from None


def parse_yaml(text: str, *, source: str) -> Any:
    """Safe YAML (no python tags, nothing constructed); errors name the line and column."""
    huge = re.search(r"\d{4000,}", text)
    if huge:  # Python refuses to parse such integers, deep inside the YAML constructor
        line = text.count("\n", 0, huge.start()) + 1
        raise SpecError(
            f"invalid YAML: line {line}: a number with more than 4000 digits", source=source
        )
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - the loader is a SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(
            _one_line(f"invalid YAML: {where}{e.problem or e}"), source=source
        ) from None
    except (yaml.YAMLError, ValueError) as e:  # ValueError: an integer of > 4300 digits
        raise SpecError(_one_line(f"invalid YAML: {e}"), source=source) from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def load_array(
    path: Path,
    npz_key: str | None,
    *,
    source: str,
    key: str,
    reserve: Callable[[int], None] | None = None,
) -> np.ndarray:
    """An array from .npy (or .npz with ``npz_key``); never unpickles. ``reserve(n)`` is told the
    element count from the header before any data is read into an array (it may refuse)."""
    reserve = reserve or (lambda n: None)
    try:
        if path.is_file() and path.stat().st_size > 8 * 2**30:
            raise TensorFileError(f"{path} is larger than 8 GB", source=source, key=key)
    except OSError:
        pass  # read_bytes says what is wrong
    data = read_bytes(path, source=source, key=key)
    buf = io.BytesIO(data)
    is_npz = data[:2] == b"PK"
    try:
        if npz_key is None:
            if is_npz:
                raise TensorFileError(
                    f"{path} is an .npz archive: name the array as '{path}:KEY' or "
                    "{file: ..., key: ...}",
                    source=source,
                    key=key,
                )
            if data[:6] != b"\x93NUMPY":  # else numpy would try to read it as a pickle
                raise TensorFileError(
                    f"{path} is not a .npy file (no NUMPY header)", source=source, key=key
                )
            reserve(_header_size(buf))
            return np.load(buf, allow_pickle=False)
        if not is_npz:
            raise TensorFileError(
                f"{path} is not an .npz archive, so it has no array {npz_key!r}",
                source=source,
                key=key,
            )
        with np.load(buf, allow_pickle=False) as archive:
            if npz_key not in archive.files:
                known = ", ".join(archive.files) or "none"
                raise TensorFileError(
                    f"{path} has no array {npz_key!r} (arrays: {known})", source=source, key=key
                )
            with archive.zip.open(npz_key + ".npy") as member:
                reserve(_header_size(member))  # before decompressing: zip bombs stop here
            return archive[npz_key]
    except GradcliError:
        raise
    except ValueError as e:
        if "pickle" in str(e):
            msg = f"{path} holds pickled (object) data, which gradcli never loads"
        else:
            msg = f"{path} is not a valid .npy/.npz file ({_one_line(str(e))[:80]})"
        raise TensorFileError(msg, source=source, key=key) from None
    except Exception as e:  # noqa: BLE001 - numpy's parsers raise all kinds on garbage
        raise TensorFileError(
            f"{path} is not a valid .npy/.npz file ({_one_line(str(e))[:80]})",
            source=source,
            key=key,
        ) from None


def npz_names(path: Path, *, source: str) -> list[str]:
    """The array names in an .npz (read each with ``load_array``, which guards the contents)."""
    data = read_bytes(path, source=source)
    if data[:2] != b"PK":
        raise TensorFileError(
            "not an .npz archive: for one array name its tensor with --wrt NAME", source=source
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise TensorFileError(
            f"not a valid .npz file ({_one_line(str(e))[:80]})", source=source
        ) from None


def _header_size(stream: Any) -> int:
    """Elements an .npy stream declares in its header (the stream is rewound if it can be)."""
    start = stream.tell() if stream.seekable() else None
    major, _ = np.lib.format.read_magic(stream)
    read = (
        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    )
    shape, _, _ = read(stream)
    if start is not None:
        stream.seek(start)
    return math.prod(shape)


def write_atomic(path: Path, data: bytes) -> None:
    """Write all of ``data`` or nothing: a temporary file in the same folder, then a rename."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise GradcliError(f"cannot write to {folder}: {e.strerror}", source="--output") from None
    try:
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise GradcliError(f"cannot write {path}: {e.strerror}", source="--output") from None
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
