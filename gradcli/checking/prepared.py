"""The check's options and what its first stage settles (checking/check.py's ``prepare``):
records the stages below read, apart from the stages themselves."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any

import numpy as np

from gradcli.checking import precision
from gradcli.checking.compute import Computation
from gradcli.checking.contract import Finding, random_forward
from gradcli.checking.report import BackwardAgreement
from gradcli.checking.userwork import ForwardAgreement
from gradcli.errors import OptionError
from gradcli.inputs.spec import Spec
from gradcli.numeric.engine import Engine
from gradcli.numeric.methods import DEFAULT_MAX_MEMORY, get_method
from gradcli.records import mutable_record, record

MODES = ("auto", "full", "sample", "probe")
DEFAULT_BUDGET_SECONDS = 60.0
DEFAULT_SAMPLES = 64
MAX_EPS = 1.0  # --eps: the step, relative to max(1, |x|), is at most x's own size
MAX_COMPLEX_EPS = 1e-6  # and the complex step's, whose truncation eps^2 is not refined


@record
class CheckOptions:
    """How to check; immutable once built (``dataclasses.replace`` makes another)."""

    method: str = "central"
    eps: float | None = None  # None: the method's automatic step
    atol: float | None = None
    rtol: float | None = None
    mode: str = "auto"
    samples: int = DEFAULT_SAMPLES
    coloring: bool = True
    max_memory: int = DEFAULT_MAX_MEMORY
    budget: float = DEFAULT_BUDGET_SECONDS  # seconds a full check may take before "auto" samples
    top: int = 5  # elements in each tensor's worst-k list
    contract: bool = True  # the backward's contract (a network's end to end: its layers' own)
    # a network's end to end: where kinks of several layers meet, the chained backward is
    # autodiff's value, not always between the two one-sided slopes; the layers' local checks
    # decided those coordinates, so there they are counted as kinks, not compared
    composite_kinks: bool = False
    # a network of built-in layers: at a coordinate whose stencil met a kink (or a tie the
    # pieces read), an answer equal to the chained backward (the layers' own choices at their
    # kinks, autodiff's value, which may lie outside the composite's one-sided slopes:
    # relu(x) - relu(-x) at 0 reads 1 on each side, the chain rule gives 0) is accepted, the
    # user's (--grads) as the chained backward itself; any other answer is held to the slopes
    # and ties
    chained_kinks: bool = False
    # ties too large for every order read along a few directions (numeric/crowds.py); off for
    # a network's end to end once a layer's local check failed: the verdict is decided, and
    # each direction costs thousands of the whole network's forwards
    large_ties: bool = True
    # a layer whose output is 0 around the spec's point (dropout keeping none) checks nothing:
    # refused; a network's layer takes the point the network gives
    refuse_constant: bool = True
    grads: Mapping[str, np.ndarray] | None = None  # the user's answers (--grads) to check
    # tensors failing together at ties checked again apart (checking/blame.py); not again
    # within those checks
    blame: bool = True
    notify: Callable[[str], None] = field(default=lambda message: None)  # to stderr
    progress: Callable[[int], Callable[[int], None]] | None = None  # total -> advance(n)

    def __post_init__(self) -> None:
        self.validate()

    def within(self, **changes: Any) -> CheckOptions:
        """These options for a check run inside this one (complex_recheck, blame): ``changes``
        applied, the contract not held again, nothing said, no progress of its own."""
        return dataclasses.replace(self, contract=False, notify=lambda message: None,
                                   progress=None, **changes)  # fmt: skip

    def validate(self) -> None:
        get_method(self.method)
        if self.mode not in MODES:
            raise OptionError(
                f"expected one of {', '.join(MODES)}, got {self.mode!r}", param="mode"
            )
        for opt, v in (("eps", self.eps), ("atol", self.atol), ("rtol", self.rtol)):
            if v is not None and (not math.isfinite(v) or v < 0 or (opt == "eps" and v == 0)):
                sign = "positive" if opt == "eps" else "non-negative"
                raise OptionError(f"expected a finite {sign} number, got {v}", param=opt)
        if self.eps is not None and self.method == "complex" and self.eps > MAX_COMPLEX_EPS:
            # its truncation, h^2 of the slope's scale, is held to a billionth of the gradient
            # and is never refined: at 1e-3 a right tanh failed (outside test t35b F6)
            raise OptionError(f"expected a complex step of at most {MAX_COMPLEX_EPS:g} (its "
                              f"truncation, about eps^2, is held to 1e-9 of the gradient), "
                              f"got {self.eps:g}; leave it auto (1e-20)", param="eps")
        if self.eps is not None and self.eps > MAX_EPS:
            # a step beyond |x| itself differences nothing near x: at --eps 1e5 the smaller
            # steps never reached a sane one, and a right tanh failed (outside test t34b F6)
            raise OptionError(f"expected a step of at most {MAX_EPS:g} (relative to "
                              f"max(1, |x|)), got {self.eps:g}", param="eps")  # fmt: skip
        if self.samples < 1:
            raise OptionError(
                f"expected a positive integer, got {self.samples}", param="samples"
            )
        if self.max_memory < 2**20:
            raise OptionError("expected at least 1 MB", param="max_memory")
        if math.isnan(self.budget) or self.budget < 0:  # inf: no limit (t40a N6)
            raise OptionError(
                f"expected a number of seconds >= 0 (inf: no limit), got {self.budget}",
                param="budget",
            )
        if self.top < 1:
            raise OptionError(f"expected a positive integer, got {self.top}", param="top")


@mutable_record
class Prepared:
    """What the first stage settles before any numerical gradient is taken."""

    spec: Spec
    opts: CheckOptions
    comp: Computation
    under_test: dict[str, np.ndarray]  # name -> the gradient under test, tensors first
    engine: Engine  # the layer's
    engines: dict[str, Engine]  # per name: the layer's, or an intermediate's tail
    groups: dict[str, int]  # forward passes a full check of each name takes
    estimates: dict[str, float]  # their predicted seconds (numeric/cost.py), never timed
    mode: str  # auto settled: full, sample (of some names at least) or probe
    default_atol: float
    atol: float
    rtol: float
    levels: dict[str, precision.Level]  # float32: each gradient's round-off, per name
    contract: tuple[Finding, ...]
    notes: list[str] = field(default_factory=list)
    session: Any = None  # hypotheses.Session: the causes tried, made at a first failure
    spent: float = 0.0  # predicted seconds of the work decided so far (what --budget bounds)
    estimated: float = 0.0  # of the check as planned: ``spent`` once the mode was settled
    forward: ForwardAgreement | None = None  # --impl of a built-in: its forward against ours
    sampled: dict[str, np.ndarray] = field(default_factory=dict)  # name -> its coordinates
    backward: BackwardAgreement | None = None  # and its backward, at the drawn points
    probed: dict[str, str] = field(default_factory=dict)  # probe mode: why a name fell back
    # name -> why --budget left some of its ties unverified (checking/across.py: a loss's ties
    # left in one group, where a wrong backward's sums of opposite signs cancel; members of a
    # tie not searched for): such a tensor cannot PASS
    unverified: dict[str, str] = field(default_factory=dict)
    # ... of them, those whose ties at a single output were not told apart: their tie groups'
    # sums, moved together across several ties, bound no valid gradient (a loss of mixed
    # signs), so a mismatch only at their kinks is not verified either
    untold: set[str] = field(default_factory=set)
    # name -> coordinates of ties across tensors that a move holding every tie still showed
    # wrong (numeric/balance.py): no mix of pieces read along a few directions keeps them
    pinned: dict[str, np.ndarray] = field(default_factory=dict)
    # ties across tensors that no move held together (numeric/balance.py judged none): the
    # pieces' one mix across tensors is asked for (numeric/shifts.consistent)
    unjudged: bool = False
    # sets of coordinates at ties across tensors whose one rule the budget left unchecked
    # (numeric/balance.py's moves): the verdict line says so, not a note alone (t53a F1)
    rules_unchecked: int = 0
    # name -> the predicted seconds of its sample's ties' members outside it, held in the
    # estimate (budget.Estimate.partners): checking/across.py runs them on that, not on what
    # is left of --budget
    partners: dict[str, float] = field(default_factory=dict)
    # name -> each element's floor from the backward's own round-off (checking/lastbit.py),
    # worked out at the first tensor failing without it
    floors: dict[str, np.ndarray] | None = None
    # name -> whether the loss stays exactly where it is along every coordinate compared
    # (tolerances.py), asked where the differences read 0 everywhere and cannot be resolved
    flat: dict[str, bool] = field(default_factory=dict)
    # name -> the size each element of its gradient has where the upstream gradient's terms
    # do not cancel (checking/lastbit.natural_terms); None: not asked yet
    natural: dict[str, np.ndarray] | None = None
    # name -> (the default atol, rtol) of a tensor a forward computing in float32 elsewhere
    # reaches through float64 alone (checking/mixed.py): the layer's float32 allowance is not
    # its own
    float64_paths: dict[str, tuple[float, float]] = field(default_factory=dict)

    def tolerances_of(self, name: str) -> tuple[float, float]:
        """(the default atol, the rtol) ``name`` is held to before its own round-off."""
        return self.float64_paths.get(name, (self.default_atol, self.rtol))

    def left(self) -> float:
        """Seconds of --budget left for the work decided by the comparison (a forced mode:
        all)."""
        return self.opts.budget - self.spent if self.opts.mode in ("auto", "probe") else math.inf

    def note(self, text: str) -> None:
        if text in self.notes:  # said once (a sample's tie note came twice: t22 N6)
            return
        self.notes.append(text)
        self.opts.notify(text)

    @property
    def random_forward(self) -> bool:
        """Whether the forward returned another output at a second call at the same tensors
        (checking/contract.py): its differences mean nothing, no step or kink explains them."""
        return random_forward(self.contract, self.spec.output_info.name) is not None
