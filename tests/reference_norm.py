"""Loop references of the normalizations and the poolings: independent oracle, never imported by
the package, nothing vectorized.

The normalizations share one loop: a set of positions that share statistics (a row, a feature
column of the batch, an example's group), its mean and biased variance as running sums, and the
input gradient through the full Jacobian of xhat written out element by element,
    d xhat_j / d x_i = r (delta_ij - 1/M) - r xhat_i xhat_j / M,
not through the layers' collapsed formula. Pooling walks every window position by position.
Leading axes are looped over explicitly (np.ndindex); options are keyword arguments.
"""

from __future__ import annotations

import math

import numpy as np


def _normalize_set(x, g, gamma, beta, positions, channel, eps, y, dx, dgamma, dbeta):
    """One statistics set: y, dx at its positions; dgamma, dbeta accumulated."""
    M = len(positions)
    mu = 0.0
    for p in positions:
        mu += x[p]
    mu /= M
    var = 0.0
    for p in positions:
        var += (x[p] - mu) ** 2
    var /= M
    r = 1.0 / math.sqrt(var + eps)
    xhat = [(x[p] - mu) * r for p in positions]
    for a, p in enumerate(positions):
        c = channel(p)
        y[p] = gamma[c] * xhat[a] + beta[c]
        dgamma[c] += g[p] * xhat[a]
        dbeta[c] += g[p]
    for i, pi in enumerate(positions):
        s = 0.0
        for j, pj in enumerate(positions):
            jac = r * ((1.0 if i == j else 0.0) - 1.0 / M) - r * xhat[i] * xhat[j] / M
            s += g[pj] * gamma[channel(pj)] * jac
        dx[pi] = s


def _run_sets(x, g, gamma, beta, sets, eps):
    y, dx = np.zeros(x.shape), np.zeros(x.shape)
    dgamma, dbeta = np.zeros(gamma.shape), np.zeros(gamma.shape)
    for positions in sets:
        _normalize_set(x, g, gamma, beta, positions, lambda p: p[-1], eps, y, dx, dgamma, dbeta)
    return y, dx, dgamma, dbeta


def _beta(t, x):
    return t["beta"] if "beta" in t else np.zeros(x.shape[-1])


# ------------------------------------------------------------------------ layernorm: per row
def _layernorm_sets(shape):
    for lead in np.ndindex(*shape[:-1]):
        yield [(*lead, d) for d in range(shape[-1])]


def layernorm(t, g=None, eps=1e-5):
    x = t["x"]
    g = np.zeros(x.shape) if g is None else g
    return _run_sets(x, g, t["gamma"], _beta(t, x), list(_layernorm_sets(x.shape)), eps)


# ---------------------------------------------- batchnorm: per channel over N (and H, W)
def _batchnorm_sets(shape, spatial):
    core = spatial + 2
    for lead in np.ndindex(*shape[:-core]):
        for c in range(shape[-1]):
            yield [(*lead, *rest, c) for rest in np.ndindex(*shape[-core:-1])]


def batchnorm(t, g=None, eps=1e-5, spatial=0):
    x = t["x"]
    g = np.zeros(x.shape) if g is None else g
    sets = list(_batchnorm_sets(x.shape, spatial))
    return _run_sets(x, g, t["gamma"], _beta(t, x), sets, eps)


# ------------------------------------------- groupnorm: per example and group of channels
def _groupnorm_sets(shape, groups, spatial):
    width = shape[-1] // groups
    for lead in np.ndindex(*shape[: -spatial - 1]):
        for a in range(groups):
            yield [
                (*lead, *pos, c)
                for pos in np.ndindex(*shape[-spatial - 1 : -1])
                for c in range(a * width, (a + 1) * width)
            ]


def groupnorm(t, g=None, groups=2, eps=1e-5, spatial=2):
    X = t["X"]
    g = np.zeros(X.shape) if g is None else g
    sets = list(_groupnorm_sets(X.shape, groups, spatial))
    return _run_sets(X, g, t["gamma"], _beta(t, X), sets, eps)


# ------------------------------------------------------------------------------- pooling
def _pair(v):
    return list(v) if isinstance(v, (list, tuple)) else [v, v]


def _pool(X, g, kind, size=2, stride=None, padding=0, count_include_pad=True):
    """Z and dX by walking every window; padded positions are skipped (max: -inf never wins;
    avg: they add 0 and count only with count_include_pad)."""
    (kh, kw), (ph, pw) = _pair(size), _pair(padding)
    sh, sw = _pair(size if stride is None else stride)
    H, W, C = X.shape[-3:]
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    Z = np.zeros((*X.shape[:-3], Ho, Wo, C))
    dX = np.zeros(X.shape)
    for lead in np.ndindex(*X.shape[:-3]):
        for i in range(Ho):
            for j in range(Wo):
                for c in range(C):
                    inside = [
                        (i * sh + m - ph, j * sw + n - pw)
                        for m in range(kh)
                        for n in range(kw)
                        if 0 <= i * sh + m - ph < H and 0 <= j * sw + n - pw < W
                    ]
                    out = (*lead, i, j, c)
                    if kind == "max":
                        best = inside[0]
                        for p in inside[1:]:
                            if X[(*lead, *p, c)] > X[(*lead, *best, c)]:  # ties: the first
                                best = p
                        Z[out] = X[(*lead, *best, c)]
                        dX[(*lead, *best, c)] += g[out] if g is not None else 0.0
                    else:
                        count = kh * kw if count_include_pad else len(inside)
                        for p in inside:
                            Z[out] += X[(*lead, *p, c)] / count
                            dX[(*lead, *p, c)] += (g[out] if g is not None else 0.0) / count
    return Z, dX


def maxpool2d(t, g=None, **options):
    return _pool(t["X"], g, "max", **options)


def avgpool2d(t, g=None, **options):
    return _pool(t["X"], g, "avg", **options)


def _norm_entry(fn):
    def forward(t, **o):
        return fn(t, None, **o)[0]

    def backward(g, t, **o):
        _, dx, dgamma, dbeta = fn(t, g, **o)
        name = "X" if "X" in t else "x"
        out = {name: dx, "gamma": dgamma}
        return {**out, "beta": dbeta} if "beta" in t else out

    return forward, backward


def _pool_entry(fn):
    return (lambda t, **o: fn(t, None, **o)[0], lambda g, t, **o: {"X": fn(t, g, **o)[1]})


# name -> (forward(tensors, **options), backward(grad, tensors, **options))
NORM_REFERENCES = {
    "layernorm": _norm_entry(layernorm),
    "batchnorm": _norm_entry(batchnorm),
    "groupnorm": _norm_entry(groupnorm),
    "maxpool2d": _pool_entry(maxpool2d),
    "avgpool2d": _pool_entry(avgpool2d),
}
