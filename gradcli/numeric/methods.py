"""Finite-difference methods: the stencils, their default steps, and the per-coordinate step."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradcli.errors import OptionError
from gradcli.records import record

DEFAULT_MAX_MEMORY = 512 * 2**20
EPS = float(np.finfo(np.float64).eps)
TINY = float(np.finfo(np.float64).tiny)  # a step below it is subnormal: its digits are gone
# The estimated round-off of a finite difference must stay this far below the gradient it
# judges, or the check cannot resolve it: a tolerance raised to 1/1000 of the largest entry
# still fails an error of 0.1% there. On correct checks of the example specs and the benchmark
# sizes (S, M, O) the estimate stays below 1e-7 of the scale for central differences and 2e-4
# for the one-sided ones (forward, backward), whose step is 400x smaller.
RESOLVE_MARGIN = 1e3


def one_sided(near: Any, far: Any, h: Any, side: int) -> Any:
    """The second-order one-sided slope from D(side h) and D(2 side h) (the loss moved minus
    the loss): side (4 D(h) - D(2h)) / 2h, exact on a linear piece (relu's, the hinge's)."""
    return side * (4 * near - far) / (2 * h)


def beyond(near: Any, far: Any, h: Any, side: int) -> Any:
    """The slope between the side's two points, x + side h and x + 2 side h: (D(2h) - D(h)) /
    h, exact on a linear piece whatever kinks lie within h of x (a near-tie's, numeric/
    kinks.py), where ``one_sided`` reads them. ``one_sided_noise`` bounds its round-off."""
    return side * (far - near) / h


def side_slope(near: Any, far: Any, h: Any, side: int, past: Any = False) -> Any:
    """``one_sided``, or ``beyond`` where ``past`` (a bool, or one per entry)."""
    if np.ndim(past) == 0:
        return beyond(near, far, h, side) if past else one_sided(near, far, h, side)
    return np.where(past, beyond(near, far, h, side), one_sided(near, far, h, side))


def one_sided_noise(scale: Any, h: Any, unit: float = EPS) -> Any:
    """The round-off of ``one_sided`` when ``scale`` = sum |g y| over the outputs moved: the
    stencil's weights (4 + 1) / 2; ``unit``: the epsilon the forward computes in."""
    return 4 * unit * 2.5 * scale / h


@record
class Method:
    """A stencil: L'(x) ~ sum_s weight_s * L(x + offset_s * h) / (scale * h)."""

    name: str
    offsets: tuple[int, ...]
    weights: tuple[float, ...]
    scale: float
    order: int  # truncation error ~ h**order
    auto_eps: float  # the default step relative to max(1, |x|)

    @property
    def spread(self) -> float:
        """sum |weight| / scale: how the stencil adds up the errors of its points, per unit of
        each (round-off: every point's error of a few eps, or a measured one)."""
        return sum(abs(w) for w in self.weights) / self.scale

    def apply(self, at: Mapping[int, Any]) -> Any:
        """The stencil's sum (not yet divided by h) from L at each offset (at[1] is L at
        x + ih for the complex step)."""
        if self.name == "complex":  # x + ih, or x - ih (CONJUGATE)
            s = self.offsets[0]
            return s * at[s].imag
        # pair up +s/-s (or s/0) first: an untouched output cancels to an exact zero
        pairs = zip(self.offsets[0::2], self.offsets[1::2], self.weights[0::2], strict=True)
        return sum(w * (at[a] - at[b]) for a, b, w in pairs) / self.scale


METHODS: dict[str, Method] = {
    # step ~ eps**(1/(order+1)) balances truncation (h**order) against round-off (eps/h)
    "central": Method("central", (1, -1), (1.0, -1.0), 2.0, 2, EPS ** (1 / 3)),
    "forward": Method("forward", (1, 0), (1.0, -1.0), 1.0, 1, EPS**0.5),
    "backward": Method("backward", (0, -1), (1.0, -1.0), 1.0, 1, EPS**0.5),
    "central4": Method("central4", (1, -1, 2, -2), (8.0, -8.0, -1.0, 1.0), 12.0, 4, EPS**0.2),
    # Im L(x + ih) / h: no subtraction at all, so the step can be tiny
    "complex": Method("complex", (1,), (1.0,), 1.0, 2, 1e-20),
}

# the complex step's mirror, Im L(x - ih) / -h: the same number wherever the forward is
# analytic (a real function's code commutes with conjugation), the other side of a kink where
# it compares complex values (np.maximum orders them by real, then imaginary part: it reads
# one side, which a backward wrong at a tie may match exactly); never a user's method
CONJUGATE = Method("complex", (-1,), (1.0,), 1.0, 2, 1e-20)

# a one-sided method also takes the other side where no kink is declared (checking/kinkstage.py),
# the complex step included: Im L(x - ih) / -h (CONJUGATE)
MIRRORS = {"forward": "backward", "backward": "forward", "complex": "complex"}


