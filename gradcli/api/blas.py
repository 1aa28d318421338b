"""numpy's OpenBLAS on one thread for the span of an API call, as the command line runs it
(gradcli/__main__.py), and the caller's thread count put back afterwards.

A check's stacked copies are many small products that gain nothing from a second thread, and
on a busy machine OpenBLAS's threads spin waiting for each other: through the API a probe's
recheck estimated at 3.6 s took 40 s of CPU and 83 s of wall time at a load of 5 on 2 cores,
4 s with one thread. The command line sets OPENBLAS_NUM_THREADS before numpy loads; a library
cannot (numpy is loaded), nor may it leave the caller's process changed: so the setting is
made through OpenBLAS's own call while a gradcli call runs (threads are counted: the first of
concurrent calls to enter sets it, the last to leave restores it), and not at all when the
caller chose a count (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS set). Other BLAS
builds (MKL, Accelerate) are left as they are."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from typing import Any

CHOSEN = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# numpy's wheels bundle scipy-openblas, whose symbols carry a prefix and a 64-bit suffix
_SYMBOLS = [(f"{p}openblas_get_num_threads{s}", f"{p}openblas_set_num_threads{s}")
            for p in ("scipy_", "") for s in ("64_", "_64_", "")]  # fmt: skip

_LOCK = threading.Lock()
_active = 0
_saved: int | None = None


@functools.cache
def handle() -> tuple[Any, Any] | None:
    """(get, set) of the OpenBLAS numpy loaded, or None (another BLAS, or not Linux)."""
    import ctypes  # here: not at gradcli's import (start-up)

    import numpy  # noqa: F401 - its BLAS must be loaded to be found

    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f
                            if "openblas" in line.lower() and "/" in line})  # fmt: skip
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _SYMBOLS:
            get, set_ = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get is not None and set_ is not None:
                get.restype, set_.restype, set_.argtypes = ctypes.c_int, None, [ctypes.c_int]
                return get, set_
    return None


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One OpenBLAS thread while the block runs, unless the caller chose a count."""
    global _active, _saved
    blas = None if any(os.environ.get(v) for v in CHOSEN) else handle()
    if blas is None:
        yield
        return
    get, set_ = blas
    with _LOCK:
        if _active == 0:
            _saved = int(get())
            if _saved > 1:
                set_(1)
        _active += 1
    try:
        yield
    finally:
        with _LOCK:
            _active -= 1
            if _active == 0 and _saved is not None and _saved > 1:
                set_(_saved)
