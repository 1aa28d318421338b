"""Truncation: a coordinate that fails at the default step is differenced again at smaller ones.

The default step is ``eps * max(1, |x|)``: the |x| keeps ``x + h`` clear of x's last bits, but a
layer that varies on a scale far below |x| (a layernorm of x = 1000 + N(0, 1) varies on the
row's spread, 1, while h is 4e-3) carries a truncation error of (h / scale)^p, beyond rtol. A
truncation error shrinks with the step as h^p (p the method's order: 2 central, 4 central4, 1
forward and backward); a wrong gradient's discrepancy does not shrink at all.

So, at the coordinates that fail (only those: the cost), the method's own stencil is taken
again at h/2, h/4, ... and extrapolated (Richardson): from three successive values n0, n1, n2
with differences d1 = n0 - n1 and d2 = n1 - n2, truncation predicts d2 = d1 / 2^p; the limit is
R = n2 - d2 / (2^p - 1), and ``mu = |d2 - d1 / 2^p|``, how far the sequence is from the rate,
bounds R's own error (the next term of the expansion: 4/45 mu for central, 1/60 mu for
central4, 2/3 mu for forward). A coordinate is confirmed when ``|a - R| + mu`` is within its
tolerance: the values shrank towards a at the rate truncation predicts. A wrong gradient's
|a - R| is its error, whatever the step. Halving stops at a confirmation; when the values lead
away from a (the rate held at two steps in a row, or they stopped moving: ``decide``,
``_settled``); when the next step's round-off (it grows as 1/h) would take an eighth of the
tolerance; when every difference reads exactly 0 (the step is below L's rounding: undecided);
or after ``HALVINGS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import field

import numpy as np

from gradcli.errors import UserCodeError
from gradcli.numeric.engine import Engine
from gradcli.numeric.methods import EPS, Method, line_noise, steps
from gradcli.records import mutable_record, record

HALVINGS = 20  # h / 1e6: central4's default step at |x| = 1e6 is 512, on a spread of 1
FLOOR = 64  # coordinates refined at each step whatever the budget (a sample's worth)
# failing coordinates rechecked first (``screen``): the worst, and others spread over the tensor
SCREEN = 64
# the smallest step, relative to max(1, |x|): x + h keeps 10 bits of h
SMALLEST = 2.0**10 * EPS
LINE_POINTS = 8  # points (beside x) on the line where a coordinate's round-off is measured
JUMPED = 64.0  # how much noisier the line through x reads than the one beside it at a jump
STILL = 256  # how far (in steps) L must stay constant on one side to read a flat piece
# ... and at most this far (in steps: about 0.4 of max(1, |x|)): exp(x) @ W at x = -26, its
# slope 5e-12 under a loss rounded at 3e-5, was moved 2^40 steps to x = 1.7e8, where it
# overflowed, and a right layer was refused as returning -inf (outside test t44b F4)
FARTHEST = 2.0**16


@record
class Refined:
    """The coordinates confirmed at a smaller step, and what it took."""

    coords: np.ndarray  # flat indices whose discrepancy shrank away as truncation does
    values: np.ndarray  # their extrapolated derivatives (compared in place of the stencil's)
    noise_at: np.ndarray  # the round-off of each
    halvings: int = 0  # the most halvings a confirmation took (h / 2**halvings)
    unexamined: int = 0  # failing coordinates the budget left out at some step: they still fail
    seconds: float = 0.0  # predicted cost (what it took of --budget)
    # the failing coordinates confirmed on every side they failed on (a one-sided method's
    # other side too: checking/kinkstage.py), what the report counts
    cleared: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # still moving, neither towards a at the rate nor away from it, at the smallest step tried
    unsettled: int = 0
    moving: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # theirs
    # failing coordinates whose values led away from a, and where they led (the extrapolated
    # derivative): what a FAIL quotes as numeric, not the default step's truncation (0.40 for
    # a slope of 1.57 at tanh(t - 1e6))
    led: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    led_values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # failing coordinates whose measured round-off kept every step from deciding them: the
    # step cannot resolve them (a verdict of "cannot resolve", never a FAIL of the gradient)
    noisy: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # of them, those every difference of the default step read exactly 0 (``swallowed``)
    swallowed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # every coordinate differenced at smaller steps, on either side (checking/kinkstage.py)
    tried: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def noise(self) -> float:
        return float(self.noise_at.max(initial=0.0))


def screen(idx: np.ndarray, excess: np.ndarray,
           numeric: np.ndarray | None = None) -> np.ndarray | None:  # fmt: skip
    """Which of the failing flat indices ``idx`` to recheck first: the quarter of SCREEN that
    fail by most (``excess``: how many tolerances off), whose values a report quotes, the
    quarter whose ``numeric`` values (theirs, where given) are largest, and SCREEN spread
    evenly over the others, in order; None where there are too few for a screen to save
    anything (at most twice SCREEN). A numeric far beyond the rest may be a jump over the
    step, not a slope: a straight-through round's 3 jumps among 256 failing elements were
    left unexamined, and their numeric read as 'a scale 3.05e-05' (outside test t41a N3)."""
    if idx.size <= 2 * SCREEN:
        return None
    by = np.nan_to_num(excess, nan=np.inf)  # a value that is not a number fails by most
    worst = idx[np.argsort(-by, kind="stable")[: SCREEN // 4]]
    spread = idx[np.linspace(0, idx.size - 1, SCREEN).astype(np.int64)]
    if numeric is not None:
        size = np.nan_to_num(np.abs(numeric), nan=0.0)
        worst = np.union1d(worst, idx[np.argsort(-size, kind="stable")[: SCREEN // 4]])
    return np.union1d(worst, spread)


def engine_for(engine: Engine, name: str, coloring: bool) -> Engine:
    """The engine whose moves are cheapest and least rounded: a loss's terms (differenced term
    by term, colored against them) where it has them, else ``engine``."""
    split = engine.terms(name) if coloring else None
    return split if isinstance(split, Engine) else engine


def refine(
    engine: Engine,
    name: str,
    idx: np.ndarray,
    analytic: np.ndarray,
    numeric: np.ndarray,
    tol: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    method: Method | None = None,
    coloring: bool = True,
    seconds: float = math.inf,
) -> Refined:
    """Confirm at smaller steps the failing flat indices ``idx`` of ``name``: ``numeric`` holds
    the default step's values of ``method`` (default: the engine's) there, ``tol(noise, ref)``
    each coordinate's tolerance given a stencil's round-off. Each halving refines the coordinates
    still undecided that its predicted cost fits in what is left of ``seconds`` (at least
    ``FLOOR``); the others stop there, unconfirmed (``unexamined``)."""
    m = method or engine.method
    e = engine_for(engine, name, coloring)
    idx = np.asarray(idx, dtype=np.int64)
    empty = Refined(idx[:0], np.zeros(0), np.zeros(0))
    if m.name == "complex" or not idx.size:  # no subtraction: its truncation is h^2 at 1e-20
        return empty
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    x = e.t64[name].ravel()[idx]
    a = np.asarray(analytic, dtype=np.float64).ravel()[idx]
    n = np.asarray(numeric, dtype=np.float64).ravel()[idx]
    swallowed, spent = _swallowed(e, name, idx, x, a, n, m, coloring, seconds)
    got = _halve(e, name, idx, x, a, n, m, tol, coloring, seconds - spent,
                 _input_rounding(e, x, np.maximum(np.abs(a), np.abs(n)), m),
                 skip=swallowed)  # fmt: skip
    got.spent += spent
    # the model's round-off (a few eps of each output moved) misses an output computed from
    # far larger numbers (a layernorm of x = 1e8 + N(0, 1): x - mean carries 1e-8, which the
    # model reads as 1e-16): its differences jitter as 1/h and neither settle nor keep a rate,
    # so the coordinates left undecided, or led away, have their round-off measured, and
    # where it is above the model's they are halved again against it
    doubt = np.flatnonzero(~got.confirmed & ~got.cut
                           & (~got.done | np.isfinite(got.led) | got.quit))  # fmt: skip
    # a step below L's rounding read nothing (every difference 0): where the round-off that
    # implies at the default step covers the failure, no step resolves the coordinate; else
    # the default step's value stands (a zero answer where the default step read 1e-9 with a
    # round-off of 1e-11 fails)
    implied = 4 * got.flat * m.spread / steps(x, e.eps)
    noisy = ((got.flat > 0) & (np.abs(a - n) <= tol(implied, n))) | swallowed
    if doubt.size:
        unit = measured(e, name, idx[doubt], x[doubt], m, coloring)
        got.spent += kinks.moves_seconds(e, name, idx[doubt], coloring, LINE_POINTS)
        # (and those still moving at the rate after HALVINGS, whatever their round-off: a
        # layernorm at 1e6 + 1e-3 N(0, 1) under central4 starts at a step of 740 on a spread
        # of 1e-3, and its right dx failed as computed: outside test t35b F1)
        louder = (unit > 2 * got.model[doubt]) | (~got.done[doubt] & got.rated[doubt])
        again = doubt[louder]
        if again.size:
            floor = np.zeros(idx.size)
            floor[again] = unit[louder]
            # down to the smallest step, whatever HALVINGS: at |x| = 1e11 the default step is
            # 6e5, and a spread of 1 needs 2^-25 of it
            redo = _halve(e, name, idx[again], x[again], a[again], n[again], m, tol, coloring,
                          seconds - got.spent, floor[again], halvings=64)  # fmt: skip
            got.spent += redo.spent
            got.most = max(got.most, redo.most)
            for f in ("values", "noise_at", "led", "done", "confirmed", "cut", "flat", "quit",
                      "rated"):
                getattr(got, f)[again] = getattr(redo, f)
            # undecided at the measured round-off: no step resolves them at the tolerance
            noisy[again] = ~redo.confirmed & ~redo.cut & ~np.isfinite(redo.led)
            got.done[again[noisy[again]]] = True
    # the default step moving L, at the answer's slope and at the one it read alike, by less
    # than the modelled rounding of the outputs it moves reads no slope, and smaller steps
    # read less: two halvings that agree read the outputs' last bits (exp(x) @ W, x[2, 1] =
    # 64 in a row holding e^94: a right 2.8e-27 'confirmed' at 3.9e27, a 'does not match'
    # beside the elements read 0: outside test t47a F3)
    reach = np.maximum(np.abs(a), np.abs(n)) * steps(x, e.eps) * max(map(abs, m.offsets))
    under = (got.model > 0) & (reach <= got.model) & ~swallowed
    got.confirmed[under], got.led[under] = False, np.nan
    noisy |= under
    swallowed = swallowed | under
    confirmed, cut, led = got.confirmed, got.cut, got.led
    away = ~confirmed & np.isfinite(led)
    return Refined(idx[confirmed], got.values[confirmed], got.noise_at[confirmed], got.most,
                   int((cut & ~confirmed).sum()), got.spent, unsettled=int((~got.done).sum()),
                   moving=idx[~got.done],
                   led=idx[away], led_values=led[away], noisy=idx[noisy],
                   swallowed=idx[swallowed])  # fmt: skip


def _swallowed(e: Engine, name: str, idx: np.ndarray, x: np.ndarray, a: np.ndarray,
               n: np.ndarray, m: Method, coloring: bool,
               seconds: float) -> tuple[np.ndarray, float]:  # fmt: skip
    """(which coordinates the default step cannot read, predicted seconds): those read exactly
    0 against a nonzero answer because L's rounding swallowed every move of the stencil. An
    mse with one prediction of 1e6 is a loss of 1.7e11, whose last bit (3e-5) is more than a
    step of 6e-6 moves it at a slope of 0.5 (outside test t31a F3): 0 is no reading, and a
    smaller step reads less (``swallowed``)."""
    out = np.zeros(idx.size, dtype=bool)
    ask = np.flatnonzero((n == 0) & (a != 0) & np.isfinite(a))
    if ask.size:
        out[ask], spent = swallowed(e, name, idx[ask], m, coloring, np.abs(a[ask]), seconds)
        return out, spent
    return out, 0.0


def swallowed(e: Engine, name: str, idx: np.ndarray, m: Method, coloring: bool,
              slope: np.ndarray, seconds: float = math.inf,
              zero: bool = False) -> tuple[np.ndarray, float]:  # fmt: skip
    """(which of the flat indices ``idx`` the default step cannot read, predicted seconds):
    every difference of the method's stencil exactly 0, while L moves on both sides further
    out, where a slope of ``slope`` (each coordinate's: an answer's, or a tolerance) moves it
    by 64 times the rounding of all its outputs, and the move of the slope read there at the
    default step (``zero``: that slope, beyond ``slope``; else ``slope``) is within the
    modelled rounding of the outputs that moved: the step moved L by less than its last bit.
    A flat piece (a relu below 0, a max beside a larger element) stays flat on one side at
    least. For an answer's slope (not ``zero``) a side that moved nothing out there counts as
    moving where that slope moves L by less than the rounding of all its outputs. Nothing is
    asked where the budget has no room (none swallowed)."""
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    offsets = tuple(s for s in m.offsets if s)
    cost = kinks.moves_seconds(e, name, idx, coloring, points=len(offsets) + 2)
    if not idx.size or cost > seconds:
        return np.zeros(idx.size, dtype=bool), 0.0
    H = steps(e.t64[name].ravel()[idx], e.eps)
    D = kinks.moves(e, name, idx, H, offsets, coloring)[0]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        far = np.clip(64 * all_rounding(e) / (slope * H), STILL, FARTHEST)
    far = H * np.exp2(np.ceil(np.log2(np.nan_to_num(far, nan=STILL))))
    try:
        F, scale = kinks.moves(e, name, idx, far, (-1, 1), coloring)
    except UserCodeError:  # a forward of yours not finite that far off: nothing read there
        return np.zeros(idx.size, dtype=bool), cost
    read = np.abs(F[1] - F[0]) / (2 * far)
    at = read if zero else slope
    under = at * H * max(map(abs, offsets)) <= 4 * max(e.unit, EPS) * scale
    if zero:
        return ~np.any(D, axis=0) & np.all(F != 0, axis=0) & under & (read > slope), cost
    # a side that moved nothing that far tells of a flat piece (relu's left, where a slope of
    # 1e-3 beside a loss of 1e11 fails) unless the answer's slope moves L by less than the
    # rounding of all its outputs there: then they are too large to show the coordinate at
    # all (exp(x) @ W, a row of e^117 beside a term of e^50, read 0 for 2e21 on both sides,
    # or on its lower one, and called wrong: outside test t45a F4). A side that moved says
    # how large the outputs it reaches are (``under``)
    moved = F != 0
    mute = (~moved) & (slope * far <= all_rounding(e))[None, :]
    told = np.all(moved | mute, axis=0) & (~np.any(moved, axis=0) | under)
    return ~np.any(D, axis=0) & told, cost


def all_rounding(e: Engine) -> float:
    """The modelled rounding of L over all its outputs (a unit of each |g y|)."""
    return max(e.unit, EPS) * float(np.sum(e.gy))


def _input_rounding(e: Engine, x: np.ndarray, n: np.ndarray, m: Method) -> np.ndarray:
    """Each coordinate's round-off from its own rounding, times the step (``_halve``'s
    floor): a forward computing in float32 puts x + s h within half a float32 ulp of where it
    was put, which moves the loss by that times the slope (``n``: the larger of the analytic
    and the default step's readings, which a step far beyond the function's scale leaves
    near 0) at every point of the stencil, whatever the step. ``sin(x32)`` at |x| = 1e6 rounds x by
    up to 0.03 of a radian, 5% of a slope read at a step of 0.6, and the halvings led to a
    'does not match' of a right backward (outside test t29a F8). 0 for float64 work, whose
    own rounding of x + s h the power-of-two steps avoid."""
    if e.unit <= EPS:
        return np.zeros(x.size)
    # (a rounding measured coarser than float32's, np.round(x, 5), is float32 work's here:
    # float16's cells would excuse a 2% slip, outside test t30a F4)
    dtype = np.float16 if e.unit >= float(np.finfo(np.float16).eps) else np.float32
    with np.errstate(all="ignore"):
        ulp = np.spacing(np.abs(x).astype(dtype)).astype(np.float64)
    ulp = np.where(np.isfinite(ulp), ulp, 0.0)
    return m.spread * ulp / 2 * np.abs(np.where(np.isfinite(n), n, 0.0))


def measured(e: Engine, name: str, idx: np.ndarray, x: np.ndarray, m: Method,
             coloring: bool) -> np.ndarray:  # fmt: skip
    """Each coordinate's stencil round-off times its step (the model's ``roundoff * scale``),
    measured on its own line at the smallest step (methods.line_noise): so short a line that a
    smooth L's differences of order 4 to 6 are far below its rounding."""
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    h = steps(x, SMALLEST)
    D = kinks.moves(e, name, idx, h, tuple(range(1, LINE_POINTS + 1)), coloring)[0]
    # a forward that jumps at x (0.5 sign(x) + x at 0) moves every point beside x by the jump,
    # which the line through L(x) read as round-off: 'cannot resolve ... round-off', where the
    # jump has its own hint (outside test t41a N1, N2). Rounding is no larger at x than beside
    # it, so a line through x far noisier than the one beside it has a jump there
    through, beside = line_noise(D), line_noise(D, through_point=False)
    return 4 * np.where(through > JUMPED * beside, beside, through) * m.spread


