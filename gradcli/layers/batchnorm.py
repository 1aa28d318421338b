"""Batch normalization, training mode: the statistics are the batch's own (torch.nn.BatchNorm1d/2d
in train(), CS231n's batchnorm_forward and spatial_batchnorm_forward, channel-last).

Shapes: x (..., N, D), gamma (D,), beta (D,), y (..., N, D). With ``spatial: 2`` x is a batch of
images (..., N, H, W, C) normalized per channel over N, H and W (``spatial: 1``: (..., N, L, C)).
The batch axis N is a core axis, not a batch axis: every example moves every other example's
output through the mean and variance. Leading axes ``...`` are independent batches.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcli.errors import ShapeError
from gradcli.layers import _norm, _norm_variants
from gradcli.layers.base import (
    Arrays,
    Footprint,
    Layer,
    Shapes,
    TensorInfo,
    batch_maps,
    option,
    same,
)
from gradcli.layers.cs231n import NCHW, Form, out
from gradcli.records import record


@record
class Options:
    eps: float = option(1e-5, "added to the variance: a number > 0")
    spatial: int = option(
        0, "axes between N and the channels: 0 for x (N, D), 1 for (N, L, C), 2 for (N, H, W, C)"
    )

    def __post_init__(self) -> None:
        _norm.check_eps(self.eps)
        _norm.check_spatial(self.spatial)


def _axes(spatial: int) -> tuple[int, ...]:
    """N and the spatial axes: everything the statistics of one channel run over."""
    return tuple(range(-spatial - 2, -1))


# mu[d] = mean_n x[n, d]   var[d] = mean_n (x[n, d] - mu[d])^2   (also over H, W with spatial)
# xhat[n, d] = (x[n, d] - mu[d]) / sqrt(var[d] + eps)     y[n, d] = gamma[d] xhat[n, d] + beta[d]
def shown(cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """mu (..., D), var (..., D), xhat (..., N, [H, W,] D): what compute shows."""
    x, axes = cache["x"], _axes(cache["spatial"])
    return {"mu": x.mean(axis=axes), "var": x.var(axis=axes), "xhat": cache["xhat"]}


def forward(
    t: Arrays, options: Any = None, ddof: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """x (..., N, [H, W,] D), gamma (..., D), beta (..., D) -> y (..., N, [H, W,] D)."""
    options = options or Options()
    x, gamma, beta, k = t["x"], t["gamma"], t["beta"], options.spatial + 1
    xhat, r = _norm.normalize(x, _axes(options.spatial), options.eps, ddof)
    cache = {"xhat": xhat, "r": r, "gamma": gamma, "beta": beta, "x": x, "spatial": options.spatial}
    return _norm.affine(xhat, gamma, beta, k), cache


# dxhat = dy gamma
# dx[n, d] = r[d] (dxhat[n, d] - mean_n dxhat[n, d] - xhat[n, d] mean_n dxhat[n, d] xhat[n, d])
# dgamma[d] = sum_n dy[n, d] xhat[n, d]    dbeta[d] = sum_n dy[n, d]
def backward(dy: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """dy (..., N, [H, W,] D) -> {"x": x's shape, "gamma": (D,), "beta": (D,)}."""
    xhat, r, axes = cache["xhat"], cache["r"], _axes(cache["spatial"])
    dx = _norm.dnormalize(dy * cache["gamma"], xhat, r, axes)
    return {"x": dx, **_norm.param_grads(dy, xhat)}


def variants(t: Arrays, options: Any, dy: np.ndarray) -> dict[str, tuple[str, dict]]:
    """Classic wrong dx (gradcli.layers._norm_variants), for the diagnosis."""
    options = options or Options()
    cache = forward(t, options)[1]
    return _norm_variants.variants(cache, dy, _axes(options.spatial), options.spatial + 1)


def output_shape(s: Shapes, options: Any = None) -> tuple[int, ...]:
    x, sp = s["x"], (options or Options()).spatial
    core = ("N", *_norm.SPATIAL_AXES[sp], "C" if sp else "D")
    if len(x) < len(core) or any(n < 1 for n in x[-len(core) :]):
        hint = "" if sp else " (images: options.spatial 2)"
        raise ShapeError(
            f"batchnorm: x must be (..., {', '.join(core)}) with every one of them >= 1, "
            f"got shape {list(x)}{hint}",
            key="x",
        )
    _norm.check_params("batchnorm", s, x[-1], core[-1])
    return tuple(x)


def working_elements(s: Shapes, options: Any = None) -> int:
    x = s["x"]
    return _norm.working(math.prod(x), math.prod(x[: -(options or Options()).spatial - 2]) * x[-1])


def perturbed(name: str, cache: dict, g: np.ndarray, idx: np.ndarray, values: Any) -> Any:
    """The loss with x[idx[p]] = values[p], column by column in closed form (_norm.perturbed):
    a batch of N examples is dense in each feature, so coloring needs N passes per column."""
    if name != "x":
        return None
    x = cache["x"]
    core, c = math.prod(x.shape[-cache["spatial"] - 2 :]), x.shape[-1]
    flat = np.arange(x.size)
    return _norm.perturbed(cache, g, idx, values, flat // core * c + flat % c, core // c)


def footprint(name: str, s: Shapes, options: Any = None) -> Footprint:
    """x[..., n, d] moves the whole column y[..., :, d] of its own batch (every example, through
    the mean and variance); gamma[d] and beta[d] move y[..., d]."""
    sp = (options or Options()).spatial
    batch, c = s["x"][: -sp - 2], s["x"][-1]
    out = len(batch) + sp + 1
    if name == "x":
        return (*batch_maps(batch), *(None,) * (sp + 1), same(out, c))
    return _norm.param_footprint(out, c)


def explain(v: Any) -> Any:
    sp = v.options.spatial
    over = ("n", *_norm.SPATIAL_INDEX[sp])
    each = "each channel over N and every position" if sp else "each feature over the N examples"
    return _norm.words(v, "x", "y", each, over, over)


SKELETON = """
def forward(x, gamma, beta, eps=1e-5, spatial=0):
    # training mode: mu = mean over the batch (axis 0) of each feature, var = mean((x - mu)**2)
    # xhat = (x - mu) / sqrt(var + eps);   y = gamma * xhat + beta
    # x (N, D), gamma (D,), beta (D,) -> y (N, D)   (spatial 2: x (N, H, W, C), over N, H, W)
    raise NotImplementedError


def backward(grad_output, x, gamma, beta, eps=1e-5, spatial=0):
    # every example moves the mean and variance: dxhat = dy * gamma, r = 1 / sqrt(var + eps)
    # dx = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))    (means over the batch)
    # dgamma = sum over the batch of dy * xhat;   dbeta = sum over the batch of dy
    dy = grad_output
    raise NotImplementedError
    return {"x": ..., "gamma": ..., "beta": ...}
"""


def layout(s: Shapes, options: Any = None) -> tuple[tuple[TensorInfo, ...], TensorInfo]:
    sp = (options or Options()).spatial
    if not sp:
        return LAYER.tensors, LAYER.output
    axes, index = ("N", *_norm.SPATIAL_AXES[sp], "C"), ("n", *_norm.SPATIAL_INDEX[sp], "c")
    return (
        (
            TensorInfo("x", axes, index, "input", "a batch of images, channel-last"),
            TensorInfo("gamma", ("C",), ("c",), "weight", "scale per channel", init="ones"),
            TensorInfo("beta", ("C",), ("c",), "bias", "shift per channel", optional=True),
        ),
        TensorInfo("y", axes, index, "output", "normalized per channel over the batch"),
    )


def factors(s: Shapes, options: Any = None) -> list[tuple[float, str, str]]:
    """Each channel's statistics run over N (and H, W): m = N H W values (Layer.factors)."""
    sp = _spatial(options)
    return _norm.unbiased(math.prod(s["x"][-sp - 2 : -1])) if len(s["x"]) >= sp + 2 else []


def bn_param(options: Any, s: Shapes) -> tuple[dict[str, Any]]:
    return ({"mode": "train", "eps": (options or Options()).eps},)


def _spatial(options: Any) -> int:
    return getattr(options, "spatial", 0)


HINT = "x (N, D) with spatial: 0, or images (N, H, W, C) with spatial: 2"


LAYER = Layer(
    name="batchnorm",
    shown=shown,
    means=("n", *_norm.SPATIAL_INDEX[1], *_norm.SPATIAL_INDEX[2]),  # the statistics' axes
    factors=factors,
    summary="y = gamma (x - mean_n x) / sqrt(var_n x + eps) + beta,  mean, var over the N examples",
    tensors=(
        TensorInfo("x", ("N", "D"), ("n", "d"), "input", "a batch: N examples (core axis)"),
        TensorInfo("gamma", ("D",), ("d",), "weight", "scale per feature", init="ones"),
        TensorInfo("beta", ("D",), ("d",), "bias", "shift per feature", optional=True),
    ),
    output=TensorInfo("y", ("N", "D"), ("n", "d"), "output", "normalized over the batch"),
    forward=forward,
    backward=backward,
    output_shape=output_shape,
    default_shapes={"x": (4, 3), "gamma": (3,), "beta": (3,)},
    options=Options,
    footprint=footprint,
    working=working_elements,
    layout=layout,
    perturbed=perturbed,
    perturbed_elements=_norm.perturbed_elements,
    explain=explain,
    skeleton=SKELETON,
    variants=variants,
    cs231n=(
        Form("batchnorm_forward", "batchnorm_backward", params=bn_param, ndim={"x": 2},
             applies=lambda o: _spatial(o) == 0, hint=HINT),
        Form("spatial_batchnorm_forward", "spatial_batchnorm_backward", {"x": NCHW}, out(NCHW),
             bn_param, ndim={"x": 4}, applies=lambda o: _spatial(o) == 2,
             layout="x as (N, C, H, W)", hint=HINT),
    ),  # fmt: skip
    forms=_norm.forms("batchnorm", forward),
)
