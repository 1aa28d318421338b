"""Ties on hyperplanes that no equal values show: pieces entered by moving a whole tensor.

``relu(x W1ᵀ + b1) W2ᵀ`` at whole-number x, W1 and b1: a hidden unit whose pre-activation sums
to exactly 0 sits at relu's kink, though x, W1 and b1 hold no tie of values there (its zero is
``1 * 2 + 1 * (-1) + (-1)``). Moving one coordinate of x moves every tied unit of its row, some
up and some down, so each side of it switches some of them on. Torch's value (every tied unit
off) then lies on neither side, or the two sides agree by coincidence and the value reads as a
mismatch. Yet that piece touches the point: moving the whole bias down by tau puts every tied
unit below its kink at once, and CS231n's ``x >= 0`` is the bias moved up. The equal values
the tie search groups (numeric/pieces.py) are no proxy here: x's zeros share their value with
W1's and b1's, one group of thousands that no order of theirs describes.

So the failing coordinates the tie search left unexplained (or put off their value by a small
group's orders, which are every piece of a tie of equal values but not of a hyperplane's) are
read at ``x + tau d``, d each tensor under test moved whole (every coordinate by the same
amount, so its own order ties stay), down then up, the tensor with fewest coordinates first
(the bias), where the move has a kink along it at all (its two one-sided slopes differ: an
output's bias has none). A direction gives a piece when both one-sided slopes of every
coordinate read agree there (no kink within the stencils), extrapolated to tau -> 0 from tau
and 2 tau (4 tau too where they differ: they must then change as a smooth piece's do), and when
the loss's slope along d from x is that piece's slope along d extrapolated to x (a move that
crossed another kink before tau, or a jump at x, reads no piece touching the point).

Two relu layers tie units in both (zero rows and zero biases tie every unit of their rows):
the first's bias moved alone leaves the second's tied units moved by sums of weights either
way, the second's alone leaves the first's tied, so no one tensor's move enters the piece of
a rule used in both. Two tensors moved together do, the far one RATIO times as far (both down:
torch's piece of both layers; both up: CS231n's ``x >= 0``; opposite ways: one of each, outside
test t71a F2). A direction that the rest of the coordinates cannot be read along (a kink within
a stencil there) leaves the mix; the others may still give it.

The gradient passes there when one mix of the pieces read (weights >= 0 adding up to 1, the
same for every coordinate) gives every coordinate read within tolerance: the failing ones,
their equal values where there are few (a tie of ``maximum(a, b)`` across a and b: the piece a
moved up gives a the whole gradient, and a backward giving b its own too must not pass on a's
reading), and a spread of the coordinates that passed alone at a kink (each with a value
between its sides, which a tie's crowd would have held with the rest: torch's dx 0.1 off at a
zero row's coordinate passed as soon as its tie's failing coordinate was explained apart). A
mix of pieces touching the point is a valid gradient there (Clarke's), so a pass is sound; no
mix proves nothing, and the coordinates stay as the tie search left them. A few coordinates
are read first, along every direction; only the directions the mix found there takes are read
at the rest.
"""

from __future__ import annotations

import numpy as np

from gradcli.numeric import nnls
from gradcli.numeric.methods import one_sided, one_sided_noise
from gradcli.records import record

SAMPLE = 8  # failing coordinates read along every direction before the rest are
# coordinates that passed at a kink read with them, at most: a tie's crowd reads up to 256 of
# its members together (numeric/pieces.py's LARGE)
KINKED = 256
GROUP = 256  # coordinates read in one stencil's copies at most (each one four copies)
LEAST = 2  # directions read at the sample whatever the budget: the bias down, then up
# coordinates read whatever the budget along the directions that explained the sample (the tie
# search before this may have spent it all: a ReLU MLP's 584 failing coordinates, on 10,000
# copies, after its 60 s)
FLOOR = 1024 + KINKED
OFFSETS = (1, 2, -1, -2)  # one-sided stencils, right then left
NUDGE = 16  # tau in steps (numeric/pieces.py's): the stencils stay clear of the point's ties
# ... then this much closer, and closer again, where the move crossed another kink first: data
# on a grid of 2^-13 put other units 1.2e-4 from the tie, tau 1e-4 (outside test t71a F1)
NEARER = (1.0, 1 / 16, 1 / 256)
RATIO = 256  # two tensors moved together: the far one this many times as far as the near one