@mutable_record
class _Halved:
    """One run of halvings, per coordinate (see ``_halve``)."""

    values: np.ndarray
    noise_at: np.ndarray
    led: np.ndarray
    done: np.ndarray
    confirmed: np.ndarray
    cut: np.ndarray
    model: np.ndarray  # the modelled round-off times the step, at the last step taken
    # stopped where every difference read exactly 0 (``_halve``): the least round-off of L
    # that explains it, |the last value read| * that step, else 0
    flat: np.ndarray
    # stopped by the model's round-off, neither confirmed nor led away: undecided, as those
    # the halvings left moving (a groupnorm at x = 100 + 0.01 N(0, 1), rounded at the 100,
    # read 5e-9 off where the model said 5e-10, and its default step's 5.1 was the FAIL's
    # numeric value for 0.41: outside test t34a F4)
    quit: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    rated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # at the end
    spent: float = 0.0
    most: int = 0


def _halve(e, name, idx, x, a, numeric, m, tol, coloring, seconds, floor,
           halvings: int = HALVINGS, skip: np.ndarray | None = None) -> _Halved:  # fmt: skip
    """The halvings of ``refine`` at the flat indices ``idx`` (x, a, numeric: theirs), each
    step's round-off the larger of the model's and ``floor`` / h (a measured one, or 0);
    ``skip``: those not halved (done, undecided)."""
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    offsets = tuple(s for s in m.offsets if s)
    r = 2.0**m.order
    H = steps(x, e.eps)
    seq = [np.array(numeric, dtype=np.float64), np.full(idx.size, np.nan)]
    roundoff = 4 * EPS * m.spread
    values, noise_at = np.full(idx.size, np.nan), np.zeros(idx.size)
    led = np.full(idx.size, np.nan)
    model = np.zeros(idx.size)
    flat_unit = np.zeros(idx.size)
    done = np.zeros(idx.size, dtype=bool) if skip is None else skip.copy()  # or stopped
    confirmed = np.zeros(idx.size, dtype=bool)
    cut = np.zeros(idx.size, dtype=bool)  # stopped by the budget
    on_rate = np.zeros(idx.size, dtype=bool)  # the previous step's differences kept the rate
    low = np.zeros(idx.size, dtype=bool)  # ... kept a lower rate exactly (decide)
    still = np.zeros(idx.size, dtype=bool)  # L read constant on the stencil at a step taken
    past = np.zeros(idx.size, dtype=bool)  # halved on past the round-off's stop (below)
    quit = np.zeros(idx.size, dtype=bool)
    spent, most = 0.0, 0
    for k in range(1, halvings + 1):
        h = H / 2.0**k
        todo = np.flatnonzero(~done & (h >= SMALLEST * np.maximum(1.0, np.abs(x))))
        if not todo.size:
            break
        cost = kinks.moves_seconds(e, name, idx[todo], coloring, points=len(offsets))
        if cost > seconds - spent:  # the first ones, as the detector takes them
            keep = int(min(todo.size, max(FLOOR, todo.size * max(seconds - spent, 0) / cost)))
            cut[todo[keep:]] = done[todo[keep:]] = True
            todo = todo[:keep]
            cost = kinks.moves_seconds(e, name, idx[todo], coloring, points=len(offsets))
        spent += cost
        D, scale = kinks.moves(e, name, idx[todo], h[todo], offsets, coloring)
        # every difference exactly 0 where the default step moved L: the step is below L's
        # rounding (a confident classifier's loss, rounded at the 1, moves in jumps of the 1's
        # last bit), and 0 is no reading of the slope (a zero answer was confirmed on it): the
        # coordinate stops undecided, no smaller step reads more
        flat = ~np.any(D, axis=0) & (numeric[todo] != 0)
        last = seq[1][todo] if k >= 2 else seq[0][todo]
        # unless L is constant there: a piece the default step's stencil left by crossing a
        # kink (max(x) at 1.0 beside 1.0001, relu at -5e-5: central4's 2h crossed them,
        # outside test t31a F4), where 0 is the reading, as at every smaller step. The slope
        # read before (or claimed) must move L far beyond its modelled rounding at this step,
        # and L must not move on one side at least as far as STILL steps: a rounding at a
        # larger number inside the forward (the confident loss's 1) leaves no side flat there
        if (new := flat & ~still[todo]).any():
            reach = np.maximum(np.abs(a[todo]), np.abs(last)) * h[todo] * max(map(abs, offsets))
            rounding = 64 * all_rounding(e) + 16 * floor[todo]
            ask = np.flatnonzero(new & (reach > rounding))
            if ask.size:
                spent += kinks.moves_seconds(e, name, idx[todo[ask]], coloring, points=2)
                far = kinks.moves(e, name, idx[todo[ask]], h[todo[ask]], (-STILL, STILL),
                                  coloring)[0]  # fmt: skip
                still[todo[ask]] = np.any(far == 0, axis=0)
        flat &= ~still[todo]
        flat_unit[todo[flat]] = np.abs(last[flat]) * h[todo[flat]]
        done[todo[flat]] = True
        todo, D, scale = todo[~flat], D[:, ~flat], scale[~flat]
        if not todo.size:
            continue
        at = {s: D[i] for i, s in enumerate(offsets)}
        at[0] = np.zeros(todo.size)
        n = m.apply(at) / h[todo]
        model[todo] = roundoff * scale
        noise = np.maximum(roundoff * scale, floor[todo]) / h[todo]
        n0, n1 = seq[0][todo], seq[1][todo]
        if k == 1:
            stop = _settled(a[todo], n0, n, tol(noise, n))
        else:
            ok, R, noise_r, stop, rated, held = decide(a[todo], n0, n1, n, noise, r, tol,
                                                        on_rate[todo], noise / 2.0**k,
                                                        past[todo], low[todo])  # fmt: skip
            low[todo] = held
            hit = todo[ok]
            values[hit], noise_at[hit] = R[ok], noise_r[ok]
            away = stop & ~ok
            led[todo[away]] = R[away]
            confirmed[hit] = done[hit] = True
            most = k if ok.any() else most
            on_rate[todo] = rated
        done[todo[stop]] = True
        # the next step's round-off would take an eighth of the tolerance: no use halving on,
        # unless it is a measured round-off still below the last halving's change (truncation
        # yet to shrink: the best step balances the two)
        spent_noise = 16 * noise > tol(np.zeros(todo.size), n)
        change = np.abs(n - seq[1][todo] if k >= 2 else n - n0)
        # (or a model's, where the values still move 64 times beyond it: central4's step of
        # 7e-4 on a layernorm's spread of 1e-3 read 1.4e-6 off at the rate, and a round-off
        # of 4e-10 stopped it one halving short of confirming: outside test t34a F1; a
        # saturated attention's switch crossed by the default step read 2.33, then 0.015,
        # then would read 0, its slope: t35b F8)
        ahead = (floor[todo] > 0) | (change > 64 * noise)
        spent_noise &= ~(ahead & (2 * noise < change))
        # nor while the values move far beyond the round-off and shrink at less than half
        # the rate: truncation's changes shrink at the rate, a kink the stencil still
        # crosses makes them grow, or shrink slower (max at 1.0 beside 1.00001 under
        # central4, whose 2h reached past it at h/32: outside test t32a F2); the smaller
        # steps that leave it read the piece beyond
        if k >= 2:
            change, before = np.abs(n - seq[1][todo]), np.abs(seq[1][todo] - n0)
            going = spent_noise & (change * r / 2 > before) & (change > 16 * noise)
            # (where only values exact to the last bit confirm: the round-off now loosens
            # the tolerance as far as truncation was)
            past[todo[going]] = True
            spent_noise &= ~going
        if k == 1 and (back := spent_noise & ~stop).any():
            # one halving gives no rate, and the round-off forbids the next: the third value
            # is read at twice the default step instead, where it is smaller (a summed loss's
            # round-off stopped a squared hinge's O(h) truncation at two values, t23 F10)
            twice = _twice(e, name, idx[todo[back]], H[todo[back]], a[todo[back]], n0[back],
                           n[back], noise[back], m, r, tol, coloring, seconds - spent)  # fmt: skip
            if twice is not None:
                ok, R, noise_r, cost = twice
                spent += cost
                hit = todo[back][ok]
                values[hit], noise_at[hit] = R[ok], noise_r[ok]
                confirmed[hit] = True
                most = max(most, 1) if ok.any() else most
        quit[todo[spent_noise & ~done[todo]]] = True
        done[todo[spent_noise]] = True
        seq[0][todo], seq[1][todo] = n1 if k >= 2 else n0, n
    quit &= ~confirmed
    return _Halved(values, noise_at, led, done, confirmed, cut, model, flat_unit, quit,
                   on_rate, spent, most)  # fmt: skip


