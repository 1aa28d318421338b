"""What layernorm, batchnorm and groupnorm share: one normalization over a set of axes.

Over the set S of values that share statistics (a row, a feature column of the batch, a group):

    mu = mean_S x     var = mean_S (x - mu)^2     r = 1 / sqrt(var + eps)     xhat = (x - mu) r
    y  = gamma xhat + beta                        (gamma, beta per channel: the last axis)
    dxhat = dy gamma
    dx = r (dxhat - mean_S dxhat - xhat mean_S(dxhat xhat))
    dgamma = sum dy xhat     dbeta = sum dy        (over every axis but the channel)

The variance is biased (divided by |S|), as in torch's training mode. No abs or conjugate
anywhere: the formulas continue analytically, so the complex step runs through them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from gradcli.errors import OptionError, ShapeError, brief
from gradcli.layers.base import Arrays, AxisMap, same

SPATIAL_AXES = {0: (), 1: ("L",), 2: ("H", "W")}
SPATIAL_INDEX = {0: (), 1: ("l",), 2: ("i", "j")}


def check_eps(eps: Any) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < math.inf:
        raise OptionError(
            f"eps must be a number > 0 (added to the variance), got {brief(eps)}",
            key="options.eps",
        )


def check_spatial(spatial: Any) -> None:
    if isinstance(spatial, bool) or spatial not in SPATIAL_AXES:
        raise OptionError(
            "spatial must be 0 (features), 1 (sequences, L) or 2 (images, H and W), "
            f"got {brief(spatial)}",
            key="options.spatial",
        )


def expand(p: np.ndarray, k: int) -> np.ndarray:
    """A per-channel parameter (..., C) with k unit axes before C, so that its leading (probe)
    axes line up with those of an input whose core is k + 1 axes long."""
    return p.reshape(p.shape[:-1] + (1,) * k + p.shape[-1:])


def normalize(
    x: np.ndarray, axes: tuple[int, ...], eps: float, ddof: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """xhat and r = 1 / sqrt(var + eps) (keepdims) over ``axes``; ``ddof`` 1 is the unbiased
    variance a user's forward may take by mistake (forms)."""
    xc = x - x.mean(axis=axes, keepdims=True)
    var = np.mean(xc * xc, axis=axes, keepdims=True)  # xc * xc, not |xc|^2: complex-safe
    if ddof:
        var *= xc.size // var.size / (xc.size // var.size - ddof)
    r = 1.0 / np.sqrt(var + float(eps))  # a Python float keeps float32 in float32
    xc *= r
    return xc, r


def dnormalize(dxhat: np.ndarray, xhat: np.ndarray, r: np.ndarray, axes: tuple[int, ...]) -> Any:
    """dx from dxhat: the Jacobian of normalize, transposed."""
    m1 = dxhat.mean(axis=axes, keepdims=True)
    m2 = np.mean(dxhat * xhat, axis=axes, keepdims=True)
    return r * (dxhat - m1 - xhat * m2)


def affine(xhat: np.ndarray, gamma: np.ndarray, beta: np.ndarray, k: int) -> np.ndarray:
    return xhat * expand(gamma, k) + expand(beta, k)


def param_grads(dy: np.ndarray, xhat: np.ndarray) -> dict[str, np.ndarray]:
    """dgamma, dbeta: sums over every axis but the channel (the last)."""
    c = dy.shape[-1]
    dy2 = dy.reshape(-1, c)
    ones = np.ones(len(dy2), dy2.dtype)
    return {"gamma": ones @ (dy2 * xhat.reshape(-1, c)), "beta": ones @ dy2}


def check_params(layer: str, s: Any, c: int, what: str) -> None:
    for name in ("gamma", "beta"):
        if name in s and tuple(s[name]) != (c,):
            raise ShapeError(
                f"{layer}: {name} must have shape [{c}] ({what},), got {list(s[name])}", key=name
            )


def unbiased(m: int) -> list[tuple[float, str, str]]:
    """Layer.factors of a normalization over sets of ``m`` values: the variance's 1/(m - 1)
    (an unbiased estimate, np.var(ddof=1), Bessel's correction) where the layer's is biased,
    1/m: the classic slip of a backward that writes the 1/m out by hand (the outside tester's
    H1)."""
    if m < 3:  # m/(m - 1) = 2 is the plain factor 2's
        return []
    return [(m / (m - 1), "scale:unbiased", f"multiplied by {m}/{m - 1}: the variance's "
             f"1/{m - 1} (N - 1: an unbiased estimate, Bessel's correction) where the layer's "
             f"is biased, 1/{m}"),
            # xhat from the unbiased std: dgamma = sum(dy xhat) shrinks by its square root
            (math.sqrt((m - 1) / m), "scale:unbiased-std", f"multiplied by sqrt({m - 1}/{m}): "
             f"xhat divided by the unbiased std (np.var(ddof=1), over {m - 1}) where the "
             f"layer's is biased, over {m}")]  # fmt: skip


