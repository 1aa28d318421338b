"""A layer's forward on a stack of perturbed copies of one tensor.

The copies go on a leading "probe" axis: one batched forward call per chunk (a layer that does
not broadcast gets one call per copy), each chunk sized to stay in cache and under the memory
limit. The stencil is applied to the stacked outputs before they are reduced, so outputs a copy
does not move cancel exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from gradcli.errors import OptionError, mention
from gradcli.layers import Layer
from gradcli.layers.base import float64_copies
from gradcli.numeric import clock, jumps
from gradcli.numeric.methods import DEFAULT_MAX_MEMORY, EPS, auto_eps, get_method
from gradcli.user import allocated, readonly
from gradcli.user import call as usercall
from gradcli.user.allocated import kept_arrays

_HEAP_BLOCK = 2**22


@contextmanager
def _run_of_calls(shared: Iterable[np.ndarray], scratch: Iterable[np.ndarray]) -> Iterator[None]:
    """A forward that does not stack copies (yours) called once per copy: one guard for the
    run and one comparison of its arrays after it (user/call.batch, user/readonly.deferred)."""
    with readonly.deferred(shared, scratch), usercall.batch():
        yield
# a user's forward slower than this at the point is timed 3 times: a first call warms up its
# caches (a loop max-pool: 0.83 ms, then 0.45)
RETIME_SECONDS = 1e-4
RETIMES = 2
# roles whose leading axes are the batch (inputs, and the labels and targets that go with them)
_EXAMPLES = ("input", "target", "index", "data")


def forward_unit(layer: Layer, t64: Mapping[str, np.ndarray], options: Any,
                 out: Any) -> tuple[float, str]:  # fmt: skip
    """(the machine epsilon ``layer``'s forward computes in, given float64 tensors ``t64`` and
    its output ``out`` there, and what showed it): float64's for gradcli's own layers (""); a
    user's forward that returns float32 for them ("returns"), or only float32 numbers at a
    point float32 cannot hold (every tensor moved by 2^-30 of itself), or whose float64 output
    moves in float32's steps there (a matmul in float32 under a float64 bias: AMP, a cached
    float32 weight: "blind"), or whose float64 output jumps by float32's last bits along lines
    its float64 work would leave smooth (``tanh(x32) + x``: numeric/jumps.py, "jumps"),
    computes in float32 (or coarser, as measured); one whose output jumps so at float16's
    scale (``tanh(x16) + x``: "jumps16"), in float16."""
    out = np.asarray(out)
    if out.dtype.kind in "fc" and np.finfo(out.dtype).eps > EPS:
        return float(np.finfo(out.dtype).eps), "returns"
    if layer.broadcasts:  # gradcli's own layers (and networks of them) compute in float64
        return EPS, ""
    y = _moved(layer, t64, options, 2.0**-30)
    single = float(np.finfo(np.float32).eps)
    if y.dtype.kind != "f" or not np.any(y[np.isfinite(y)] != 0):
        return EPS, ""
    with np.errstate(all="ignore"):
        # outputs that float16 holds too (a saturated tanh's 1.0s, counts, halves) are on
        # every grid and say nothing of the precision they were computed in
        if np.array_equal(y, y.astype(np.float32)) and not _short(y):
            return single, "blind"
    if _float32_steps(layer, t64, options, out):
        # float32's unit at least, more where its steps are coarser (np.round(x, 5) is blind
        # to moves below float32's resolution too, and jumps by 5e-6 of itself)
        rounding = jumps.float32_jumps(layer, t64, options, fine=False)
        half = float(np.finfo(np.float16).eps)
        # as coarse as float16's, and jumping so at its scale: float16 work throughout (x16 @
        # W16 was named float32, and its steps of 0.043 resolved neither a right backward nor
        # one 5% off: outside test t45a N6)
        if rounding >= half / 16 and (rounding16 := jumps.float16_jumps(layer, t64, options)):
            return max(half, rounding16), "blind"
        return max(single, rounding), "blind"
    if out.dtype == np.float64 and (rounding := jumps.float32_jumps(layer, t64, options)):
        # float32's unit at least; more where its jumps are coarser (an input rounded to 1e-5)
        return max(single, rounding), "jumps"
    if out.dtype == np.float64 and (rounding := jumps.float16_jumps(layer, t64, options)):
        return max(float(np.finfo(np.float16).eps), rounding), "jumps16"
    return EPS, ""


def point_calls(layer: Layer, t64: Mapping[str, np.ndarray]) -> int:
    """The forward calls an engine makes at the point, at the most: the forward, and for a
    user's forward its timing (RETIMES more) and the precision it computes in (every tensor
    moved, then FLOAT32_CALLS for each floating tensor, the first line of numeric/jumps.py and
    its test of proportion for float16: ``forward_unit``; where those see jumps, the other
    lines' calls, uncounted). The estimate counts them (the precision's calls were missing: 12
    of an lstm_step's)."""
    if layer.broadcasts:
        return 1
    floating = sum(1 for a in t64.values() if a.dtype.kind == "f")
    return 1 + RETIMES + 1 + FLOAT32_CALLS * floating + jumps.CALLS + jumps.HALF_CALLS


