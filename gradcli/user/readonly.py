"""The user's functions get read-only arrays: a forward that overwrites its input cannot be
differenced, so a write is an input error naming the function, the array and the line."""

from __future__ import annotations

import contextlib
import inspect
import traceback
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradcli.errors import InPlaceWriteError

_READ_ONLY = ("read-only", "not writeable")
VERIFIED_BYTES = 1 << 24


def _read_only(arrays: Mapping[str, Any], run: _Deferred | None = None) -> dict[str, Any]:
    out = {}
    for n, a in arrays.items():
        if isinstance(a, np.ndarray):
            view = run.views.get(id(a)) if run is not None else None
            if view is None or view.flags.writeable:  # a call may have set it writable
                view = a.view()  # the caller's array keeps its own flags
                view.flags.writeable = False
                if run is not None and run.shared.get(id(a)) is a:
                    run.views[id(a)] = view  # a run's shared tensors: one view for its calls
            a = view
        out[n] = a
    return out


def read_only_forward(impl: Any, t: Mapping[str, Any], kwargs: Mapping[str, Any]) -> Any:
    """The user's ``impl.forward(**t, **kwargs)`` on read-only tensors."""
    return read_only_call(impl.path, impl.what("forward"), lambda a: impl.forward(**a, **kwargs), t)


def read_only_backward(
    impl: Any, g: np.ndarray, t: Mapping[str, Any], kwargs: Mapping[str, Any]
) -> Any:
    """The user's ``impl.backward(g, **t, **kwargs)`` on read-only grad_output and tensors."""

    def call(a: dict[str, Any]) -> Any:
        return impl.backward(a.pop("grad_output"), **a, **kwargs)

    labels = {"grad_output": _first_parameter(impl.backward)}
    arrays = {"grad_output": g, **t}
    return read_only_call(impl.path, impl.what("backward"), call, arrays, labels)


def _first_parameter(fn: Callable[..., Any]) -> str:
    """The name the user's backward gives grad_output (its first parameter), for messages."""
    try:
        return next(iter(inspect.signature(fn).parameters), "grad_output")
    except (TypeError, ValueError):  # a builtin or an object without a signature
        return "grad_output"


class _Deferred:
    """The arrays a run of calls shares, verified once after the run (``deferred``)."""

    def __init__(self, shared: Iterable[np.ndarray], scratch: Iterable[np.ndarray]) -> None:
        self.shared = {id(a): a for a in shared if isinstance(a, np.ndarray)}
        self.kept = _kept(self.shared)  # by id, as strings
        self.scratch = {id(a): a for a in scratch if isinstance(a, np.ndarray)}
        self.kept_scratch = _kept(self.scratch)
        # the stacks owning their memory: a row of one is a view whose base is the stack
        # (numpy collapses a view's chain of bases), found in a lookup where
        # np.may_share_memory against every stack was a third of a small forward's overhead
        self.owners = {i: s for i, s in self.scratch.items() if s.base is None}
        self.seen: dict[int, tuple[Path, str, str]] = {}  # id -> (path, function, its label)
        self.views: dict[int, np.ndarray] = {}  # id of a shared array -> its read-only view

    def covers(self, a: Any) -> int | None:
        """The id of what verifies ``a`` after the run (itself, shared, or the caller's stack
        of perturbed copies it is a row of), or None."""
        if not isinstance(a, np.ndarray):
            return None
        if self.shared.get(id(a)) is a:
            return id(a)
        if a.base is not None and self.owners.get(id(a.base)) is a.base:
            return id(a.base)
        return next((i for i, s in self.scratch.items() if np.may_share_memory(a, s)), None)

    def verify(self) -> None:
        changed = [i for i, a in self.shared.items() if i in self.seen
                   and not _same(a, self.kept[i])]  # fmt: skip
        changed += [i for i, a in self.scratch.items() if i in self.seen
                    and not _same(a, self.kept_scratch[i])]  # fmt: skip
        if changed:
            path, fn_name, _ = self.seen[changed[0]]
            raise _changed(path, fn_name, [self.seen[i][2] for i in changed], {})


_deferred: list[_Deferred] = []


@contextlib.contextmanager
def deferred(shared: Iterable[np.ndarray], scratch: Iterable[np.ndarray] = ()) -> Iterator[None]:
    """The user's calls inside compare ``shared`` (the point's tensors, passed to every call)
    and ``scratch`` (the stacks of perturbed copies the calls get rows of) once, after the
    last, not before and after each: a perturbed copy's forward compared the bytes of every
    tensor twice a call, 240 us of a 26 us relu(x) @ W on a digit batch's 250 KB (what a write
    there does to the calls after it, the error raised after them says)."""
    run = _Deferred(shared, scratch)
    _deferred.append(run)
    try:
        yield
    finally:
        _deferred.pop()
    run.verify()


