"""Where in the output a user's backward goes wrong, by calling it.

A backward is linear in its upstream gradient, so feeding it the upstream gradient of one
output index at a time (one batch element, one window position, one channel) and comparing
each answer with the right backward's says which contributions are wrong: "only batch element
0 contributes to db", "wrong only for the contributions of the last window". The calls go
through the user-code guard like every other; an answer that is not linear (the pieces do not
add up to the whole) gives no hint.

Wrong contributions are a cause only when the errors are not a property of a few elements of
the gradient: ``dW[5, 77] *= 1.0001`` makes the contribution of every output that reaches
dW[5, 77] wrong (and of those whose share there is below the round-off, right), and an input
element that one window alone reads is wrong in that window's contribution only. When every
answer is the right one with the same factor at the same elements (whatever the upstream
gradient), the slip is in those elements: the hint names them (a few), or leaves the pattern
to the comparison's hints (a slice, the borders).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcli.checking.hint import Hint

MAX_CALLS = 48  # calls into the user's backward one diagnosis may make
MAX_OUTPUT = 100_000  # output elements beyond which no probing is done
MAX_NAMED = 3  # wrong elements a hint lists; more are a pattern (a slice), or none
# how far (relative to the largest answer) the pieces of a float64 check's answer may stray from
# the whole: float64 round-off is 1e-16 of the terms, a step rounded to float32 leaves 1e-8 at
# least, and its pieces, each right or wrong by luck of its rounding, show no structure
LINEAR64 = 1e-11


def localize(
    name: str,
    g: np.ndarray,
    mine: Callable[[np.ndarray], Mapping[str, Any]],
    right: Callable[[np.ndarray], Mapping[str, Any]],
    whole: np.ndarray,
    letters: list[str],
    own: list[str] | None = None,
    stacked: tuple[str, tuple[str, ...]] | None = None,
    linear: float = 1e-7,
    blocks: tuple[str, tuple[str, ...], str] | None = None,
) -> list[Hint]:
    """One sentence on the output indices whose contributions to d``name`` are wrong, along
    the axis that singles them out best; ``whole``: the user's d``name`` for all of ``g``;
    ``letters``: the output's index letters, ``own``: d``name``'s; ``stacked``: the layer's
    results side by side along one axis (Layer.stacked), named by their own names there;
    ``linear``: how far, relative to the largest answer, the pieces may add up to another
    whole (LINEAR64 for a float64 check); ``blocks``: the layer's (Layer.blocks)."""
    if g.size > MAX_OUTPUT:
        return []
    best: tuple[float, str] | None = None
    calls = 0
    pieces: list[tuple[np.ndarray, np.ndarray]] = []  # (mine, right) for each call
    for axis, size in enumerate(g.shape):
        if size < 2 or calls + size > MAX_CALLS - 2:  # 2: the last test of linearity
            continue
        calls += size
        parts, wrong, missing = [], [], []
        for t in range(size):
            keep = np.zeros(size, dtype=bool)
            keep[t] = True
            g_t = np.where(keep.reshape([-1 if k == axis else 1 for k in range(g.ndim)]), g, 0.0)
            a = np.asarray(mine(g_t)[name], dtype=np.float64)
            r = np.asarray(right(g_t)[name], dtype=np.float64)
            parts.append(a)
            pieces.append((a, r))
            tol = 1e-7 * max(float(np.max(np.abs(r), initial=0.0)), 1e-300) + 1e-12
            if np.max(np.abs(a - r)) > tol:
                wrong.append(t)
                missing.append(np.max(np.abs(a)) <= tol and np.max(np.abs(r)) > 10 * tol)
        scale = max(float(np.max(np.abs(whole), initial=0.0)),
                    *(float(np.max(np.abs(a), initial=0.0)) for a in parts)) or 1.0
        if np.max(np.abs(sum(parts) - whole)) > linear * scale:
            return []  # not linear in the upstream gradient: the pieces say nothing
        if not wrong or len(wrong) == size:
            continue
        ltr = letters[axis] if axis < len(letters) else f"axis {axis}"
        where = _indices(wrong, size)
        if stacked and stacked[0] == ltr and len(stacked[1]) == size:  # lstm_step's s=1: next_c
            where = ", ".join(f"{t} ({stacked[1][t]})" for t in wrong)
        right_ones = [t for t in range(size) if t not in wrong]
        if all(missing) and len(right_ones) == 1:
            text = (
                f"only output {ltr}={right_ones[0]} contributes to d{name}: the contributions "
                f"of {ltr}={where} are missing (look at the sum over {ltr})"
            )
        elif all(missing):
            text = (
                f"d{name} misses the contributions of output {ltr}={where}, the others are "
                f"right (look at the loop or the slice over {ltr})"
            )
        elif 2 * len(wrong) > size:  # 'only' for most of them says nothing (a flatten with
            continue  # order="F": output f = 1 ... 6 of 8, where a reshape order is the slip)
        else:
            text = (
                f"d{name} is wrong only for the contributions of output {ltr}={where}, the "
                "others are right: look at how the backward treats those"
            )
        share = len(wrong) / size
        if best is None or share < best[0]:
            best = (share, text)
    if best is None:
        return []
    if linear < 1e-7 and not _linear(mine, g, whole, name, linear):
        return []  # linear to float32's precision only: its pieces' errors are its rounding's
    at = _elements(whole, np.asarray(right(g)[name], dtype=np.float64), pieces)
    if at is not None:  # the same slip at the same elements in every answer: not the outputs'
        return _at_elements(name, at, whole.shape, own or [], blocks)
    return [Hint(best[1], None, True)]


