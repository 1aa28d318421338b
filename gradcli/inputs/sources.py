"""Tensor sources: one value of a spec turned into a float array, counted against a budget.

A source is a path to ``.npy``, ``file.npz:key``, ``{file: ..., key: ...}``, an inline number
or nested list, or ``{shape: [...], init: normal|uniform|zeros|ones|arange, scale: s}``;
labels and indices (integers, never differentiated) ``{shape: [...], init: labels, classes: K}``.
"""

from __future__ import annotations

import difflib
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from gradcli.errors import SpecError, a_or_an, brief, mention
from gradcli.files.reading import MAX_AXES, load_array
from gradcli.layers.base import masked_count

INITS = ("normal", "uniform", "zeros", "ones", "arange")


def suggest(word: str, choices: Any) -> str:
    """A "did you mean" hint when ``word`` nearly matches one of ``choices``, else ""."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def kind(value: Any) -> str:
    """A YAML value's type as error messages name it."""
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "a list", dict: "a mapping",
            int: "an integer", float: "a number"}.get(
        type(value), a_or_an(type(value).__name__)
    )


class Loader:
    """Turns one tensor source into a read-only array of the spec's dtype."""

    def __init__(self, base: Path, source: str, seed: int, dtype: str, max_elements: int,
                 shapes_only: bool = False) -> None:  # fmt: skip
        self.base, self.source, self.seed, self.dtype = base, source, seed, dtype
        # counts, and gives stand-ins of each array's shape and dtype that hold no data: a
        # generator's shape and a file's header say what the whole spec needs before any
        # array is generated or read (inputs/spec.py)
        self.shapes_only = shapes_only
        self.files: list[Path] = []
        self.max_elements = max_elements
        self.used = 0
        self.what = "the spec's arrays"  # what the count is of, for the message
        # tensor -> the floating-point dtype its array or file was given in, when not the
        # spec's: cast, and said so (a float32 array checked in float64 is no float32 check)
        self.cast: dict[str, str] = {}

    def reserve(self, n: int, key: str, what: str | None = None) -> None:
        """Count elements before anything is allocated; over the budget is an input error."""
        what = what or self.what
        self.used += n
        if self.used > self.max_elements:
            raise SpecError(
                f"{what} would need {self.used:,} elements ({self.used * 8 / 2**20:,.0f} MB in "
                f"float64), more than {mention('max_elements', self.max_elements)}",
                key=key,
                param="max_elements",
            )

    def load(
        self, value: Any, key: str, name: str, classes: int | None = None, given: bool = False,
        labels: bool = False,
    ) -> np.ndarray:  # fmt: skip
        """A float array of the spec's dtype; with ``classes`` (a tensor of role index: labels,
        embedding indices) an int64 array, integers only, drawn in [0, classes) by default.
        ``given`` (a custom layer's tensors, whose roles are not known beforehand): an array
        given as integers (an integer numpy array or ``.npy``/``.npz``, or ``init: labels``
        with its ``classes``) is kept as int64, a label or index; YAML's inline integers are
        numbers, as everywhere else (``x: [1, 2, 3]`` means floats). ``labels`` (a network's
        input feeding a loss's labels, whose bound only the walk knows): integers kept as
        int64, floats as floats (whole numbers; the loss checks its values)."""
        if self.shapes_only:
            return self._stand_in(value, key, name, classes, given, labels)
        if classes is not None:
            return self._integers(value, key, name, classes)
        if given and isinstance(value, dict) and value.get("init") == "labels":
            if "classes" not in value:
                raise SpecError(
                    "labels of a custom layer need classes: K (they are drawn in 0 ... K-1)",
                    key=f"{key}.classes",
                )
            return self._integers(value, key, name, 2**62)
        raw = self._raw(value, key, name, given=given, labels=labels)
        if (given or labels) and raw.dtype.kind in "iu":
            return self._int64(raw, key)
        if given and raw.dtype.kind == "b":
            # a mask (CS231n's captions_out != NULL): a constant as integers are, kept boolean
            # (as int64, the user's x[mask] would pick rows 0 and 1 instead of selecting)
            return self._mask(raw, key)
        if raw.dtype.kind != "f":
            # the CLI's .npy refusal, for an array given in Python: integers are for labels
            # and indices only (never differentiated), not converted behind the caller's back
            what = "integer or floating-point" if labels else "floating-point"
            raise SpecError(f"holds {a_or_an(str(raw.dtype))} array; expected {what} values",
                            key=key)  # fmt: skip
        # (by its numbers: a big-endian float64 is float64, and '>f8' in a note was noise:
        # outside test t65c F6)
        if raw.dtype.newbyteorder("=") != np.dtype(self.dtype) and _given_array(value):
            self.cast[name] = raw.dtype.name
        if raw.size == 0:
            raise SpecError(f"expected at least one element, got shape {list(raw.shape)}", key=key)
        with np.errstate(over="ignore"):  # an overflow to inf in the cast is refused below
            arr = np.array(raw, dtype=self.dtype)
        if not np.isfinite(arr).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            what = "non-finite" if not np.isfinite(raw[bad]) else f"too large for {self.dtype}"
            at = f" at index {list(bad)}" if bad else f" ({raw[bad]})"  # a scalar: its value
            raise SpecError(f"{what} value{at}; expected finite numbers", key=key)
        return arr

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        """Zeros of the spec's dtype (counted by the caller); a stand-in for shapes only."""
        if self.shapes_only:
            return stand_in(shape, self.dtype)
        return np.zeros(shape, dtype=self.dtype)

    def _stand_in(
        self, value: Any, key: str, name: str, classes: int | None, given: bool, labels: bool
    ) -> np.ndarray:
        """What ``load`` would give, as a stand-in: counted alike, its dtype chosen alike."""
        drawn = given and isinstance(value, dict) and value.get("init") == "labels"
        integer = classes is not None or drawn
        if classes is not None and isinstance(value, dict) and "file" not in value:
            value = {"init": "labels", **value}
        raw = self._raw(value, key, name, integer=integer,
                        classes=(classes or 2**62) if integer else 0, given=given,
                        labels=labels)  # fmt: skip
        kind = raw.dtype.kind
        if integer or ((given or labels) and kind in "iu"):
            return stand_in(raw.shape, np.int64)
        return stand_in(raw.shape, bool if given and kind == "b" else self.dtype)

    def _integers(self, value: Any, key: str, name: str, classes: int) -> np.ndarray:
        if isinstance(value, dict) and "file" not in value:
            value = {"init": "labels", **value}
        raw = self._raw(value, key, name, integer=True, classes=classes)
        if raw.dtype.kind == "O":  # YAML integers beyond int64
            raise SpecError("an index is too large for int64", key=key)
        if raw.dtype.kind == "b" or raw.dtype.kind not in "iu":
            what = "floating-point" if raw.dtype.kind == "f" else str(raw.dtype)
            known = f"0 ... {classes - 1}" if 0 < classes < 2**62 else "class or row numbers"
            raise SpecError(f"expected integers ({known}), got {what} values", key=key)
        return self._int64(raw, key)

    def _int64(self, raw: np.ndarray, key: str) -> np.ndarray:
        if raw.size == 0:
            raise SpecError(f"expected at least one element, got shape {list(raw.shape)}", key=key)
        if raw.dtype.kind == "u" and raw.dtype.itemsize == 8 and raw.max() > 2**63 - 1:
            raise SpecError("an index is too large for int64", key=key)
        return np.array(raw, dtype=np.int64)

    def _mask(self, raw: np.ndarray, key: str) -> np.ndarray:
        if raw.size == 0:
            raise SpecError(f"expected at least one element, got shape {list(raw.shape)}", key=key)
        return np.array(raw, dtype=bool)

    def _raw(self, value: Any, key: str, name: str, *, integer: bool = False, classes: int = 0,
             given: bool = False, labels: bool = False) -> np.ndarray:  # fmt: skip
        kinds = "iu" if integer else "biuf" if given else "iuf" if labels else "f"
        if isinstance(value, str):
            path, _, npz_key = value.rpartition(":") if ".npz:" in value else (value, "", "")
            return self._file(path, npz_key or None, key, kinds)
        if isinstance(value, dict):
            if "file" in value:
                extra = set(value) - {"file", "key"}
                if extra:
                    bad = sorted(map(str, extra))[0]
                    raise SpecError(f"unknown key {brief(bad)} beside 'file'", key=key)
                if not isinstance(value["file"], str):
                    raise SpecError("'file' must be a path", key=f"{key}.file")
                npz_key = value.get("key")
                if npz_key is not None and not isinstance(npz_key, str):
                    raise SpecError("'key' must be a string", key=f"{key}.key")
                return self._file(value["file"], npz_key, key, kinds)
            return self._generate(value, key, name, classes)
        if isinstance(value, (int, float, list)) and not isinstance(value, bool):
            return _inline(value, key, self, integer)
        if isinstance(value, (np.integer, np.floating)):  # a numpy number is a number
            value = np.asarray(value)
        if masked_count(value):  # its hidden values would be used as if they were data
            raise SpecError(
                "a masked array with masked values: give plain values (np.ma.filled, or "
                "the elements you mean)",
                key=key,
            )
        if isinstance(value, np.ndarray) and type(value) is not np.ndarray:
            value = np.asarray(value)  # a subclass (an unmasked masked array): its plain values
        if isinstance(value, np.ndarray):  # the Python API's tensors: counted, then copied
            if value.ndim > MAX_AXES:
                raise SpecError(f"expected at most {MAX_AXES} axes, got {value.ndim}", key=key)
            self.reserve(value.size, key)
            return value
        raise SpecError(
            f"expected a file path, a number, a nested list or a mapping, got {kind(value)}",
            key=key,
        )

    def _file(self, path: str, npz_key: str | None, key: str, kinds: str) -> np.ndarray:
        try:
            full = Path(path).expanduser()
        except RuntimeError:  # ~nosuchuser
            raise SpecError(f"cannot expand the home folder in {brief(path)}", key=key) from None
        full = full if full.is_absolute() else self.base / full
        self.files.append(full)
        return load_array(
            full,
            npz_key,
            source=self.source,
            key=key,
            reserve=lambda n: self.reserve(n, key),
            header_only=self.shapes_only,
            # other dtypes are refused from the header, before the data is read; integers
            # only for labels and indices, which are never differentiated
            kinds=kinds,
        )

    def _generate(self, value: dict, key: str, name: str, classes: int = 0) -> np.ndarray:
        allowed = ("shape", "init", "classes") if classes else ("shape", "init", "scale")
        extra = set(value) - set(allowed)
        if extra:
            bad = sorted(map(str, extra))[0]
            raise SpecError(
                f"unknown key {bad!r}{suggest(bad, (*allowed, 'file'))}; "
                f"expected {', '.join(allowed)} (or file, key)",
                key=key,
            )
        shape = value.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape
        ):
            raise SpecError(
                f"expected a list of positive integers, got {brief(shape)}", key=f"{key}.shape"
            )
        if len(shape) > MAX_AXES:
            raise SpecError(
                f"expected at most {MAX_AXES} axes, got {len(shape)}", key=f"{key}.shape"
            )
        self.reserve(math.prod(shape), f"{key}.shape")
        if self.shapes_only:
            return stand_in(tuple(shape), np.int64 if classes else np.float64)
        rng = np.random.default_rng(  # one stream per name: adding a tensor changes no other
            np.random.SeedSequence(self.seed, spawn_key=(zlib.crc32(name.encode()),))
        )
        if classes:
            return _labels(value, key, classes, rng, tuple(shape))
        init = value.get("init", "normal")
        if init not in INITS:
            raise SpecError(
                f"expected one of {', '.join(INITS)}, got {brief(init)}", key=f"{key}.init"
            )
        scale = value.get("scale", 1.0)
        try:
            finite = not isinstance(scale, bool) and math.isfinite(float(scale))
        except (TypeError, ValueError, OverflowError):
            finite = False
        if not finite or not isinstance(scale, (int, float)):
            raise SpecError(f"expected a finite number, got {brief(scale)}", key=f"{key}.scale")
        shape_t = tuple(shape)
        if init == "normal":
            arr = rng.standard_normal(shape_t)
        elif init == "uniform":
            arr = rng.uniform(-1.0, 1.0, shape_t)
        elif init == "zeros":
            arr = np.zeros(shape_t)
        elif init == "ones":
            arr = np.ones(shape_t)
        else:
            arr = np.arange(math.prod(shape_t), dtype=np.float64).reshape(shape_t)
        with np.errstate(over="ignore"):  # refused here, with the key that made it
            out = arr * float(scale)
        if not np.isfinite(out).all():
            top = float(np.max(np.abs(arr)))
            raise SpecError(
                f"{init} values up to {top:g} times {float(scale):g} overflow float64; expected "
                f"a scale of at most {np.finfo(np.float64).max / top:.3g}",
                key=f"{key}.scale",
            )
        return out


