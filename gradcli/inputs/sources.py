"""Tensor sources: one value of a spec turned into a float array, counted against a budget.

A source is a path to ``.npy``, ``file.npz:key``, ``{file: ..., key: ...}``, an inline number
or nested list, or ``{shape: [...], init: normal|uniform|zeros|ones|arange, scale: s}``.
"""

from __future__ import annotations

import difflib
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from gradcli.errors import SpecError, brief, mention
from gradcli.files.reading import MAX_AXES, load_array

INITS = ("normal", "uniform", "zeros", "ones", "arange")


def suggest(word: str, choices: Any) -> str:
    """A "did you mean" hint when ``word`` nearly matches one of ``choices``, else ""."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def kind(value: Any) -> str:
    """A YAML value's type as error messages name it."""
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "a list", dict: "a mapping"}.get(
        type(value), f"a {type(value).__name__}"
    )


class Loader:
    """Turns one tensor source into a read-only array of the spec's dtype."""

    def __init__(self, base: Path, source: str, seed: int, dtype: str, max_elements: int) -> None:
        self.base, self.source, self.seed, self.dtype = base, source, seed, dtype
        self.files: list[Path] = []
        self.max_elements = max_elements
        self.used = 0
        self.what = "the spec's arrays"  # what the count is of, for the message

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

    def load(self, value: Any, key: str, name: str) -> np.ndarray:
        raw = self._raw(value, key, name)
        if raw.dtype.kind != "f":
            raise SpecError(f"expected floating-point values, got a {raw.dtype} array", key=key)
        if raw.size == 0:
            raise SpecError(f"expected at least one element, got shape {list(raw.shape)}", key=key)
        with np.errstate(over="ignore"):  # an overflow to inf in the cast is refused below
            arr = np.array(raw, dtype=self.dtype)
        if not np.isfinite(arr).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            what = "non-finite" if not np.isfinite(raw[bad]) else f"too large for {self.dtype}"
            raise SpecError(f"{what} value at index {list(bad)}; expected finite numbers", key=key)
        return arr

    def _raw(self, value: Any, key: str, name: str) -> np.ndarray:
        if isinstance(value, str):
            path, _, npz_key = value.rpartition(":") if ".npz:" in value else (value, "", "")
            return self._file(path, npz_key or None, key)
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
                return self._file(value["file"], npz_key, key)
            return self._generate(value, key, name)
        if isinstance(value, (int, float, list)) and not isinstance(value, bool):
            return _inline(value, key, self)
        if isinstance(value, np.ndarray):  # the Python API's tensors: counted, then copied
            if value.ndim > MAX_AXES:
                raise SpecError(f"expected at most {MAX_AXES} axes, got {value.ndim}", key=key)
            self.reserve(value.size, key)
            return value.astype(np.float64) if value.dtype.kind in "iu" else value
        raise SpecError(
            f"expected a file path, a number, a nested list or a mapping, got {kind(value)}",
            key=key,
        )

    def _file(self, path: str, npz_key: str | None, key: str) -> np.ndarray:
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
            kinds="f",  # other dtypes are refused from the header, before the data is read
        )

    def _generate(self, value: dict, key: str, name: str) -> np.ndarray:
        extra = set(value) - {"shape", "init", "scale"}
        if extra:
            bad = sorted(map(str, extra))[0]
            raise SpecError(
                f"unknown key {bad!r}{suggest(bad, ('shape', 'init', 'scale', 'file'))}; "
                "expected shape, init, scale (or file, key)",
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
        # one independent stream per tensor name: adding a tensor never changes the others
        rng = np.random.default_rng(
            np.random.SeedSequence(self.seed, spawn_key=(zlib.crc32(name.encode()),))
        )
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
        return arr * float(scale)


def _inline(value: Any, key: str, loader: Loader) -> np.ndarray:
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
        return np.array(value, dtype=np.float64)
    except OverflowError:
        raise SpecError("a number is too large for float64", key=key) from None
