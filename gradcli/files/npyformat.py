"""The .npy format read from a stream for what its header declares, and not one byte more.

numpy's own reader trusts the header's length field (a version-2 header may claim 4 GB) and
reads whatever dtype it names; here the header is bounded, its dtype and shape are checked and
counted before the data is read, and then exactly the declared bytes are read, so a file of
garbage after the array, a lying zip member or a zip bomb cannot make gradcli read more.
"""

from __future__ import annotations

import io
import math
import re
import struct
from typing import BinaryIO

import numpy as np

from gradcli.errors import a_or_an
from gradcli.records import record

MAX_AXES = 32  # numpy 1.x's limit; gradcli's for every array, whatever numpy allows
MAX_HEADER = 10_000  # numpy's own default limit on the header's text
NUMBERS = "biufc"  # fixed-size numbers; void, object, string, datetime arrays are refused
_MAGIC = b"\x93NUMPY"
_CHUNK = 2**24


class NpyError(ValueError):
    """Not a .npy array gradcli reads; the message follows the file's name ("x.npy is ...")."""


@record
class Header:
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran: bool
    offset: int  # bytes of magic and header before the data

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize

    @property
    def end(self) -> int:
        """The size a file holding exactly this array has."""
        return self.offset + self.nbytes


def read_header(stream: BinaryIO, kinds: str = NUMBERS) -> Header:
    """The header at the stream's position (at most MAX_HEADER bytes are read)."""
    magic = stream.read(8)
    # (else numpy would try to read it as a pickle; a 5-byte text file has no header either)
    if not magic:
        raise NpyError("is empty")
    if magic[:6] != _MAGIC[: len(magic)]:
        raise NpyError("is not a .npy file (no NUMPY header)")
    if len(magic) < 8:
        raise NpyError("is truncated in its NUMPY header")
    major = magic[6]
    if major not in (1, 2, 3):
        raise NpyError(f"has an unknown .npy format version {major}.{magic[7]}")
    fmt = "<H" if major == 1 else "<I"
    raw_len = _read(stream, struct.calcsize(fmt), "the header length")
    (length,) = struct.unpack(fmt, raw_len)
    if length > MAX_HEADER:
        raise NpyError(f"has a .npy header of {length:,} bytes (at most {MAX_HEADER:,} are read)")
    text = _read(stream, length, "the header")
    reader = (
        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    )
    try:  # numpy's parser, on bytes already bounded (3.0 differs from 2.0 in the text's
        # encoding only, and the dtypes gradcli reads are ASCII)
        shape, fortran, dtype = reader(io.BytesIO(raw_len + text))
    except Exception as e:  # noqa: BLE001 - numpy's header parser raises all kinds
        # (without the parser's own objects: '<ast.BinOp object at 0x7f...>', t34b F4)
        said = re.sub(r"<[^<>]* at 0x[0-9a-f]+>", "an expression", " ".join(str(e).split()))
        raise NpyError(f"has an invalid .npy header ({said[:80]})") from None
    if dtype.hasobject:
        raise NpyError("holds pickled (object) data, which gradcli never loads")
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        what = {"f": "floating-point", "iu": "integer", "iuf": "integer or floating-point"}.get(
            kinds, "numeric"
        )
        raise NpyError(f"holds {a_or_an(_dtype_name(dtype))} array; expected {what} values")
    if any(n < 0 for n in shape):
        raise NpyError(f"has an invalid .npy header (a negative size in its shape {shape})")
    if len(shape) > MAX_AXES:
        raise NpyError(f"holds an array of {len(shape)} axes, more than {MAX_AXES}")
    return Header(dtype, tuple(shape), bool(fortran), 8 + len(raw_len) + length)


def read_data(stream: BinaryIO, header: Header) -> np.ndarray:
    """Exactly the header's bytes from the stream (the caller has counted and sized them)."""
    flat = np.empty(header.count, dtype=header.dtype)
    view = memoryview(flat).cast("B")
    done = 0
    while done < header.nbytes:
        n = stream.readinto(view[done : done + _CHUNK])  # type: ignore[attr-defined]
        if not n:
            raise NpyError(
                f"is truncated: its header declares {header.nbytes:,} bytes of data, "
                f"it has {done:,}"
            )
        done += n
    if header.fortran:
        return flat.reshape(header.shape[::-1]).transpose()
    return flat.reshape(header.shape)


def _read(stream: BinaryIO, n: int, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise NpyError(f"is truncated in {what}")
    return data


def _dtype_name(dtype: np.dtype) -> str:
    if dtype.fields is not None:
        return "structured"
    if dtype.subdtype is not None:
        return "sub-array"
    return {"V": "void", "S": "bytes", "U": "string"}.get(dtype.kind, str(dtype))