@record
class Shifted:
    """What whole-tensor moves explained: the failing positions one mix gives, the mix's value
    at each (compared in place of the central difference) and its uncertainty."""

    explained: np.ndarray  # positions whose gradient one mix of the pieces read gives
    values: np.ndarray
    noise: np.ndarray
    directions: int = 0  # directions read
    seconds: float = 0.0  # predicted
    # whether one mix gave every coordinate read (None: no piece read, or the budget ended
    # the reading first): ``consistent``'s answer
    mixed: bool | None = None


def _directions(space, h: float, rtol: float):
    """(move {tensor: weight}, the loss's slope that way from x), yielded as they are needed
    (a sample the first explains reads no other's slope): each tensor with a kink along its
    whole move (its two one-sided slopes differ: some tie switches), down then up, the fewest
    coordinates first; then two of them moved together, one RATIO times as far as the other,
    the same way, then opposite ways. A move with no kink enters no other piece (an output's
    bias)."""
    sizes = np.diff(space.start)
    noise = 4 * one_sided_noise(float(space.engine.gy.sum()), h, space.engine.unit)
    kinked = []
    for t in np.argsort(sizes, kind="stable").tolist():
        down, up = _entered(space, {t: -1.0}, h), _entered(space, {t: 1.0}, h)
        if abs(up + down) > noise + rtol * max(abs(up), abs(down)):
            yield {t: -1.0}, down
            yield {t: 1.0}, up
            kinked.append(t)
    # ties in two layers: the first layer's bias down turns its tied units off, and moves the
    # next layer's by sums of weights either way; that layer's bias moved RATIO times as far
    # turns those off too (torch's piece of both, or CS231n's, up)
    # (the same way first: every tied unit off, then on; then one layer's off, the other's on)
    for same in (1.0, -1.0):
        for far in kinked:
            for near in kinked:
                for sign in (-1.0, 1.0):
                    if near != far:
                        move = {near: sign, far: same * sign * RATIO}
                        yield move, _entered(space, move, h)


def _read(space, members: np.ndarray, move: dict[int, float], tau: float, h: float,
          floor: np.ndarray, rtol: float):  # fmt: skip
    """At x with tensors moved whole by ``move`` times ``tau``: (each member's gradient (k,), its
    round-off (k,), the loss's slope along the move, its tolerance), or None where a member's
    two one-sided slopes, or the move's own, disagree (a kink within a stencil). ``h``: the
    stencils' step, the members' and the move's own."""
    k = members.size
    steps = np.asarray(OFFSETS, dtype=np.float64) * h
    # rows: the moved point, each member's stencil there, the whole move's stencil there
    along = np.r_[tau, np.full(len(OFFSETS) * k, tau), tau + steps]
    delta = np.zeros((along.size, k))
    for j in range(k):
        delta[1 + len(OFFSETS) * j + np.arange(len(OFFSETS)), j] = steps
    d = space.moved(members, delta, whole=(move, along))
    g = space.engine.g.ravel()
    dd = d @ g
    D = (dd[1 : 1 + len(OFFSETS) * k] - dd[0]).reshape(k, len(OFFSETS))
    right, left = one_sided(D[:, 0], D[:, 1], h, 1), one_sided(D[:, 2], D[:, 3], h, -1)
    scale = float(space.engine.gy.sum()) + float(np.abs(dd).max(initial=0.0))
    noise = np.full(k, one_sided_noise(scale, h, space.engine.unit))
    grad = (right + left) / 2
    if np.any(np.abs(right - left) > np.maximum(floor, noise) + rtol * np.abs(grad)):
        return None
    E = dd[1 + len(OFFSETS) * k :] - dd[0]
    up, down = one_sided(E[0], E[1], h, 1), one_sided(E[2], E[3], h, -1)
    dnoise = one_sided_noise(scale, h, space.engine.unit)
    slope = (up + down) / 2
    if abs(up - down) > dnoise + rtol * abs(slope):
        return None
    return grad, noise, slope, dnoise