def forms(name: str, forward: Callable[..., Any]) -> Callable[[Arrays, Any], dict]:
    """Layer.forms of a normalization whose ``forward(t, options, ddof=)`` normalizes by the
    variance of ``ddof``: a forward written with np.var(ddof=1) (torch.var's default) got no
    hint where the same slip in a backward did (t61b F7)."""

    def unbiased(t: Arrays, options: Any = None) -> dict[str, tuple[str, np.ndarray]]:
        _, cache = forward(t, options)
        m = cache["xhat"].size // cache["r"].size
        if m < 2:
            return {}
        with np.errstate(all="ignore"):
            y, _ = forward(t, options, ddof=1)
        return {"unbiased": (
            f"your forward divides the variance by m - 1 = {m - 1} (np.var(ddof=1), torch.var's "
            f"default); the built-in {name} divides by m = {m}, as torch's does: drop ddof=1", y)}

    return unbiased


def param_footprint(out_axis: int, c: int) -> tuple[AxisMap, ...]:
    """gamma[c] and beta[c] move only the outputs of channel c."""
    return (same(out_axis, c),)


def working(size: int, stats: int) -> int:
    """Elements allocated beyond the tensors, output and gradients, for an input of ``size``
    elements with ``stats`` sets of statistics: forward x - mu (becoming xhat), its square,
    the scaled copy and the output's sum; backward dxhat, dxhat xhat, the difference and its
    scaled copy, and the parameter sums' product; plus mean, variance, r and two backward
    means per set."""
    return 9 * size + 5 * stats


def words(v: Any, x: str, y: str, each: str, over: tuple[str, ...], sums: tuple[str, ...]) -> Any:
    """The explain formulas of a normalization: ``each`` says what shares statistics, ``over``
    the mean's indices, ``sums`` those of the parameter gradients' sums (the batch first)."""
    from gradcli.layers.words import Formulas, shape, sigma

    sx, sg, eps = shape(v.shapes[x]), shape(v.shapes["gamma"]), v.options.eps
    m = sigma(*over).replace("Σ", "mean")
    total = sigma(*(("batch",) if v.batch else ()), *sums) + " " if v.batch or sums else ""
    fwd = [
        f"μ = {m} {x},   σ² = {m} ({x} - μ)²   (biased, as torch's training mode)",
        f"r = 1/√(σ² + ε),   x̂ = ({x} - μ) r,   ε = {eps:g};   {each}",
        f"{y} {sx} = gamma {sg} ⊙ x̂ + beta {sg}",
    ]
    return Formulas(fwd, {
        x: ([f"∂L/∂x̂ = ∂L/∂{y} ⊙ gamma",
             f"∂L/∂{x} {sx} = r (∂L/∂x̂ - {m} ∂L/∂x̂ - x̂ {m}(∂L/∂x̂ ⊙ x̂))"],
            "μ and σ² move with every element they average: the two means take back the "
            "shift and the stretch they absorb, so ∂L/∂x sums to 0 over each set"),
        "gamma": ([f"∂L/∂gamma {sg} = {total}∂L/∂{y} ⊙ x̂"],
                  "each scale multiplies its channel's normalized values"),
        "beta": ([f"∂L/∂beta {sg} = {total}∂L/∂{y}"],
                 "the shift adds straight into the output, so its gradient is the output's, "
                 "summed"),
    })  # fmt: skip


def perturbed_elements(name: str, s: Any, options: Any = None) -> int:
    """What one incremental evaluation costs, in elements (Layer.perturbed_elements): its share
    of the pass over the point each call makes (the sums of the statistics and the base loss,
    about 32 arrays of the input's size, over a call's 2,048 coordinates) and the engine's
    bookkeeping per coordinate (768; linear's 512). Counted as the largest array the forward
    keeps, a layernorm of 16 x 2048 was predicted at 2.6 s and took 0.06 s of CPU."""
    return 32 * math.prod(s["X" if "X" in s else "x"]) // 2048 + 768


def perturbed(
    cache: Any, g: np.ndarray, idx: np.ndarray, values: np.ndarray, sets: np.ndarray, M: int
) -> np.ndarray:
    """The loss sum(g * y) at copies of the cached point, copy p with flat input coordinate
    idx[p] set to values[p] (complex for the complex step): only its own set's statistics move,
    by closed forms, so each copy costs O(1) after one pass (Layer.perturbed). ``sets`` holds
    each input element's set (the order of r's elements), M is the size of a set.

    With a = g gamma, C1 = sum_S a (x - mu), A0 = sum_S a and x_k moved by d:
        var' = var + (2 d (x_k - mu) + d^2 (1 - 1/M)) / M,   s = sqrt(var + eps), r = 1/s
        L' - L = (r' - r) C1 + r' (a_k - A0 / M) d,   r' - r = -(var' - var) r r' / (s + s')
    (the difference written so that nothing large cancels)."""
    xhat, r = cache["xhat"], cache["r"].ravel()
    a = (g * cache["gamma"]).ravel()
    xh, x = xhat.ravel(), cache["x"].ravel()
    base = float(np.sum(g * (xhat * cache["gamma"] + cache["beta"])))
    A0 = np.bincount(sets, a, minlength=len(r))
    C1 = np.bincount(sets, a * xh, minlength=len(r)) / r
    s = sets[idx]
    d = np.asarray(values) - x[idx]
    xc = xh[idx] / r[s]
    dv = (2 * d * xc + d * d * (1 - 1 / M)) / M
    s0 = 1 / r[s]
    s1 = np.sqrt(s0 * s0 + dv)
    return base + (-dv * r[s] / s1 / (s0 + s1) * C1[s] + (a[idx] - A0[s] / M) * d / s1)