def stand_in(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` that holds one element: zeros, read-only."""
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


def _labels(value: dict, key: str, classes: int, rng: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Integers drawn uniformly in [0, classes): ``{shape, init: labels, classes: K}``, K at
    most the layer's own bound (the size of the axis the indices pick from)."""
    if value.get("init", "labels") != "labels":
        raise SpecError(
            f"labels and indices are integers: expected init: labels, got {brief(value['init'])}",
            key=f"{key}.init",
        )
    k = value.get("classes", classes)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= classes:
        bound = (f"from 1 to {classes} (the values index an axis of that size)"
                 if classes < 2**62 else "of at least 1")  # fmt: skip
        raise SpecError(f"expected an integer {bound}, got {brief(k)}", key=f"{key}.classes")
    return rng.integers(0, k, shape, dtype=np.int64)


def _inline(value: Any, key: str, loader: Loader, integer: bool = False) -> np.ndarray:
    """A number or a rectangular nested list of numbers, counted and checked before any
    conversion. YAML aliases can repeat one list many times over ("billion laughs"): each
    distinct list is visited once, so counting stays linear in the document."""
    counts: dict[int, int] = {}

    def count(v: Any) -> int:
        if not isinstance(v, list):
            return 1
        if id(v) not in counts:
            counts[id(v)] = 0  # a self-referencing list counts as empty, then is refused
            counts[id(v)] = sum(count(item) for item in v)
        return counts[id(v)]

    loader.reserve(count(value), key)
    shapes: dict[int, tuple[int, ...]] = {}

    def shape_of(v: Any, path: list[int]) -> tuple[int, ...]:
        if isinstance(v, list):
            if len(path) >= MAX_AXES:
                raise SpecError(
                    f"lists nested more than {MAX_AXES} deep; an array has at most {MAX_AXES} axes",
                    key=key,
                )
            if id(v) in shapes:
                return shapes[id(v)]
            if not v:
                raise SpecError(f"empty list at {path or 'top'}; expected numbers", key=key)
            shapes[id(v)] = (-1,)  # being visited: a list inside itself is ragged forever
            found = [shape_of(item, [*path, i]) for i, item in enumerate(v)]
            for i, s in enumerate(found):
                if s != found[0] or s == (-1,):
                    raise SpecError(
                        f"ragged nested list: item {[*path, i]} has shape {list(s)}, "
                        f"item {[*path, 0]} has {list(found[0])}",
                        key=key,
                    )
            shapes[id(v)] = (len(v), *found[0])
            return shapes[id(v)]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SpecError(f"expected a number at index {path}, got {kind(v)}", key=key)
        return ()

    shape_of(value, [])
    try:
        if integer:  # YAML's 2 stays an integer, its 2.0 or 1.5 a float (refused by the caller)
            return np.array(value)
        return np.array(value, dtype=np.float64)
    except OverflowError:
        raise SpecError("a number is too large for float64", key=key) from None


def _given_array(value: Any) -> bool:
    """Whether a tensor's value is an array given as it is (a file, a numpy array), whose
    dtype the caller chose, rather than numbers or a generator the spec's dtype applies to."""
    return isinstance(value, (str, np.ndarray, np.generic)) or (
        isinstance(value, dict) and "file" in value
    )
