"""Which coordinates and directions a cheaper-than-full check looks at (no finite differences
here: the engine in numeric.py evaluates them)."""

from __future__ import annotations

import numpy as np


def sample_coordinates(
    shape: tuple[int, ...], k: int, analytic: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """About ``k`` flat indices, stratified: corners, border coordinates, the largest-magnitude
    analytical gradient entries, and random ones. Sorted, unique; all of them if k >= size."""
    size = int(np.prod(shape, dtype=np.int64))
    if k >= size:
        return np.arange(size)
    picked: list[int] = []
    quarter = max(1, k // 4)
    if shape:
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij"))
        corners = corners.reshape(len(shape), -1).T[:quarter]
        picked += list(np.ravel_multi_index(corners.T, shape))
        for _ in range(quarter):  # a random coordinate pinned to an edge of one random axis
            idx = [int(rng.integers(n)) for n in shape]
            axis = int(rng.integers(len(shape)))
            idx[axis] = int(rng.choice([0, shape[axis] - 1]))
            picked.append(int(np.ravel_multi_index(idx, shape)))
    picked += list(_largest(analytic, quarter))
    chosen = np.unique(np.array(picked, dtype=np.int64))
    # the positions of rng.choice(setdiff1d(arange(size), chosen), ...), drawn from their
    # count (the same draws) and mapped to the coordinates they stand for, without building
    # the complement of a tensor of millions
    m = size - len(chosen)
    at = rng.choice(m, size=min(m, max(0, k - len(chosen))), replace=False)
    extra = at + np.searchsorted(chosen - np.arange(len(chosen)), at, side="right")
    return np.unique(np.concatenate([chosen, extra]))[: max(k, 1)]


def _largest(analytic: np.ndarray, q: int) -> np.ndarray:
    """The flat indices of the ``q`` largest-magnitude entries, ties to the lowest index, NaN
    last: ``argsort(-|a|, kind="stable")[:q]`` without sorting the whole tensor."""
    a = np.abs(np.asarray(analytic, dtype=np.float64).ravel())
    a[np.isnan(a)] = -1.0  # below every magnitude, in index order (argsort's NaN)
    if q >= a.size:
        return np.argsort(-a, kind="stable")
    cut = np.partition(a, a.size - q)[a.size - q]  # the q-th largest
    above = np.flatnonzero(a > cut)
    tied = np.flatnonzero(a == cut)[: q - above.size]
    top = np.concatenate([above, tied])
    return top[np.lexsort((top, -a[top]))]


def rademacher(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A random direction of entries +-(1 + k/256), k from 0 to 255: one wrong element can
    never cancel out of it, nor, but for a chance of 1 in 512, a gradient moved from one
    element to another (a routing or mask bug's error, d (e_i - e_j)), which entries of +-1
    cancel whenever p_i = p_j: an svm counting an inactive margin and a max-pool routed to
    the runner-up passed a probe one seed in four (outside test t32a F3). Eight bits: a step
    times an entry keeps a power of two's exactness."""
    signs = rng.choice(np.array([-1.0, 1.0]), size=shape)
    return signs * (1.0 + rng.integers(0, 256, size=shape) / 256.0)


SWEEP_STEPS = tuple(10.0**-k for k in range(1, 13))
