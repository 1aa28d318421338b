"""Numerical gradients by finite differences, and nothing else.

The gradient of the scalar ``L = sum(grad_output * forward(tensors))`` with respect to every
coordinate of a tensor, from private float64 copies (the caller's arrays are never touched).
Perturbed copies are stacked on a leading "probe" axis so one batched forward call evaluates
many of them; the chunk size keeps memory under a budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradcli.layers import Layer

METHODS = ("central",)
DEFAULT_MAX_MEMORY = 512 * 2**20


def default_eps(method: str = "central") -> float:
    """Step relative to max(1, |x|): cbrt(machine epsilon) balances truncation (h^2) against
    round-off (eps/h) for central differences."""
    return float(np.cbrt(np.finfo(np.float64).eps))


def steps(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate steps (h_plus, h_minus) such that x + h_plus and x - h_minus are exactly
    the points evaluated (x + h rounds; the rounded difference is the true step)."""
    h = eps * np.maximum(1.0, np.abs(x))
    return (x + h) - x, x - (x - h)


def _lift(a: np.ndarray, lead: int, batch_axes: int) -> np.ndarray:
    """Give ``a`` a leading probe axis of size ``lead`` ... (see layers/base.py) and singleton
    axes for the batch axes it lacks, so every tensor broadcasts against the input's batch."""
    return a.reshape((lead,) + (1,) * batch_axes + a.shape)


def numerical_gradients(
    layer: Layer,
    tensors: Mapping[str, np.ndarray],
    options: Any,
    grad_output: np.ndarray,
    *,
    eps: float | None = None,
    names: tuple[str, ...] | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> dict[str, np.ndarray]:
    """Central-difference gradient of L for each tensor in ``names`` (default: all).

    tensors: {name: array}, any float dtype (evaluated in float64); grad_output: the output's
    shape. Returns {name: float64 array of the tensor's shape}.
    """
    eps = default_eps() if eps is None else eps
    t64 = {n: np.array(a, dtype=np.float64) for n, a in tensors.items()}
    g = np.asarray(grad_output, dtype=np.float64).ravel()
    batch = {
        i.name: (t64[i.name].ndim - len(i.axes)) if i.role == "input" else 0 for i in layer.tensors
    }
    n_batch = max(batch.values())
    out, cache = layer.forward(t64, options)
    # bytes one probe copy costs: every cached intermediate and the output, with temporaries
    per_copy = 3 * (out.nbytes + sum(v.nbytes for v in cache.values() if isinstance(v, np.ndarray)))

    grads = {}
    for name in names or layer.tensor_names:
        base = t64[name]
        lifted = {n: _lift(a, 1, n_batch - batch[n]) for n, a in t64.items() if n != name}
        x = base.ravel()
        hp, hm = steps(x, eps)
        grad = np.empty(x.size)
        chunk = int(max(1, min(x.size, max_memory // max(1, per_copy + 2 * base.nbytes))))
        for start in range(0, x.size, chunk):
            idx = np.arange(start, min(start + chunk, x.size))
            c = idx.size
            probes = np.repeat(x[None, :], 2 * c, axis=0)
            probes[np.arange(c), idx] = x[idx] + hp[idx]
            probes[c + np.arange(c), idx] = x[idx] - hm[idx]
            probes = probes.reshape((2 * c,) + (1,) * (n_batch - batch[name]) + base.shape)
            y, _ = layer.forward({**lifted, name: probes}, options)
            # difference the outputs before reducing: untouched outputs cancel exactly
            diff = (y[:c] - y[c:]).reshape(c, -1)
            grad[idx] = (diff @ g) / (hp[idx] + hm[idx])
        grads[name] = grad.reshape(base.shape)
    return grads


def probe_cost(layer: Layer, tensors: Mapping[str, np.ndarray]) -> int:
    """Forward evaluations a full central-difference check needs (2 per coordinate)."""
    return 2 * sum(math.prod(tensors[n].shape) for n in layer.tensor_names)
