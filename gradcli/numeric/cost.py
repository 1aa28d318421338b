"""What a full check costs, predicted from sizes, never timed.

Whether ``check`` runs every coordinate or a sample must not depend on how busy the machine is:
the same spec and options give the same decision, the same notes, byte-identical JSON. So the
estimate counts work instead of measuring it: forward passes (per method, coloring and
incremental path, as the engine will run them) times the elements one pass touches, times a
fixed number of seconds per element, plus the engine's own work on each copy (building it,
the stencil, attributing its output differences), which on a cheap forward is most of it.
"""

from __future__ import annotations

import math

from gradcli.numeric.stacking import StackedForward
from gradcli.user.allocated import kept_arrays

# Seconds per float64 element of one perturbed copy (its inputs, its output and the working
# arrays its forward keeps), calibrated on benchmarks/cases.py against the record of 2026-11-25
# on this 2-core machine: stacked central passes at M, L and O took 1.1e-9 ... 2.2e-9 s per
# element (linear, conv1d, conv2d). Rounded up: an estimate may be pessimistic, but should not
# promise a check that then runs far longer.
SECONDS_PER_ELEMENT = 3e-9
# the engine's own work per perturbed copy and element of the output: the stencil, the owners
# of a color's outputs and the bincounts that attribute the differences, the round-off
# bookkeeping. On a cheap forward (relu, max-pool, a one-channel conv2d) it is 3-10x the
# forward's own cost: measured 2e-8 ... 3.4e-8 s (CPU time, one BLAS thread, a busy machine)
# on relu, maxpool2d, conv2d and linear, from 6e4 to 1e6 outputs (conv2d's W: 3e-8, though
# W is tiny). Left out, a conv2d of X (512, 512, 1) predicted 0.45 s took 14 s (outside test F6).
SECONDS_PER_ATTRIBUTED_ELEMENT = 3e-8
# a coloring's footprint is verified once per tensor: the point and three moved coordinates
VERIFY_COPIES = 4
# one call of a forward that does not stack copies (a user's --impl): Python's call, the
# guard around the user's function (signals, read-only inputs, the result's checks), numpy's
# per-call overhead: measured 1.6e-4 s per call of a 5,000-element relu on this machine under
# its usual load (3e-5 made the kink examination of such a relu take 8x its --budget)
SECONDS_PER_CALL = 1.5e-4
# a user's forward measured (its own time, at the spec's point) slower than this many model calls
# is costed at its measured time instead, rounded up to a power of 2 so that the estimate
# seldom moves between runs: a student's loop conv ran 0.66 s a call against a predicted
# 2e-4 s, and a check estimated under --budget 60 ran 260 s in silence (outside test T5). At
# 16 a loop max-pool of 16 windows (0.5 ms a call, 3.3x the model) was counted at the model's
# call, and its examination of ties ran 10 s of CPU counted as 2.7; a forward as cheap as the
# model's (a guarded relu: 1.3e-4 ... 2.3e-4 s here, timed 3 times) stays below 3 under load
SLOW_CALL_FACTOR = 3
# an incremental evaluation (Layer.perturbed) moves one coordinate through, at most, the largest
# array the forward keeps (attention's scores): seconds per element of it, per coordinate and
# stencil point; measured 0.45e-9 ... 1.9e-9 on attention at M, L and the causal multi-head case
SECONDS_PER_INCREMENTAL_ELEMENT = 1.2e-9
# a backward touches about what two forward passes touch (the cache it reads, the upstream
# gradient and the gradients it returns), so one call of it counts as two passes
BACKWARD_PASSES = 2
# the check's own work per element of the tensors and the output, whatever its mode: the
# backward's contract (its deviations), the round-off levels, the comparison in chunks:
# measured 2e-7 ... 3.6e-7 s (CPU time, load 4) on relu from 65,536 to 1e6 elements and
# embedding's 2.56e6 (an embedding of 0.42 s predicted took 1.7 s, relu 0.024 s took 0.05)
SECONDS_PER_CHECKED_ELEMENT = 2e-7
# the check's own work whatever the sizes, in Python: its stages' set-up (the contract's cases,
# the round-off levels, the kink maps, the report): measured 10 ... 25 ms of CPU on linear,
# conv1d, conv2d and attention at S (benchmarks/estimates.py), whose estimates read 0.3 ... 1 ms
CHECK_SECONDS = 0.015
# a digest (blake2b) of a float64 element of a user's cache, which the backward's contract
# takes before and after its calls (checking/written.py): measured 2.1e-8 s (load 5)
SECONDS_PER_DIGESTED_ELEMENT = 2e-8
# a loss's term recomputed alone (Terms.moved: svm's margin), per coordinate and stencil
# point, the engine's attribution included: measured 6e-8 ... 1.1e-7 s (CPU time, load 5) on
# svm from x (64, 100) to (256, 1000) and (16, 4, 500)
SECONDS_PER_TERM = 1e-7
# complex128 arithmetic against float64, for the complex step: measured 1.8x ... 3.2x per
# stacked pass, 4.8x ... 6.7x per incremental evaluation (at M and L)
COMPLEX_FACTOR = {"stacked": 3.0, "incremental": 6.0}


