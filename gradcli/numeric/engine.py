"""Numerical gradients by finite differences, and nothing else.

The gradient of the scalar ``L = sum(grad_output * forward(tensors))`` with respect to every
coordinate of a tensor, from private float64 (or complex128) copies; the caller's arrays are
never touched. Three ideas make it fast while staying an honest finite difference:

- stacking: perturbed copies go on a leading "probe" axis, one batched forward call per chunk;
- coloring (Curtis-Powell-Reid): coordinates whose output footprints (declared by the layer,
  verified here) do not overlap are perturbed together, and every output difference is
  attributed to the one coordinate that owns it; conv2d's X needs kh*kw*C_in colors, not H*W*C_in;
- differencing outputs before reducing, so untouched outputs cancel exactly;
- incremental evaluation: where coloring cannot help (attention's dense tensors), a layer may
  evaluate the loss at a moved coordinate recomputing only what that coordinate moves
  (``Layer.perturbed``); it is checked against the plain forward first, and dropped if it
  disagrees.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Mapping
from dataclasses import field
from typing import Any

import numpy as np

from gradcli.errors import OptionError, UserCodeError
from gradcli.layers import Layer
from gradcli.numeric import cost, termwise
from gradcli.numeric.coloring import (
    Coloring,
    SourceColoring,
    build_coloring,
    color_groups,
    source_coloring,
)
from gradcli.numeric.incremental import (
    INCREMENTAL_CHUNK,
    VERIFY_PICKS,
    loss_differences,
    verify_incremental,
)
from gradcli.numeric.methods import EPS, offgrid_noise, one_sided, one_sided_noise, steps
from gradcli.numeric.stacking import StackedForward
from gradcli.records import mutable_record, record

# the moves of a coordinate_noise line, in steps: 16 points half a step apart from 1/2 to 8, each
# a fraction of that off the grid, fixed (the same tolerances on every run; methods.
# offgrid_noise). The fractions are those of sqrt(2), sqrt(3), ..., sqrt(53), which no integers
# relate: an output rounded at a far larger number is a staircase along the line, and only
# slopes near a point of a 16-dimensional lattice sit at the same place on every stair.
# Golden-ratio fractions, k + (k phi mod 1) / 2, combine two integer sequences (k and
# floor(k phi)), so slopes near a 2-dimensional lattice did: a confident cross-entropy's term
# moving 45.8 of its last bits a step read as smooth, and 3% of random confident classifiers
# failed their correct dx. On staircases of random slope the estimate of 8 such points fell
# short of the stencil's error once in a thousand coordinates, 16 in none of 40,000
NOISE_OFFSETS = tuple(k / 2 + 0.25 * (math.sqrt(p) % 1.0) for k, p in enumerate(
    (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53), start=1))

# how far beyond its step a coordinate is moved to tell the outputs it cannot move
# (Engine.reach_noise): a share still invisible there is below 1/1024 of a last bit a step
REACH_FACTOR = 1024.0
FOOTPRINT_REACH_MOST = 2**25  # colors times outputs that Engine.footprint_reach adds up
# further out, where the outputs a coordinate leaves unmoved at REACH_FACTOR steps dominate
# its bound (the first: or a move of max(1, |x|), the larger): exp at 300 beside elements of
# 0.1 needs 2^411, a move of 3e118; the last moves x by 1e284
FAR_FACTORS = (2.0**20, 2.0**40, 2.0**80, 2.0**160, 2.0**320, 2.0**640, 2.0**960)


@record
class Bends:
    """What the kink screen (numeric/bends.py) reads from central differences' own points and
    the output at x, per coordinate (flat; 0 where not read): ``sums[k]``, the sum over the
    outputs of |g (y(x + s h) + y(x - s h) - 2 y(x))| for the stencil's k-th step s (1, and 2
    for central4), the two one-sided differences' disagreement output by output, times s h;
    ``span`` (central's), |sum g (y(x + h) - y(x - h))|, the loss's move across the stencil
    (no more than the sum of each output's: read off the central difference, free); ``moved``,
    the sum of |g y| over the outputs the coordinate moved (their round-off's scale)."""

    sums: np.ndarray
    span: np.ndarray
    moved: np.ndarray


@mutable_record
class TensorNumerics:
    """How one tensor's numerical gradient was obtained."""

    coordinates: int
    colors: int  # coordinates perturbed per forward pass ~ coordinates / colors
    forward_passes: int
    coloring: bool
    note: str = ""  # e.g. why coloring was abandoned
    noise: float = 0.0  # estimated round-off of the worst element of this numerical gradient
    # the estimate per element (the tensor's shape): an element is held to its own round-off,
    # not to the worst element's (a huge output moved by one coordinate raises only its own)
    noise_at: np.ndarray | None = field(default=None, repr=False)
    incremental: bool = False  # evaluated by the layer's incremental path (Layer.perturbed)
    # the largest one-sided slope read at a kink itself (numeric/kinks.py): the values
    # compared there lie between two slopes, which the step resolved even where both values
    # and the gradient are 0
    kink_slopes: float = 0.0
    # ``noise`` counts every output, the coordinates' footprints being unknown (no coloring):
    # Engine.reach_noise reads which outputs they can move at all when that decides
    unseen: bool = False
    # the round-off per element over every output of its footprint, moved or read unmoved
    # (known footprints only: coloring, terms): an output a coordinate moves by less than its
    # last bit reads exactly 0 there, its share of the gradient lost in its rounding
    noise_reach: np.ndarray | None = field(default=None, repr=False)
    # central differences of a layer whose kinks are not known: the kink screen's readings
    bends: Bends | None = field(default=None, repr=False)
    # where the footprints are unknown (``unseen``): each element's largest |gradient| read
    # from the same differences under NATURAL_SIGNS upstream gradients of |g| with random signs,
    # the size of its terms where they cancel under g (a softmax of your own under ones)
    natural: np.ndarray | None = field(default=None, repr=False)


@functools.cache
def _takes_unit(kinks: Any) -> bool:
    """Whether a layer's kink map takes the forward's epsilon (svm's, which rounds as the
    forward does): read once per map, not at every call of the kink stages."""
    return "unit" in inspect.signature(kinks).parameters


class Engine(StackedForward):
    """Finite differences of one layer at one point. ``tensors`` are copied to float64."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # as StackedForward's
        super().__init__(*args, **kwargs)
        # estimates and checks share them
        self._colorings: dict[str, Coloring | SourceColoring | None] = {}
        self._incremental: dict[str, str | None] = {}  # "" verified, a note, or None: no path
        self._verified: dict[str, str] = {}  # the footprint check's verdict: "" held, or a note
        self.kinks_met: dict[str, np.ndarray | None] = {}  # numeric/kinks.met's, per tensor
        self._terms: dict[str, Engine | str | None] = {}  # verified, a note, or None: no terms
        self._termwise: dict[str, str | None] = {}  # as _incremental, for Terms.moved
        self._strays: dict[str, str] = {}  # why a coloring was dropped while in use
        # a user's implementation of a built-in whose forward agreed: the built-in's footprint
        # (verified before use like any other), kinks (kink_map) and maxima
        self.declared_footprint: Any = None
        self.declared_kinks: Any = None
        self.declared_maxima: Any = None  # and its windows of maxima (numeric/routes.py)
        # a user's forward that agreed with a built-in declaring no kink: none to look for
        self.declared_smooth = False
        # and a loss's terms (Layer.terms), for which of its ties interact only (``structure``)
        self.declared_terms: Any = None
        self._structure: dict[str, Engine | None] = {}
        self._coordinate_noise: dict[str, dict[int, float]] = {}  # per tensor, per index
        self._unmoved: dict[str, dict[int, float]] = {}  # Engine.unmoved_reach's, likewise
        # set by the check for a layer whose kinks are not known: central differences also
        # read where their two one-sided halves disagree (``Bends``)
        self.screen_bends = False

    def kink_map(self) -> Any:
        """Where the layer's kinks are (``Layer.kinks``), or the built-in's it implements
        (``declared_kinks``, set by the check once the user's forward agreed with it); one
        that rounds as the forward does (svm's margins) is told the forward's epsilon."""
        kinks = self.declared_kinks or self.layer.kinks
        if kinks is not None and _takes_unit(kinks):
            return functools.partial(kinks, unit=max(self.unit, self.rounding))
        return kinks

    # ------------------------------------------------------------ terms
    def terms(self, name: str) -> Engine | str | None:
        """An engine on the layer's terms (``Layer.terms``) for moving ``name``: its output is
        the terms T, its upstream gradient g repeated along their axes, so its loss sum(g' * T)
        is this one's, term by term. A note instead when the terms did not add up to the
        forward at this point and at a few moved coordinates; None when the layer has none."""
        if name not in self._terms:
            constant = name in self.layer.constants(self.shapes, self.options)
            split = self.layer.terms and not constant
            self._terms[name] = self._build_terms(name, self.layer.terms) if split else None
        return self._terms[name]

    def structure(self, name: str) -> Engine | None:
        """For a user's implementation of a built-in loss that sums terms (its forward agreed
        with the built-in's: ``declared_terms``), an engine on the built-in's terms that says
        which terms each coordinate of ``name`` moves, so which of its ties interact (svm's
        rows: numeric/ties.py groups them by it). Structure only: what is compared is read
        through the user's forward. None when there are none, or when the user's forward does
        not add up to them at the point and at a few moved coordinates."""
        if name not in self._structure:
            sub = None
            constant = name in self.layer.constants(self.shapes, self.options)
            if self.declared_terms is not None and self.layer.terms is None and not constant:
                sub = self._build_terms(name, self.declared_terms)
            self._structure[name] = sub if isinstance(sub, Engine) else None
        return self._structure[name]

    def _build_terms(self, name: str, terms: Any) -> Engine | str:
        derived = dataclasses.replace(
            self.layer, name=f"{self.layer.name} (terms)", forward=terms.forward,
            footprint=terms.footprint, sources=None, terms=None, perturbed=None, kinks=None,
            broadcasts=True,  # the terms are a built-in's (a user's own forward is summed)
        )  # fmt: skip
        T = np.asarray(terms.forward(self.t64, self.options)[0])
        lead = self.g.reshape(self.g.shape + (1,) * terms.axes)
        sub = Engine(derived, self.t64, self.options, np.array(np.broadcast_to(lead, T.shape)),
                     method=self.method.name, eps=self.eps, max_memory=self.max_memory,
                     progress=self.progress)  # fmt: skip
        sub.method = self.method  # the complex step's mirror stays one (methods.CONJUGATE)
        sub.moved_term = terms.moved
        x = self.t64[name].ravel()
        picks = np.random.default_rng(0).choice(x.size, size=min(3, x.size), replace=False)
        rows = np.repeat(x[None, :].astype(np.float64), 1 + len(picks), axis=0)
        rows[1 + np.arange(len(picks)), picks] += 1e-3 * np.maximum(1.0, np.abs(x[picks]))
        rows = rows.reshape((len(rows),) + self.t64[name].shape)
        y = self.forward_stack(name, rows).reshape(len(rows), -1)
        T = sub.forward_stack(name, rows)
        summed = terms.total(T).reshape(len(rows), -1)
        tol = 64 * EPS * np.abs(T).reshape(len(rows), -1).sum(axis=1, keepdims=True)
        if y.shape == summed.shape and np.all(np.abs(summed - y) <= tol):
            return sub
        return f"the terms of {self.layer.name} do not add up to its output; used its output"

    # ------------------------------------------------------------ incremental evaluation
    def incremental(self, name: str) -> str | None:
        """Whether ``name`` has a trustworthy incremental path: "" when the layer's
        ``perturbed`` agreed with ``forward`` on a few random coordinates, a note saying why it
        is not used when it disagreed, None when there is no such path."""
        if name not in self._incremental:
            self._incremental[name] = verify_incremental(self, name, np.random.default_rng(0))
        return self._incremental[name]

    def termwise(self, name: str) -> str | None:
        """Whether ``name`` has a trustworthy term-by-term path (``Terms.moved``, on an engine
        on a layer's terms), as ``incremental`` says it for ``Layer.perturbed``."""
        if name not in self._termwise:
            self._termwise[name] = termwise.verify(self, name, np.random.default_rng(0))
        return self._termwise[name]

    def _fast(self, name: str) -> tuple[bool, bool]:
        """(incremental, termwise): which shortcut evaluates ``name``, if any."""
        incremental = self.incremental(name) == ""
        return incremental, not incremental and self.termwise(name) == ""

    def seconds(
        self, name: str, groups: int, coloring: bool = True, coords: np.ndarray | None = None
    ) -> float:
        """Predicted time for ``groups`` groups of ``name`` (cost.py: counted, not timed), of
        every coordinate or of ``coords`` (``groups_needed``'s count for them)."""
        split = self.terms(name) if coloring else None
        if isinstance(split, Engine):
            return split.seconds(name, groups, coords=coords)
        incremental, by_term = self._fast(name) if coloring else (False, False)
        if by_term:
            size = self.t64[name].size
            return cost.termwise_seconds(self, groups, size, termwise.VERIFY_COPIES)
        col = self._coloring(name) if coloring and not incremental else None
        verify = col is not None and math.prod(col.periods) < self.t64[name].size
        if coords is not None:  # a sample verifies the footprint only where it groups
            verify = verify and self.sampled_groups(name, coords) is not None
        extra = cost.copies_seconds(self, cost.VERIFY_COPIES, real=True) if verify else 0.0
        if coloring and self.layer.perturbed is not None:  # the path's verification, held or not
            extra += cost.copies_seconds(self, VERIFY_PICKS) + cost.incremental_seconds(
                self, VERIFY_PICKS, name=name)  # fmt: skip
        return cost.seconds(self, groups, incremental, name) + extra

    # ------------------------------------------------------------ coloring
    def _coloring(self, name: str) -> Coloring | SourceColoring | None:
        if name not in self._colorings:
            col: Coloring | SourceColoring | None = None
            if self.layer.sources is not None:
                src = self.layer.sources(name, self.t64, self.options)
                col = source_coloring(src, self.t64[name].shape, self.out_shape)
            footprint = self.layer.footprint or self.declared_footprint
            if col is None and footprint is not None:
                shapes = {n: a.shape for n, a in self.t64.items()}
                fp = footprint(name, shapes, self.options)
                col = build_coloring(fp, self.t64[name].shape, self.out_shape)
            self._colorings[name] = col
        return self._colorings[name]

    def declared_coloring(self, name: str) -> Coloring | SourceColoring | None:
        """The coloring ``name``'s declared footprint gives, not verified (``colored`` verifies
        it): what an estimate may read without running a copy."""
        return self._coloring(name)

    def sampled_groups(self, name: str, coords: np.ndarray) -> list[np.ndarray] | None:
        """``coords`` (flat indices) grouped by color, each group one perturbed copy (their
        footprints are disjoint, as in a full check), when the tensor has a coloring and the
        grouping saves copies; None: one coordinate per copy. From the declaration: the
        footprint is verified when the groups are used."""
        col = self._coloring(name)
        coords = np.asarray(coords, dtype=np.int64)
        if col is None or math.prod(col.periods) >= self.t64[name].size:
            return None
        groups = color_groups(col.periods, self.t64[name].shape, coords)
        return [coords[g] for g in groups] if len(groups) < len(coords) else None

    def colored(
        self, name: str, rng: np.random.Generator | None = None
    ) -> tuple[Coloring | SourceColoring | None, str]:
        """(the coloring of ``name`` once its footprint held, or None; why it was dropped, or
        ""). The footprint is verified once per tensor: the kinks' rechecks reuse the verdict."""
        col = self._coloring(name)
        if col is None or math.prod(col.periods) >= self.t64[name].size:
            return None, ""  # none, or dense: one coordinate per pass anyway
        if name not in self._verified:
            self._verified[name] = self.verify_footprint(
                name, col, rng or np.random.default_rng(0)
            )
        note = self._verified[name]
        return (None if note else col), note

    def verify_footprint(
        self, name: str, col: Coloring | SourceColoring, rng: np.random.Generator
    ) -> str:
        """Move a few random coordinates one at a time; anything that moves outside the declared
        footprint is a mismatch. Returns '' when the declaration held."""
        x = self.t64[name].ravel()
        shape = self.t64[name].shape
        if isinstance(col, SourceColoring):
            # most of a table may be read nowhere: pick among the coordinates read, and one
            # said to be read nowhere (moving it must move nothing)
            read = np.zeros(x.size, dtype=bool)
            read[col.source[col.source >= 0]] = True
            picks = np.concatenate([
                rng.choice(np.flatnonzero(read), size=min(3, int(read.sum())), replace=False),
                rng.choice(np.flatnonzero(~read), size=min(1, int((~read).sum())), replace=False),
            ]).astype(np.int64)  # fmt: skip
        else:
            picks = rng.choice(x.size, size=min(3, x.size), replace=False)
        # the point and the moved copies, stacked as many at a time as the copies' share of
        # --max-memory holds (two at the least: one central pass, which the check counted);
        # all four at once, with their forward's arrays (conv's windows), were a check's peak
        moves = [-1, *(int(j) for j in picks)]
        chunk = int(max(2, min(len(moves), self.max_memory // max(1, self.copy_bytes(name)))))
        y0, tol = None, 0.0
        for lo in range(0, len(moves), chunk):
            part = moves[lo : lo + chunk]
            rows = np.repeat(x[None, :], len(part), axis=0)
            for i, j in enumerate(part):
                if j >= 0:
                    rows[i, j] += 1e-3 * max(1.0, abs(x[j]))
            y = self.forward_stack(name, rows.reshape((len(rows),) + shape))
            if y0 is None:
                y0 = y[0].copy()  # not a view: it would keep the whole stack
                tol = 64 * EPS * float(np.max(np.abs(y0), initial=0.0))
            for i, j in enumerate(part):
                if j < 0:
                    continue
                t = np.unravel_index(j, shape)
                residues = tuple(int(ti) % p for ti, p in zip(t, col.periods, strict=True))
                moved = np.abs(y[i] - y0).ravel() > tol
                outside = moved & (col.owner(residues) != j)
                if outside.any():
                    where = np.unravel_index(int(np.argmax(outside)), self.out_shape)
                    return (
                        f"the declared footprint of {name} is wrong: {name}{list(map(int, t))} "
                        f"moves output {list(map(int, where))} outside it; used one coordinate "
                        "per pass"
                    )
            del y, rows
        return ""

    # ------------------------------------------------------------ gradients
    def gradient(
        self,
        name: str,
        *,
        coloring: bool = True,
        coords: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, TensorNumerics]:
        """dL/d``name`` (float64, the tensor's shape), NaN outside ``coords`` when given."""
        if name in self.layer.constants(self.shapes, self.options):  # labels, indices, targets
            raise OptionError(f"{name} is not differentiated; it has no gradient", param="wrt")
        split = self.terms(name) if coloring else None
        if isinstance(split, Engine):
            return split.gradient(name, coloring=True, coords=coords, rng=rng)
        x = self.t64[name].ravel()
        h = steps(x, self.eps)
        # a layer offers an incremental path only where it beats coloring, so it goes first
        verdict = self.incremental(name) if coloring else None
        incremental, by_term = self._fast(name) if coloring else (False, False)
        note = verdict or (self.termwise(name) if coloring else None) or split
        note = note or self._strays.get(name, "")
        per_coordinate = incremental or by_term  # a shortcut beats coloring, so it goes first
        col, members = None, None
        if coloring and not per_coordinate and coords is not None:
            members = self.sampled_groups(name, coords)
        if coloring and not per_coordinate and (coords is None or members is not None):
            col, dropped = self.colored(name, rng)
            note = dropped or note
        sums = np.zeros(x.size)
        scale = np.zeros(x.size)  # sum of |g * y| over each coordinate's footprint
        moved = np.zeros(x.size)  # ... over the outputs whose difference is not exactly 0
        if col is not None:
            # the outputs whose differences are attributed: those owned by a moved coordinate
            # ([-1], an output no one owns, never); a sample moves only its own of a color
            moving = np.zeros(x.size + 1, dtype=bool)
            moving[np.arange(x.size) if coords is None else coords] = True
            if members is None:
                colors: Any = list(np.ndindex(*col.periods))
            else:
                shape = self.t64[name].shape
                colors = [tuple(int(t) % p for t, p in zip(np.unravel_index(int(m[0]), shape),
                                                          col.periods, strict=True))
                          for m in members]  # fmt: skip
        else:
            # an array, not a list: a list of a million numpy integers was converted back on
            # every chunk (a third of an incremental check of linear's W)
            colors = np.arange(x.size) if coords is None else np.asarray(coords, np.int64)
        screen = (self.screen_bends and self.method.name in ("central", "central4")
                  and not per_coordinate)  # fmt: skip
        steps_read = sum(1 for s in self.method.offsets if s > 0)
        bend = np.zeros((steps_read, x.size)) if screen else None
        gabs = np.abs(self.g).ravel()
        chunk = INCREMENTAL_CHUNK if incremental else self._chunk(name, len(colors), screen)
        chunk = termwise.TERMWISE_CHUNK if by_term else chunk
        passes, unseen = 0, False
        natural: np.ndarray | None = None  # made where read (whole passes), with its signs
        signed: np.ndarray | None = None
        for start in range(0, len(colors), chunk):
            part = colors[start : start + chunk]
            if by_term:  # each coordinate's one term
                d, where = termwise.differences(self, name, part, h)
                sums[part] += d * self.g.ravel()[where]
                scale[part] = self.gy[where]
                moved[part] = self.gy[where] * _moved(d)
            elif col is None and incremental:
                sums[part] += loss_differences(self, name, np.asarray(part, dtype=np.int64), h)
                scale[part] = moved[part] = self.gy.sum()  # differences of whole losses
            elif col is None:
                read: list | None = [] if screen else None
                d = self._differences(name, np.array(part)[:, None], h, read)
                d = d.reshape(len(part), -1)
                if bend is not None and read is not None:
                    for k, r in enumerate(read):
                        bend[k, part] = r.reshape(len(part), -1) @ gabs
                sums[part] += d @ self.g.ravel()
                scale[part] = self.gy.sum()
                moved[part] = _moved(d) @ self.gy
                unseen = True
                if self.g.size > 1:
                    if natural is None or signed is None:
                        natural, signed = np.zeros(x.size), _signed(self.g)
                    natural[part] = np.abs(d @ signed).max(axis=1)
            else:
                together = members[start : start + chunk] if members else None
                read = [] if screen else None
                d = self._differences(name, together or [col.coords(r) for r in part], h, read)
                owners = np.stack([col.owner(r) for r in part])
                if np.any(d.reshape(owners.shape)[owners < 0] != 0):  # moved, owned by no one
                    self._colorings[name] = None
                    self._strays[name] = (
                        f"the declared footprint of {name} is wrong: an output it gives to no "
                        "coordinate moved; used one coordinate per pass"
                    )
                    return self.gradient(name, coloring=coloring, coords=coords, rng=rng)
                # an output of a coordinate the sample did not move reads 0, or the round-off
                # of a product batched with the moved copies (BLAS): attributed to no one, a
                # last bin dropped (not masked out: three masked copies of the chunk's outputs)
                owners = np.where(moving[owners], owners, x.size).ravel()
                n = x.size + 1
                sums += np.bincount(owners, weights=(d * self.g).ravel(), minlength=n)[:-1]
                gy = np.broadcast_to(self.gy, (len(part), self.gy.size))
                scale += np.bincount(owners, weights=gy.ravel(), minlength=n)[:-1]
                # times a mask, not np.where: an infinite |g * y| unmoved stays NaN, as before
                gy = gy * (d.reshape(gy.shape) != 0)
                moved += np.bincount(owners, weights=gy.ravel(), minlength=n)[:-1]
                if bend is not None and read is not None:
                    for k, r in enumerate(read):
                        weights = (r.reshape(len(part), -1) * gabs).ravel()
                        bend[k] += np.bincount(owners, weights=weights, minlength=n)[:-1]
            passes += self.rows(len(part))
            if self.progress:
                self.progress(len(part))
        grad = sums / h
        noise = self.noise_factor() * scale / h
        # an element's tolerance takes the round-off of the outputs it moved; whether the step
        # resolves the tensor at all asks about every output it may move (one it moved by less
        # than a last bit reads exactly 0: its share of the gradient is invisible)
        noise_at = self.noise_factor() * moved / h
        if self.method.name == "complex":
            # the complex step's own floor: a step times a slope below float64's smallest
            # normal number keeps few bits or none (softmax([0, 700]) read its y0's h e^-700
            # as 0, and a right dx of 1e-304 'did not match'); |g| of every output, at most
            under = np.finfo(np.float64).tiny * float(gabs.sum()) / h
            noise, noise_at = np.maximum(noise, under), np.maximum(noise_at, under)
        if coords is not None:
            mask = np.zeros(x.size, dtype=bool)
            mask[np.asarray(coords, dtype=np.int64)] = True
            grad[~mask] = np.nan
        info = TensorNumerics(
            coordinates=x.size if coords is None else len(coords),
            colors=len(colors),
            forward_passes=passes,
            coloring=col is not None,
            incremental=incremental or by_term,
            note=note,
            noise=float(noise.max(initial=0.0)),
            noise_at=noise_at.reshape(self.t64[name].shape),
            unseen=unseen,
            noise_reach=noise.reshape(self.t64[name].shape) if col is not None or by_term
            else None,
            # central's D is (y(x + h) - y(x - h)) / 2: sums, before the division by h
            bends=None if bend is None else Bends(bend, 2 * np.abs(sums), moved),
            natural=None if natural is None else (natural / h).reshape(self.t64[name].shape),
        )
        return grad.reshape(self.t64[name].shape), info

    def reach_noise(
        self, name: str, coords: np.ndarray | None = None, factor: float = REACH_FACTOR
    ) -> float:
        """``TensorNumerics.noise`` over the outputs each coordinate of ``name`` (or of
        ``coords``) can move, for a layer whose footprints are unknown, instead of over every
        output: those it moves at ``factor`` times its step, plus 1/``factor`` of the others'.
        An output moved by less than a last bit at the step reads exactly 0 there, its share
        of the gradient invisible, so the outputs a coordinate moved say too little; one
        unmoved even at ``factor`` steps is moved by less than a last bit / ``factor`` at one.
        A float32 linear of 16 rows counted all 16 rows' outputs for each x coordinate, whose
        row's are all it moves, and could not resolve a correct backward (one copy a
        coordinate, stacked)."""
        return float(self.reach_at(name, coords, factor).max(initial=0.0))

    def reach_at(
        self, name: str, coords: np.ndarray | None = None, factor: float = REACH_FACTOR
    ) -> np.ndarray:
        """``reach_noise`` at each coordinate of ``name`` (or of ``coords``), in their order.
        Where the outputs it left unmoved at ``factor`` steps dominate the bound, they are
        read again further out (FAR_FACTORS; each bound holds, the least is kept): exp'(30) =
        1e13 beside elements of 1 bounds their round-off at 0.49 from 1024 steps, 5e-4 from
        2^20."""
        x = self.t64[name].ravel()
        idx = np.arange(x.size) if coords is None else np.asarray(coords, dtype=np.int64)
        out, unmoved = self._reach(name, idx, factor)
        least = factor
        for far in (max(FAR_FACTORS[0], 1 / self.eps), *FAR_FACTORS[1:]):
            loose = np.flatnonzero(unmoved > out - unmoved)
            if not loose.size or far <= least:
                break
            # (a move that leaves the forward's domain both ways is not shrunk: the last one
            # read stands)
            bound, rest = self._reach(name, idx[loose], far, least=far)
            least = far
            better = bound < out[loose]
            out[loose[better]], unmoved[loose[better]] = bound[better], rest[better]
        return out

    def footprint_reach(self, name: str) -> np.ndarray | None:
        """``TensorNumerics.noise_reach`` from the declared footprint, for a path that read
        whole losses (the incremental one, whose round-off is the loss's): each coordinate's
        round-off over every output it may move, moved or not; None where no footprint is
        declared or adding it up would cost more than FOOTPRINT_REACH_MOST outputs' worth."""
        col = self._coloring(name)
        x = self.t64[name].ravel()
        if col is None or math.prod(col.periods) * self.gy.size > FOOTPRINT_REACH_MOST:
            return None
        gy, total = self.gy.ravel(), np.zeros(x.size + 1)
        for r in np.ndindex(*col.periods):
            owners = col.owner(r)
            total += np.bincount(np.where(owners >= 0, owners, x.size), weights=gy,
                                 minlength=x.size + 1)  # fmt: skip
        reach = self.noise_factor() * total[:-1] / steps(x, self.eps)
        return reach.reshape(self.t64[name].shape)

    def unmoved_reach(self, name: str, idx: np.ndarray, full: np.ndarray) -> tuple[np.ndarray, int]:
        """(at the flat indices ``idx``, the share of the gradient the outputs of ``full``'s
        footprint (footprint_reach's) that their step leaves where they are may hide, read by
        whole passes output by output; how many coordinates were differenced for it). An
        output moved by less than its last bit reads exactly 0: its share, below half that
        bit over the step (a unit of |g y| over h, not the model's 4 spread units), is lost;
        one that moved is read, its round-off its element's own."""
        known = self._unmoved.setdefault(name, {})
        idx = np.asarray(idx, dtype=np.int64)
        todo = np.array([i for i in idx.tolist() if i not in known], dtype=np.int64)
        if todo.size:
            seen = self.gradient(name, coloring=False, coords=todo)[1]
            moved = np.asarray(seen.noise_at, dtype=np.float64).ravel()[todo]
            left = self.unmoved_share(full.ravel()[todo], moved)
            known.update(zip(todo.tolist(), left.tolist(), strict=True))
        return np.array([known[i] for i in idx.tolist()]), int(todo.size)

    def unmoved_share(self, reach: np.ndarray, moved: np.ndarray) -> np.ndarray:
        """The share of a gradient its coordinate's unmoved outputs may hide, from the modelled
        round-off over every output it may move (``reach``) and over those it moved
        (``moved``): half a last bit over the step each, a unit of |g y| over h, not the
        model's 4 spread units."""
        return np.maximum(np.asarray(reach) - np.asarray(moved), 0.0) / (4 * self.method.spread)

    def _reach(self, name: str, idx: np.ndarray, factor: float, sign: float = 1.0,
               least: float = 1.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """(each coordinate's bound at ``factor`` steps up or down (``sign``), the part of it
        the outputs left unmoved make), where the forward fails both ways at ``factor``
        steps, at fewer, down to ``least`` (below it: every output counted)."""
        x = self.t64[name].ravel()
        h = steps(x, self.eps)
        total, out, unmoved = float(self.gy.sum()), np.zeros(idx.size), np.zeros(idx.size)
        per = max(1, self._chunk(name, idx.size))
        for start in range(0, idx.size, per):
            part, at = idx[start : start + per], slice(start, start + per)
            rows = np.repeat(x[None, :], 1 + part.size, axis=0)
            rows[1 + np.arange(part.size), part] = x[part] + sign * factor * h[part]
            try:
                d = self.moved(name, rows)
            except UserCodeError:  # beyond the forward's domain (exp at 600 + 1024 steps):
                # the other way, then fewer steps, down to one (where the differences were)
                if sign > 0 or factor / 32 >= least:
                    again = (factor, -1.0) if sign > 0 else (factor / 32, 1.0)
                    out[at], unmoved[at] = self._reach(name, part, *again, least=least)
                else:  # every output counted
                    out[at], unmoved[at] = self.noise_factor() * total / h[part], 0.0
                continue
            reach = ((d != 0) | ~np.isfinite(d)) @ self.gy  # a NaN may hide a move: counted
            unmoved[at] = self.noise_factor() * (total - reach) / factor / h[part]
            out[at] = self.noise_factor() * reach / h[part] + unmoved[at]
        return out, unmoved

    def groups_needed(
        self, name: str, coloring: bool = True, coords: np.ndarray | None = None
    ) -> int:
        """Forward-pass groups an evaluation of ``name`` takes (for estimates): of every
        coordinate, or of ``coords`` (a sample: the colors it touches)."""
        split = self.terms(name) if coloring else None
        if isinstance(split, Engine):
            return split.groups_needed(name, coords=coords)
        n = self.t64[name].size if coords is None else len(coords)
        if coloring and any(self._fast(name)):
            return n
        if coords is not None:
            groups = self.sampled_groups(name, coords) if coloring else None
            return n if groups is None else len(groups)
        col = self._coloring(name) if coloring else None
        return min(n, math.prod(col.periods)) if col is not None else n

    def coordinate_noise(self, name: str, idx: np.ndarray, coloring: bool = True) -> np.ndarray:
        """The round-off of the stencil at each flat index of ``idx``, measured rather than
        modelled. The model (``noise_factor``) counts a few eps of each output a coordinate
        moves, but an output computed from far larger numbers carries theirs: a confident
        softmax's loss of 1e-8 is log(1 + 1e-8), rounded at the 1, which a step moves in jumps
        of its last bit. Read off what a cubic leaves of L along the coordinate's own line, at
        16 moves between 1/2 and 8.25 steps (NOISE_OFFSETS; after Moré and Wild's ECnoise, whose
        equally spaced points a rounding that drifts evenly step by step passes for smooth; a
        curved L raises the estimate, never lowers it). 16 moves a coordinate, once (cached); 0
        for the complex step, which subtracts nothing; inf for a line that never moves. Measured
        on the path the gradient took."""
        from gradcli.numeric import kinks  # LAZY: only where a tolerance meets tiny gradients

        split = self.terms(name) if coloring else None
        if isinstance(split, Engine):  # measured on the path the gradient took: the terms,
            # rounded at their own sizes (a confident cross-entropy's row term, 1e-9 computed
            # at 20, moves in jumps of 20's last bit; their mean does not)
            return split.coordinate_noise(name, idx, coloring)
        m, idx = self.method, np.asarray(idx, dtype=np.int64)
        known = self._coordinate_noise.setdefault(name, {})
        todo = np.array([i for i in idx.tolist() if i not in known], dtype=np.int64)
        if todo.size and m.name != "complex":
            h = steps(self.t64[name].ravel()[todo], self.eps)
            D = kinks.moves(self, name, todo, h, NOISE_OFFSETS, coloring)[0]
            sigma = offgrid_noise(np.array(NOISE_OFFSETS), D)
            # a line that never moves over 8 steps says nothing of its round-off: the output
            # may be rounded at a number whose last bit is more than 8 steps of the gradient
            # (a confident term 1e-10 computed at 1, under forward differences' larger step)
            sigma[np.all(D == 0, axis=0)] = np.inf
            known.update(zip(todo.tolist(), (4 * sigma * m.spread / h).tolist(), strict=True))
        return np.array([known.get(i, 0.0) for i in idx.tolist()])

    def noise_factor(self) -> float:
        """Round-off of a stencil per unit of sum |g * y| / h: every output carries an error of
        a few eps * |y| (``unit``: the eps the forward computes in), and the stencil weights add
        up. The complex step subtracts nothing."""
        m = self.method
        if m.name == "complex":
            return 0.0
        return 4 * self.unit * m.spread

    def directional(
        self, name: str, direction: np.ndarray, h: np.ndarray | None = None
    ) -> tuple[float, np.ndarray]:
        """(sum_j grad_j * p_j, p) along p = direction * h, one stencil evaluation; ``h``: the
        coordinates' steps (default: the engine's own)."""
        x = self.t64[name].ravel()
        h = (steps(x, self.eps) if h is None else h.ravel()) * direction.ravel()
        all_idx = np.arange(x.size)
        d = self._differences(name, [all_idx], h)  # one group: every coordinate
        return float(np.sum(d[0] * self.g)), h.reshape(self.t64[name].shape)

    def line_slopes(
        self, name: str, step: np.ndarray, unmoved: bool = False
    ) -> tuple[float, float, float]:
        """(right, left, noise): the loss's second-order one-sided slopes along x + t step at
        t = 0, in real arithmetic (4 copies), and the round-off of their difference. Where
        they disagree beyond it, the line meets a kink within 2 steps. ``unmoved``: the
        round-off counts the outputs the line left where they were too, whose share of the
        slope their rounding may hide (a confident softmax's top output, at 1), as a slope
        read another way (the complex step's) sees it."""
        x, p = self.t64[name].ravel(), step.ravel()
        rows = {name: np.stack([x, x + p, x - p, x + 2 * p, x - 2 * p])}
        d = np.real(self.moved_jointly(rows)).reshape(4, -1)
        D = d @ self.g.ravel()
        right, left = one_sided(D[0], D[2], 1.0, 1), one_sided(D[1], D[3], 1.0, -1)
        moved = np.ones(d.shape[1], dtype=bool) if unmoved else (d != 0).any(axis=0)
        scale = float((moved * self.gy).sum())
        return float(right), float(left), 2 * one_sided_noise(scale, 1.0, self.unit)


NATURAL_SIGNS = 4  # upstream gradients with random signs that TensorNumerics.natural reads under


def _signed(g: np.ndarray) -> np.ndarray:
    """(outputs, NATURAL_SIGNS): |g| with fixed random signs (made where whole passes read
    them: a layer's colored or incremental path never holds them)."""
    rng = np.random.default_rng(0x7465726D)
    return np.abs(g).reshape(-1, 1) * rng.choice((-1.0, 1.0), size=(g.size, NATURAL_SIGNS))


def _moved(d: np.ndarray) -> np.ndarray:
    """1 where an output's finite difference is not exactly zero, else 0. Round-off enters only
    where an output's value changes: an output the coordinate does not move is computed with
    the same operations on the same values in every copy, so its difference is exactly 0 and
    adds no error (a 1e8 output beside a coordinate that moves only a 1 adds none)."""
    return (d != 0).astype(np.float64)


def numerical_gradients(
    layer: Layer,
    tensors: Mapping[str, np.ndarray],
    options: Any,
    grad_output: np.ndarray,
    *,
    names: tuple[str, ...] | None = None,
    coloring: bool = True,
    **engine_kw: Any,
) -> dict[str, np.ndarray]:
    """dL/dname for each tensor in ``names`` (default: all that have a gradient), float64,
    full check; ``engine_kw`` as for Engine (method, eps, max_memory)."""
    engine = Engine(layer, tensors, options, grad_output, **engine_kw)
    constants = layer.constants(engine.shapes, options)
    names = names or tuple(n for n in tensors if n not in constants)
    return {n: engine.gradient(n, coloring=coloring)[0] for n in names}
