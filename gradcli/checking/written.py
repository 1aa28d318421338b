"""Whether a backward wrote into its cache: CS231n-style code reusing a cached buffer
(``np.tanh(next_c, out=next_c)``) is right on its one call per forward, but every later call on
that cache reads other values. The contract's repeated calls then disagree for a reason that
is neither randomness nor a nonlinear function of grad_output; this names it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

_DEPTH = 4  # a cache is a tuple or dict of arrays, perhaps of tuples: deeper is no cache
_ITEMS = 256  # items looked at per container: a cache holding a long list is walked in part


def fingerprints(cache: Any) -> dict[str, bytes]:
    """A digest of every writable array reachable in ``cache`` through dicts, lists and
    tuples, by its path (``[2]``, ``['x']``); read-only arrays (gradcli's tensors) cannot change.
    Digests, not copies: a cache can be as large as the memory bound allows."""
    import hashlib  # LAZY: OpenSSL's libcrypto loads with it, and built-in layers need no digest

    out: dict[str, bytes] = {}

    def walk(value: Any, path: str, depth: int) -> None:
        if isinstance(value, np.ndarray):
            if value.flags.writeable and value.dtype.kind in "biufc" and path not in out:
                data = np.ascontiguousarray(value)
                out[path] = hashlib.blake2b(memoryview(data).cast("B"), digest_size=16).digest()
            return
        if depth == 0:
            return
        if isinstance(value, Mapping):
            for k in list(value)[:_ITEMS]:
                walk(value[k], f"{path}[{k!r}]", depth - 1)
        elif isinstance(value, (tuple, list)):
            for i, v in enumerate(value[:_ITEMS]):
                walk(v, f"{path}[{i}]", depth - 1)

    walk(cache, "", _DEPTH)
    return out


def changed(before: Mapping[str, bytes], cache: Any) -> list[str]:
    """The paths of the arrays in ``cache`` whose values differ from ``before``."""
    after = fingerprints(cache)
    return [p for p, d in before.items() if after.get(p, d) != d]