def _piece(space, members: np.ndarray, move: dict[int, float], entered: float, h: float,
           floor: np.ndarray, rtol: float, near: float = 1.0):  # fmt: skip
    """(members' gradients (k,), uncertainty (k,)) of the piece that moving tensors whole by
    ``move`` enters from x (the loss's slope that way, read at steps ``near`` h:
    ``entered``), extrapolated to the point, or None; ``near``: tau's scale."""
    tau = NUDGE * h * near
    reads = []
    for s in (1, 2, 4):
        if s == 4 and np.all(np.abs(reads[1][0] - reads[0][0]) <= reads[0][1]) and abs(
                reads[1][2] - reads[0][2]) <= reads[0][3]:
            break  # one linear piece (to tolerance) along the ray
        # (the whole stencil shrinks with tau: a member's reach must stay within it)
        read = _read(space, members, move, s * tau, h * near, floor, rtol)
        if read is None:
            return None
        reads.append(read)
    (g1, n1, s1, e1), (g2, _, s2, _) = reads[:2]
    grads, unc = 2 * g1 - g2, n1 + np.abs(g2 - g1)
    slope, sunc = 2 * s1 - s2, e1 + abs(s2 - s1)
    if len(reads) == 3:
        g4, s4 = reads[2][0], reads[2][2]
        # a smooth piece's reads change linearly in tau (to tolerance)
        if np.any(np.abs(g4 - g2 - 2 * (g2 - g1)) > np.maximum(floor, n1) + rtol * np.abs(g2)):
            return None
        if abs(s4 - s2 - 2 * (s2 - s1)) > e1 + rtol * abs(s2):
            return None
    # the move's own slope just off x: the piece read is the one entered from x (a ray that
    # crossed another kink before tau, or a jump at x, has another)
    if abs(entered - slope) > 2 * sunc + rtol * abs(slope):
        return None
    return grads, unc


def _entered(space, move: dict[int, float], h: float) -> float:
    """The loss's one-sided slope along tensors moved whole by ``move``, from x: the piece
    the move enters (the other side may be another)."""
    along = np.array([h, 2 * h])
    dd = space.moved(np.zeros(0, dtype=np.int64), np.zeros((2, 0)), whole=(move, along))
    near, far = dd @ space.engine.g.ravel()
    return float(one_sided(near, far, h, 1))


