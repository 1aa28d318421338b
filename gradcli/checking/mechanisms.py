"""Wrong backward passes built from the right backward by calling it, for any layer: what a
mistake does to the gradient's structure, not to one layer's formula (gradcli.checking.
hypotheses verifies each against the values under test, to round-off).

- A mask left out or inverted: where the right backward is elementwise (d = backward(dy) / dy,
  checked on two upstream gradients) and its local derivative takes two values (relu's 0 and 1,
  dropout's 0 and 1/(1 - p), leaky_relu's alpha and 1), the gradient with either value
  everywhere, with dy passed through as it is, or with the two values exchanged.
- A sum over the wrong axis: a gradient that sums an output axis away (db over the batch) summed
  instead over one of its own axes of the same size, from the contribution of each index along
  the summed axis (one call of the backward each).
- One tensor read where another of the same shape belongs: the forward's cache, where it keeps
  the tensors by name, given one in the other's place (rnn_step's dx = da Wh^T where da Wx^T
  belongs, when D = H: nothing refuses the shapes).
- A square tensor transposed in the backward alone: the forward's cache given W^T where it
  keeps W by name (rnn_step's dprev_h = da Wh where da Wh^T belongs). Transposing W in the
  forward too, as hypotheses' tensor-transposed does, changes next_h and so da: that names the
  slip only in a layer whose backward reads nothing the forward computed (linear's).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Found = tuple[str, str, dict[str, np.ndarray]]  # (cause, text, {tensor: wrong gradient})
Backward = Callable[[np.ndarray], Mapping[str, Any]]

MAX_SUMMED = 64  # indices of an output axis whose contributions one diagnosis may collect
MAX_WORK = 4_000_000  # elements in all (tensors and upstream) times those calls of the backward


def _near(a: np.ndarray, b: np.ndarray, scale: float) -> bool:
    return a.shape == b.shape and bool(np.max(np.abs(a - b), initial=0.0) <= 1e-9 * scale)


def mask_left_out(
    backward: Backward, g: np.ndarray, names: list[str], out: str
) -> list[Found]:
    """The right gradient of each elementwise tensor with its mask left out or inverted
    (``out``: the output's name, as dout is written)."""
    found: list[Found] = []
    ones = backward(np.ones_like(g))
    right = backward(g)
    for name in names:
        d = np.asarray(ones.get(name), dtype=np.float64)
        r = np.asarray(right.get(name), dtype=np.float64)
        if d.shape != g.shape or r.shape != g.shape:
            continue
        scale = max(float(np.max(np.abs(r), initial=0.0)), 1e-300)
        if not _near(r, g * d, scale):
            continue  # not elementwise: a mask is not what its values show
        values = np.unique(np.round(d, 12))
        if len(values) != 2:
            continue
        count = {float(v): int(np.sum(np.isclose(d, v, rtol=1e-9, atol=1e-12))) for v in values}
        shown = " and ".join(f"{'0' if v == 0 else f'd{out} * {_num(v)}'} at {n} of {d.size} "
                             "elements" for v, n in count.items())  # fmt: skip
        top = max(count, key=abs)
        for v in {*count, 1.0} - {0.0}:
            what = f"d{name} = d{out}" if v == 1 else f"d{name} = d{out} * {_num(v)}"
            if v == top:
                cause, why = "mask-left-out", "the mask left out"
            elif v == 1 and 1.0 not in count:
                cause, why = "mask-left-out:unscaled", "the mask and its scale left out"
            else:
                cause, why = f"mask-left-out:{_num(v)}", "the mask left out"
            found.append((
                cause, f"with {what} everywhere, where the right d{name} is {shown}: {why}",
                {name: g * v},
            ))  # fmt: skip
        u, v = (float(x) for x in values)
        said = {w: "0" if w == 0 else f"d{out} * {_num(w)}" for w in (u, v)}
        found.append((
            "mask-inverted",
            f"with the mask inverted: d{name} is {said[v]} where the right one is {said[u]} and "
            f"{said[u]} where it is {said[v]}",
            {name: g * np.where(np.isclose(d, u, rtol=1e-9, atol=1e-12), v, u)},
        ))  # fmt: skip
    return found


def wrong_axis_sum(
    backward: Backward,
    g: np.ndarray,
    shapes: Mapping[str, tuple[int, ...]],
    own: Mapping[str, list[str]],
    out_letters: list[str],
    elements: int,
) -> list[Found]:
    """Each gradient that sums an output axis away (its letters, ``own``, lack the axis's),
    summed instead over one of its own axes of the same size; ``elements``: the check's in all,
    what one call of the backward reads."""
    found: list[Found] = []
    for axis, size in enumerate(g.shape):
        letter = out_letters[axis]
        users = {
            n: [q for q, k in enumerate(shape) if k == size and letter not in own[n]]
            for n, shape in shapes.items()
        }
        users = {n: qs for n, qs in users.items() if qs and letter not in own[n]}
        if size < 2 or size > MAX_SUMMED or size * elements > MAX_WORK or not users:
            continue
        parts = []
        for k in range(size):
            keep = np.zeros(size, dtype=bool)
            keep[k] = True
            view = [-1 if j == axis else 1 for j in range(g.ndim)]
            parts.append(backward(np.where(keep.reshape(view), g, 0.0)))
        for n, qs in users.items():
            P = np.stack([np.asarray(p[n], dtype=np.float64) for p in parts])
            if P.shape[1:] != tuple(shapes[n]):
                continue
            for q in qs:
                wrong = np.moveaxis(P.sum(axis=1 + q), 0, q)
                mine = own[n][q]
                where = (f" (e.g. .sum(axis={out_letters.index(mine)}) where "
                         f".sum(axis={axis}) belongs)") if mine in out_letters else ""  # fmt: skip
                found.append((
                    f"summed-over:{mine}:not:{letter}",
                    f"summed over {mine} where the sum over {letter} belongs: element {mine}=k "
                    f"holds output {letter}=k's whole contribution{where}",
                    {n: wrong},
                ))  # fmt: skip
    return found


def read_for_another(
    backward: Callable[[Mapping[str, Any]], Mapping[str, Any]], cache: Any, names: list[str]
) -> list[Found]:
    """The right backward with tensor ``v`` kept in the cache where tensor ``u`` belongs, for
    every two of ``names`` of one shape that the cache keeps by name (one call each)."""
    if not isinstance(cache, Mapping):
        return []
    kept = [n for n in names if isinstance(cache.get(n), np.ndarray)]
    found: list[Found] = []
    for u, v in itertools.permutations(kept, 2):
        if cache[u].shape != cache[v].shape or np.array_equal(cache[u], cache[v]):
            continue
        found.append((
            f"read-for:{u}:{v}",
            f"with {v} read where {u} belongs (the two have one shape, so nothing refused it: "
            f"a product with {v} where the one with {u} belongs)",
            dict(backward({**cache, u: cache[v]})),
        ))  # fmt: skip
    return found


def transposed_in_cache(
    backward: Callable[[Mapping[str, Any]], Mapping[str, Any]], cache: Any, names: list[str]
) -> list[Found]:
    """The right backward with each square 2-D tensor of ``names`` that the cache keeps by
    name transposed there, the forward's own results left as they are (one call each)."""
    if not isinstance(cache, Mapping):
        return []
    found: list[Found] = []
    for n in names:
        W = cache.get(n)
        if not isinstance(W, np.ndarray) or W.ndim != 2 or W.shape[0] != W.shape[1]:
            continue
        if W.shape[0] < 2 or np.array_equal(W, W.T):
            continue  # a symmetric W is its own transpose: no slip to tell apart
        found.append((
            f"tensor-transposed:{n}",
            f"with {n} transposed in the backward ({n}^T where {n} belongs, or the other way "
            f"round: e.g. a product with {n} where the one with {n}.T belongs)",
            dict(backward({**cache, n: W.T})),
        ))  # fmt: skip
    return found


def _num(v: float) -> str:
    return f"{v:.6g}"