def read_only_rows(
    path: Path, fn_name: str, shared: Mapping[str, Any], stacks: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """Read-only views of the tensors a run of calls shares and of its stacks of copies (a
    row of a read-only view is read-only: one view a stack, not one a row and call), each
    registered to be verified after the run; None where the run (``deferred``) does not
    cover them all, and each call must go through ``read_only_call``."""
    run = _deferred[-1] if _deferred else None
    if run is None:
        return None
    covered = [(n, run.covers(a)) for arrays in (shared, stacks) for n, a in arrays.items()]
    if any(by is None for _, by in covered):
        return None
    for n, by in covered:
        run.seen.setdefault(by, (path, fn_name, n))
    return _read_only(shared, run), _read_only(stacks, run)


def read_only_call(
    path: Path,
    fn_name: str,
    call: Callable[[dict[str, Any]], Any],
    arrays: Mapping[str, Any],
    labels: Mapping[str, str] | None = None,
) -> Any:
    """``call(arrays)`` with every array read-only. A write into one of them is an
    InPlaceWriteError naming the function, the array(s) and the line; each array is then tried
    writable alone (a few more calls, on the error path only) to learn which it was.
    ``labels``: the user's own names for arrays passed positionally (grad_output: dz)."""
    # numpy's read-only flag stops numpy, not code that takes the buffer itself
    # (torch.from_numpy(x).relu_(), numba, ctypes): the arrays are compared after the call
    # too (byte for byte up to VERIFIED_BYTES in all, by CRC-32 past it)
    run = _deferred[-1] if _deferred else None
    if run is not None:  # verified after the run
        covered = {n: run.covers(a) for n, a in arrays.items()}
        for n, by in covered.items():
            if by is not None and by not in run.seen:
                run.seen[by] = (path, fn_name, n if labels is None else labels.get(n, n))
        alone = {n: a for n, a in arrays.items() if covered[n] is None}
        kept = _kept(alone) if alone else {}
    else:
        kept = _kept(arrays)
    try:
        out = call(_read_only(arrays, run))
    except ValueError as e:
        if not any(s in str(e) for s in _READ_ONLY):
            raise
        # on writable copies it must run: else the read-only array is the user's own
        # (np.broadcast_to ...), not one of ours
        if _hits_read_only(call, arrays, ()):
            raise
        written = [n for n in arrays if _hits_read_only(call, arrays, (n,))]
        if not written:
            raise
        where = _user_line(e, path)
        shown, first = _named(written, labels or {})
        raise InPlaceWriteError(
            f"{fn_name} writes in place into {shown}{where}; copy first "
            f"({first} = {first}.copy()): the arrays gradcli passes are read-only",
            source=str(path),
        ) from None
    changed = [n for n, b in kept.items() if not _same(arrays[n], b)] if kept else None
    if changed:
        raise _changed(path, fn_name, changed, labels or {})
    return out


def _changed(path: Path, fn_name: str, changed: list[str],
             labels: Mapping[str, str]) -> InPlaceWriteError:  # fmt: skip
    """The error for arrays changed past numpy's read-only flag (after a call, or a run)."""
    shown, first = _named(changed, labels)
    return InPlaceWriteError(
        f"{fn_name} changed {shown} in place, past numpy's read-only flag "
        f"(torch.from_numpy, numba or ctypes ignore it); copy first ({first} = "
        f"{first}.copy()): gradcli differences the values it passed",
        source=str(path),
    )


def _named(written: list[str], labels: Mapping[str, str]) -> tuple[str, str]:
    """The arrays written, with the user's own names (``grad_output (dz)``), and the first's."""
    shown = [n if labels.get(n, n) == n else f"{n} ({labels[n]})" for n in written]
    return " and ".join(shown), labels.get(written[0], written[0])


def _kept(arrays: Mapping[str, Any]) -> dict[str, bytes | int]:
    """What to compare the arrays with after the call: their bytes, or past VERIFIED_BYTES in
    all a CRC-32 of them (one pass, no copy of a contiguous array; a change it misses is one
    in 2**32)."""
    arrs = {n: a for n, a in arrays.items() if isinstance(a, np.ndarray)}
    if sum(a.nbytes for a in arrs.values()) <= VERIFIED_BYTES:
        return {n: a.tobytes() for n, a in arrs.items()}
    return {n: _crc(a) for n, a in arrs.items()}


def _same(a: np.ndarray, kept: bytes | int) -> bool:
    return a.tobytes() == kept if isinstance(kept, bytes) else _crc(a) == kept


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def _hits_read_only(
    call: Callable[[dict[str, Any]], Any], arrays: Mapping[str, Any], names: tuple[str, ...]
) -> bool:
    """Whether the call hits a read-only array when only ``names`` are read-only (the other
    arrays: writable copies)."""
    trial = {k: np.array(a) if isinstance(a, np.ndarray) else a for k, a in arrays.items()}
    trial.update(_read_only({n: arrays[n] for n in names}))
    try:
        call(trial)
    except ValueError as e:
        return any(s in str(e) for s in _READ_ONLY)
    except Exception:  # noqa: BLE001 - the user's code failing otherwise: not this array
        return False
    return False


def _user_line(e: BaseException, path: Path) -> str:
    frames = [
        f for f in traceback.extract_tb(e.__traceback__)
        if Path(f.filename).resolve() == path.resolve()
    ]  # fmt: skip
    if not frames:
        return ""
    f = frames[-1]
    return f" ({Path(f.filename).name}:{f.lineno}: {(f.line or '').strip()})"