def _short(y: np.ndarray) -> bool:
    """Whether every finite value of ``y`` has a significand of float16's 11 bits or fewer, at
    any exponent: such numbers are on float32's grid whatever computed them (a relu's single
    output cancelled to 2^-50 in float64 read as float32 work: outside test t67a F2)."""
    v = y[np.isfinite(y)]
    return bool(np.all(np.mod(np.frexp(v)[0] * 2.0**11, 1.0) == 0))


FLOAT32_CALLS = 3  # _float32_steps's forward calls per tensor: on float32's grid, and moved twice


def _moved(layer: Layer, t64: Mapping[str, np.ndarray], options: Any, by: float) -> np.ndarray:
    """The forward's output with every float tensor moved by ``by`` of itself."""
    moved = {n: a * (1 + by) if a.dtype.kind == "f" else a for n, a in t64.items()}
    return np.asarray(layer.forward(moved, options)[0])


def _float32_steps(layer: Layer, t64: Mapping[str, np.ndarray], options: Any,
                   out: np.ndarray) -> bool:  # fmt: skip
    """Whether the forward's float64 output is blind to moves of one tensor that float32
    cannot hold: with the tensor on float32's grid, moved by an eighth of a float32 step
    (2^-27 of itself, which rounds back to the same float32), float32 work returns exactly the
    same outputs, while float64 work moves them, however fast it varies (sin at 1e7 varies
    within a float32 step: a test of proportion at such moves read its curvature as float32's
    jumps). Outputs that do not move at 2^-22 of it either (a relu's zeros) say nothing; most
    of those that do being blind to the eighth is float32 work. One tensor at a time: a float64
    bias added after a float32 matmul moves the output and would hide the matmul's (three
    forward calls per tensor)."""
    if out.dtype != np.float64:
        return False
    return any(_blind(layer, t64, options, out))  # the first blind tensor says it


def sees_below_float32(layer: Layer, t64: Mapping[str, np.ndarray], options: Any,
                       out: Any) -> set[str]:  # fmt: skip
    """The float tensors whose moves below float32's resolution move most of the outputs they
    move at all (the test of ``_float32_steps``, every tensor read): a forward computing in
    float32 elsewhere reaches the output from them through float64 (a bias added after a
    float32 matmul), or partly so. Three forward calls per tensor."""
    out = np.asarray(out)
    if out.dtype != np.float64:
        return set()
    names = [n for n, a in t64.items() if a.dtype.kind == "f"]
    return {n for n, seen in zip(names, _blind(layer, t64, options, out, every=True),
                                 strict=True) if seen is False}  # fmt: skip


def _blind(layer: Layer, t64: Mapping[str, np.ndarray], options: Any, out: np.ndarray,
           every: bool = False):  # fmt: skip
    """For each float tensor in turn: True where the output is blind to its moves below
    float32's resolution, False where it is not, None where it says nothing (no output moves,
    the tensor lies beyond float32's range). Stops at a wrong shape or dtype unless ``every``
    (then None for the rest)."""
    rng = np.random.default_rng(0)
    broken = False
    for name in [n for n, a in t64.items() if a.dtype.kind == "f"]:
        # each element up or down: a move of the whole tensor by one factor leaves a
        # normalization's output where it was (layernorm is scale-invariant), round-off only
        signs = rng.choice([-1.0, 1.0], size=t64[name].shape)
        with np.errstate(all="ignore"):
            grid = t64[name].astype(np.float32).astype(np.float64)
        if broken or not np.all(np.isfinite(grid[np.isfinite(t64[name])])):
            yield None  # beyond float32's range: not float32 work's input
            continue
        on = {**t64, name: grid}
        base, inside, beyond = (
            np.asarray(layer.forward({**on, name: grid * (1 + by * signs)}, options)[0])
            for by in (0.0, 2.0**-27, 2.0**-22)
        )
        if any(y.shape != out.shape or y.dtype.kind != "f" for y in (base, inside, beyond)):
            if not every:
                yield False
                return
            broken = True
            yield None
            continue
        # an output that moved by a few of its last bits at 2^-22 would not move at 2^-27 in
        # float64 either (a saturated tanh, 1 - 1e-22, rounded at 1: read as float32 work):
        # only those whose move predicts a few last bits at the eighth say anything
        with np.errstate(all="ignore"):
            moves = (np.isfinite(base) & np.isfinite(beyond)
                     & (np.abs(beyond - base) > 128 * np.spacing(np.abs(base))))  # fmt: skip
        yield None if not moves.any() else bool(np.mean(inside[moves] == base[moves]) > 0.5)