def _kept(engine: StackedForward) -> list[int]:
    """The sizes of the arrays the forward keeps (the unperturbed cache stands for every
    copy's), wherever it keeps them (user/allocated.py kept_arrays)."""
    return [a.size for a in kept_arrays(engine.cache)]


def pass_elements(engine: StackedForward) -> int:
    """Elements one perturbed copy touches: its inputs, its output, the arrays its forward
    keeps, or what the layer declares (``Layer.forward_elements``: a max-pool's window loop)."""
    declared = engine.layer.forward_elements
    if declared is not None:
        return max(1, declared(engine.shapes, engine.options))
    inputs = sum(a.size for a in engine.t64.values())
    return inputs + math.prod(engine.out_shape) + sum(_kept(engine))


def shown(seconds: float) -> str:
    """An estimate as a note says it: two significant digits below 10 s (a budget of 0.2 s
    against 0.4 s must not read "about 0 s (budget 0.2 s)"), whole seconds above."""
    return f"{seconds:.2g}" if seconds < 10 else f"{seconds:,.0f}"


def attributed_elements(engine: StackedForward) -> int:
    """Elements the engine itself handles per perturbed copy: the output differences it
    attributes (the copy's own input rows are cheap beside them)."""
    return math.prod(engine.out_shape)


def seconds(
    engine: StackedForward, groups: int, incremental: bool, name: str | None = None
) -> float:
    """Predicted time of ``groups`` perturbation groups of one tensor (from
    ``Engine.groups_needed``), evaluated incrementally or as stacked copies."""
    if incremental:
        return incremental_seconds(engine, groups * len(engine.method.offsets), name=name)
    return copies_seconds(engine, engine.rows(groups))


def incremental_seconds(
    engine: StackedForward, evaluations: int, real: bool = False, name: str | None = None
) -> float:
    """Predicted time of ``evaluations`` losses through the layer's incremental path (in the
    method's arithmetic, or ``real``: a kink's one-sided points)."""
    largest = max(_kept(engine), default=1)
    declared = engine.layer.perturbed_elements
    if declared is not None and name is not None:
        largest = max(1, declared(name, engine.shapes, engine.options))
    per_evaluation = largest * SECONDS_PER_INCREMENTAL_ELEMENT
    if engine.method.name == "complex" and not real:
        per_evaluation *= COMPLEX_FACTOR["incremental"]
    return evaluations * per_evaluation


def user_call_seconds(engine: StackedForward) -> float | None:
    """A user's forward far slower than the model's call (SLOW_CALL_FACTOR): its measured
    seconds a call, rounded up to a power of 2; None for any other forward."""
    measured = getattr(engine, "call_seconds", 0.0)
    model = pass_elements(engine) * SECONDS_PER_ELEMENT + SECONDS_PER_CALL
    if engine.layer.broadcasts or measured <= SLOW_CALL_FACTOR * model:
        return None
    return float(2.0 ** math.ceil(math.log2(measured)))


