"""What the user's functions return, checked before gradcli uses it: numbers in a plain array
(a copy), real for real inputs, finite, of one shape and dtype for inputs of one shape, and a
backward's gradients keyed by the layer's own names. Each refusal is one input-error line naming
the user's function (exit 2)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradcli.errors import UserCodeError, mention
from gradcli.layers.base import Shapes, masked_count
from gradcli.user.call import call, describe_value


def array(value: Any, path: Path, what: str, *, complex_ok: bool = False) -> np.ndarray:
    """``value`` as a plain array of numbers, a copy (the user's code keeps no handle on it);
    ``what`` names it ("forward's result", "backward's 'W'"). Converting may run the user's
    code (``__array__``, a sequence's items, a generator), so it runs under the guard."""

    def convert() -> np.ndarray:
        if inspect.isgenerator(value) or inspect.iscoroutine(value):
            value.close()  # no "never awaited" warning later; its finally blocks run here
            return np.asarray(None, dtype=object)
        if getattr(value, "requires_grad", False) is True and callable(getattr(value, "detach",
                                                                              None)):
            # a torch tensor still in autograd's graph refuses numpy(): its values are what
            # was returned (torch's own message blamed the user's function for raising)
            return np.asarray(value.detach().cpu()).copy()
        try:
            # asarray, then a copy of the plain array: np.array(value, copy=
            # to the value's __array__, and one without that keyword (torch's Tensor) makes
            # numpy warn, a warning of gradcli's that the guard would blame on the user's code
            return np.asarray(value).copy()
        except ValueError:  # ragged lists and the like
            return np.asarray(None, dtype=object)

    # a plain ndarray runs none of the user's code: copied without the guard (the hot path)
    if type(value) is np.ndarray:
        a = value.copy()
    elif isinstance(value, np.generic) and type(value).__module__ == "numpy":  # a .sum()'s
        a = np.asarray(value)
    else:
        a = call(path, what, convert)
    if a.dtype.kind == "c" and not complex_ok:
        raise UserCodeError(
            f"{what} is complex ({a.dtype}) for real inputs; return a real array (its real "
            "part, if that is what you mean)",
            source=str(path),
        )
    if a.dtype.kind not in "fciu":
        got = f"an array of {a.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
        # a dict where one gradient was expected: CS231n's backward(dout, cache) returns its
        # gradients by position; gradcli's backward(grad_output, x, ...) returns the dict
        cs = (" (a backward(dout, cache) in CS231n's form returns its gradients by position, "
              "dx, dw, ...; a dict is what a backward(grad_output, x, ...) returns)"
              if isinstance(value, dict) else "")  # fmt: skip
        if isinstance(value, (tuple, list)) and len(value) > 1:
            # (same-shape arrays are stacked into one output; ragged ones read 'got tuple'
            # alone: outside test t60b F5)
            shapes = [list(np.shape(v)) if hasattr(v, "shape") else type(v).__name__
                      for v in value[:4]]  # fmt: skip
            got += (f" of {len(value)} items ({', '.join(map(str, shapes))}"
                    f"{', ...' if len(value) > 4 else ''}): items of one shape are stacked into "
                    f"one output; items of different shapes cannot be stacked")
        raise UserCodeError(f"{what} must be numbers (an array), got {got}{cs}",
                            source=str(path))  # fmt: skip
    masked = masked_count(value)
    if masked:
        raise UserCodeError(
            f"{what} is a masked array with {masked} masked value{'s' * (masked > 1)}; "
            "gradcli differences every value: return a plain array (np.ma.filled)",
            source=str(path),
        )
    return a


MAX_AXES = 32  # as for every input array


def transposed(got: tuple[int, ...], want: tuple[int, ...], name: str) -> str:
    """The words a shape error adds where a 2-D gradient came back transposed, the classic
    slip (outside test t44a N16), else ""."""
    got, want = tuple(got), tuple(want)
    flipped = len(got) == 2 and got[::-1] == want and got != want
    return f" (its transpose: did you return d{name}.T?)" if flipped else ""


def checkable(a: np.ndarray, path: Path, what: str) -> None:
    """A forward's output has something to check and axes to name: not empty, at most
    MAX_AXES axes (else the upstream gradient drawn from its shape would be refused, blaming
    the spec)."""
    if a.size == 0:
        raise UserCodeError(
            f"{what} returned an empty array (shape {list(a.shape)}): nothing to check",
            source=str(path),
        )
    if a.ndim > MAX_AXES:
        raise UserCodeError(
            f"{what} returned an array of {a.ndim} axes; at most {MAX_AXES}", source=str(path)
        )


def scalar_in(out: Any, t: Mapping[str, Any]) -> Any:
    """A Python float the forward returned (``loss.item()``, ``float(loss)``), in float32
    where every float tensor it was given is: a Python scalar has no dtype of its own, and a
    right float32 svm ending in ``return float(loss)`` broke the forward's dtype contract
    (outside test t68b F5). Anything else as it is."""
    if type(out) is not float:
        return out
    kinds = {d for d in (a.dtype if isinstance(a, np.ndarray) else np.asarray(a).dtype
                         for a in t.values()) if d.kind in "fc"}  # fmt: skip
    return np.float32(out) if kinds == {np.dtype(np.float32)} else out


def finite(a: np.ndarray, path: Path, what: str, stepped: bool = False) -> None:
    """A forward's output must be finite: no finite difference can be taken across a NaN or
    an inf, so the check could say nothing true about that tensor. ``stepped``: the output at
    the spec's tensors was finite, so this is a step from them (a sqrt at x = 1e-7 whose
    step of 6e-6 crosses 0: its forward is right on its domain, outside test t60b F2)."""
    if not np.isfinite(a).all():
        bad = ~np.isfinite(a)
        at = [int(i) for i in np.argwhere(bad)[0]]
        value = a[tuple(at)]
        where = (
            f"a finite-difference step from the spec's tensors, where its output is finite: "
            f"a value within a step of the edge of the forward's domain (a sqrt or a log near "
            f"0) crosses it; {off_domain()}"
            if stepped else "at the spec's tensors; gradcli needs a finite output there")
        raise UserCodeError(
            f"{what} returned {value} at index {at} ({int(bad.sum()):,} of {a.size:,} values "
            f"not finite), {where}",
            source=str(path),
        )


def off_domain() -> str:
    """What to change where a step from the spec's tensors leaves the forward's domain."""
    return (f"use {mention('method', 'forward')} or {mention('method', 'backward')} (steps one "
            f"way only: up, or down) or a smaller {mention('eps')}, or move the spec's values "
            f"from the edge")


class Steady:
    """The forward's output shape and dtype for inputs of given shapes and dtypes: the same on
    every call, or the user's forward depends on something it should not (the values, a
    counter, a global), and the perturbed calls would not be comparable."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        self.seen: dict[tuple, tuple[tuple[int, ...], str]] = {}

    def check(self, tensors: Mapping[str, Any], out: np.ndarray) -> None:
        key = tuple((n, a.shape, a.dtype.str) if type(a) is np.ndarray
                    else (n, np.shape(a), np.asarray(a).dtype.str)
                    for n, a in tensors.items())  # fmt: skip
        first = self.seen.setdefault(key, (out.shape, out.dtype.str))
        if first != (out.shape, out.dtype.str):
            (shape, dtype), now = first, (list(out.shape), str(out.dtype))
            raise UserCodeError(
                f"{self.what} returned shape {now[0]} ({now[1]}) where an earlier call on "
                f"inputs of the same shapes returned {list(shape)} ({np.dtype(dtype)}); its "
                "output's shape and dtype may depend only on the inputs' shapes and dtypes",
                source=str(self.path),
            )


def probe_tensors(shapes: Shapes, indices: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Inputs of the spec's shapes to learn the output's shape from, before the spec's arrays
    are all read: values in [0.5, 1.5), in the domain of a log, a sqrt or a division, and
    generic (no singular matrix), so a correct forward runs on them; ``indices`` (labels,
    embedding indices) are integer zeros, an index every axis has."""
    rng = np.random.default_rng(0)
    return {
        n: np.zeros(shape, dtype=np.int64) if n in indices else rng.uniform(0.5, 1.5, size=shape)
        for n, shape in shapes.items()
    }


def as_dict(value: Any) -> dict[Any, Any] | None:
    """A backward's mapping as a plain dict (its items may be computed by the user's code, so
    this runs under the guard); None when it is no mapping."""
    if not isinstance(value, Mapping):
        return None
    return dict(value.items())


def known_keys(
    grads: Mapping[Any, Any],
    tensors: tuple[str, ...],
    intermediates: tuple[str, ...],
    path: Path,
    what: str,
) -> None:
    """Every key the backward returned names a tensor (or an intermediate), as NAME or dNAME:
    a typo or an extra entry is refused rather than silently left unchecked."""
    known = set(tensors) | set(intermediates)
    for key in grads:
        if isinstance(key, str) and (key in known or key[:1] == "d" and key[1:] in known):
            continue
        names = f"tensors: {', '.join(tensors)}"
        names += f"; intermediates: {', '.join(intermediates)}" if intermediates else ""
        raise UserCodeError(
            f"{what} returned a gradient for {describe_value(key)}, which is not a tensor of "
            f"this layer ({names})",
            source=str(path),
        )