def _call_seconds(layer: Layer, t64: Mapping[str, np.ndarray], options: Any,
                  seconds: float, tick: Callable[[], float]) -> float:  # fmt: skip
    """The seconds of a user's forward at the point, first timed at ``seconds``, in this
    thread's own time (numeric/clock.py: its CPU time and the time it waited on a GPU, I/O or
    its worker threads, not the time it stood in the run queue of a busy machine). This
    thread's: the process's CPU time would count every other thread (a test runner's, a data
    loader's, BLAS workers spinning) and make a check's mode depend on what else the process
    runs. A call slow enough to matter is timed twice more, the least kept: a first call pays
    for the user's imports and caches warming up."""
    for _ in range(RETIMES if seconds > RETIME_SECONDS else 0):
        started = tick()
        layer.forward(t64, options)
        seconds = min(seconds, tick() - started)
    return seconds


class StackedForward:
    """One layer at one point (``tensors`` copied to float64), and its forward on stacks of
    perturbed copies of one tensor."""

    def __init__(
        self,
        layer: Layer,
        tensors: Mapping[str, np.ndarray],
        options: Any,
        grad_output: np.ndarray,
        *,
        method: str = "central",
        eps: float | None = None,
        max_memory: int = DEFAULT_MAX_MEMORY,
        progress: Callable[[int], None] | None = None,
        deterministic: bool = True,
        unit: float | None = None,
    ):
        self.layer, self.options = layer, options
        self.method = get_method(method)
        self.eps = self.method.auto_eps if eps is None else float(eps)
        self.t64 = float64_copies(tensors)  # labels and indices stay integers
        # the coarsest epsilon the tensors were given in (a float32 check's): what a kink map
        # that rounds as the code under test does is told (engine.kink_map)
        self.rounding = max((float(np.finfo(a.dtype).eps) for a in tensors.values()
                             if isinstance(a, np.ndarray) and a.dtype.kind == "f"), default=EPS)
        self.shapes = {n: a.shape for n, a in self.t64.items()}
        self.g = np.asarray(grad_output, dtype=np.float64)
        self.max_memory = max_memory
        self.progress = progress
        # on a layer's terms (Engine.terms): their shortcut, Terms.moved (numeric/termwise.py)
        self.moved_term: Callable[..., Any] | None = None
        self._base: np.ndarray | None = None  # the output at the point (``base``)
        self.batch = {
            i.name: (self.t64[i.name].ndim - len(i.axes)) if i.role in _EXAMPLES else 0
            for i in layer.infos({n: a.shape for n, a in self.t64.items()}, options)
            if i.name in self.t64
        }
        self.n_batch = max(self.batch.values(), default=0)
        tick = clock.for_calls()
        # a user's forward declares no working arrays: what its call allocates is measured,
        # at its first call (Layer.first_call) or, when that one imported modules, here
        # (traced, the call runs slower: a slow one is timed again untraced, a fast one's
        # reading stays far below what the estimate counts a user's call at)
        reading = layer.first_call() if layer.first_call else None
        traced = not layer.broadcasts and reading is None
        with allocated.peak() if traced else nullcontext([reading[0] if reading else 0]) as seen:
            started = tick()
            out, cache = layer.forward(self.t64, options)
            first = tick() - started
        # a user's forward may run far slower than the cost model's call (a student's loops:
        # numeric/cost.py user_call_seconds), and whether the check is sampled follows it
        self.call_seconds = 0.0 if layer.broadcasts else _call_seconds(layer, self.t64, options,
                                                                       first, tick)  # fmt: skip
        # the epsilon the forward computes in: a user's may compute in float32 whatever it is
        # given; its differences then take float32 steps and carry float32 round-off. Not read
        # from a forward that returned another output at a second call (checking/contract.py):
        # its calls differ by its randomness, which no precision explains (a dropout drawing a
        # new mask read as float32 work)
        # ``unit`` given: the tensors this engine differences were read apart (a float64 path
        # of a forward computing in float32 elsewhere: checking/mixed.py)
        # Under the complex step a float64 output's precision is not read: the step subtracts
        # nothing, and a forward that rounds its input in float32 drops the imaginary part,
        # which checking/userwork.complex_safe refuses (log(1 + x) at x = 1e-9, blind to moves
        # below float32's cells, was held to float32's allowance: outside test t30a F6)
        self.unit, self.unit_seen = (
            (unit, "") if unit is not None
            else (EPS, "") if not deterministic or (
                self.method.name == "complex" and np.asarray(out).dtype == np.float64)
            else forward_unit(layer, self.t64, options, out))  # fmt: skip
        if eps is None:
            self.eps = auto_eps(self.method, self.unit)
        self.cache = cache
        self.out_shape = out.shape
        # |g * y| per output: the scale of the round-off in each output difference
        self.gy = np.abs(self.g * np.real(out)).ravel()
        arrays = [np.asarray(out), *kept_arrays(cache)]
        # one probe copy, with temporaries; a user's forward: at least what its call took
        self.forward_bytes = allocated.pass_bytes(seen[0], sum(a.nbytes for a in arrays))
        self.user_bytes = seen[0]
        self.largest_bytes = max(a.nbytes for a in arrays)
        # one perturbed copy of the largest tensor, the least a chunk takes
        self.smallest_bytes = self.forward_bytes + 2 * max(a.nbytes for a in self.t64.values())

    def forward_stack(self, name: str, probes: np.ndarray) -> np.ndarray:
        """Outputs (P, *out_shape) for P values (P, *shape) of tensor ``name``."""
        shape = self.t64[name].shape
        if not self.layer.broadcasts:  # one forward call per copy
            with _run_of_calls(self.t64.values(), (probes,)):
                y = self._copies({name: probes})
        else:
            others = {
                n: a.reshape((1,) * (1 + self.n_batch - self.batch[n]) + a.shape)
                for n, a in self.t64.items()
                if n != name
            }
            lead = (len(probes),) + (1,) * (self.n_batch - self.batch[name])
            y, _ = self.layer.forward({**others, name: probes.reshape(lead + shape)}, self.options)
            y = np.asarray(y)
        if np.iscomplexobj(probes) and not np.iscomplexobj(y):
            # every built-in layer is complex-safe: this is a user's forward (which never
            # broadcasts), even one standing for a built-in's name
            whose = f"{self.layer.name}'s" if self.layer.broadcasts else "your"
            raise OptionError(
                f"{whose} forward is not complex-safe (it returned real values when {name} "
                f"was complex: an output allocated with another input's dtype, or a cast, "
                f"drops the imaginary part); use another {mention('method')}",
                param="method",
            )
        return y.reshape((len(probes),) + self.out_shape)

    def _copies(self, stacks: Mapping[str, np.ndarray]) -> np.ndarray:
        """(R, *out_shape): the forward of a layer that does not broadcast at each of R
        copies, copy i with row i of each ``stacks[n]`` (R, *shape of n) in place of n."""
        if self.layer.rows is not None:
            return np.asarray(self.layer.rows(self.t64, stacks, self.options))
        r = len(next(iter(stacks.values())))
        ys = [self.layer.forward({**self.t64, **{n: v[i] for n, v in stacks.items()}},
                                 self.options)[0] for i in range(r)]  # fmt: skip
        return np.stack([np.asarray(v) for v in ys])

    def moved(self, name: str, rows: np.ndarray) -> np.ndarray:
        """d (R, out_size): the (real) output at each of ``rows[1:]`` (R flat values of
        ``name``) minus the output at ``rows[0]``, the unmoved point."""
        y = self.forward_stack(name, rows.reshape((len(rows),) + self.t64[name].shape)).real
        y = y.reshape(len(rows), -1)
        return y[1:] - y[:1]

    def moved_jointly(self, rows: Mapping[str, np.ndarray]) -> np.ndarray:
        """As ``moved``, with several tensors moved in the same copies: ``rows[n]`` (R, size)
        for each moved tensor n, row 0 the unmoved point (a tie across tensors moves its
        members together)."""
        r = len(next(iter(rows.values())))
        if not self.layer.broadcasts:  # one forward call per copy
            with _run_of_calls(self.t64.values(), rows.values()):
                y = self._copies({n: v.reshape((r,) + self.t64[n].shape)
                                  for n, v in rows.items()})  # fmt: skip
        else:
            stacked = {
                n: (rows[n] if n in rows else a[None])
                .reshape(((r,) if n in rows else (1,)) + (1,) * (self.n_batch - self.batch[n])
                         + a.shape)  # fmt: skip
                for n, a in self.t64.items()
            }
            y = np.asarray(self.layer.forward(stacked, self.options)[0])
        y = np.real(y).reshape(r, -1)
        return y[1:] - y[:1]

    def copy_bytes(self, name: str) -> int:
        """Bytes of one stacked copy of ``name``: the copy, its forward's arrays (measured at
        the point, with temporaries) and its output."""
        return self.forward_bytes + 2 * self.t64[name].nbytes

    def _chunk(self, name: str, n_groups: int, bends: bool = False) -> int:
        rows = len(self.method.offsets)
        # the stacked copies and their forward's arrays, then what the gradient's loop makes
        # of a group's differences per output: d, d * g, the owners twice (int64), |g * y|
        # and its moved part, in float64; the kink screen's readings (``bends``): one more
        # per step of the stencil
        per_group = rows * self.copy_bytes(name) + (48 + 8 * (rows // 2) * bends) * self.g.size
        # keep each stacked temporary near 4 MB: it stays in cache across the forward's passes,
        # and below glibc's mmap threshold (exits.tune_allocator) freed blocks are reused instead
        # of page-faulting afresh on every call (measured: 1.5x on attention here)
        cap = _HEAP_BLOCK // max(1, rows * self.largest_bytes)
        return int(max(1, min(n_groups, cap, self.max_memory // max(1, per_group))))

    def rows(self, c: int) -> int:
        """Forward evaluations for c groups: one per group and nonzero offset, plus the base."""
        m = self.method
        return c * sum(1 for s in m.offsets if s != 0) + (1 if 0 in m.offsets else 0)

    def base(self, name: str) -> np.ndarray:
        """Twice the output at the point (float64), through the path the stacked copies of
        ``name`` take, once: the centre that central differences leave out."""
        if self._base is None:
            y = np.real(self.forward_stack(name, self.t64[name][None])[0])
            self._base = 2 * y.astype(np.float64)
        return self._base

    def _differences(self, name: str, groups: Any, h: np.ndarray,
                     bends: list | None = None) -> np.ndarray:  # fmt: skip
        """D (C, *out_shape): the stencil applied to C groups of coordinates perturbed together
        (``groups``: C index arrays, or a (C, 1) array); coordinate j moves by h[j].
        ``bends``: a list that gets, for a central stencil, what the check's kink screen reads
        from the same points and the output at x (numeric/engine.Bends): |y(x + sh) + y(x -
        sh) - 2 y(x)| per output for each of the stencil's steps s, each (C, *out_shape), to
        be weighted by |g| (an output no group moves reads exactly 0, as in D)."""
        x = self.t64[name].ravel()
        m = self.method
        c = len(groups)
        offsets = [s for s in m.offsets if s != 0]
        base = 1 if 0 in m.offsets else 0
        dtype = np.complex128 if m.name == "complex" else np.float64
        rows = np.empty((base + c * len(offsets), x.size), dtype=dtype)
        rows[:] = x  # not np.repeat of x.astype: that copies the tensor once more
        for k, s in enumerate(offsets):
            step = s * 1j * h if m.name == "complex" else s * h
            first = base + k * c
            if isinstance(groups, np.ndarray):  # one coordinate per group: one fancy assignment
                idx = groups[:, 0]
                rows[first + np.arange(c), idx] = x[idx] + step[idx]
            else:
                for i, idx in enumerate(groups):
                    rows[first + i, idx] = x[idx] + step[idx]
        y = self.forward_stack(name, rows.reshape((len(rows),) + self.t64[name].shape))
        at = {s: y[base + k * c : base + (k + 1) * c] for k, s in enumerate(offsets)}
        if base:
            at[0] = y[:1]
        D = m.apply(at)
        if bends is not None:  # three passes over the outputs each, in place
            twice = self.base(name)
            # the copies' outputs are read: written over where they are ours to write (a new
            # block is paged in afresh, and cost as much again)
            mine = y.dtype == np.float64 and y.flags.writeable
            for s in sorted(o for o in offsets if o > 0):
                r = np.add(at[s], at[-s], out=at[s] if mine else None, dtype=np.float64)
                r -= twice
                bends.append(np.abs(r, out=r))
        return D