def user_backward_seconds(engine: StackedForward) -> float | None:
    """A user's backward far slower than the model's call (SLOW_CALL_FACTOR): its measured
    seconds a call (``backward_seconds``, the analytical side's call), rounded up to a power of
    2; None for any other backward. CS231n's loop max-pool backward of X (16, 32, 32, 16) took
    0.7 s a call, 8 calls that the estimate of 0.22 s counted at a model's 2 passes each."""
    measured = getattr(engine, "backward_seconds", 0.0)
    model = BACKWARD_PASSES * pass_elements(engine) * SECONDS_PER_ELEMENT + SECONDS_PER_CALL
    if engine.layer.broadcasts or measured <= SLOW_CALL_FACTOR * model:
        return None
    return float(2.0 ** math.ceil(math.log2(measured)))


def copies_seconds(engine: StackedForward, copies: int, real: bool = False) -> float:
    """Predicted time of ``copies`` perturbed copies through the stacked forward (in the
    method's arithmetic, or ``real``)."""
    slow = user_call_seconds(engine)
    if slow is not None:  # a user's forward is one call a copy, whatever it does inside
        return copies * (slow + attributed_elements(engine) * SECONDS_PER_ATTRIBUTED_ELEMENT)
    per_copy = pass_elements(engine) * SECONDS_PER_ELEMENT
    if engine.method.name == "complex" and not real:
        per_copy *= COMPLEX_FACTOR["stacked"]
    per_copy += attributed_elements(engine) * SECONDS_PER_ATTRIBUTED_ELEMENT
    if not engine.layer.broadcasts:
        per_copy += SECONDS_PER_CALL
    return copies * per_copy


def calls_seconds(
    engine: StackedForward, forwards: int, backwards: int = 0, overhead: bool = False
) -> float:
    """Predicted time of whole calls of the layer's forward and backward at the spec's point
    (the analytical side, the backward's contract, a user's forward and backward at the drawn
    points): each touches what one perturbed copy touches (a backward twice that), plus the
    guard around each call of a user's function (``overhead``)."""
    per = pass_elements(engine) * SECONDS_PER_ELEMENT
    call = SECONDS_PER_CALL if overhead else 0.0
    slow = user_call_seconds(engine) if overhead else None
    slow_back = user_backward_seconds(engine) if overhead else None
    back = BACKWARD_PASSES * per + call
    if slow_back is not None:  # the user's backward, measured
        back = slow_back
    elif slow is not None:  # the user's own calls, measured: a backward as two forwards
        back = BACKWARD_PASSES * slow
    return forwards * (per + call if slow is None else slow) + backwards * back


def checked_seconds(engine: StackedForward) -> float:
    """Predicted time of the check's own work on every element of the tensors and the
    output (SECONDS_PER_CHECKED_ELEMENT)."""
    elements = sum(a.size for a in engine.t64.values()) + math.prod(engine.out_shape)
    return elements * SECONDS_PER_CHECKED_ELEMENT


def digest_seconds(engine: StackedForward, digests: int) -> float:
    """Predicted time of ``digests`` digests of the forward's cache: the writable arrays it
    keeps (read-only ones, gradcli's tensors, cannot change and are not digested)."""
    kept = sum(a.size for a in kept_arrays(engine.cache) if a.flags.writeable)
    return digests * kept * SECONDS_PER_DIGESTED_ELEMENT


def termwise_seconds(
    engine: StackedForward, coordinates: int, size: int, verify_copies: int
) -> float:
    """Predicted time of ``coordinates`` coordinates through a loss's term-by-term path
    (numeric/termwise.py), and of its verification on a tensor of ``size``: stacked copies,
    and the path at every coordinate."""
    per = SECONDS_PER_TERM * len(engine.method.offsets)
    if engine.method.name == "complex":
        per *= COMPLEX_FACTOR["stacked"]
    verify = copies_seconds(engine, 1 + verify_copies) + SECONDS_PER_TERM * size
    return coordinates * per + verify
