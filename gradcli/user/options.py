"""A custom layer's options: whatever YAML the spec gives, passed to the user's functions as
keywords, and shown in JSON. Every value YAML can build is either usable and written to JSON
safely, or refused with one line naming its key:

- numbers, strings, booleans, null, lists and mappings: as they are (``.nan``/``.inf``: null in
  JSON, as a non-finite output value is);
- dates and timestamps: the user gets the ``date``/``datetime``, JSON its ISO 8601 text;
- sets (``!!set``): the user gets the set, JSON a sorted list;
- ``!!omap``/``!!pairs``: lists of pairs;
- refused: binary data (``!!binary``), text that is not valid Unicode, a structure that contains
  itself (an anchor used inside itself), more than MAX_VALUES values once aliases are expanded,
  option names that are not strings or that a tensor (or ``grad_output``) already uses, and
  mapping keys that JSON cannot tell apart (``1`` and ``'1'``).
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradcli.errors import SpecError, brief

MAX_VALUES = 100_000  # values in a custom layer's options, aliases expanded


def custom_options(raw: Mapping[Any, Any], tensors: tuple[str, ...]) -> dict[str, Any]:
    """The spec's options for a custom layer, checked (see the module doc)."""
    taken = {*tensors, "grad_output"}
    budget = [MAX_VALUES]
    for name, value in raw.items():
        key = _path("options", name)
        if not isinstance(name, str):
            raise SpecError(
                f"option names are your functions' keywords, so they must be text, got "
                f"{brief(name, 40)} (quote it: '{brief(name, 40)}')",
                key=key,
            )
        if name in taken:
            what = "the upstream gradient" if name == "grad_output" else "a tensor"
            raise SpecError(
                f"{name!r} is {what} of this layer; an option needs a name of its own",
                key=key,
            )
        as_json(value, key, budget=budget)
    # a copy of every list and mapping: the caller's objects are never the ones the user's
    # code receives (CS231n's batchnorm_forward writes its running statistics into bn_param)
    return {name: fresh(value) for name, value in raw.items()}


def fresh(value: Any) -> Any:
    """A copy of the lists and mappings in a (validated, JSON-like) option value; numbers,
    text and None are immutable and shared."""
    if isinstance(value, Mapping):
        return {k: fresh(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [fresh(v) for v in value] if isinstance(value, list) else tuple(map(fresh, value))
    return value


def as_json(value: Any, key: str = "options", *, budget: list[int] | None = None) -> Any:
    """``value`` as JSON data (see the module doc); a value that has none is a SpecError
    naming ``key``, its dotted path in the spec."""
    return _json(value, key, [MAX_VALUES] if budget is None else budget, set())


def _json(value: Any, key: str, budget: list[int], inside: set[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise SpecError(
            f"more than {MAX_VALUES:,} values in the options (aliases expanded)", key=key
        )
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        # numpy's scalars are numbers (np.prod of a shape, np.argmax), as for a built-in
        # layer's options: a custom layer's refused np.int64 (outside test t44b N7)
        value = value.item()
    elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        if value.size > MAX_VALUES:
            raise SpecError(f"more than {MAX_VALUES:,} values in the options", key=key)
        value = value.tolist()  # (its items counted against MAX_VALUES below, as a list's)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SpecError("the text is not valid Unicode (a lone surrogate)", key=key) from None
        return value
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        raise SpecError(
            "binary data (!!binary) is not an option value; give numbers, text, dates, lists "
            "or mappings",
            key=key,
        )
    if id(value) in inside:
        raise SpecError("the value contains itself (an anchor used inside itself)", key=key)
    inside.add(id(value))
    try:
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for k, v in value.items():
                name = _key(k, key)
                if name in out:
                    raise SpecError(
                        f"two keys read {name!r} in JSON; give them distinct names", key=key
                    )
                out[name] = _json(v, _path(key, name), budget, inside)
            return out
        if isinstance(value, (set, frozenset)):
            items = [_json(v, key, budget, inside) for v in value]
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
        if isinstance(value, (list, tuple)):
            return [_json(v, f"{key}[{i}]", budget, inside) for i, v in enumerate(value)]
    finally:
        inside.discard(id(value))
    raise SpecError(f"{type(value).__name__} is not an option value", key=key)


def _path(key: str, name: Any) -> str:
    """``key.name``, the dotted path of a value in the spec (a long name shortened)."""
    text = name if isinstance(name, str) else brief(name, 40)
    return f"{key}.{text if len(text) <= 40 else text[:37] + '...'}"


def _key(k: Any, key: str) -> str:
    """A mapping key as JSON writes it: text as is, a number, boolean or null as its JSON
    text, a date as ISO 8601; anything else is refused."""
    if isinstance(k, str):
        return _json(k, key, [1], set())
    if k is None or isinstance(k, (bool, int, float)):
        return json.dumps(_json(k, key, [1], set()))
    if isinstance(k, (datetime.date, datetime.time)):
        return k.isoformat()
    raise SpecError(f"{brief(k, 40)} cannot be a key in JSON", key=key)