def _twice(e, name, idx, H, a, n0, n1, noise, m, r, tol, coloring, seconds):  # fmt: skip
    """(confirmed, R, R's round-off, predicted cost) from the stencil at 2H, H (``n0``) and H/2
    (``n1``, ``noise`` its round-off), or None where the budget has no room for it."""
    from gradcli.numeric import kinks  # LAZY: see ARCHITECTURE.md, "Start-up"

    offsets = tuple(s for s in m.offsets if s)
    cost = kinks.moves_seconds(e, name, idx, coloring, points=len(offsets))
    if cost > seconds:
        return None
    D = kinks.moves(e, name, idx, 2 * H, offsets, coloring)[0]
    at = {s: D[i] for i, s in enumerate(offsets)}
    at[0] = np.zeros(idx.size)
    wide = m.apply(at) / (2 * H)
    ok, R, noise_r, _, _, _ = decide(a, wide, n0, n1, noise, r, tol,
                                     np.zeros(idx.size, dtype=bool), noise / 2)  # fmt: skip
    return ok, R, noise_r, cost


def _settled(a: np.ndarray, n0: np.ndarray, n1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """After one halving: values it moved by a sixteenth of the tolerance (and of a sixteenth
    of themselves), far from a (a linear piece, or only round-off: a wrong gradient of linear
    or conv2d, the usual failing check), which no smaller step brings to a; stopping there
    halves a failing check's cost."""
    moved = np.abs(n0 - n1)
    return (16 * moved <= np.minimum(t, np.abs(n1) / 16)) & (t + 4 * moved < np.abs(a - n1))


def decide(a, n0, n1, n2, noise, r, tol, on_rate, base=None, exact_only=None,
           low_before=None):  # fmt: skip
    """(confirmed, R, R's round-off, stop, rated, low) from three successive values; ``base``:
    the default step's round-off (None: ``noise``), what a lower rate's R is held to;
    ``exact_only``: where only two values the same to the last bit confirm (``_halve``: its
    round-off would have stopped the halvings there); ``low_before``: where a lower rate held
    exactly at the step before (``low``, returned: at this one)."""
    d1, d2 = n0 - n1, n1 - n2
    mu = np.abs(d2 - d1 / r)  # how far from the rate: bounds R's own error
    R = n2 - d2 / (r - 1)
    noise_r = noise * (r + 0.5) / (r - 1)  # R = (r n2 - n1) / (r - 1)
    t = tol(noise_r, R)
    off = np.abs(a - R)
    ok = off + mu <= t
    # the rate held at two steps in a row, or the values settled (two halvings moved them by
    # less than half the tolerance: a linear piece, or round-off), and a is not where they
    # lead: a wrong value (or a kink at x, for the detector), which no smaller step changes.
    # Not on one step's rate: far from the asymptotic regime (central4's step 8 on a spread
    # of 1) it may hold by chance, and a stop there would be a false failure
    rated = mu <= np.abs(d2) / 4
    # two values the same to the last bit: the stencil's truncation is below its rounding
    # there (or L is a polynomial of its order, exact): the value read, not a sequence at a
    # rate (the piece beyond a kink the larger steps crossed: 0.88, 1.06, 1, 1)
    # (to the tolerance without round-off: the two read none)
    exact = (d2 == 0) & (d1 != 0) & (np.abs(a - n2) <= tol(np.zeros(np.shape(n2)), n2))
    # ... or the same to their round-off after a change far beyond it: a piece linear in the
    # coordinate but summed in another order by each copy (a leaky relu 5e-4 from its kink,
    # crossed by central4's 2h, read 0.000392, then 0.0341827351165, 0.0341827351190; the
    # halvings stopped at the round-off, and the right backward failed: outside test t53b F2).
    # A truncation error that moved by no more than that is no more than a few of it
    agree = (np.abs(d2) <= 4 * noise) & (np.abs(d1) > 64 * noise) & (
        np.abs(a - n2) <= tol(noise, n2))  # fmt: skip
    ok = ok | exact | agree  # (R is n2 there, or within its round-off)
    # (settled relative to the values too: a step far beyond the function's scale saturates
    # it, and its small values move as 1/h, by half of themselves per halving)
    settled = np.abs(d1) + np.abs(d2) <= np.minimum(t / 2, np.abs(n2) / 64)
    # (8 mu: far from the asymptotic regime R's error is a few mu, not r / (r - 1)^2 of one:
    # a batchnorm at 1e6 + 1e-3 N(0, 1) read R 2.2 mu from its slope at the last halving, and
    # its right dx was 'led away' to 566.556 for 566.534: outside test t35b F2)
    stop = ok | (((rated & on_rate) | settled) & (8 * mu + t < off))
    # L is C^k but not C^(k+1) at x (0.5 relu(x)^2, a squared hinge, Huber at |x| = 1, ELU at
    # 0): the stencil's error shrinks at a lower rate than the method's order (central's is
    # O(h), the jump of the curvature, not O(h^2)), and at a summed loss's round-off the
    # halvings stop before it is below the tolerance (t23 F10). So each lower rate, 2^q for q
    # below the order, is tried too: its R is exact on that order. R's error is at most
    # r / (r - 1)^2 mu at any order at or above the rate's (2 mu at the rate 2); below it
    # the bound fails, so the rate must hold at this step. A bug's |a - R| is its size at
    # every rate, which no rate confirms. Nor does its round-off, amplified at the smaller
    # steps and by the extrapolation, raise the tolerance beyond the default step's: at a loss
    # of 1e4 it reached 7e-6 and excused a slope 5.5e-6 off, which the default step fails
    held_to = noise if base is None else base
    low = np.zeros(np.shape(n2), dtype=bool)
    for q in range(int(round(math.log2(r))) - 1, 0, -1):
        rate = 2.0**q
        mu_q = np.abs(d2 - d1 / rate)
        R_q = n2 - d2 / (rate - 1)
        noise_q = noise * (rate + 0.5) / (rate - 1)
        held = mu_q <= np.abs(d2) / 4
        fits = held & ~ok & (np.abs(a - R_q) + max(1.0, rate / (rate - 1) ** 2) * mu_q
                             <= tol(np.minimum(noise_q, held_to), R_q))  # fmt: skip
        R, noise_r = np.where(fits, R_q, R), np.where(fits, noise_q, noise_r)
        ok, stop = ok | fits, stop | fits
        # the lower rate held exactly (to a millionth of a change far above the round-off) at
        # two steps in a row, and a far beyond where it leads: a wrong value at such a point,
        # which no smaller step changes (x |x| at 0 reads h, h / 2, h / 4 under central
        # differences, never settling, and a backward giving 1 there 'could not be resolved':
        # outside test t50a F1). Not at one step: central4 crossing a max's kink 3e-5 away read
        # -0.096, -0.0107, 0, a blend its weights put at the rate 8 once
        exact_q = (mu_q <= 1e-6 * np.abs(d2)) & (np.abs(d2) > 16 * noise)
        low |= exact_q
        led = exact_q & ~stop & (
            8 * mu_q + tol(np.minimum(noise_q, held_to), R_q) < np.abs(a - R_q))
        led &= np.zeros(np.shape(n2), dtype=bool) if low_before is None else low_before
        R, noise_r = np.where(led, R_q, R), np.where(led, noise_q, noise_r)
        stop = stop | led
    if exact_only is not None:
        loose = exact_only & ok & ~exact
        ok, stop = ok & ~loose, stop & ~loose
    return ok, R, noise_r, stop, rated, low
