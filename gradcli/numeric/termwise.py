"""Term by term: a loss's terms at moved coordinates through the layer's own shortcut.

A loss that is a sum of per-row terms is colored against them (``Engine.terms``), but each color
still runs a whole forward: svm's x (N, C) takes C colors of N*C elements each, O(N C^2) in all.
Where each coordinate moves one term and the layer can recompute that term alone
(``Terms.moved``: an svm score moves one margin), every coordinate is evaluated at once, O(N C).
Each value is still the forward's term at the moved point, nothing differentiated, and the
stencil differences the one term a coordinate moves, as the colored path does: the same
round-off, the same per-term tolerance. The engine trusts the shortcut only once it agrees with
the terms' forward (``verify``), and falls back, with a note, to the colors when it does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcli.numeric.stacking import StackedForward

TERMWISE_CHUNK = 8192  # coordinates per call of Terms.moved
# stacked copies the shortcut is verified on: each moves one random coordinate of every term
# at once (svm (64, 100): 384 coordinates, a label's score among them with probability 0.98)
VERIFY_COPIES = 6


def _checked(
    engine: StackedForward, out: Any, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """(where, T) from the layer's shortcut, or None when it is malformed."""
    if out is None:
        return None
    where, T = (np.asarray(a) for a in out)
    size = int(np.prod(engine.out_shape))
    if where.shape != idx.shape or T.shape != idx.shape or where.dtype.kind not in "iu":
        return None
    if where.size and (where.min() < 0 or where.max() >= size):
        return None
    return where.astype(np.int64), T


def verify(engine: StackedForward, name: str, rng: np.random.Generator) -> str | None:
    """The verdict on ``name``'s shortcut: "" when it agrees with the terms' forward, at the
    point and at VERIFY_COPIES stacked copies that each move one random coordinate of every
    term; a note saying why it is not used when it disagrees; None when there is none."""
    if engine.moved_term is None:
        return None
    x = engine.t64[name].ravel()
    idx = np.arange(x.size)
    # in the arithmetic the path will serve (as numeric/incremental verifies its own)
    move = 1e-2 + (1e-3j if engine.method.name == "complex" else 0)
    sign = rng.choice([-1.0, 1.0], size=x.size)
    values = x + sign * move * np.maximum(1.0, np.abs(x))
    moved = engine.moved_term(name, engine.t64, engine.cache, idx, values)
    if moved is None:
        return None
    at = _checked(engine, moved, idx)
    if at is None:
        return _note(engine, name, None)
    where, T = at
    # the coordinates grouped by term; each copy takes a random one of each group
    order = np.argsort(where, kind="stable")
    starts = np.flatnonzero(np.diff(where[order], prepend=-1))
    counts = np.diff(np.append(starts, x.size))
    picks = [order[starts + (rng.random(starts.size) * counts).astype(np.int64)]
             for _ in range(min(VERIFY_COPIES, x.size))]  # fmt: skip
    # and at the point itself (a one-sided stencil's offset 0), where they were picked
    chosen = np.concatenate(picks)
    base = _checked(engine, engine.moved_term(name, engine.t64, engine.cache, chosen,
                                              x[chosen]), chosen)  # fmt: skip
    if base is None:
        return _note(engine, name, None)
    y = _copies(engine, name, [np.array([], np.int64), *picks], values).reshape(len(picks) + 1, -1)
    expected = np.repeat(y[:1], len(picks), axis=0)
    for k, p in enumerate(picks):
        expected[k, where[p]] = T[p]
    # both are the same terms, summed in another order: a few eps of the largest term apart;
    # a wrong shortcut is off by ~1e-2 of a term's slope
    tol = 1e-10 * float(np.max(np.abs(y[0]), initial=0.0)) + 1e-300
    bad = np.abs(y[1:] - expected) > tol
    unmoved = (np.abs(base[1] - y[0][base[0]]) > tol) | (base[0] != where[chosen])
    if not bad.any() and not unmoved.any() and np.all(np.isfinite(T)):
        return ""
    if bad.any():
        k, term = np.unravel_index(int(np.argmax(bad)), bad.shape)
        hit = picks[k][where[picks[k]] == term]
        j = int(hit[0]) if hit.size else int(picks[k][0])
    else:
        j = int(chosen[int(np.argmax(unmoved))])
    return _note(engine, name, j)


def _copies(engine: StackedForward, name: str, moves: list, values: np.ndarray) -> np.ndarray:
    """The terms' forward on one copy per entry of ``moves`` (those coordinates at
    ``values``), stacked in chunks within the engine's memory limit."""
    x = engine.t64[name].ravel()
    per = max(1, engine._chunk(name, len(moves)) * len(engine.method.offsets))
    out = []
    for lo in range(0, len(moves), per):
        part = moves[lo : lo + per]
        rows = np.repeat(x[None, :].astype(values.dtype), len(part), axis=0)
        for k, p in enumerate(part):
            rows[k, p] = values[p]
        out.append(engine.forward_stack(name, rows.reshape((len(rows),) + engine.t64[name].shape)))
    return np.concatenate(out)


def _note(engine: StackedForward, name: str, j: int | None) -> str:
    shape = engine.t64[name].shape
    at = "" if j is None else f" at {name}{list(map(int, np.unravel_index(j, shape)))}"
    return (
        f"the term-by-term evaluation of {name} disagrees with the forward{at}; "
        "used the colored forward passes"
    )


def differences(
    engine: StackedForward, name: str, idx: np.ndarray, h: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(D, where): the stencil applied to the one term each coordinate idx[i] moves, alone
    (P,), and that term's flat index (P,)."""
    x = engine.t64[name].ravel()
    m = engine.method
    at, where = {}, None
    for s in m.offsets:
        step = s * 1j * h[idx] if m.name == "complex" else s * h[idx]
        where, at[s] = engine.moved_term(name, engine.t64, engine.cache, idx, x[idx] + step)
    return np.real(m.apply(at)), np.asarray(where, dtype=np.int64)
