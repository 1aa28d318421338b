"""A custom layer's labels and indices: the tensors given as integer arrays (an integer numpy
array, an integer .npy/.npz, ``init: labels``). Their role is "index", as a built-in layer's
labels: never perturbed, never given a gradient. A custom layer's tensors have no declared
roles, so the dtype is the user's explicit word; YAML's inline integers stay numbers. A float
tensor that is data (a regression loss's target) is the spec's word: ``data: [target]``, role
"target" as mse's."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradcli.errors import SpecError, UserCodeError


def integer_tensors(
    arrays: Mapping[str, np.ndarray], data: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The tensors given as integers or booleans (masks), and the float ones the spec lists as
    ``data`` (a regression loss's target); all of them leaves nothing to check (refused)."""
    found = tuple(n for n, a in arrays.items() if np.asarray(a).dtype.kind in "biu" or n in data)
    if found and len(found) == len(arrays):
        listed = [n for n in found if n in data]
        raise SpecError(
            (f"every tensor is data ({', '.join(found)}; {', '.join(listed)} listed under "
             f"data:): nothing is left to differentiate; list only the tensors never "
             f"differentiated" if listed else
             f"every tensor was given as integers or booleans ({', '.join(found)}): a custom "
             f"layer's "
             f"integer (and boolean) tensors are labels, indices or masks, never "
             f"differentiated; give the ones to check as floats"),
            key="data" if listed else "tensors",
        )  # fmt: skip
    return found


def whole_floats(arrays: Mapping[str, np.ndarray]) -> tuple[str, ...]:
    """The float tensors holding whole numbers only: labels given as floats, perhaps."""
    out = []
    for n, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind == "f" and bool(np.all(np.isfinite(a) & (a == np.round(a)))):
            out.append(n)
    return tuple(out)


def floats_as_indices(e: UserCodeError, whole: tuple[str, ...]) -> UserCodeError:
    """The user's code failed indexing while a float tensor holds whole numbers: the error
    says how to give it as integers (gradcli made them floats, not the user's line)."""
    kind = any(f" raised {k}" in e.message for k in ("IndexError", "TypeError"))
    if not whole or not kind or "integer" not in e.message:
        return e
    names = " and ".join(whole)
    return UserCodeError(
        f"{e.message}; {names} {'holds' if len(whole) == 1 else 'hold'} whole numbers given as "
        f"floats: to pass labels or indices, give them as integers (an integer numpy array, "
        f"an integer .npy/.npz, or {{shape: [...], init: labels, classes: K}})",
        source=e.source, key=e.key, param=e.param,
    )  # fmt: skip


def no_gradient(grads: Mapping[str, Any], constants: tuple[str, ...], path: Path,
                what: str, data: tuple[str, ...] = (),
                arrays: Mapping[str, Any] | None = None) -> None:  # fmt: skip
    """A backward returning a gradient for an integer tensor meant it as floats (one listed
    as data, as differentiated): refused, as dropping it would leave that gradient unchecked."""
    for n in grads:
        if n in data:
            raise UserCodeError(
                f"{what} returned a gradient for {n}, which the spec lists under data: (never "
                f"differentiated); take {n} out of data: to check its gradient",
                source=str(path),
            )
        if n in constants:
            # (a bool mask was called "integers": outside test t60b F3)
            mask = arrays is not None and n in arrays and np.asarray(arrays[n]).dtype == bool
            kind = ("booleans: a custom layer's boolean tensors are masks" if mask else
                    "integers: a custom layer's integer tensors are labels or indices")
            raise UserCodeError(
                f"{what} returned a gradient for {n}, which was given as {kind}, never "
                f"differentiated (give {n} as floats to check its gradient)",
                source=str(path),
            )


def as_data(missing: list[str]) -> str:
    """The way out where a custom layer's backward gives no gradient for a float tensor: it
    may be data (a loss's target), which the spec must say, as floats are differentiated."""
    one = len(missing) == 1
    return (f"; if {' and '.join(missing)} {'is' if one else 'are'} data, never differentiated "
            f"(a loss's target), list {'it' if one else 'them'} in the spec as data: "
            f"[{', '.join(missing)}] (the API's data={list(missing)!r})")


def no_builtin_gradient(grads: Mapping[str, Any], layer: Any, constants: tuple[str, ...],
                        tensors: tuple[str, ...], path: Path, what: str) -> None:  # fmt: skip
    """A backward of a built-in loss returning a gradient for its labels, indices or target:
    refused as a custom layer's is and as --grads is (t23 F9, t24 F3: it was dropped without a
    word, so a student who differentiated the labels learnt nothing of it). A float target's
    is left unchecked: torch's autograd over every float input returns one, and mse's target
    is differentiable, only not under test (t25 F7: a generic wrapper was refused)."""
    for n in grads:
        if n in constants:
            info = layer.tensor(n)
            if info.role == "target":
                continue
            wanted = [m for m in tensors if m not in constants]
            kind = ("target, which is" if info.role == "target" else
                    "indices, which are" if "indices" in info.doc else "labels, which are")
            raise UserCodeError(
                f"{what} returned a gradient for {n}, {layer.name}'s {kind} never "
                f"differentiated: return gradients for {', '.join(wanted)} only",
                source=str(path),
            )
