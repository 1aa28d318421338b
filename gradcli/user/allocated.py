"""The memory a user's forward takes in one call, measured: its arrays are its own business,
declared nowhere (outside test t15 MEM1: a forward building 80 MB of scratch a row took the
process to 990 MB under --max-memory 100, and the check said its arrays fitted).

Two readings, the larger kept: tracemalloc's peak over the call (numpy reports its arrays'
data to it, an ``np.empty`` whose pages were never touched too), and the rise of the process's
peak resident memory during the call above what it held at the start, for memory no tracer
sees (torch's allocator, a C extension's own malloc). The second sees only what goes past the
process's earlier peak: it is a floor, the first the measure.

Measured at the forward's first call (the user's layer, learning its output's shape), so that
--max-memory refuses a forward that does not fit before it runs again, and at the engine's
call at the spec's point.
"""

from __future__ import annotations

import os
import sys
import tracemalloc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

try:  # at import: the first call of a user's forward must import nothing of gradcli's
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]


@contextmanager
def peak() -> Iterator[list[int]]:
    """``with peak() as seen:`` ... then ``seen[0]``: the most bytes the block allocated at
    once beyond what was held when it began."""
    seen = [0]
    ours = not tracemalloc.is_tracing()  # someone else's tracing (PYTHONTRACEMALLOC) is kept
    if ours:
        tracemalloc.start()
    else:
        tracemalloc.reset_peak()
    held = tracemalloc.get_traced_memory()[0]
    resident, highest = _resident(), _highest()
    try:
        yield seen
    finally:
        traced = tracemalloc.get_traced_memory()[1] - held
        if ours:
            tracemalloc.stop()
        now = _highest()
        rose = now - resident if resident and now > highest else 0
        seen[0] = max(traced, rose, 0)


def _resident() -> int:
    """The process's resident bytes now (Linux; 0 where unknown)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def _highest() -> int:
    """The process's peak resident bytes so far (0 where unknown)."""
    if resource is None:
        return 0
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb if sys.platform == "darwin" else kb * 1024  # macOS counts bytes


def kept_arrays(cache: Any) -> list[np.ndarray]:
    """The arrays a forward's cache keeps, wherever it keeps them (a network's cache nests each
    layer's own, conv's im2col windows among them, in mappings and tuples), each once."""
    seen: dict[int, np.ndarray] = {}
    todo: list[Any] = [cache]
    while todo:
        v = todo.pop()
        if isinstance(v, np.ndarray):
            seen[id(v)] = v
        elif isinstance(v, Mapping):
            todo.extend(v.values())
        elif isinstance(v, list | tuple):
            todo.extend(v)
    return list(seen.values())


def held_bytes(out: Any, cache: Any) -> int:
    """The bytes a forward's output and cache hold."""
    return sum(a.nbytes for a in [np.asarray(out), *kept_arrays(cache)])


def pass_bytes(seen: int, held: int) -> int:
    """One perturbed forward pass of a forward that allocated ``seen`` bytes in a call and
    whose output and cache hold ``held``: a probe copy with its temporaries (three times what
    it holds), at least what the call took. The first call's and the engine's point call's
    readings go through this one rule, so that the first decides as the second would."""
    return max(3 * held, seen)
