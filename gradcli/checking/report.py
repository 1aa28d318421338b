"""What a check finds, as data: the report, and the tolerances its verdicts use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

import numpy as np

from gradcli.checking.compare import TensorResult
from gradcli.checking.compute import Computation
from gradcli.checking.contract import Finding
from gradcli.records import record

# (atol, rtol) of the numerical side, per method: float64 central: one element off by 1e-4
# (relative) fails; complex step: off by 1e-9 fails. The numerical reference is float64 for a
# float32 spec too: a float32 gradient adds its own measured round-off (checking/precision.py).
TOLERANCES: dict[tuple[str, str], tuple[float, float]] = {
    ("float64", "central"): (1e-7, 1e-6),
    ("float64", "forward"): (1e-5, 1e-4),
    ("float64", "backward"): (1e-5, 1e-4),
    ("float64", "central4"): (1e-9, 1e-8),
    ("float64", "complex"): (1e-11, 1e-10),
}
# a float32 gradient with no round-off measured (one returned in float32 under a float64 spec)
# and the sweep's threshold of a tensor wrong at every step in float32
FLOAT32_FALLBACK = (1e-4, 1e-3)
# (atol, rtol) of a numerical side differencing a forward that computes in float32 (a user's,
# with no built-in layer to stand in): float32 steps leave ~eps32^(2/3) ~ 2e-5 of truncation
# and round-off for central differences, eps32^(1/2) ~ 3e-4 for one-sided ones; each element
# also gets its own modelled round-off, and refinement confirms truncation (at 1e-3 and 1e-2
# a 0.1% and a 2% slip on a float32 branch passed: outside test t29a F5)
FLOAT32_FORWARD: dict[str, tuple[float, float]] = {
    "central": (1e-5, 1e-4),
    "forward": (1e-4, 1e-3),
    "backward": (1e-4, 1e-3),
    "central4": (1e-5, 1e-4),
    "complex": (1e-5, 1e-4),
}
FLOAT32_FORWARD_MARGIN = 1e2  # its round-off may reach 1% of the largest entry (float64: 0.1%)


def default_tolerances(dtype: str, method: str) -> tuple[float, float]:
    """The numerical side's (atol, rtol): float64's whatever the spec's dtype (the reference is
    float64); a float32 gradient's round-off is added per tensor when it is compared."""
    return TOLERANCES[("float64", method)]


@record
class BackwardAgreement:
    """--impl of a built-in layer whose forward agrees with ours: its backward against ours at
    the points drawn from the seed (checking/userwork.py). ``results`` per gradient at the
    first point where one disagrees, else at the last; ``drawn``: the tensors the points draw
    (and grad_output, unless the output is a scalar); ``point`` and ``grad_output`` of the
    disagreement (None when there is none)."""

    results: Mapping[str, TensorResult]
    drawn: tuple[str, ...]
    point: Mapping[str, np.ndarray] | None = None
    grad_output: np.ndarray | None = None
    # every failing gradient within float32's round-off of ours there: a float32 step of a
    # float64 backward, not values the spec's tensors hide (outside test t25 F4)
    float32: bool = False

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results.values())

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(n for n, r in self.results.items() if not r.passed)


@record
class CheckReport:
    layer: str
    dtype: str
    seed: int
    method: str
    eps: float
    atol: float
    rtol: float
    mode: str
    results: Mapping[str, TensorResult]
    notes: tuple[str, ...] = ()
    not_checked: tuple[str, ...] = ()  # --grads: tensors the answers left out
    builtin: Mapping[str, TensorResult] = field(default_factory=dict)  # beside --grads answers
    forward: TensorResult | None = None  # --impl of a built-in layer: its forward vs ours
    # where ``forward`` was compared: () at the spec's tensors; else the tensors drawn anew for
    # the point where it disagrees (checking/userwork.py), ``forward_point`` all of that point's
    forward_drawn: tuple[str, ...] = ()
    forward_point: Mapping[str, np.ndarray] | None = None
    backward: BackwardAgreement | None = None  # and, where the forwards agree, its backward
    answers: bool = False  # --grads: the gradients under test are the user's answers
    contract: tuple[Finding, ...] = ()  # the backward's contract (none checked with --grads)
    computation: Computation | None = None  # the analytical side: output, gradients, cache
    # the numerical gradients, one per name under test (NaN where not evaluated)
    numeric: Mapping[str, np.ndarray] = field(default_factory=dict)
    # predicted seconds (numeric/cost.py: counted, never timed) of the check as planned before
    # its first numerical gradient, and of all the work it then ran (the rechecks decided by
    # the comparison: smaller steps, the kink detector, ties across tensors, a probe's)
    estimated_seconds: float = 0.0
    counted_seconds: float = 0.0
    # sets of coordinates at ties across tensors whose one tie rule was not checked (more
    # than 1,024 of them, or --budget): a PASS says so in its line and JSON
    rules_unchecked: int = 0

    @property
    def failures(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Every reason the check fails, as (kind, names): "gradients" (the tensors that do not
        match), "forward" (a user's forward that disagrees with ours), "backward" (the
        gradients of a user's backward that match at the spec's point and disagree with ours at
        the drawn points), "contract" (the
        backward's broken contracts, checking/contract.py). The verdict, the exit
        code and the summary line all derive from this one list; a new kind of finding adds
        its entry here."""
        out = []
        failed = tuple(n for n, r in self.results.items() if not r.passed)
        if failed:
            out.append(("gradients", failed))
        if self.forward is not None and not self.forward.passed:
            out.append(("forward", (self.forward.name,)))
        # a gradient already failing at the spec's point by its values needs no second
        # finding; one failing as not fully compared does (the built-in backward's mismatch
        # is the only wrong value shown: outside test t52a F1)
        elsewhere = () if self.backward is None else self.backward.failed
        shown = {n for n in failed if not self.results[n].within or self.results[n].nonfinite}
        elsewhere = tuple(n for n in elsewhere if n not in shown)
        if elsewhere:
            out.append(("backward", elsewhere))
        broken = tuple(dict.fromkeys(f.name for f in self.contract if not f.passed))
        if broken:  # "contract": the names of the broken contracts
            out.append(("contract", broken))
        return tuple(out)

    @property
    def passed(self) -> bool:
        return bool(self.results) and not self.failures  # a check of nothing never passes