def _linear(mine: Callable[[np.ndarray], Mapping[str, Any]], g: np.ndarray, whole: np.ndarray,
            name: str, linear: float) -> bool:  # fmt: skip
    """Whether d``name``(g + 2 h) = d``name``(g) + 2 d``name``(h) for a random h, to ``linear``
    of the largest of them: pieces along an axis that never share an element (dgamma[d] from
    output column d alone) each round as the whole does and add up exactly, where a step
    rounded to float32 still shows in another direction."""
    rng = np.random.default_rng(0x6C696E)
    rms = float(np.sqrt(np.mean(np.square(g)))) if g.size else 0.0
    h = rng.standard_normal(g.shape) * (rms or 1.0)
    b = np.asarray(mine(h)[name], dtype=np.float64)
    c = np.asarray(mine(g + 2 * h)[name], dtype=np.float64)
    if b.shape != whole.shape or c.shape != whole.shape:
        return False
    scale = max(float(np.max(np.abs(x), initial=0.0)) for x in (whole, b, c)) or 1.0
    return bool(np.max(np.abs(c - whole - 2 * b), initial=0.0) <= linear * scale)


def _elements(
    whole: np.ndarray, right: np.ndarray, pieces: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(flat indices, factors) when every answer is the right one times a fixed factor at a
    fixed set of elements (a slip in those elements, whatever the upstream gradient), else
    None."""
    if whole.shape != right.shape:
        return None
    tol = 1e-7 * max(float(np.max(np.abs(right), initial=0.0)), 1e-300) + 1e-12
    bad = np.flatnonzero(np.abs(whole - right) > tol)
    r = right.ravel()[bad]
    if not bad.size or np.any(r == 0):
        return None
    factor = np.ones(right.size)
    factor[bad] = whole.ravel()[bad] / r
    for a, rt in pieces:
        expected = rt.ravel() * factor
        t = 1e-7 * max(float(np.max(np.abs(rt), initial=0.0)), 1e-300) + 1e-12
        if np.max(np.abs(a.ravel() - expected), initial=0.0) > t:
            return None  # some output's contribution is wrong where the others' are right
    return bad, factor[bad]


def _at_elements(
    name: str, at: tuple[np.ndarray, np.ndarray], shape: tuple[int, ...], own: list[str],
    blocks: tuple[str, tuple[str, ...], str] | None = None,
) -> list[Hint]:  # fmt: skip
    """A few elements named; more are a pattern the comparison's hints read (a slice)."""
    flat, factor = at
    notes = [f"{f + 0.0:.6g} x the right value" for f in factor]  # + 0.0: never "-0 x"
    return at_elements(name, flat, notes, shape, own, "whichever output contributes (every "
                       "other element is right)", "not at how the backward treats some outputs",
                       blocks)  # fmt: skip


def at_elements(
    name: str, flat: np.ndarray, notes: list[str], shape: tuple[int, ...], own: list[str],
    seen: str, not_at: str = "", blocks: tuple[str, tuple[str, ...], str] | None = None,
) -> list[Hint]:  # fmt: skip
    """d``name`` wrong at the few elements ``flat`` (each with its note: how far off), ``seen``
    saying what showed it; more than MAX_NAMED are a pattern, not named here, and so is most
    of the tensor (a dgamma of 3 elements, all of them wrong: the formula, not a statement
    writing those elements alone). Elements all in one of the layer's ``blocks``
    (Layer.blocks) are said to lie there, and the look-out is that block's."""
    if not 0 < flat.size <= MAX_NAMED or 2 * flat.size > int(np.prod(shape)):
        return []
    names = own if len(own) <= len(shape) else []
    names = [f"b{k}" for k in range(len(shape) - len(names))] + list(names)
    where = ", ".join(
        f"d{name}[" + ", ".join(f"{c}={int(i)}" for c, i in zip(names, idx, strict=True)) + "]"
        + f" ({notes[k]})"
        for k, idx in enumerate(zip(*np.unravel_index(flat, shape), strict=True))
    )
    many, it = ("one element", "that element") if flat.size == 1 else (
        f"{flat.size} elements", "those elements")  # fmt: skip
    block = _block(name, flat, shape, names, blocks)
    if block:  # a block's elements come from one computation: where they lie says which
        lie = "it lies" if flat.size == 1 else "both lie" if flat.size == 2 else "all lie"
        return [Hint(f"d{name} is wrong at {many} only, {where}, {seen}; {lie} in {block}",
                     None, True)]  # fmt: skip
    return [Hint(
        f"d{name} is wrong at {many} only, {where}, {seen}: look at a statement that writes "
        f"{it} alone (an index, a slice){', ' + not_at if not_at else ''}",
        None, True,
    )]  # fmt: skip


def _block(
    name: str, flat: np.ndarray, shape: tuple[int, ...], names: list[str],
    blocks: tuple[str, tuple[str, ...], str] | None,
) -> str:  # fmt: skip
    """The words of the one block (Layer.blocks) every element of ``flat`` lies in, or ""."""
    if blocks is None or blocks[0] not in names:
        return ""
    letter, which, words = blocks
    axis = names.index(letter)
    size = shape[axis] // len(which)
    if not size or shape[axis] % len(which):
        return ""
    at = {int(i) // size for i in np.unravel_index(flat, shape)[axis]}
    if len(at) != 1:
        return ""
    k = at.pop()
    return words.format(block=which[k], lo=k * size, hi=(k + 1) * size - 1, tensor=name)


def _indices(picked: list[int], size: int) -> str:
    """0, 1 and 7 (the first two and the last of 8)."""
    names = {0: "the first", size - 1: "the last"}
    shown = ", ".join(str(t) for t in picked[:6]) + (", ..." if len(picked) > 6 else "")
    ends = [names[t] for t in picked if t in names]
    return f"{shown} ({' and '.join(ends)})" if ends and len(picked) <= 2 else shown
