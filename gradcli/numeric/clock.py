"""The time a user's call takes as a check pays for it: wall time less the time the calling
thread was ready to run but waited for a CPU.

A user's forward may wait: on a GPU's sync, I/O, a lock, a pool of worker threads, a sleep. That
time is on no CPU of the calling thread, and counted in its CPU time a forward sleeping 50 ms a
call read 1 ms, and a check under ``--budget 2`` ran 13 s in silence (outside tests t14 B1, t15
BUDGET1). Wall time counts the wait, but also the time the thread stood in the run queue, which
on a busy machine is as long as the work itself: the check's mode would follow the machine's
load. Linux says, per thread, how long it stood there (``/proc/thread-self/schedstat``, its
second field, in ns), so the own time of a call is its wall time less that: its CPU time and
the time it was blocked, whatever the load. Where no such count is kept, wall time: an estimate
that may sample early on a busy machine, never one that runs ten times over.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_SCHEDSTAT = "/proc/thread-self/schedstat"


def _queued() -> float:
    """Seconds this thread has stood in the run queue since it started."""
    with open(_SCHEDSTAT, "rb") as f:
        return int(f.read().split()[1]) * 1e-9


def _own() -> float:
    # the run queue's count moves when the thread runs again after a wait: one read between
    # two equal counts waited for nothing in between (a wait between a wall reading and its
    # count took a whole time slice off a 20 ms call, and it read 2^-6 s)
    queued = _queued()
    for _ in range(8):
        wall, again = time.perf_counter(), _queued()
        if again == queued:
            break
        queued = again
    return wall - queued


def _chosen() -> Callable[[], float]:
    try:
        _queued()
    except (OSError, ValueError, IndexError):
        return time.perf_counter
    return _own


_clock: Callable[[], float] | None = None  # chosen at the first reading, not at import


def own_time() -> float:
    """Seconds of this thread's own time, from an arbitrary origin (differences only)."""
    global _clock
    if _clock is None:
        _clock = _chosen()
    return _clock()


def for_calls() -> Callable[[], float]:
    """The clock a user's call is timed in: its own time, or its CPU time while other threads
    of the process run Python (a test runner's, a data loader's): the call also waits for the
    GIL they hold, which is not its own time (two busy threads made a 10 us forward read 0.5 s,
    outside test A1)."""
    import threading  # LAZY: only where code of a user's is timed

    return time.thread_time if threading.active_count() > 1 else own_time