def explain(space, members: np.ndarray, partners: np.ndarray, kinked: np.ndarray,
            a: np.ndarray, floor: np.ndarray, rtol: float, seconds: float,
            each: float) -> Shifted:  # fmt: skip
    """Which of the failing ``members`` (positions in ``space``) one mix of the pieces
    whole-tensor moves enter gives, a mix that gives ``partners`` too (their equal values,
    which a tie of theirs may share its gradient with) and the ``kinked`` (coordinates that
    passed one-sidedly at a kink, each with a value between its two sides alone; KINKED of
    them, spread): the crowd of a tie holds its members together so. ``a``, ``floor``: every
    position's gradient and absolute tolerance. Reads while ``seconds`` last (LEAST
    directions at the sample whatever; ``each``: a copy's seconds)."""
    fails = members.size
    members = np.r_[members, partners, kinked[_spread(kinked.size, KINKED)]].astype(np.int64)
    v, floor = a[members], floor[members]
    k = members.size
    h = float(space.h[members].max())
    start = space.copies
    pick = np.r_[_spread(fails, SAMPLE), fails + _spread(k - fails, SAMPLE)]
    read = 0
    nothing = members[:0], v[:0], v[:0]

    def spent() -> float:
        return (space.copies - start) * each

    def cost(n: int) -> float:  # a direction's reads: up to three, and the move's own
        return (3 * (2 + len(OFFSETS) * (n + 1)) + 1 + len(OFFSETS)) * each

    def fitted(grads: list[np.ndarray], noise: np.ndarray, sel: np.ndarray):
        """(the nearest mix's values, whether each lies within tolerance of v, its weights)."""
        P = np.array(grads)
        scale = np.maximum(floor[sel], noise) + rtol * np.abs(v[sel])
        w = nnls.mix(P, v[sel], scale)
        near = w @ P
        return near, np.abs(v[sel] - near) <= np.maximum(floor[sel], noise) + rtol * np.abs(
            near), w  # fmt: skip

    # the sample, along every direction until one mix explains it
    found: list[tuple[tuple[dict[int, float], float, float], np.ndarray, np.ndarray]] = []
    noise = np.zeros(pick.size)
    weights = None  # the sample's mix, once it explains the sample
    cut = False
    for move, entered in _directions(space, h, rtol):
        if read >= LEAST and spent() + cost(pick.size) > seconds:
            cut = True
            break
        read += 1
        for near in NEARER:
            if near != 1.0:
                entered = _entered(space, move, h * near)
            piece = _piece(space, members[pick], move, entered, h, floor[pick], rtol, near)
            if piece is not None:
                break
        if piece is None:
            continue
        found.append(((move, entered, near), *piece))
        noise = np.maximum(noise, piece[1])
        _, inside, w = fitted([f[1] for f in found], noise, pick)
        if inside.all():
            weights = w
            break
    if weights is None:  # (pieces read, none of whose mixes gives the sample: no mix)
        return Shifted(*nothing, read, spent(), None if cut or not found else False)
    every = found
    rest = np.setdiff1d(np.arange(k), pick)
    floor_ok = k <= FLOOR  # (a sample explained: the rest read whatever the budget)

    def at_rest(found: list) -> tuple[list, list, list] | None:
        """The pieces of ``found`` read at every member (those a kink within a stencil stops
        at the rest leave, a piece of no mix), or None where none is left or the budget
        ended first."""
        nonlocal read
        grads = [np.zeros(k) for _ in found]
        uncs = [np.zeros(k) for _ in found]
        for g, u, (_, at, z) in zip(grads, uncs, found, strict=True):
            g[pick], u[pick] = at, z
        for part in np.array_split(rest, -(-rest.size // GROUP)) if rest.size else []:
            if not floor_ok and spent() + len(found) * cost(part.size) > seconds:
                return None  # (none partly read)
            kept = []
            for i, (move, entered, near) in enumerate(f[0] for f in found):
                read += 1
                piece = _piece(space, members[part], move, entered, h, floor[part], rtol, near)
                if piece is not None:
                    grads[i][part], uncs[i][part] = piece
                    kept.append(i)
            found, grads, uncs = ([v[i] for i in kept] for v in (found, grads, uncs))
            if not found:
                return None
        return found, grads, uncs

    # the rest read along the directions the sample's mix takes, then (where those give no mix
    # of the whole: a sample of 8 fitted by other weights than the rest's) along every one read
    taken = [f for f, x in zip(found, weights, strict=True) if x > 1e-9] if pick.size < k else (
        found)  # fmt: skip
    missed = None  # (a pass read to its end gave no mix: a later one cut short stays so)
    for along in (taken, every) if len(taken) < len(every) else (taken,):
        got = at_rest(along)
        if got is None:
            return Shifted(*nothing, read, spent(), missed)
        _, grads, uncs = got
        unc = np.max(uncs, axis=0)
        near, ok, _ = fitted(grads, unc, np.arange(k))
        if ok[fails:].all():
            break
        missed = False
    if not ok[fails:].all():
        return Shifted(*nothing, read, spent(), False)
    mixed = bool(ok.all())
    ok[fails:] = False
    return Shifted(members[ok], near[ok], unc[ok], read, spent(), mixed)


def consistent(space, kinked: np.ndarray, a: np.ndarray, floor: np.ndarray, rtol: float,
               seconds: float, each: float) -> Shifted:  # fmt: skip
    """Whether one mix of the pieces whole-tensor moves enter gives every tensor's gradient
    at the coordinates that passed at a kink (``kinked``, positions in ``space``: up to KINKED
    of them, spread), where nothing held the tensors' ties together (numeric/balance.py judged
    no move: two relu layers, each output summing kinks of both orientations). Each tensor's
    values may lie between their own sides while taking different rules: dx from ``a > 0``
    beside dW1 and db1 from ``a >= 0``, no gradient of the function, passed (outside test t73a
    F1). A mix is one tie rule for every tensor; pieces read and no mix of them (``mixed``
    False) proves nothing wrong, but nothing verified the rule either."""
    none = np.zeros(0, dtype=np.int64)
    return explain(space, none, none, kinked, a, floor, rtol, seconds, each)


def _spread(n: int, most: int) -> np.ndarray:
    """Up to ``most`` of ``range(n)``, evenly spread."""
    return np.unique(np.linspace(0, n - 1, min(n, most)).round().astype(np.int64))
