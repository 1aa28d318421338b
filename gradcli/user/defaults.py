"""A user's forward of a built-in layer with defaults of its own for the layer's options.

gradcli passes a built-in layer's options as keywords only where they differ from the layer's
defaults (code written for the seed never sees a keyword it does not take), so an option left
at its default is the user's signature default: ``def forward(x, gamma, beta, eps=1e-6)``
runs a layernorm of eps 1e-6 against ours of 1e-5, and the two forwards disagree by a few
1e-6 that no other word explains."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from gradcli.layers.base import Layer


def own_defaults(
    forward: Callable[..., Any] | None, base: Layer, passed: Callable[[Any], Mapping[str, Any]]
) -> Callable[[Any], str] | None:
    """``words(options)`` for the options ``forward`` was not passed (``passed(options)`` are
    those it was) whose default in its signature is not the layer's: "eps=1e-06, not
    layernorm's 1e-05", "" for none; None when there is nothing to read."""
    if forward is None or not dataclasses.is_dataclass(base.options):
        return None
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):  # a builtin, a C function: no signature to read
        return None
    fields = {f.name: f.default for f in dataclasses.fields(base.options)}
    theirs = {n: p.default for n, p in params.items()
              if n in fields and p.default is not inspect.Parameter.empty}  # fmt: skip
    if not theirs:
        return None

    def words(options: Any) -> str:
        given = passed(options)
        said = [f"{n}={d!r}, not {base.name}'s {getattr(options, n)!r}"
                for n, d in theirs.items()
                # the field's own default too: conv1d's channels=None is settled to False
                if n not in given and _differs(d, getattr(options, n, d))
                and _differs(d, fields[n])]  # fmt: skip
        return "; ".join(said)

    return words


def _differs(a: Any, b: Any) -> bool:
    """Whether two defaults are different values; a comparison that fails or is not one truth
    value (numpy arrays) says nothing."""
    try:
        return bool(a != b)
    except Exception:  # noqa: BLE001 - a user's default may compare any way it likes
        return False