def line_noise(D: np.ndarray, through_point: bool = True) -> np.ndarray:
    """The round-off (one standard deviation) of L along each column's line from
    ``D[k - 1] = L(x + k h e_j) - L(x)``, k = 1 .. 8 (or fewer): the largest estimate of the
    differences of orders 4 to 6 (Moré and Wild's ECnoise; gamma_k = (k!)^2 / (2k)! scales
    each); ``through_point``: with L(x) itself as the line's first point, else without."""
    D, scale = _unit_columns(D)
    seq = np.vstack([np.zeros((1, D.shape[1])), D]) if through_point else D
    sigma = np.zeros(D.shape[1])
    for k in range(1, min(7, D.shape[0] - 1)):
        seq = np.diff(seq, axis=0)
        if k >= 4:
            gamma = math.factorial(k) ** 2 / math.factorial(2 * k)
            sigma = np.maximum(sigma, np.sqrt(gamma * np.mean(seq**2, axis=0)))
    return scale * sigma


def _unit_columns(D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(``D`` with each column divided by its largest |move|, those divisors): the noise
    estimates square their differences, and exp(400) moves L by 1e166, whose squares
    overflowed to a round-off of inf (outside test t35b F4). Powers of two: exact."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        top = np.max(np.abs(D), axis=0, initial=0.0)
        scale = np.where(np.isfinite(top) & (top > 0), np.exp2(np.floor(np.log2(top))), 1.0)
        return D / scale, scale


def offgrid_noise(t: np.ndarray, D: np.ndarray, through_point: bool = True) -> np.ndarray:
    """The round-off (one standard deviation) of L along each column's line from ``D[k - 1] =
    L(x + t[k - 1] h e_j) - L(x)`` at moves ``t`` off the step grid: what a least-squares
    cubic leaves (a smooth L is a cubic to far below its rounding over a few steps; a curved
    one raises it). ``line_noise``'s equally spaced points read a rounding that drifts evenly
    from step to step as smooth (a confident cross-entropy's term, 1e-9 computed at 1 + 1e-9,
    moved by 21.1 of its last bits a step and read 21 every time: 1e-19 for an error of
    1e-11); points a fraction of a step off the grid break that drift. ``through_point``:
    False fits the moves alone, leaving the point out (numeric/jumps.py: a kink crossed
    before the first move offsets the point, not the moves)."""
    t = np.asarray(t, dtype=np.float64)
    y = D
    if through_point:
        t, y = np.concatenate([[0.0], t]), np.vstack([np.zeros((1, D.shape[1])), D])
    y, scale = _unit_columns(y)
    V = np.vander(t, 4)
    fit, *_ = np.linalg.lstsq(V, y, rcond=None)
    return scale * np.sqrt(np.sum((y - V @ fit) ** 2, axis=0) / (t.size - 4))


def offgrid_moves(primes: tuple[int, ...]) -> tuple[float, ...]:
    """Moves along a line, in steps, for ``offgrid_noise``: k and half the fraction of sqrt(p)
    for the k-th of ``primes``. No integers relate those fractions (engine.NOISE_OFFSETS says
    why golden-ratio ones failed), and each is rounded to 2^-16 so that x + t h is exact as
    x + k h is wherever h is 2^16 of x's last bits or more (a quarter of a default step is
    2^23): a move rounded to x's last bit would add an error of its own."""
    return tuple(k + round(2.0**15 * (math.sqrt(p) % 1.0)) / 2.0**16
                 for k, p in enumerate(primes, start=1))  # fmt: skip


def auto_eps(method: Method, unit: float) -> float:
    """The default step for a forward computing with machine epsilon ``unit``: the method's
    own for float64, else the same balance of truncation against round-off in ``unit`` (a
    float32 forward: central cbrt(2^-23) ~ 4.9e-3). The complex step subtracts nothing."""
    if unit <= EPS or method.name == "complex":
        return method.auto_eps
    return float(unit ** (1 / (method.order + 1)))


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise OptionError(
            f"unknown method {name!r}; expected one of {', '.join(METHODS)}", param="method"
        ) from None


def below_step(x: np.ndarray, eps: float) -> float:
    """The largest finite |x| where every one lies a thousand times below the step at
    |x| <= 1 (a layer may vary on a scale far below the step there), else 0.0. Inputs all 0
    say nothing of the scale the layer varies on: 0.0 (a bias of zeros beside a gamma of 1e8
    was told 'use a smaller --eps' for a round-off a smaller step makes worse)."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    top = float(a[np.isfinite(a)].max(initial=0.0))
    return top if 0 < top * 1e3 <= float(steps(np.zeros(1), eps)[0]) else 0.0


def steps(x: np.ndarray, eps: float) -> np.ndarray:
    """Per-coordinate steps: the power of two nearest below eps * max(1, |x|), so x + s*h is
    exact for the stencil's small integers s (barring a binade crossing)."""
    return np.exp2(np.floor(np.log2(eps * np.maximum(1.0, np.abs(x)))))
